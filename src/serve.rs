//! `dialogym serve`: a scenario and its persona as an HTTP environment for online RL.
//!
//! The shape is OpenEnv's (Gymnasium over HTTP): `POST /reset` → first observation,
//! `POST /step` with the agent's utterance → observation, reward, done, `GET /state`,
//! `GET /health`. Many episodes run at once, each under its own `episode_id`; each step of a
//! session is judged by the scenario's pure judge, exactly as the world of `generate` judges
//! it (same out-of-turns rule, same per-episode generators), so an episode served with the
//! seed of a corpus row replays that row. Persona replies are batched: one thread owns the
//! personas and hands each one every request waiting for it as one `reply` call (a language
//! model persona decodes them together). Idle sessions expire. Finished episodes can be
//! recorded into a corpus folder (`--record DIR`), in shards written atomically as by
//! `generate`. Differences from OpenEnv are listed in docs/pipelines.md.
//!
//! Blocking IO on `tiny_http` with a few worker threads; no async runtime.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dialogym_engine::corpus::{
    self, EpisodeRecord, Format, Manifest, SCHEMA_VERSION, shard_name, write_atomic, write_jsonl, write_parquet,
};
use dialogym_engine::seed::{Stream, episode_seed, mix64, turn_rng};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{
    Agent, AgentTurn, Context as SpeakerContext, Message, MixSpec, Persona, PersonaTurn, Scenario, Spec,
};
use serde_json::{Value, json};

use crate::session::{Cast, WithScenario};

/// `dialogym serve` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Scenario name (see `scenarios list`) or a scenario file (.toml).
    #[arg(long, default_value = "twenty-questions")]
    pub scenario: String,
    /// Persona spec (a mixture draws one per episode, as in `generate`); default: the
    /// scenario's main scripted persona (`scenarios describe`).
    #[arg(long)]
    pub persona: Option<String>,
    /// Port on 127.0.0.1 (0: any free port, printed on start).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Master seed: a reset without a seed plays episode `n` (the n-th reset, or the
    /// `episode` field) with seed `episode_seed(seed, n)`, as `generate` and `eval` do.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// At most this many live sessions (a reset beyond gets 503).
    #[arg(long, default_value_t = 4096)]
    pub max_sessions: usize,
    /// Seconds without a request after which a live session is dropped (not recorded).
    #[arg(long, default_value_t = 300.0)]
    pub idle_timeout: f64,
    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, default_value_t = 65_536)]
    pub max_body: usize,
    /// Write every finished episode into this corpus folder (must not hold one yet).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Episodes per recorded shard (an interrupted server loses at most the open shard).
    #[arg(long, default_value_t = 1000)]
    pub shard_size: u64,
    /// Scripted agents `POST /suggest` may consult (reference policies, e.g. `greedy-eig`).
    #[arg(long = "reference-agent")]
    pub reference_agents: Vec<String>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            scenario: "twenty-questions".into(),
            persona: None,
            port: 0,
            seed: 0,
            workers: 8,
            max_sessions: 4096,
            idle_timeout: 300.0,
            max_body: 65_536,
            record: None,
            shard_size: 1000,
            reference_agents: Vec::new(),
        }
    }
}

/// What a server did, reported when it stops.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeSummary {
    /// Requests answered.
    pub requests: u64,
    /// Steps taken (agent utterances judged).
    pub steps: u64,
    /// Episodes finished.
    pub finished: u64,
    /// Live sessions dropped for idleness.
    pub expired: u64,
    /// Episodes written to the corpus (`--record`).
    pub recorded: u64,
}

/// A running server; [`Running::shutdown`] stops it and flushes the record.
pub struct Running {
    /// The bound address (127.0.0.1:port).
    pub addr: SocketAddr,
    /// The persona ids served.
    pub personas: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
    persona_thread: Option<JoinHandle<()>>,
    recorder: Option<(Sender<EpisodeRecord>, JoinHandle<Result<u64>>)>,
    server: Arc<tiny_http::Server>,
}

