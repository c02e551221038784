//! A client of `dialogym serve` for the tests and the load benchmark: HTTP over ureq, and a
//! scripted agent that plays episodes through it while checking that every reply belongs
//! to its own episode (the persona re-run locally with the episode's seed must agree).
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialogym::engine::seed::{Stream, episode_seed, turn_rng};
use dialogym::engine::{Agent, AgentTurn, Message, Persona, PersonaTurn, Scenario};
use dialogym::scenarios::entity::EntityScenario;
use serde_json::{Value, json};

/// A blocking JSON client with keep-alive.
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Client { agent: config.new_agent(), base: format!("http://{addr}") }
    }

    /// POST a raw body; (status, JSON answer).
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("the server answers");
        let status = r.status().as_u16();
        let text = r.body_mut().with_config().limit(64 << 20).read_to_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    /// GET.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self.agent.get(format!("{}{path}", self.base)).call().expect("the server answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }
}

/// What one client saw.
#[derive(Default)]
pub struct Played {
    /// Latency of every step, in seconds.
    pub latencies: Vec<f64>,
    /// Finished episodes: (seed, transcript, return, success).
    pub episodes: Vec<(u64, Vec<Message>, f64, bool)>,
    /// Replies that disagreed with the local persona, or observations not of this episode.
    pub mixed: u64,
}

/// Plays 20 Questions episodes against the server with `agent` until `budget` steps are
/// spent (shared by all clients), checking each reply against a local `oracle`.
pub fn play(
    addr: SocketAddr,
    scenario: Arc<EntityScenario>,
    mut agent: Box<dyn Agent<EntityScenario>>,
    mut oracle: Box<dyn Persona<EntityScenario>>,
    master_seed: u64,
    next_episode: &AtomicU64,
    budget: &AtomicI64,
) -> Played {
    let client = Client::new(addr);
    let mut out = Played::default();
    let mut live: Option<(String, u64, <EntityScenario as Scenario>::Hidden, Vec<Message>)> = None;
    while budget.fetch_sub(1, Ordering::SeqCst) > 0 {
        if live.is_none() {
            let index = next_episode.fetch_add(1, Ordering::SeqCst);
            let seed = episode_seed(master_seed, index);
            let (status, v) = client.post("/reset", &json!({"seed": seed, "episode": index, "candidates": false}));
            assert_eq!(status, 200, "{v}");
            let id = v["episode_id"].as_str().unwrap().to_string();
            assert_eq!(v["observation"]["messages"], json!([]));
            let hidden = scenario.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden));
            live = Some((id, seed, hidden, Vec::new()));
        }
        let (id, seed, hidden, transcript) = live.as_mut().unwrap();
        let mut turns =
            [AgentTurn { episode: 0, transcript, rng: turn_rng(*seed, transcript.len() as u32, Stream::Agent) }];
        let text = agent.act(&scenario, &mut turns).unwrap().remove(0);
        transcript.push(Message::agent(text.clone()));
        let t = Instant::now();
        let (status, v) =
            client.post("/step", &json!({"episode_id": id, "action": {"message": text}, "candidates": false}));
        out.latencies.push(t.elapsed().as_secs_f64());
        assert_eq!(status, 200, "{v}");
        if let Some(reply) = v["observation"]["reply"].as_str() {
            let mut pt = [PersonaTurn {
                episode: 0,
                hidden,
                transcript,
                rng: turn_rng(*seed, transcript.len() as u32, Stream::Persona),
            }];
            let want = oracle.reply(&scenario, &mut pt).unwrap().remove(0);
            if want != reply {
                out.mixed += 1;
            }
            transcript.push(Message::persona(reply));
        }
        let seen: Vec<&str> =
            v["observation"]["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
        let mine: Vec<&str> = transcript.iter().map(|m| m.content.as_str()).collect();
        if seen != mine || v["episode_id"].as_str() != Some(id.as_str()) {
            out.mixed += 1;
        }
        if v["done"].as_bool().unwrap() {
            let (_, seed, _, transcript) = live.take().unwrap();
            out.episodes.push((
                seed,
                transcript,
                v["metadata"]["return"].as_f64().unwrap(),
                v["metadata"]["success"].as_bool().unwrap(),
            ));
        }
    }
    out
}

/// The p-quantile of `xs` (sorted in place).
pub fn quantile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}
