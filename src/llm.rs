//! Language-model speakers for the command line: LLM agents and personas from specs, the
//! MiniLM question matcher behind `oracle(matcher=minilm)`, `imagine personas`, and the LLM
//! part of `demo`.
//!
//! Specs:
//!
//! - agent `llm[:MODEL.gguf][(temperature=0.7,top_p=0.9,top_k=0,max_tokens=32,weights=q8_0)]`
//! - persona `llm[:MODEL.gguf][(grounding=check|correct,matcher=minilm|none,threshold=T,...)]`
//! - agent or persona `server:URL(model=NAME[,api_key_env=VAR,concurrency=8,retries=2,timeout=120,...])`:
//!   the same speakers on any OpenAI-compatible server (`docs/llm.md`)
//! - persona `oracle(matcher=minilm[,threshold=T][,slip=P])`
//!
//! `MODEL` defaults to `models/SmolLM2-135M-Instruct.Q4_1.gguf` (installed by
//! `scripts/install-model.sh`). A model file is loaded once per process; every speaker
//! that names it gets its own handle on the shared weights.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use dialogym_agents::llm::{
    Grounding, ImagineStats, LlmAgent, LlmPersona, MatchStats, MatchingOracle, PersonaStats, QuestionMatcher,
    SAMPLING_KEYS, imagine_personas, sampling_from_spec,
};
use dialogym_agents::server::{ServerModel, ServerOptions};
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::lm::LanguageModel;
use dialogym_engine::world::{PlayConfig, Pool, play};
use dialogym_engine::{Agent, Message, Persona, Role, Scenario, Spec};
use dialogym_policies::lm::embed::{Embedder, NearestText};
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

