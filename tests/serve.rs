//! `dialogym serve`: the OpenEnv-style endpoints, JSON errors with status codes for bad
//! requests, expiry, many concurrent clients with no session lost or mixed up, and the
//! record of finished episodes as a corpus that `generate`'s readers accept.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "common/serve_client.rs"]
mod serve_client;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use dialogym::engine::corpus::read_corpus;
use dialogym::engine::seed::episode_seed;
use dialogym::engine::{Role, Spec};
use dialogym::serve::{ServeArgs, start};
use serde_json::{Value, json};
use serve_client::{Client, play};

fn server(args: ServeArgs) -> dialogym::serve::Running {
    start(&ServeArgs { port: 0, ..args }, vec!["test".into()]).unwrap()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {v}"))
}

#[test]
fn endpoints_follow_the_openenv_shape() {
    let s = server(ServeArgs { reference_agents: vec!["greedy-eig".into()], ..ServeArgs::default() });
    let c = Client::new(s.addr);
    assert_eq!(c.get("/health"), (200, json!({"status": "healthy"})));
    let (st, v) = c.post("/reset", &json!({"seed": 42}));
    assert_eq!(st, 200);
    assert_eq!(v["done"], json!(false));
    assert_eq!(v["reward"], Value::Null);
    let id = v["episode_id"].as_str().unwrap().to_string();
    let obs = &v["observation"];
    assert!(obs["prompt"].as_str().unwrap().contains("20 Questions") || !obs["prompt"].as_str().unwrap().is_empty());
    assert!(obs["candidates"].as_array().unwrap().len() > 10);
    // The reference agent speaks, the environment judges: −1 per question.
    let (_, sug) = c.post("/suggest", &json!({"episode_id": id, "agent": "greedy-eig"}));
    let q = sug["action"]["message"].as_str().unwrap().to_string();
    let (st, v) = c.post("/step", &json!({"episode_id": id, "action": {"message": q}}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["reward"], json!(-1.0));
    assert_eq!(v["done"], json!(false));
    assert_eq!(v["observation"]["messages"].as_array().unwrap().len(), 2);
    let (st, state) = c.get(&format!("/state?episode_id={id}"));
    assert_eq!(st, 200);
    assert_eq!(state["step_count"], json!(1));
    assert_eq!(state["seed"], json!(42));
    // Play it out with the reference agent; the return matches the judge re-run on the seed.
    let mut done = false;
    let mut steps = 1;
    while !done {
        let (_, sug) = c.post("/suggest", &json!({"episode_id": id, "agent": "greedy-eig"}));
        let (st, v) = c.post("/step", &json!({"episode_id": id, "action": sug["action"]}));
        assert_eq!(st, 200, "{v}");
        done = v["done"].as_bool().unwrap();
        steps += 1;
        assert!(steps <= 20);
    }
    let (_, state) = c.get(&format!("/state?episode_id={id}"));
    let messages: Vec<dialogym::engine::Message> = state["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = m["content"].as_str().unwrap();
            if m["role"] == "agent" {
                dialogym::engine::Message::agent(text)
            } else {
                dialogym::engine::Message::persona(text)
            }
        })
        .collect();
    let (_, verdicts) = dialogym::session::load("twenty-questions").unwrap().rejudge(42, &messages).unwrap();
    let rewards: Vec<f64> = verdicts.iter().map(|j| j.reward).collect();
    assert_eq!(state["rewards"], json!(rewards));
    assert_eq!(state["done"], json!(true));
    let (_, server_state) = c.get("/state");
    assert_eq!(server_state["episodes_finished"], json!(1));
    assert_eq!(server_state["active_sessions"], json!(0));
    let summary = s.shutdown().unwrap();
    assert_eq!(summary.finished, 1);
}

#[test]
fn bad_requests_get_json_errors() {
    let s = server(ServeArgs { max_body: 1024, max_sessions: 2, ..ServeArgs::default() });
    let c = Client::new(s.addr);
    let (st, v) = c.post("/step", &json!({"episode_id": "nope", "action": {"message": "Is it alive?"}}));
    assert_eq!((st, code(&v)), (404, "unknown_episode"));
    let (st, v) = c.post_raw("/reset", "{\"seed\": 1,");
    assert_eq!((st, code(&v)), (400, "malformed_json"));
    let (st, v) = c.post("/reset", &json!({"seed": -3}));
    assert_eq!((st, code(&v)), (400, "bad_field"));
    let big = json!({"episode_id": "x", "action": {"message": "a".repeat(5000)}});
    let (st, v) = c.post("/step", &big);
    assert_eq!((st, code(&v)), (413, "body_too_large"));
    let (st, v) = c.get("/reset");
    assert_eq!((st, code(&v)), (405, "method_not_allowed"));
    let (st, v) = c.get("/nowhere");
    assert_eq!((st, code(&v)), (404, "not_found"));
    let (_, v) = c.post("/reset", &json!({"seed": 7, "episode_id": "mine"}));
    assert_eq!(v["episode_id"], json!("mine"));
    let (st, v) = c.post("/reset", &json!({"episode_id": "mine"}));
    assert_eq!((st, code(&v)), (409, "episode_id_in_use"));
    let (st, v) = c.post("/step", &json!({"episode_id": "mine"}));
    assert_eq!((st, code(&v)), (400, "bad_action"));
    let (_, _) = c.post("/reset", &json!({}));
    let (st, v) = c.post("/reset", &json!({}));
    assert_eq!((st, code(&v)), (503, "capacity"));
    // Naming the secret ends the episode; a step after done is refused.
    let (_, state) = c.get("/state?episode_id=mine");
    assert_eq!(state["seed"], json!(7));
    let hidden = dialogym::session::entity("twenty-questions").unwrap();
    let secret = {
        use dialogym::engine::Scenario;
        use dialogym::engine::seed::{Stream, turn_rng};
        let h = hidden.sample_hidden(&mut turn_rng(7, 0, Stream::Hidden));
        serde_json::to_value(&h).unwrap()["name"].as_str().unwrap().to_string()
    };
    let (st, v) =
        c.post("/step", &json!({"episode_id": "mine", "action": format!("Is it a {}?", secret.to_lowercase())}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["done"], json!(true), "{v}");
    assert_eq!(v["metadata"]["success"], json!(true));
    let (st, v) = c.post("/step", &json!({"episode_id": "mine", "action": "Is it alive?"}));
    assert_eq!((st, code(&v)), (409, "episode_done"));
    // A request cut off mid-body, and garbage instead of HTTP: the server lives on.
    let mut raw = std::net::TcpStream::connect(s.addr).unwrap();
    raw.write_all(b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"episode_id\":").unwrap();
    drop(raw);
    let mut raw = std::net::TcpStream::connect(s.addr).unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf);
    assert_eq!(c.get("/health").0, 200);
    s.shutdown().unwrap();
}