impl Running {
    /// Stops accepting requests, finishes the ones in flight, writes the open shard.
    pub fn shutdown(mut self) -> Result<ServeSummary> {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.persona_thread.take() {
            let _ = t.join();
        }
        let c = &self.counters;
        let mut summary = ServeSummary {
            requests: c.requests.load(Ordering::SeqCst),
            steps: c.steps.load(Ordering::SeqCst),
            finished: c.finished.load(Ordering::SeqCst),
            expired: c.expired.load(Ordering::SeqCst),
            recorded: 0,
        };
        if let Some((tx, handle)) = self.recorder.take() {
            drop(tx);
            summary.recorded = handle.join().map_err(|_| anyhow!("the corpus recorder panicked"))??;
        }
        Ok(summary)
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    steps: AtomicU64,
    finished: AtomicU64,
    expired: AtomicU64,
    resets: AtomicU64,
}

/// Starts a server for `args` on 127.0.0.1 and returns once it listens.
pub fn start(args: &ServeArgs, command: Vec<String>) -> Result<Running> {
    struct Start<'a>(&'a ServeArgs, Vec<String>);
    impl WithScenario for Start<'_> {
        type Output = Result<Running>;
        fn run<S: Cast>(self, scenario: Arc<S>, context: Arc<SpeakerContext>) -> Result<Running> {
            start_with(scenario, &context, self.0, self.1)
        }
    }
    crate::session::visit(&args.scenario, Start(args, command))?
}

