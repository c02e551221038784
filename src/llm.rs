//! Language-model speakers for the command line: LLM agents and personas from specs, the
//! MiniLM question matcher behind `oracle(matcher=minilm)`, `imagine personas`, and the LLM
//! part of `demo`.
//!
//! Specs:
//!
//! - agent `llm[:MODEL.gguf][(temperature=0.7,top_p=0.9,top_k=0,max_tokens=32,weights=auto)]`
//! - persona `llm[:MODEL.gguf][(grounding=check|correct,matcher=minilm|none,threshold=T,...)]`
//! - agent or persona `server:URL(model=NAME[,api_key_env=VAR,concurrency=8,retries=2,timeout=120,...])`:
//!   the same speakers on any OpenAI-compatible server (`docs/llm.md`)
//! - persona `oracle(matcher=minilm[,threshold=T][,slip=P])`
//!
//! `MODEL` defaults to `models/SmolLM2-135M-Instruct.Q4_1.gguf` (installed by
//! `scripts/install-model.sh`). A model file is loaded once per session `Context`; every speaker
//! that names it gets its own handle on the shared weights.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, anyhow, bail};
use dialogym_agents::llm::{
    Grounding, ImagineStats, LlmAgent, LlmPersona, MatchCounters, MatchingOracle, PersonaCounters, QuestionMatcher,
    SAMPLING_KEYS, imagine_personas, sampling_from_spec,
};
use dialogym_agents::server::{ServerModel, ServerOptions};
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::lm::LanguageModel;
use dialogym_engine::world::{PlayConfig, Pool, play};
use dialogym_engine::{Agent, AgentRow, Context, Message, Persona, PersonaRow, Role, Scenario, SpeakerRow, Spec};
use dialogym_policies::lm::embed::{Embedder, NearestText};

use crate::session::{agent, persona};
use dialogym_policies::lm::model::WeightFormat;
use dialogym_policies::lm::{LocalModel, ModelOptions, default_model_path};
use dialogym_scenarios::entity::EntityScenario;

/// Where `scripts/install-model.sh` puts all-MiniLM-L6-v2.
pub const DEFAULT_EMBEDDER: &str = "models/all-minilm-l6-v2";

/// The cosine similarity above which the MiniLM matcher takes a free-text question for
/// the nearest bank question. Chosen on `tests/fixtures/matcher_questions.json` (hand-
/// written paraphrases of 20 Questions bank questions and questions the bank cannot
/// answer); see `docs/llm.md` for the method and the numbers.
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.77;

/// A handle on the model at `path`, loaded once per context (every speaker that names it
/// forks the shared weights).
pub fn load_model(context: &Context, path: &Path, format: WeightFormat) -> Result<LocalModel> {
    let key = format!("model:{}:{}", format.name(), path.display());
    let shared = context.shared(&key, || {
        Ok(Mutex::new(LocalModel::load(path, &ModelOptions { format, ..ModelOptions::default() })?))
    })?;
    let m = shared.lock().map_err(|_| anyhow!("model {} poisoned", path.display()))?;
    Ok(m.fork())
}

/// The embedder at `dir`, loaded once per context and shared.
pub fn load_embedder(context: &Context, dir: &Path) -> Result<Arc<Mutex<Embedder>>> {
    let key = format!("embedder:{}", dir.display());
    let shared = context.shared(&key, || Ok(Arc::new(Mutex::new(Embedder::load(dir)?))))?;
    Ok((*shared).clone())
}

/// Maps free-text questions onto a scenario's bank with all-MiniLM-L6-v2: the bank
/// question of highest cosine similarity, when it reaches `threshold`.
pub struct MiniLmMatcher {
    embedder: Arc<Mutex<Embedder>>,
    threshold: f32,
    /// Bank embeddings per scenario id.
    banks: HashMap<String, NearestText>,
}

impl MiniLmMatcher {
    /// A matcher on the embedder in `dir`.
    pub fn new(context: &Context, dir: &Path, threshold: f32) -> Result<MiniLmMatcher> {
        Ok(MiniLmMatcher { embedder: load_embedder(context, dir)?, threshold, banks: HashMap::new() })
    }

    /// The nearest bank question and its similarity, whatever the threshold.
    pub fn nearest(&mut self, scenario: &EntityScenario, text: &str) -> Result<Option<(usize, f32)>> {
        let mut emb = self.embedder.lock().map_err(|_| anyhow!("embedder poisoned"))?;
        let id = scenario.id();
        if !self.banks.contains_key(&id) {
            let questions: Vec<String> = scenario.table.attributes.iter().map(|a| a.question.clone()).collect();
            self.banks.insert(id.clone(), NearestText::new(&mut emb, &questions)?);
        }
        let bank = self.banks.get(&id).ok_or_else(|| anyhow!("bank embeddings missing"))?;
        bank.nearest(&mut emb, text)
    }
}

