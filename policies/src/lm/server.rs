//! [`ServerModel`]: a [`LanguageModel`] served by any OpenAI-compatible HTTP server
//! (llama.cpp's `llama-server`, vLLM, Ollama, ...), over `POST {base}/chat/completions`.
//!
//! The requests of one batch go out concurrently (at most `concurrency` in flight) and the
//! replies come back in request order. Connection errors, timeouts, 429 and 5xx answers
//! are retried a bounded number of times with exponential backoff; then the batch fails with
//! an error that names the server. Every request carries the turn's seed; whether the
//! server honours it is up to the server.
//!
//! A fleet: `server:URL1|URL2|...(model=NAME)` names several endpoints serving the same
//! model. Each request goes to the endpoint with the fewest requests outstanding (ties:
//! the first); an endpoint whose try fails (connection error, timeout, 429, 5xx) is marked
//! down for `down_s` seconds and the retry goes to another one. Per-endpoint requests,
//! retries and failures are counted in a [`FleetStats`] report.
//!
//! Plain HTTP only: this build has no TLS (see `docs/llm.md`), so `https://` URLs are
//! refused with an error that says so.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use dialogym_engine::context::Report;
use dialogym_engine::lm::{ChatRequest, LanguageModel};
use serde_json::{Value, json};

/// The most stop strings the OpenAI API accepts; further ones are applied client-side only.
pub const MAX_STOP: usize = 4;

/// How a [`ServerModel`] talks to its server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOptions {
    /// The `model` field of every request (the name the server serves the model under).
    pub model: String,
    /// The name of an environment variable that holds the API key (sent as a bearer
    /// token); the key itself is read once, when the model is built, and never recorded.
    pub api_key_env: Option<String>,
    /// At most this many requests in flight at once.
    pub concurrency: usize,
    /// Retries after the first try of a request (connection errors, timeouts, 429, 5xx).
    pub retries: u32,
    /// Seconds allowed for one try: to connect, and for the whole answer.
    pub timeout_s: f64,
    /// Milliseconds before the first retry; each further retry waits twice as long.
    pub backoff_ms: u64,
    /// Seconds a failed endpoint of a fleet is left out of the routing.
    pub down_s: f64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            model: String::new(),
            api_key_env: None,
            concurrency: 8,
            retries: 2,
            timeout_s: 120.0,
            backoff_ms: 250,
            down_s: 10.0,
        }
    }
}

/// Requests, retries and failures of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// The endpoint's base URL.
    pub base: String,
    /// Tries sent to it (first tries and retries).
    pub requests: u64,
    /// Of which retries of a request that failed (here or elsewhere).
    pub retries: u64,
    /// Tries that failed.
    pub failures: u64,
}

/// Per-endpoint counters of the fleets of a run, reported after it (keyed by base URL,
/// so speakers sharing an endpoint add up).
#[derive(Default)]
pub struct FleetStats {
    counts: Mutex<Vec<EndpointCounts>>,
}

impl FleetStats {
    fn add(&self, base: &str, f: impl FnOnce(&mut EndpointCounts)) {
        if let Ok(mut all) = self.counts.lock() {
            let i = match all.iter().position(|c| c.base == base) {
                Some(i) => i,
                None => {
                    all.push(EndpointCounts { base: base.to_string(), ..EndpointCounts::default() });
                    all.len() - 1
                }
            };
            f(&mut all[i]);
        }
    }

    /// The counters, one per endpoint, in the order endpoints were first used.
    pub fn counts(&self) -> Vec<EndpointCounts> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Report for FleetStats {
    fn line(&self) -> String {
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|c| format!("{}: {} requests, {} retries, {} failures", c.base, c.requests, c.retries, c.failures))
            .collect();
        if parts.is_empty() { "no requests".to_string() } else { parts.join("; ") }
    }
}

/// Routing state of a fleet: requests outstanding and down-until per endpoint.
#[derive(Default)]
struct Routing {
    outstanding: Vec<usize>,
    down_until: Vec<Option<Instant>>,
}

/// A chat model behind an OpenAI-compatible server, or a fleet of them.
#[derive(Clone)]
pub struct ServerModel {
    bases: Vec<String>,
    options: ServerOptions,
    api_key: Option<String>,
    agent: ureq::Agent,
    routing: Arc<Mutex<Routing>>,
    stats: Arc<FleetStats>,
}

impl std::fmt::Debug for ServerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServerModel").field("bases", &self.bases).field("options", &self.options).finish()
    }
}