/// Runs `dialogym serve` until `stop` becomes true (Ctrl-C).
pub fn run(args: &ServeArgs, command: Vec<String>, stop: &AtomicBool) -> Result<ServeSummary> {
    let running = start(args, command)?;
    eprintln!(
        "serving {} with persona {} on http://{} (POST /reset, POST /step, GET /state, GET /health); Ctrl-C stops",
        args.scenario, running.personas, running.addr
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    running.shutdown()
}

/// One live episode.
struct Episode<H> {
    id: String,
    index: u64,
    seed: u64,
    hidden: H,
    persona: usize,
    messages: Vec<Message>,
    rewards: Vec<f64>,
    dones: Vec<bool>,
    success: bool,
    done: bool,
    last_seen: Instant,
}

/// A persona reply request, answered by the persona thread.
struct Job<H> {
    persona: usize,
    hidden: H,
    transcript: Vec<Message>,
    seed: u64,
    episode: u64,
    reply: Sender<Result<String, String>>,
}

struct Env<S: Scenario> {
    scenario: Arc<S>,
    persona_spec: MixSpec,
    persona_ids: Vec<String>,
    brief: String,
    master_seed: u64,
    token: u64,
    max_sessions: usize,
    idle: Duration,
    max_body: usize,
    sessions: Mutex<HashMap<String, Arc<Mutex<Episode<S::Hidden>>>>>,
    /// Final states of recently finished episodes (for `/state` and a clear 409 on a step
    /// after done), at most `FINISHED_KEPT`.
    finished: Mutex<(HashMap<String, Value>, VecDeque<String>)>,
    jobs: Sender<Job<S::Hidden>>,
    references: HashMap<String, Mutex<Box<dyn Agent<S>>>>,
    record: Option<Sender<EpisodeRecord>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

const FINISHED_KEPT: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP error: status, machine code, message.
struct ApiError(u16, &'static str, String);

fn err(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError(status, code, message.into())
}

fn start_with<S: Cast>(
    scenario: Arc<S>,
    context: &SpeakerContext,
    args: &ServeArgs,
    command: Vec<String>,
) -> Result<Running> {
    if args.workers == 0 || args.workers > 256 {
        bail!("--workers must be in 1..=256");
    }
    if args.max_sessions == 0 {
        bail!("--max-sessions must be at least 1");
    }
    if !(args.idle_timeout > 0.0 && args.idle_timeout.is_finite() && args.idle_timeout < 1e9) {
        bail!("--idle-timeout must be a positive number of seconds");
    }
    if args.shard_size == 0 {
        bail!("--shard-size must be at least 1");
    }
    let persona_text = match &args.persona {
        Some(p) => p.clone(),
        None => {
            S::personas().first().map(|p| p.usage.to_string()).ok_or_else(|| anyhow!("the scenario has no persona"))?
        }
    };
    let persona_spec = MixSpec::parse(&persona_text).context("--persona")?;
    let personas: Vec<Box<dyn Persona<S>>> = persona_spec
        .components
        .iter()
        .map(|(s, _)| crate::session::persona(s, &*scenario, context))
        .collect::<Result<_>>()?;
    let persona_ids: Vec<String> = personas.iter().map(|p| p.id()).collect();
    let mut references = HashMap::new();
    for text in &args.reference_agents {
        let spec = Spec::parse(text).with_context(|| format!("--reference-agent {text}"))?;
        let agent: Box<dyn Agent<S>> =
            crate::session::agent(&spec, &*scenario, context).with_context(|| format!("--reference-agent {text}"))?;
        references.insert(text.trim().to_string(), Mutex::new(agent));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());

    let recorder = match &args.record {
        Some(dir) => {
            let config = json!({
                "scenario": scenario.id(),
                "persona": persona_spec.components.iter().zip(&persona_ids).map(|((_, w), id)| json!([id, w])).collect::<Vec<_>>(),
                "agent": [["served", 1.0]],
                "served": true,
            });
            let manifest =
                Manifest::new(command, args.seed, 0, args.shard_size, vec![Format::Jsonl, Format::Parquet], config);
            Some(spawn_recorder(dir, manifest)?)
        }
        None => None,
    };

    let listener = std::net::TcpListener::bind(("127.0.0.1", args.port))
        .map_err(|e| anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    // Accepted connections inherit TCP_NODELAY from the listener on Linux: without it, the
    // second 1 KiB piece of a response waits for a delayed ACK (40 ms stalls).
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)
        .map_err(|e| anyhow!("cannot set TCP_NODELAY on the listener: {e}"))?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = server.server_addr().to_ip().ok_or_else(|| anyhow!("the server is not bound to an IP address"))?;
    let server = Arc::new(server);

    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job<S::Hidden>>();
    let token = mix64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ std::process::id() as u64,
    );
    let env_personas = persona_ids.join(", ");
    let env = Arc::new(Env {
        brief: scenario.agent_brief(),
        scenario: scenario.clone(),
        persona_spec,
        persona_ids,
        master_seed: args.seed,
        token,
        max_sessions: args.max_sessions,
        idle: Duration::from_secs_f64(args.idle_timeout),
        max_body: args.max_body,
        sessions: Mutex::new(HashMap::new()),
        finished: Mutex::new((HashMap::new(), VecDeque::new())),
        jobs: jobs_tx,
        references,
        record: recorder.as_ref().map(|(tx, _)| tx.clone()),
        counters: counters.clone(),
        stop: stop.clone(),
    });

    let persona_thread = {
        let (scenario, stop) = (scenario.clone(), stop.clone());
        std::thread::Builder::new()
            .name("serve-personas".into())
            .spawn(move || persona_loop(&*scenario, personas, jobs_rx, &stop))
            .context("spawning the persona thread")?
    };
    let mut threads = Vec::new();
    for i in 0..args.workers {
        let (env, server) = (env.clone(), server.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("serve-http-{i}"))
                .spawn(move || worker(&env, &server))
                .context("spawning an HTTP worker")?,
        );
    }
    {
        let env = env.clone();
        threads.push(
            std::thread::Builder::new()
                .name("serve-reaper".into())
                .spawn(move || reaper(&env))
                .context("spawning the session reaper")?,
        );
    }
    drop(env);
    let personas = env_personas;
    Ok(Running { addr, personas, stop, counters, threads, persona_thread: Some(persona_thread), recorder, server })
}

/// Owns the personas; answers every waiting request of a persona with one batched call.
fn persona_loop<S: Scenario>(
    scenario: &S,
    mut personas: Vec<Box<dyn Persona<S>>>,
    jobs: Receiver<Job<S::Hidden>>,
    stop: &AtomicBool,
) {
    loop {
        let first = match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(1023));
        for (i, persona) in personas.iter_mut().enumerate() {
            let mine: Vec<&Job<S::Hidden>> = batch.iter().filter(|j| j.persona == i).collect();
            if mine.is_empty() {
                continue;
            }
            let mut turns: Vec<PersonaTurn<'_, S::Hidden>> = mine
                .iter()
                .map(|j| PersonaTurn {
                    episode: j.episode,
                    hidden: &j.hidden,
                    transcript: &j.transcript,
                    rng: turn_rng(j.seed, j.transcript.len() as u32, Stream::Persona),
                })
                .collect();
            let out = catch_unwind(AssertUnwindSafe(|| persona.reply(scenario, &mut turns)));
            let result: Result<Vec<String>, String> = match out {
                Ok(Ok(replies)) if replies.len() == mine.len() => Ok(replies),
                Ok(Ok(replies)) => Err(format!("persona returned {} replies for {}", replies.len(), mine.len())),
                Ok(Err(e)) => Err(format!("persona failed: {e:#}")),
                Err(_) => Err("persona panicked".to_string()),
            };
            match result {
                Ok(replies) => {
                    for (j, r) in mine.iter().zip(replies) {
                        let _ = j.reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    for j in &mine {
                        let _ = j.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

fn reaper<S: Scenario>(env: &Env<S>) {
    let tick = (env.idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    while !env.stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        let mut sessions = lock(&env.sessions);
        let before = sessions.len();
        // A session in use (locked) is not idle.
        sessions.retain(|_, ep| match ep.try_lock() {
            Ok(e) => e.last_seen.elapsed() < env.idle,
            Err(_) => true,
        });
        env.counters.expired.fetch_add((before - sessions.len()) as u64, Ordering::Relaxed);
    }
}

fn worker<S: Cast>(env: &Env<S>, server: &tiny_http::Server) {
    while !env.stop.load(Ordering::Relaxed) {
        let mut request = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => continue,
        };
        env.counters.requests.fetch_add(1, Ordering::Relaxed);
        let answer = catch_unwind(AssertUnwindSafe(|| handle(env, &mut request)))
            .unwrap_or_else(|_| Err(err(500, "internal", "the request handler panicked")));
        let (status, body) = match answer {
            Ok(v) => (200, v),
            Err(ApiError(status, code, message)) => {
                (status, json!({"error": {"code": code, "message": message}, "detail": message}))
            }
        };
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).ok();
        let mut response = tiny_http::Response::from_string(body.to_string()).with_status_code(status);
        if let Some(h) = header {
            response.add_header(h);
        }
        let _ = request.respond(response);
    }
}

fn read_body(env: &Env<impl Scenario>, request: &mut tiny_http::Request) -> Result<Value, ApiError> {
    if request.body_length().is_some_and(|n| n > env.max_body) {
        return Err(err(413, "body_too_large", format!("request body over {} bytes", env.max_body)));
    }
    let mut bytes = Vec::new();
    request
        .as_reader()
        .take(env.max_body as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(400, "bad_body", format!("cannot read the request body: {e}")))?;
    if bytes.len() > env.max_body {
        return Err(err(413, "body_too_large", format!("request body over {} bytes", env.max_body)));
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(json!({}));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| err(400, "malformed_json", format!("malformed JSON body: {e}")))?;
    if !v.is_object() {
        return Err(err(400, "malformed_json", "the body must be a JSON object"));
    }
    Ok(v)
}

fn query_param(url: &str, key: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

fn handle<S: Cast>(env: &Env<S>, request: &mut tiny_http::Request) -> Result<Value, ApiError> {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let method = request.method().clone();
    use tiny_http::Method::{Get, Post};
    match (path, method) {
        ("/health", Get) => Ok(json!({"status": "healthy"})),
        ("/reset", Post) => {
            let body = read_body(env, request)?;
            reset(env, &body)
        }
        ("/step", Post) => {
            let body = read_body(env, request)?;
            step(env, &body)
        }
        ("/suggest", Post) => {
            let body = read_body(env, request)?;
            suggest(env, &body)
        }
        ("/state", Get) => match query_param(&url, "episode_id") {
            Some(id) => episode_state(env, &id),
            None => Ok(server_state(env)),
        },
        ("/state", Post) => {
            let body = read_body(env, request)?;
            match body.get("episode_id").and_then(Value::as_str) {
                Some(id) => episode_state(env, id),
                None => Ok(server_state(env)),
            }
        }
        ("/health" | "/reset" | "/step" | "/state" | "/suggest", m) => {
            Err(err(405, "method_not_allowed", format!("{m} is not allowed on {path}")))
        }
        _ => Err(err(
            404,
            "not_found",
            format!("no endpoint {path}; try POST /reset, POST /step, GET /state, GET /health"),
        )),
    }
}

fn u64_field(body: &Value, key: &str) -> Result<Option<u64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| err(400, "bad_field", format!("`{key}` must be a non-negative integer, not {v}"))),
    }
}

fn want_candidates(body: &Value) -> bool {
    body.get("candidates").and_then(Value::as_bool).unwrap_or(true)
}

fn messages_json(messages: &[Message]) -> Value {
    Value::Array(messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect())
}

fn observation<S: Scenario>(env: &Env<S>, ep: &Episode<S::Hidden>, reply: Option<&str>, candidates: bool) -> Value {
    let mut o = json!({
        "episode_id": ep.id,
        "messages": messages_json(&ep.messages),
        "reply": reply,
        "turn": agent_turns(&ep.messages),
        "max_turns": env.scenario.max_agent_turns(),
    });
    if ep.messages.is_empty() {
        o["prompt"] = json!(env.brief);
    }
    if candidates && !ep.done {
        o["candidates"] = json!(env.scenario.candidates(&ep.messages));
    }
    o
}

fn state_json<S: Scenario>(env: &Env<S>, ep: &Episode<S::Hidden>) -> Value {
    let ret: f64 = ep.rewards.iter().sum();
    json!({
        "episode_id": ep.id,
        "step_count": agent_turns(&ep.messages),
        "episode": ep.index,
        "seed": ep.seed,
        "scenario": env.scenario.id(),
        "persona": env.persona_ids[ep.persona],
        "messages": messages_json(&ep.messages),
        "rewards": ep.rewards,
        "dones": ep.dones,
        "return": ret,
        "done": ep.done,
        "success": ep.success,
    })
}

fn reset<S: Cast>(env: &Env<S>, body: &Value) -> Result<Value, ApiError> {
    let seed = u64_field(body, "seed")?;
    let episode = u64_field(body, "episode")?;
    let n = env.counters.resets.fetch_add(1, Ordering::Relaxed);
    let index = episode.unwrap_or(n);
    let seed = seed.unwrap_or_else(|| episode_seed(env.master_seed, index));
    let id = match body.get("episode_id") {
        None | Some(Value::Null) => format!("{:012x}-{n}", env.token & 0xffff_ffff_ffff),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(v) => return Err(err(400, "bad_field", format!("`episode_id` must be a string of 1-255 bytes, not {v}"))),
    };
    // The world's draws for this seed: the remote agent takes the agent slot.
    let hidden = dialogym_engine::judge::hidden_for(&*env.scenario, seed);
    let weights: Vec<f64> = env.persona_spec.components.iter().map(|c| c.1).collect();
    let persona = dialogym_engine::judge::participants_for(seed, &[1.0], &weights).1;
    let ep = Episode {
        id: id.clone(),
        index,
        seed,
        hidden,
        persona,
        messages: Vec::new(),
        rewards: Vec::new(),
        dones: Vec::new(),
        success: false,
        done: false,
        last_seen: Instant::now(),
    };
    let response = json!({
        "observation": observation(env, &ep, None, want_candidates(body)),
        "reward": null,
        "done": false,
        "episode_id": id,
        "metadata": {"episode_id": id, "seed": seed, "episode": index, "scenario": env.scenario.id(), "persona": env.persona_ids[persona]},
    });
    let mut sessions = lock(&env.sessions);
    if sessions.contains_key(&id) || lock(&env.finished).0.contains_key(&id) {
        return Err(err(409, "episode_id_in_use", format!("episode_id `{id}` is already in use")));
    }
    if sessions.len() >= env.max_sessions {
        return Err(err(503, "capacity", format!("{} live sessions (the --max-sessions limit)", sessions.len())));
    }
    sessions.insert(id, Arc::new(Mutex::new(ep)));
    Ok(response)
}

fn session_id(body: &Value) -> Result<&str, ApiError> {
    match body.get("episode_id").or_else(|| body.get("session_id")) {
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(err(400, "bad_field", format!("`episode_id` must be a string, not {v}"))),
        None => Err(err(400, "missing_episode_id", "the body must name the session: {\"episode_id\": ...}")),
    }
}

fn find<S: Scenario>(env: &Env<S>, id: &str) -> Result<Arc<Mutex<Episode<S::Hidden>>>, ApiError> {
    if let Some(ep) = lock(&env.sessions).get(id) {
        return Ok(ep.clone());
    }
    if lock(&env.finished).0.contains_key(id) {
        return Err(err(409, "episode_done", format!("episode `{id}` is done; POST /reset starts a new one")));
    }
    Err(err(404, "unknown_episode", format!("no live episode `{id}` (never started, or expired after idling)")))
}

fn judge_last<S: Scenario>(scenario: &S, ep: &mut Episode<S::Hidden>) -> f64 {
    let verdict = dialogym_engine::judge::verdict(scenario, &ep.hidden, &ep.messages);
    let done = verdict.done;
    ep.rewards.push(verdict.reward);
    ep.dones.push(done);
    ep.success = verdict.success;
    ep.done = done;
    verdict.reward
}

fn step<S: Cast>(env: &Env<S>, body: &Value) -> Result<Value, ApiError> {
    let id = session_id(body)?;
    let text = match body.get("action") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => match o.get("message").or_else(|| o.get("content")) {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(err(400, "bad_action", "`action` must be {\"message\": \"...\"} or a string")),
        },
        _ => {
            return Err(err(
                400,
                "bad_action",
                "the body must hold the agent's utterance: {\"action\": {\"message\": \"...\"}}",
            ));
        }
    };
    let cell = find(env, id)?;
    let mut ep = lock(&cell);
    if ep.done {
        return Err(err(409, "episode_done", format!("episode `{id}` is done; POST /reset starts a new one")));
    }
    ep.last_seen = Instant::now();
    ep.messages.push(Message::agent(text));
    env.counters.steps.fetch_add(1, Ordering::Relaxed);
    let mut reward = judge_last(&*env.scenario, &mut ep);
    let mut reply = None;
    if !ep.done {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = Job {
            persona: ep.persona,
            hidden: ep.hidden.clone(),
            transcript: ep.messages.clone(),
            seed: ep.seed,
            episode: ep.index,
            reply: tx,
        };
        let answer = env
            .jobs
            .send(job)
            .map_err(|_| "the persona thread stopped".to_string())
            .and_then(|()| rx.recv_timeout(Duration::from_secs(600)).map_err(|e| format!("no persona reply: {e}")))
            .and_then(|r| r);
        match answer {
            Ok(text) => {
                ep.messages.push(Message::persona(text.clone()));
                reward += judge_last(&*env.scenario, &mut ep);
                reply = Some(text);
            }
            Err(e) => {
                // The utterance is withdrawn so the client may retry the step.
                ep.messages.pop();
                ep.rewards.pop();
                ep.dones.pop();
                ep.done = false;
                return Err(err(502, "persona_failed", e));
            }
        }
    }
    ep.last_seen = Instant::now();
    let candidates = want_candidates(body);
    let ret: f64 = ep.rewards.iter().sum();
    let response = json!({
        "observation": observation(env, &ep, reply.as_deref(), candidates),
        "reward": reward,
        "done": ep.done,
        "episode_id": id,
        "metadata": {"episode_id": id, "step_count": agent_turns(&ep.messages), "return": ret, "success": ep.success},
    });
    if ep.done {
        finish(env, &ep);
    }
    Ok(response)
}

fn finish<S: Scenario>(env: &Env<S>, ep: &Episode<S::Hidden>) {
    lock(&env.sessions).remove(&ep.id);
    {
        let mut f = lock(&env.finished);
        let (map, order) = &mut *f;
        map.insert(ep.id.clone(), state_json(env, ep));
        order.push_back(ep.id.clone());
        while order.len() > FINISHED_KEPT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
    env.counters.finished.fetch_add(1, Ordering::Relaxed);
    if let Some(tx) = &env.record {
        let metrics = env.scenario.metrics(&ep.hidden, &ep.messages).into_iter().collect();
        let record = EpisodeRecord {
            schema_version: SCHEMA_VERSION,
            run_id: String::new(),
            episode: 0,
            seed: ep.seed,
            scenario: env.scenario.id(),
            agent: "served".into(),
            persona: env.persona_ids[ep.persona].clone(),
            hidden: serde_json::to_value(&ep.hidden).unwrap_or(Value::Null),
            messages: ep.messages.clone(),
            rewards: ep.rewards.clone(),
            dones: ep.dones.clone(),
            ret: ep.rewards.iter().sum(),
            success: ep.success,
            turns: agent_turns(&ep.messages) as u32,
            metrics,
        };
        let _ = tx.send(record);
    }
}

fn suggest<S: Cast>(env: &Env<S>, body: &Value) -> Result<Value, ApiError> {
    let id = session_id(body)?;
    let name = body.get("agent").and_then(Value::as_str).map(str::trim).unwrap_or("");
    let Some(agent) = env.references.get(name) else {
        let known: Vec<&str> = env.references.keys().map(String::as_str).collect();
        return Err(err(
            400,
            "unknown_agent",
            format!("`agent` must be one of the server's --reference-agent specs: {known:?}"),
        ));
    };
    let cell = find(env, id)?;
    let mut ep = lock(&cell);
    if ep.done {
        return Err(err(409, "episode_done", format!("episode `{id}` is done")));
    }
    ep.last_seen = Instant::now();
    let mut turns = [AgentTurn {
        episode: ep.index,
        transcript: &ep.messages,
        rng: turn_rng(ep.seed, ep.messages.len() as u32, Stream::Agent),
    }];
    let out = lock(agent).act(&*env.scenario, &mut turns).map_err(|e| err(502, "agent_failed", format!("{e:#}")))?;
    let text = out.into_iter().next().ok_or_else(|| err(502, "agent_failed", "the agent said nothing"))?;
    Ok(json!({"episode_id": id, "agent": name, "action": {"message": text}}))
}

fn episode_state<S: Scenario>(env: &Env<S>, id: &str) -> Result<Value, ApiError> {
    if let Some(v) = lock(&env.finished).0.get(id) {
        return Ok(v.clone());
    }
    let cell = lock(&env.sessions)
        .get(id)
        .cloned()
        .ok_or_else(|| err(404, "unknown_episode", format!("no episode `{id}` (never started, or expired)")))?;
    let mut ep = lock(&cell);
    ep.last_seen = Instant::now();
    Ok(state_json(env, &ep))
}

fn server_state<S: Scenario>(env: &Env<S>) -> Value {
    let c = &env.counters;
    json!({
        "scenario": env.scenario.id(),
        "personas": env.persona_ids,
        "active_sessions": lock(&env.sessions).len(),
        "max_sessions": env.max_sessions,
        "step_count": c.steps.load(Ordering::Relaxed),
        "episodes_finished": c.finished.load(Ordering::Relaxed),
        "sessions_expired": c.expired.load(Ordering::Relaxed),
        "recording": env.record.is_some(),
    })
}

/// Writes finished episodes into `dir` in arrival order: a shard each `shard_size`
/// episodes, the manifest rewritten after it; the open shard when the channel closes.
fn spawn_recorder(dir: &Path, manifest: Manifest) -> Result<(Sender<EpisodeRecord>, JoinHandle<Result<u64>>)> {
    let (_, _) = corpus::prepare(dir, &manifest, false)?;
    let dir = dir.to_path_buf();
    let (tx, rx) = crossbeam_channel::bounded::<EpisodeRecord>(4096);
    let handle = std::thread::Builder::new()
        .name("serve-recorder".into())
        .spawn(move || -> Result<u64> {
            let mut manifest = manifest;
            let mut open: Vec<EpisodeRecord> = Vec::new();
            let mut written = 0u64;
            let flush = |rows: &mut Vec<EpisodeRecord>, manifest: &mut Manifest, written: &mut u64| -> Result<()> {
                if rows.is_empty() {
                    return Ok(());
                }
                let k = *written / manifest.shard_size;
                for &f in &manifest.formats {
                    let path = dir.join(shard_name(k, f));
                    match f {
                        Format::Jsonl => write_atomic(&path, |w| write_jsonl(w, rows))?,
                        Format::Parquet => write_atomic(&path, |w| write_parquet(w, rows))?,
                    }
                }
                *written += rows.len() as u64;
                rows.clear();
                manifest.episodes = *written;
                write_atomic(&dir.join("manifest.json"), |w| {
                    serde_json::to_writer_pretty(&mut *w, &*manifest)?;
                    std::io::Write::write_all(w, b"\n")?;
                    Ok(())
                })
            };
            for mut record in rx {
                record.episode = written + open.len() as u64;
                record.run_id = manifest.run_id.clone();
                open.push(record);
                if open.len() as u64 == manifest.shard_size {
                    flush(&mut open, &mut manifest, &mut written)?;
                }
            }
            flush(&mut open, &mut manifest, &mut written)?;
            Ok(written)
        })
        .context("spawning the corpus recorder")?;
    Ok((tx, handle))
}
