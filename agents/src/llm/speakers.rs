//! The language-model speakers of entity scenarios as registry rows: one agent row and one
//! persona row per model backend (`llm[:MODEL]`, `server:URL`, see
//! `dialogym_policies::lm::backend::BACKENDS`), and the oracle, which reads free-text
//! questions with a matcher.
//!
//! Specs:
//! - agent `llm[:MODEL](temperature=0.7,top_p=0.9,top_k=0,max_tokens=32,weights=auto[,examples=CORPUS_DIR])`:
//!   with `examples`, the few-shot prompt of [`super::fewshot`] built from that corpus
//! - persona `llm[:MODEL](grounding=check|correct,matcher=minilm|none,threshold=T,...)`
//! - agent or persona `server:URL(model=NAME[,api_key_env=VAR,concurrency=8,retries=2,timeout=120,...])`
//! - persona `oracle(slip=P[,matcher=minilm,threshold=T])`

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use dialogym_engine::{Agent, AgentRow, Context, Persona, PersonaRow, SpeakerRow, Spec};
use dialogym_policies::lm::backend::{BACKENDS, DEFAULT_EMBEDDER, backend};
use dialogym_scenarios::entity::EntityScenario;

use super::fewshot::few_shot_brief;
use super::matcher::{DEFAULT_MATCH_THRESHOLD, MiniLmMatcher};
use super::{
    Grounding, LlmAgent, LlmPersona, MatchCounters, MatchingOracle, PersonaCounters, QuestionMatcher, SAMPLING_KEYS,
    sampling_from_spec,
};
use crate::oracle::Oracle;

/// The parameters an LLM agent reads besides sampling and its backend's.
const AGENT_KEYS: &[&str] = &["examples"];
/// The parameters an LLM persona reads besides sampling and its backend's.
const PERSONA_KEYS: &[&str] = &["grounding", "matcher", "threshold"];

fn keys(own: &[&'static str]) -> Vec<&'static str> {
    SAMPLING_KEYS.iter().chain(own).copied().collect()
}

/// An LLM agent from `llm[:MODEL](...)` or `server:URL(...)`.
pub fn build_llm_agent(
    spec: &Spec,
    scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Agent<EntityScenario>>> {
    let model = backend(spec, &keys(AGENT_KEYS), context).with_context(|| format!("agent `{spec}`"))?;
    let sampling = sampling_from_spec(spec, &LlmAgent::default_sampling())?;
    let agent = LlmAgent::new(model, sampling, spec.to_string());
    Ok(Box::new(match spec.params.get("examples") {
        None => agent,
        Some(dir) => {
            let (_, rows) = dialogym_engine::corpus::read_corpus(Path::new(dir))
                .with_context(|| format!("agent `{spec}`: examples"))?;
            if !rows.iter().any(|r| r.success) {
                bail!("agent `{spec}`: the corpus {dir} holds no won game to show as an example");
            }
            agent.with_system(few_shot_brief(scenario, &rows))
        }
    }))
}

/// An LLM persona from `llm[:MODEL](...)` or `server:URL(...)`; its consistency counters
/// are the context's report under the persona's spec.
pub fn build_llm_persona(
    spec: &Spec,
    _scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Persona<EntityScenario>>> {
    let model = backend(spec, &keys(PERSONA_KEYS), context).with_context(|| format!("persona `{spec}`"))?;
    let sampling = sampling_from_spec(spec, &LlmPersona::default_sampling())?;
    let grounding = match spec.get("grounding", "check".to_string())?.as_str() {
        "check" => Grounding::Check,
        "correct" => Grounding::Correct,
        other => bail!("`{spec}`: grounding must be check or correct, not `{other}`"),
    };
    let stats = context.report::<PersonaCounters>(&spec.to_string())?;
    let p = LlmPersona::new(model, sampling, grounding, matcher_param(spec, context)?, spec.to_string());
    Ok(Box::new(p.counting_into(stats)))
}

/// The `matcher=` and `threshold=` parameters of a persona spec.
fn matcher_param(spec: &Spec, context: &Context) -> Result<Option<Box<dyn QuestionMatcher>>> {
    let threshold: f32 = spec.get("threshold", DEFAULT_MATCH_THRESHOLD)?;
    if !(0.0..=1.0).contains(&threshold) {
        bail!("`{spec}`: threshold must lie in [0, 1]");
    }
    match spec.get("matcher", "none".to_string())?.as_str() {
        "none" => Ok(None),
        "minilm" => Ok(Some(Box::new(MiniLmMatcher::new(context, Path::new(DEFAULT_EMBEDDER), threshold)?))),
        other => bail!("`{spec}`: matcher must be minilm or none, not `{other}`"),
    }
}

/// The entity scenarios' oracle, from `oracle(slip=P)`; with `matcher=minilm` it also reads
/// free-text questions (the bank question of highest MiniLM similarity).
pub fn build_oracle(
    spec: &Spec,
    scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Persona<EntityScenario>>> {
    if !spec.params.contains_key("matcher") {
        return match Oracle::from_spec(spec, scenario)? {
            Some(o) => Ok(Box::new(o)),
            None => bail!("`{spec}` is not the oracle"),
        };
    }
    spec.expect_only(&["matcher", "threshold", "slip"])?;
    let slip = spec.probability("slip", scenario.rules.slip)?;
    let Some(matcher) = matcher_param(spec, context)? else {
        bail!("`{spec}`: a matching oracle needs matcher=minilm")
    };
    let mut canonical = spec.clone();
    canonical.params.insert("slip".into(), slip.to_string());
    let stats = context.report::<MatchCounters>(&canonical.to_string())?;
    Ok(Box::new(MatchingOracle::new(matcher, slip, canonical.to_string()).counting_into(stats)))
}

/// The language-model agents of entity scenarios: one row per model backend.
pub fn llm_agent_rows() -> Vec<AgentRow<EntityScenario>> {
    BACKENDS
        .iter()
        .map(|b| SpeakerRow {
            name: b.name,
            aliases: &[],
            usage: b.usage,
            help: b.help,
            build: build_llm_agent as fn(&Spec, &EntityScenario, &Context) -> Result<Box<dyn Agent<EntityScenario>>>,
        })
        .collect()
}

/// The language-model personas of entity scenarios: one row per model backend.
pub fn llm_persona_rows() -> Vec<PersonaRow<EntityScenario>> {
    BACKENDS
        .iter()
        .map(|b| SpeakerRow {
            name: b.name,
            aliases: &[],
            usage: b.usage,
            help: b.help,
            build: build_llm_persona
                as fn(&Spec, &EntityScenario, &Context) -> Result<Box<dyn Persona<EntityScenario>>>,
        })
        .collect()
}