/// Why one try failed, and whether another try may help.
struct Failure {
    retry: bool,
    message: String,
    /// Seconds the server asked us to wait (`Retry-After`), if any.
    wait_s: Option<u64>,
}

impl ServerModel {
    /// A model at `base` (e.g. `http://127.0.0.1:8080/v1`; requests go to
    /// `{base}/chat/completions`), or at several endpoints, `URL1|URL2|...`.
    pub fn new(base: &str, options: ServerOptions) -> Result<ServerModel> {
        let bases: Vec<String> = base.split('|').map(|b| b.trim().trim_end_matches('/').to_string()).collect();
        for (i, b) in bases.iter().enumerate() {
            if b.is_empty() {
                bail!("`{base}`: endpoint {} of the fleet is empty (separate URLs with |)", i + 1);
            }
            check_base(b)?;
            if bases[..i].contains(b) {
                bail!("`{base}`: endpoint {b} is named twice");
            }
        }
        let first = &bases[0];
        if options.model.trim().is_empty() {
            bail!("server `{first}`: name the model (model=NAME), as the server knows it");
        }
        if options.concurrency == 0 {
            bail!("server `{first}`: concurrency must be at least 1");
        }
        if !(options.timeout_s > 0.0 && options.timeout_s.is_finite() && options.timeout_s <= 86_400.0) {
            bail!("server `{first}`: timeout must be a positive number of seconds (at most a day)");
        }
        if !(options.down_s >= 0.0 && options.down_s.is_finite() && options.down_s <= 3600.0) {
            bail!("server `{first}`: down must be a number of seconds in [0, 3600]");
        }
        let api_key = match &options.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => bail!("server `{first}`: api_key_env={var}, but the environment variable {var} is not set"),
            },
        };
        let timeout = Duration::from_secs_f64(options.timeout_s);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect could lead to https://, which this build cannot speak.
            .max_redirects(0)
            .timeout_connect(Some(timeout.min(Duration::from_secs(30))))
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(options.concurrency)
            .user_agent(concat!("dialogym/", env!("CARGO_PKG_VERSION")))
            .build();
        let n = bases.len();
        let routing = Routing { outstanding: vec![0; n], down_until: vec![None; n] };
        Ok(ServerModel {
            bases,
            options,
            api_key,
            agent: config.new_agent(),
            routing: Arc::new(Mutex::new(routing)),
            stats: Arc::new(FleetStats::default()),
        })
    }

    /// Counts this model's requests into `stats` (a run's report) instead of its own.
    pub fn counting_into(mut self, stats: Arc<FleetStats>) -> ServerModel {
        self.stats = stats;
        self
    }

    /// The counters this model adds to.
    pub fn stats(&self) -> Arc<FleetStats> {
        self.stats.clone()
    }

    /// The endpoint for the next try: among those not marked down (and not `avoid`, the
    /// one that just failed, while another is up), the one with the fewest outstanding
    /// requests; its count is raised (lower it with [`Self::release`]).
    fn acquire(&self, avoid: Option<usize>) -> usize {
        let Ok(mut r) = self.routing.lock() else { return 0 };
        let now = Instant::now();
        let n = self.bases.len();
        let up = |i: usize, r: &Routing| r.down_until[i].is_none_or(|t| t <= now);
        let pick =
            |ok: &dyn Fn(usize) -> bool, r: &Routing| (0..n).filter(|&i| ok(i)).min_by_key(|&i| r.outstanding[i]);
        let i = pick(&|i| up(i, &r) && Some(i) != avoid, &r)
            .or_else(|| pick(&|i| up(i, &r), &r))
            // All down: the one that comes back first.
            .or_else(|| (0..n).min_by_key(|&i| r.down_until[i]))
            .unwrap_or(0);
        r.outstanding[i] += 1;
        i
    }

    fn release(&self, i: usize, failed: bool) {
        if let Ok(mut r) = self.routing.lock() {
            r.outstanding[i] = r.outstanding[i].saturating_sub(1);
            if failed && self.bases.len() > 1 {
                r.down_until[i] = Some(Instant::now() + Duration::from_secs_f64(self.options.down_s));
            }
        }
    }

    /// Whether an endpoint other than `i` is up now.
    fn other_up(&self, i: usize) -> bool {
        let now = Instant::now();
        self.routing
            .lock()
            .map(|r| (0..self.bases.len()).any(|j| j != i && r.down_until[j].is_none_or(|t| t <= now)))
            .unwrap_or(false)
    }

    /// The first endpoint's base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.bases[0]
    }

    /// Every endpoint's base URL.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The first endpoint every request goes to (of a fleet: the first).
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.bases[0])
    }
}