impl QuestionMatcher for MiniLmMatcher {
    fn id(&self) -> String {
        format!("minilm(threshold={})", self.threshold)
    }

    fn match_question(&mut self, scenario: &EntityScenario, text: &str) -> Result<Option<usize>> {
        Ok(self.nearest(scenario, text)?.filter(|&(_, s)| s >= self.threshold).map(|(a, _)| a))
    }
}

fn weights_param(spec: &Spec) -> Result<WeightFormat> {
    let name = spec.get("weights", "auto".to_string())?;
    WeightFormat::from_name(&name).ok_or_else(|| {
        let names: Vec<&str> = WeightFormat::ALL.iter().map(|f| f.name()).collect();
        anyhow!("`{spec}`: weights must be one of {}, not `{name}`", names.join(", "))
    })
}

fn model_path(spec: &Spec) -> PathBuf {
    spec.arg.as_deref().map(PathBuf::from).unwrap_or_else(default_model_path)
}

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

/// Parameters of a `server:URL(...)` spec besides sampling and the speaker's own.
pub const SERVER_KEYS: &[&str] = &["model", "api_key_env", "concurrency", "retries", "timeout"];

/// The model behind a `server:URL(model=NAME,...)` spec.
pub fn server_model(spec: &Spec) -> Result<ServerModel> {
    let Some(url) = spec.arg.as_deref() else {
        bail!("`{spec}`: name the server, e.g. server:http://127.0.0.1:8080/v1(model=NAME)")
    };
    let d = ServerOptions::default();
    let options = ServerOptions {
        model: spec.params.get("model").cloned().unwrap_or_default(),
        api_key_env: spec.params.get("api_key_env").cloned(),
        concurrency: spec.get("concurrency", d.concurrency)?,
        retries: spec.get("retries", d.retries)?,
        timeout_s: spec.get("timeout", d.timeout_s)?,
        backoff_ms: d.backoff_ms,
    };
    if options.retries > 10 {
        bail!("`{spec}`: retries must lie in 0..=10");
    }
    ServerModel::new(url, options)
}

/// The language model a `llm[:MODEL]` or `server:URL` spec names, after checking that the
/// spec has no parameters beyond `extra` and the backend's own.
fn backend(spec: &Spec, extra: &[&str], context: &Context) -> Result<Box<dyn LanguageModel>> {
    let mut known = SAMPLING_KEYS.to_vec();
    known.extend(extra);
    if spec.name == "server" {
        known.extend(SERVER_KEYS);
        spec.expect_only(&known)?;
        Ok(Box::new(server_model(spec)?))
    } else {
        known.push("weights");
        spec.expect_only(&known)?;
        Ok(Box::new(load_model(context, &model_path(spec), weights_param(spec)?)?))
    }
}