#[test]
fn idle_sessions_expire() {
    let s = server(ServeArgs { idle_timeout: 0.2, ..ServeArgs::default() });
    let c = Client::new(s.addr);
    let (_, v) = c.post("/reset", &json!({}));
    let id = v["episode_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(800));
    let (st, v) = c.post("/step", &json!({"episode_id": id, "action": "Is it alive?"}));
    assert_eq!((st, code(&v)), (404, "unknown_episode"));
    assert_eq!(s.shutdown().unwrap().expired, 1);
}

#[test]
fn sixteen_clients_no_session_lost_or_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("served");
    let s = server(ServeArgs {
        persona: Some("oracle(slip=0.1)".into()),
        record: Some(record.clone()),
        shard_size: 50,
        seed: 3,
        ..ServeArgs::default()
    });
    let scenario = dialogym::session::entity("twenty-questions").unwrap();
    let (next, budget) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicI64::new(16 * 200)));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (scenario, next, budget, addr) = (scenario.clone(), next.clone(), budget.clone(), s.addr);
            std::thread::spawn(move || {
                let agent_spec = if i % 2 == 0 { "greedy-eig(slip=0.1)" } else { "random" };
                let ctx = dialogym::engine::Context::new();
                let agent = dialogym::session::agent(&Spec::parse(agent_spec).unwrap(), &*scenario, &ctx).unwrap();
                let oracle =
                    dialogym::session::persona(&Spec::parse("oracle(slip=0.1)").unwrap(), &*scenario, &ctx).unwrap();
                play(addr, scenario, agent, oracle, 3, &next, &budget)
            })
        })
        .collect();
    let played: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let steps: usize = played.iter().map(|p| p.latencies.len()).sum();
    assert_eq!(steps, 16 * 200);
    assert_eq!(played.iter().map(|p| p.mixed).sum::<u64>(), 0, "a reply or observation of another episode");
    let summary = s.shutdown().unwrap();
    assert_eq!(summary.steps, 16 * 200);
    let finished: Vec<_> = played.iter().flat_map(|p| p.episodes.iter()).collect();
    assert!(finished.len() > 100, "{} episodes", finished.len());
    assert_eq!(summary.finished as usize, finished.len());
    assert_eq!(summary.recorded as usize, finished.len());
    // The record is a corpus: every finished episode, judged as the world judges.
    let (manifest, rows) = read_corpus(&record).unwrap();
    assert_eq!(manifest.episodes as usize, finished.len());
    let session = dialogym::session::load("twenty-questions").unwrap();
    let mut by_seed: std::collections::HashMap<u64, _> = rows.iter().map(|r| (r.seed, r)).collect();
    for (seed, transcript, ret, success) in finished {
        let row = by_seed.remove(seed).expect("each finished episode recorded once");
        assert_eq!(&row.messages, transcript);
        assert_eq!(row.ret, *ret);
        assert_eq!(row.success, *success);
        let (hidden, verdicts) = session.rejudge(*seed, &row.messages).unwrap();
        assert_eq!(hidden, row.hidden);
        assert_eq!(row.rewards, verdicts.iter().map(|v| v.reward).collect::<Vec<_>>());
        assert_eq!(row.dones, verdicts.iter().map(|v| v.done).collect::<Vec<_>>());
        assert_eq!(row.messages.first().map(|m| m.role), Some(Role::Agent));
    }
    assert!(by_seed.is_empty());
    let _ = episode_seed(3, 0);
}

#[test]
fn python_client_reproduces_eval() {
    // The exact half of examples/serve_client.py: the greedy reference agent played over
    // HTTP with `requests` gives eval's numbers (the random half is a statistical check).
    let out = std::process::Command::new("python3")
        .args(["examples/serve_client.py", "--bin", env!("CARGO_BIN_EXE_dialogym")])
        .args(["--agents", "greedy-eig", "--episodes", "40", "--persona", "oracle(slip=0.1)", "--seed", "2"])
        .output()
        .expect("python3 is needed for this test (scripts/test installs requests)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let line = text.lines().find(|l| l.starts_with("greedy-eig")).unwrap_or_else(|| panic!("{text}"));
    let nums: Vec<&str> = line.split_whitespace().collect();
    // agent, served mean, ±, ci, eval mean, ±, ci, ...: the served and eval means agree exactly.
    assert_eq!(nums[1], nums[4], "{line}");
    assert_eq!(nums[7], nums[10], "the same returns: {line}");
    assert!(line.trim_end().ends_with("yes"), "{line}");
}