fn check_base(base: &str) -> Result<()> {
    if base.starts_with("https://") {
        bail!(
            "`{base}`: https:// needs TLS, which this build of dialogym leaves out; use an http:// URL \
                 (a local server, or a plain-HTTP proxy in front of the remote one)"
        );
    }
    if !base.starts_with("http://") || base.len() <= "http://".len() {
        bail!("`{base}`: the server URL must start with http:// (e.g. http://127.0.0.1:8080/v1)");
    }
    Ok(())
}

impl ServerModel {
    /// The JSON body of one request (OpenAI chat-completions schema).
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let s = &request.sampling;
        let mut body = json!({
            "model": self.options.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            // Low 31 bits: every server takes a non-negative 32-bit integer.
            "seed": wire_seed(s.seed),
            "stream": false,
        });
        if !s.stop.is_empty() {
            body["stop"] = json!(s.stop.iter().take(MAX_STOP).collect::<Vec<_>>());
        }
        if s.top_k > 0 {
            // Not in the OpenAI schema; llama.cpp and vLLM read it.
            body["top_k"] = json!(s.top_k);
        }
        body
    }

    /// One request, retried as the options say.
    fn complete_one(&self, request: &ChatRequest) -> Result<String> {
        let body = self.request_body(request).to_string();
        let mut tries = 0;
        let mut last = None;
        loop {
            tries += 1;
            let i = self.acquire(last);
            let base = &self.bases[i];
            self.stats.add(base, |c| {
                c.requests += 1;
                c.retries += u64::from(tries > 1);
            });
            let result = self.try_once(i, &body);
            self.release(i, result.is_err());
            if result.is_err() {
                self.stats.add(base, |c| c.failures += 1);
            }
            match result {
                Ok(text) => return Ok(cut_at_stop(text, &request.sampling.stop)),
                Err(f) if f.retry && tries <= self.options.retries => {
                    last = Some(i);
                    // Another endpoint is up: retry there at once; else back off.
                    if !self.other_up(i) {
                        let backoff = self.options.backoff_ms.saturating_mul(1 << (tries - 1).min(16));
                        let wait = match f.wait_s {
                            Some(s) => Duration::from_secs(s.min(30)),
                            None => Duration::from_millis(backoff),
                        };
                        std::thread::sleep(wait);
                    }
                }
                Err(f) => {
                    let after = if tries > 1 { format!(" (after {tries} tries)") } else { String::new() };
                    return Err(anyhow!("{}{after}", f.message));
                }
            }
        }
    }

    /// One HTTP exchange.
    /// A failure of the connection itself (retried when `describe` says it may pass).
    fn transport_failure(&self, e: &ureq::Error, what: String) -> Failure {
        let (retry, cause) = describe(e, self.options.timeout_s);
        Failure { retry, message: format!("{what}: {cause}"), wait_s: None }
    }

    fn try_once(&self, i: usize, body: &str) -> std::result::Result<String, Failure> {
        let base = &self.bases[i];
        let url = format!("{base}/chat/completions");
        let mut req = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = match req.send(body) {
            Ok(r) => r,
            Err(e) => return Err(self.transport_failure(&e, format!("cannot reach the LLM server at {base}"))),
        };
        let status = response.status().as_u16();
        let wait_s = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = match response.body_mut().with_config().limit(16 << 20).read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Err(self.transport_failure(&e, format!("the LLM server at {base} broke off its answer")));
            }
        };
        if !(200..300).contains(&status) {
            return Err(Failure {
                retry: status == 429 || status >= 500,
                message: format!("the LLM server at {url} answered HTTP {status}: {}", head(&text)),
                wait_s,
            });
        }
        parse_completion(&text).map_err(|why| Failure {
            retry: false,
            message: format!(
                "the LLM server at {url} sent an answer that is not a chat completion ({why}): {}",
                head(&text)
            ),
            wait_s: None,
        })
    }
}

/// The seed as sent: its low 31 bits.
pub fn wire_seed(seed: u64) -> u64 {
    seed & 0x7fff_ffff
}

/// The first ~200 bytes of a body, on one line, for error messages.
fn head(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < text.len() { "..." } else { "" };
    let shown: String = text[..end].chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if shown.trim().is_empty() { "(empty body)".to_string() } else { format!("`{}{more}`", shown.trim()) }
}