/// Models loaded so far, by (path, weights): loading is done once, speakers fork.
fn models() -> &'static Mutex<HashMap<(PathBuf, &'static str), LocalModel>> {
    static MODELS: OnceLock<Mutex<HashMap<(PathBuf, &'static str), LocalModel>>> = OnceLock::new();
    MODELS.get_or_init(Default::default)
}

/// A handle on the model at `path` (loaded on first use).
pub fn load_model(path: &Path, format: WeightFormat) -> Result<LocalModel> {
    let key = (
        path.to_path_buf(),
        match format {
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::AsShipped => "as-shipped",
            WeightFormat::F32 => "f32",
        },
    );
    let mut all = models().lock().map_err(|_| anyhow!("model registry poisoned"))?;
    if let Some(m) = all.get(&key) {
        return Ok(m.fork());
    }
    let m = LocalModel::load(path, &ModelOptions { format, ..ModelOptions::default() })?;
    let handle = m.fork();
    all.insert(key, m);
    Ok(handle)
}

/// The embedder at `dir`, loaded once per process and shared.
pub fn load_embedder(dir: &Path) -> Result<Arc<Mutex<Embedder>>> {
    static EMBEDDERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<Embedder>>>>> = OnceLock::new();
    let mut all = EMBEDDERS.get_or_init(Default::default).lock().map_err(|_| anyhow!("embedder registry poisoned"))?;
    if let Some(e) = all.get(dir) {
        return Ok(e.clone());
    }
    let e = Arc::new(Mutex::new(Embedder::load(dir)?));
    all.insert(dir.to_path_buf(), e.clone());
    Ok(e)
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
    pub fn new(dir: &Path, threshold: f32) -> Result<MiniLmMatcher> {
        Ok(MiniLmMatcher { embedder: load_embedder(dir)?, threshold, banks: HashMap::new() })
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

/// Consistency counters of the LLM personas and matching oracles built in this process,
/// by spec, for `eval` to report.
pub fn persona_reports() -> Vec<(String, PersonaStats)> {
    registry()
        .lock()
        .map(|r| r.personas.iter().filter_map(|(s, h)| h.lock().ok().map(|v| (s.clone(), *v))).collect())
        .unwrap_or_default()
}

/// Counters of the matching oracles built in this process, by spec.
pub fn matcher_reports() -> Vec<(String, MatchStats)> {
    registry()
        .lock()
        .map(|r| r.oracles.iter().filter_map(|(s, h)| h.lock().ok().map(|v| (s.clone(), *v))).collect())
        .unwrap_or_default()
}

#[derive(Default)]
struct Registry {
    personas: Vec<(String, Arc<Mutex<PersonaStats>>)>,
    oracles: Vec<(String, Arc<Mutex<MatchStats>>)>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn weights_param(spec: &Spec) -> Result<WeightFormat> {
    match spec.get("weights", "q8_0".to_string())?.as_str() {
        "q8_0" => Ok(WeightFormat::Q8_0),
        "as-shipped" => Ok(WeightFormat::AsShipped),
        "f32" => Ok(WeightFormat::F32),
        other => bail!("`{spec}`: weights must be q8_0, as-shipped or f32, not `{other}`"),
    }
}

fn model_path(spec: &Spec) -> PathBuf {
    spec.arg.as_deref().map(PathBuf::from).unwrap_or_else(default_model_path)
}

fn matcher_param(spec: &Spec) -> Result<Option<Box<dyn QuestionMatcher>>> {
    let threshold: f32 = spec.get("threshold", DEFAULT_MATCH_THRESHOLD)?;
    if !(0.0..=1.0).contains(&threshold) {
        bail!("`{spec}`: threshold must lie in [0, 1]");
    }
    match spec.get("matcher", "none".to_string())?.as_str() {
        "none" => Ok(None),
        "minilm" => Ok(Some(Box::new(MiniLmMatcher::new(Path::new(DEFAULT_EMBEDDER), threshold)?))),
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
fn backend(spec: &Spec, extra: &[&str]) -> Result<Box<dyn LanguageModel>> {
    let mut known = SAMPLING_KEYS.to_vec();
    known.extend(extra);
    if spec.name == "server" {
        known.extend(SERVER_KEYS);
        spec.expect_only(&known)?;
        Ok(Box::new(server_model(spec)?))
    } else {
        known.push("weights");
        spec.expect_only(&known)?;
        Ok(Box::new(load_model(&model_path(spec), weights_param(spec)?)?))
    }
}

/// An LLM agent from `llm[:MODEL](...)` or `server:URL(...)`.
pub fn build_llm_agent(spec: &Spec, _scenario: &EntityScenario) -> Result<Box<dyn Agent<EntityScenario>>> {
    let model = backend(spec, &[]).with_context(|| format!("agent `{spec}`"))?;
    let sampling = sampling_from_spec(spec, &LlmAgent::default_sampling())?;
    Ok(Box::new(LlmAgent::new(model, sampling, spec.to_string())))
}

/// An LLM persona from `llm[:MODEL](...)` or `server:URL(...)`.
pub fn build_llm_persona(spec: &Spec, _scenario: &EntityScenario) -> Result<Box<dyn Persona<EntityScenario>>> {
    let model = backend(spec, &["grounding", "matcher", "threshold"]).with_context(|| format!("persona `{spec}`"))?;
    let sampling = sampling_from_spec(spec, &LlmPersona::default_sampling())?;
    let grounding = match spec.get("grounding", "check".to_string())?.as_str() {
        "check" => Grounding::Check,
        "correct" => Grounding::Correct,
        other => bail!("`{spec}`: grounding must be check or correct, not `{other}`"),
    };
    let p = LlmPersona::new(model, sampling, grounding, matcher_param(spec)?, spec.to_string());
    if let Ok(mut r) = registry().lock() {
        r.personas.push((spec.to_string(), p.stats()));
    }
    Ok(Box::new(p))
}

/// The scripted oracle with a free-text matcher, from `oracle(matcher=minilm,...)`.
pub fn build_matching_oracle(spec: &Spec, scenario: &EntityScenario) -> Result<Box<dyn Persona<EntityScenario>>> {
    spec.expect_only(&["matcher", "threshold", "slip"])?;
    let slip = spec.probability("slip", scenario.rules.slip)?;
    let Some(matcher) = matcher_param(spec)? else { bail!("`{spec}`: a matching oracle needs matcher=minilm") };
    let mut canonical = spec.clone();
    canonical.params.insert("slip".into(), slip.to_string());
    let o = MatchingOracle::new(matcher, slip, canonical.to_string());
    if let Ok(mut r) = registry().lock() {
        r.oracles.push((canonical.to_string(), o.stats()));
    }
    Ok(Box::new(o))
}

/// The agent a spec names when it is a language-model agent (`llm...`), else None.
pub fn agent(spec: &Spec, scenario: &EntityScenario) -> Result<Option<Box<dyn Agent<EntityScenario>>>> {
    match spec.name.as_str() {
        "llm" | "server" => build_llm_agent(spec, scenario).map(Some),
        _ => Ok(None),
    }
}

/// The persona a spec names when it is an LLM persona or a matching oracle, else None.
pub fn persona(spec: &Spec, scenario: &EntityScenario) -> Result<Option<Box<dyn Persona<EntityScenario>>>> {
    match spec.name.as_str() {
        "llm" | "server" => build_llm_persona(spec, scenario).map(Some),
        "oracle" if spec.params.contains_key("matcher") => build_matching_oracle(spec, scenario).map(Some),
        _ => Ok(None),
    }
}

/// Roster lines for `scenarios describe` and `--help`.
pub const LLM_AGENTS: &[(&str, &str)] = &[
    (
        "llm:MODEL.gguf(temperature=0.7,max_tokens=32)",
        "a prompted language model asks free-text questions (zero-shot baseline)",
    ),
    ("server:URL(model=NAME)", "the same, on any OpenAI-compatible server (http://HOST:PORT/v1)"),
];

/// Roster lines for LLM personas.
pub const LLM_PERSONAS: &[(&str, &str)] = &[
    (
        "llm:MODEL.gguf(grounding=check)",
        "a language model plays the persona from its card; answers checked against the table",
    ),
    ("server:URL(model=NAME,grounding=check)", "the same, on any OpenAI-compatible server (http://HOST:PORT/v1)"),
    ("oracle(matcher=minilm)", "the table oracle; free-text questions mapped onto the bank with all-MiniLM-L6-v2"),
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
fn model_arg(model: &Path) -> Result<Box<dyn LanguageModel>> {
    match model.to_str().filter(|m| m.starts_with("server:")) {
        Some(text) => {
            let spec = Spec::parse(text)?;
            spec.expect_only(SERVER_KEYS)?;
            Ok(Box::new(server_model(&spec)?))
        }
        None => Ok(Box::new(load_model(model, WeightFormat::Q8_0)?)),
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
    let scenario = dialogym_scenarios::load(&args.scenario)?;
    let mut model = model_arg(&args.model)?;
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
    let mut model = model_arg(&args.model)?;
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
    let scenario = Arc::new(dialogym_scenarios::load("twenty-questions")?);
    let persona_spec = Spec::parse(&format!("llm:{}(grounding=check)", path.display()))?;
    let llm_persona = build_llm_persona(&persona_spec, &scenario)?;
    let greedy = dialogym_agents::entity_agent(&Spec::parse("greedy-eig")?)?;
    eprintln!("LLM persona ({}) vs greedy-eig: 4 episodes", persona_spec);
    let rows = play_episodes(scenario.clone(), greedy, llm_persona, 4, seed, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    for (spec, s) in persona_reports() {
        eprintln!(
            "    persona consistency of {spec}: {} of {} bank answers disagree with the table ({:.0}%), {} of {} replies off-protocol",
            s.disagreements,
            s.checked,
            100.0 * s.disagreement_rate(),
            s.off_protocol,
            s.replies
        );
    }
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    let oracle_spec = if Path::new(DEFAULT_EMBEDDER).join("model.safetensors").exists() {
        "oracle(matcher=minilm)"
    } else {
        "oracle"
    };
    let oracle_spec = Spec::parse(oracle_spec)?;
    let oracle = match persona(&oracle_spec, &scenario)? {
        Some(p) => p,
        None => dialogym_agents::entity_persona(&oracle_spec, &scenario)?,
    };
    let agent_spec = Spec::parse(&format!("llm:{}(max_tokens=24)", path.display()))?;
    let agent: Box<dyn Agent<EntityScenario>> = if examples.is_empty() {
        build_llm_agent(&agent_spec, &scenario)?
    } else {
        let system = crate::fewshot::few_shot_brief(&scenario, examples);
        let sampling = dialogym_engine::lm::Sampling {
            temperature: 0.3,
            max_tokens: 24,
            ..dialogym_agents::llm::LlmAgent::default_sampling()
        };
        let model = Box::new(load_model(&path, WeightFormat::Q8_0)?);
        Box::new(crate::fewshot::FewShotAgent::new(model, system, sampling, format!("{agent_spec} (few-shot)")))
    };
    eprintln!("LLM agent ({agent_spec}) vs {oracle_spec}: 4 episodes");
    let rows = play_episodes(scenario, agent, oracle, 4, seed + 1, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    for (spec, s) in matcher_reports() {
        eprintln!(
            "    {spec}: {} questions, {} exact, {} matched to the bank, {} unanswerable",
            s.questions, s.exact, s.matched, s.unmatched
        );
    }
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    Ok(())
}