/// An LLM agent from `llm[:MODEL](...)` or `server:URL(...)`.
pub fn build_llm_agent(
    spec: &Spec,
    _scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Agent<EntityScenario>>> {
    let model = backend(spec, &[], context).with_context(|| format!("agent `{spec}`"))?;
    let sampling = sampling_from_spec(spec, &LlmAgent::default_sampling())?;
    Ok(Box::new(LlmAgent::new(model, sampling, spec.to_string())))
}

/// An LLM persona from `llm[:MODEL](...)` or `server:URL(...)`; its consistency counters
/// are the context's report under the persona's spec.
pub fn build_llm_persona(
    spec: &Spec,
    _scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Persona<EntityScenario>>> {
    let model =
        backend(spec, &["grounding", "matcher", "threshold"], context).with_context(|| format!("persona `{spec}`"))?;
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

/// The entity scenarios' scripted oracle, from `oracle(slip=P)`; with `matcher=minilm` it
/// also reads free-text questions (the bank question of highest MiniLM similarity).
pub fn build_oracle(
    spec: &Spec,
    scenario: &EntityScenario,
    context: &Context,
) -> Result<Box<dyn Persona<EntityScenario>>> {
    if !spec.params.contains_key("matcher") {
        return match dialogym_agents::oracle::Oracle::from_spec(spec, scenario)? {
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

/// The language-model agents of entity scenarios (rows of the agent registry).
pub const LLM_AGENTS: &[AgentRow<EntityScenario>] = &[
    SpeakerRow {
        name: "llm",
        aliases: &[],
        usage: "llm:MODEL.gguf(temperature=0.7,max_tokens=32,weights=auto)",
        help: "a prompted language model asks free-text questions (zero-shot baseline); weights=auto keeps \
               the file's Q4_1/Q8_0 blocks on dialogym's kernels, the family picked per CPU at load (AVX-512 VNNI, \
               else AVX2+FMA, else scalar; DIALOGYM_KERNELS forces one; same tokens on all), q8_0 re-quantizes, \
               as-shipped runs candle's kernels, f32 is the exact reference",
        build: build_llm_agent,
    },
    SpeakerRow {
        name: "server",
        aliases: &[],
        usage: "server:URL(model=NAME)",
        help: "the same, on any OpenAI-compatible server (http://HOST:PORT/v1)",
        build: build_llm_agent,
    },
];

/// The personas of entity scenarios: the oracle (which reads free text with a matcher) and
/// the language-model personas.
pub const ENTITY_PERSONAS: &[PersonaRow<EntityScenario>] = &[
    SpeakerRow {
        name: "oracle",
        aliases: &[],
        usage: "oracle(slip=0)",
        help: "answers from the knowledge table; wrong with probability slip; matcher=minilm: free-text \
               questions mapped onto the bank with all-MiniLM-L6-v2",
        build: build_oracle,
    },
    SpeakerRow {
        name: "llm",
        aliases: &[],
        usage: "llm:MODEL.gguf(grounding=check,weights=auto)",
        help: "a language model plays the persona from its card; answers checked against the table; \
               weights= as for the llm agent",
        build: build_llm_persona,
    },
    SpeakerRow {
        name: "server",
        aliases: &[],
        usage: "server:URL(model=NAME,grounding=check)",
        help: "the same, on any OpenAI-compatible server (http://HOST:PORT/v1)",
        build: build_llm_persona,
    },
];

/// Plays `episodes` episodes of one agent against one persona and returns them in episode
/// order (for the demo, tests and benchmarks).
pub fn play_episodes(
    scenario: Arc<EntityScenario>,
    agent: Box<dyn Agent<EntityScenario>>,
    persona: Box<dyn Persona<EntityScenario>>,
    episodes: u64,
    seed: u64,
    concurrency: usize,
    stop: &AtomicBool,
) -> Result<Vec<EpisodeRecord>> {
    let agents: Pool<dyn Agent<EntityScenario>> = vec![(agent, 1.0)];
    let personas: Pool<dyn Persona<EntityScenario>> = vec![(persona, 1.0)];
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = PlayConfig { seed, run_id: format!("llm-{seed}"), episodes: (0..episodes).collect(), concurrency };
    play(scenario, agents, personas, &config, tx, stop, |_| {})?;
    let mut rows: Vec<EpisodeRecord> = rx.try_iter().collect();
    rows.sort_by_key(|r| r.episode);
    Ok(rows)
}

/// The language model of a `--model` argument: a local model file or folder, or a
/// `server:URL(model=NAME,...)` spec.
fn model_arg(model: &Path, context: &Context) -> Result<Box<dyn LanguageModel>> {
    match model.to_str().filter(|m| m.starts_with("server:")) {
        Some(text) => {
            let spec = Spec::parse(text)?;
            spec.expect_only(SERVER_KEYS)?;
            Ok(Box::new(server_model(&spec)?))
        }
        None => Ok(Box::new(load_model(context, model, WeightFormat::Auto)?)),
    }
}

/// Writes `items` to `path`, one JSON object per line, atomically (a killed run leaves no
/// half file).
fn write_jsonl<T: serde::Serialize>(path: &Path, items: &[T]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    dialogym_engine::corpus::write_atomic(path, |w| {
        for item in items {
            serde_json::to_writer(&mut *w, item)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// `dialogym imagine personas`.
#[derive(Clone, Debug)]
pub struct ImagineArgs {
    /// Scenario name or file.
    pub scenario: String,
    /// Cards to write.
    pub n: usize,
    /// The model file, or a `server:URL(model=NAME,...)` spec.
    pub model: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// Output JSONL file (one card per line).
    pub out: PathBuf,
}

/// Imagines persona cards and writes them, one JSON object per line, to `args.out`
/// (written to a temporary file and renamed, so a killed run leaves no half file).
pub fn imagine(args: &ImagineArgs) -> Result<ImagineStats> {
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let scenario = crate::session::entity(&args.scenario)?;
    let mut model = model_arg(&args.model, &Context::new())?;
    let (cards, stats) = imagine_personas(model.as_mut(), &scenario, args.n, args.seed)?;
    write_jsonl(&args.out, &cards)?;
    Ok(stats)
}

/// `dialogym imagine critique`.
#[derive(Clone, Debug)]
pub struct CritiqueArgs {
    /// Corpus folder written by `generate`.
    pub corpus: PathBuf,
    /// The model file, or a `server:URL(model=NAME,...)` spec.
    pub model: PathBuf,
    /// Critique only the first this many episodes (None: all).
    pub episodes: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
    /// Output JSONL file (one dialogue and its revision per line).
    pub out: PathBuf,
}

/// The critique-and-rewrite pass over a corpus: one line per episode with the original
/// transcript, the critique and the revised transcript (or none), written to a temporary
/// file and renamed, so a killed run leaves no half file.
pub fn critique(args: &CritiqueArgs) -> Result<dialogym_agents::critique::CritiqueStats> {
    let (_, rows) = dialogym_engine::corpus::read_corpus(&args.corpus)?;
    let rows = &rows[..args.episodes.unwrap_or(rows.len()).min(rows.len())];
    let Some(first) = rows.first() else { bail!("{} holds no episodes", args.corpus.display()) };
    let brief = crate::session::load(&first.scenario)
        .with_context(|| format!("{}: cannot load its scenario `{}`", args.corpus.display(), first.scenario))?
        .agent_brief();
    let mut model = model_arg(&args.model, &Context::new())?;
    let dialogues: Vec<(u64, Vec<Message>)> = rows.iter().map(|r| (r.episode, r.messages.clone())).collect();
    let (revisions, stats) = dialogym_agents::critique::critique(model.as_mut(), &brief, &dialogues, args.seed)?;
    write_jsonl(&args.out, &revisions)?;
    Ok(stats)
}

/// A transcript as lines `agent: ...` / `persona: ...`.
pub fn render_transcript(r: &EpisodeRecord) -> String {
    let mut out = format!("secret: {}\n", r.hidden);
    for m in &r.messages {
        let who = if m.role == Role::Agent { "agent  " } else { "persona" };
        out.push_str(&format!("  {who}: {}\n", m.content));
    }
    out.push_str(&format!("  -> success: {}, turns: {}, return: {}\n", r.success, r.turns, r.ret));
    out
}

/// The LLM part of `dialogym demo`: when the small model is installed, a few episodes with
/// an LLM persona (vs greedy EIG) and an LLM agent (vs the matching oracle), and one
/// transcript of each. With `examples` (a corpus), the agent gets the few-shot prompt of
/// `crate::fewshot`. Prints a hint and returns when the model is missing.
pub fn demo_llm(seed: u64, stop: &AtomicBool, examples: &[EpisodeRecord]) -> Result<()> {
    let path = default_model_path();
    if !path.exists() {
        eprintln!("(LLM speakers skipped: {} is not installed; run scripts/install-model.sh)", path.display());
        return Ok(());
    }
    let scenario = crate::session::entity("twenty-questions")?;
    let context = Context::new();
    let persona_spec = Spec::parse(&format!("llm:{}(grounding=check)", path.display()))?;
    let llm_persona = persona(&persona_spec, &*scenario, &context)?;
    let greedy = agent(&Spec::parse("greedy-eig")?, &*scenario, &context)?;
    eprintln!("LLM persona ({}) vs greedy-eig: 4 episodes", persona_spec);
    let rows = play_episodes(scenario.clone(), greedy, llm_persona, 4, seed, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    let oracle_spec = if Path::new(DEFAULT_EMBEDDER).join("model.safetensors").exists() {
        "oracle(matcher=minilm)"
    } else {
        "oracle"
    };
    let oracle_spec = Spec::parse(oracle_spec)?;
    let oracle = persona(&oracle_spec, &*scenario, &context)?;
    let agent_spec = Spec::parse(&format!("llm:{}(max_tokens=24)", path.display()))?;
    let llm_agent: Box<dyn Agent<EntityScenario>> = if examples.is_empty() {
        agent(&agent_spec, &*scenario, &context)?
    } else {
        let system = crate::fewshot::few_shot_brief(&scenario, examples);
        let sampling = dialogym_engine::lm::Sampling {
            temperature: 0.3,
            max_tokens: 24,
            ..dialogym_agents::llm::LlmAgent::default_sampling()
        };
        let model = Box::new(load_model(&context, &path, WeightFormat::Auto)?);
        Box::new(crate::fewshot::FewShotAgent::new(model, system, sampling, format!("{agent_spec} (few-shot)")))
    };
    eprintln!("LLM agent ({agent_spec}) vs {oracle_spec}: 4 episodes");
    let rows = play_episodes(scenario, llm_agent, oracle, 4, seed + 1, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    for (label, line) in context.report_lines() {
        eprintln!("    {label}: {line}");
    }
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    Ok(())
}