/// Whether a transport error may pass on a retry, and what to call it.
fn describe(e: &ureq::Error, timeout_s: f64) -> (bool, String) {
    match e {
        ureq::Error::Io(io) => {
            let cause = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                std::io::ErrorKind::TimedOut => format!("no answer within {timeout_s} s"),
                _ => io.to_string(),
            };
            (true, cause)
        }
        ureq::Error::Timeout(t) => (true, format!("timed out ({t}) after {timeout_s} s")),
        ureq::Error::HostNotFound => (true, "host not found".to_string()),
        ureq::Error::ConnectionFailed => (true, "connection failed".to_string()),
        ureq::Error::Protocol(p) => (true, format!("HTTP protocol error: {p}")),
        other => (false, other.to_string()),
    }
}

/// The text of `choices[0].message.content` (or `choices[0].text`, legacy completions).
pub fn parse_completion(text: &str) -> std::result::Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(err) = v.get("error") {
        let msg = err.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| err.to_string());
        return Err(format!("error: {msg}"));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| "no choices[0]".to_string())?;
    if let Some(content) = choice.get("message").and_then(|m| m.get("content")) {
        return match content {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            _ => Err("choices[0].message.content is not a string".to_string()),
        };
    }
    choice
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "no choices[0].message.content".to_string())
}

/// `text` up to the first stop string (servers stop there already; this covers stop lists
/// longer than [`MAX_STOP`] and servers that keep the stop string).
fn cut_at_stop(mut text: String, stop: &[String]) -> String {
    if let Some(at) = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(at);
    }
    text
}

impl LanguageModel for ServerModel {
    fn id(&self) -> String {
        format!("server:{}#{}", self.bases.join("|"), self.options.model)
    }

    fn complete(&mut self, batch: &[ChatRequest]) -> Result<Vec<String>> {
        let n = batch.len();
        let results: Vec<Mutex<Option<Result<String>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = self.options.concurrency.min(n);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = batch.get(i) else { break };
                        let r = self.complete_one(request);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some(r);
                        }
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(n);
        let mut first_error = None;
        for slot in results {
            match slot.into_inner().map_err(|_| anyhow!("a request thread panicked"))? {
                Some(Ok(text)) => out.push(text),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if out.len() != n {
            bail!("the LLM server at {}: {} of {n} requests got no answer", self.bases.join("|"), n - out.len());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialogym_engine::lm::{ChatMessage, Sampling};

    fn model() -> ServerModel {
        ServerModel::new("http://127.0.0.1:1/v1/", ServerOptions { model: "m".into(), ..ServerOptions::default() })
            .expect("valid")
    }

    #[test]
    fn body_follows_the_openai_schema() {
        let m = model();
        assert_eq!(m.endpoint(), "http://127.0.0.1:1/v1/chat/completions");
        assert_eq!(m.id(), "server:http://127.0.0.1:1/v1#m");
        let stop: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let req = ChatRequest {
            messages: vec![ChatMessage { role: "user".into(), content: "hi".into() }],
            sampling: Sampling { temperature: 0.5, top_p: 0.8, top_k: 0, max_tokens: 7, stop, seed: u64::MAX },
        };
        let b = m.request_body(&req);
        assert_eq!(b["model"], "m");
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["seed"], 0x7fff_ffff_u64);
        assert_eq!(b["stop"].as_array().map(Vec::len), Some(MAX_STOP));
        assert!(b.get("top_k").is_none());
        let req = ChatRequest { sampling: Sampling { top_k: 40, ..req.sampling }, ..req };
        assert_eq!(m.request_body(&req)["top_k"], 40);
    }

    #[test]
    fn bad_urls_and_answers_are_refused() {
        let opts = ServerOptions { model: "m".into(), ..ServerOptions::default() };
        let e = ServerModel::new("https://api.example.com/v1", opts.clone()).expect_err("no TLS");
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(ServerModel::new("ftp://x", opts.clone()).is_err());
        assert!(ServerModel::new("http://x", ServerOptions::default()).is_err(), "model is required");
        let no_key = ServerOptions { api_key_env: Some("DIALOGYM_TEST_NO_SUCH_VARIABLE".into()), ..opts };
        let e = ServerModel::new("http://x", no_key).expect_err("missing key");
        assert!(e.to_string().contains("DIALOGYM_TEST_NO_SUCH_VARIABLE"), "{e}");
        assert!(parse_completion("{\"choices\":[]}").is_err());
        assert!(parse_completion("<html>").is_err());
        assert_eq!(parse_completion(r#"{"choices":[{"message":{"content":"Yes."}}]}"#), Ok("Yes.".to_string()));
        assert_eq!(cut_at_stop("Yes.\nNo".into(), &["\n".into()]), "Yes.");
        assert_eq!(head(&"x".repeat(300)).len(), 200 + 5);
    }
}
