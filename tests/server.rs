//! Speakers on an OpenAI-compatible server, against an in-process mock server on
//! 127.0.0.1: request fields, order of a concurrent batch, a whole 20 Questions run through
//! the command line, a dead server, a malformed answer, a retried 500.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::run;
use dialogym::engine::lm::{ChatMessage, ChatRequest, LanguageModel, Sampling};
use dialogym::policies::lm::server::{ServerModel, ServerOptions, wire_seed};
use serde_json::{Value, json};

/// What the mock answers to the `n`-th request (0-based) with this JSON body: status, body.
type Reply = dyn Fn(usize, &Value) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server on 127.0.0.1: reads each request's JSON body (Content-Length),
/// records it, and answers with `reply`. Connections are kept alive; each gets a thread.
struct Mock {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Mock {
    fn start(reply: Box<Reply>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Reply> = Arc::from(reply);
        let count = Arc::new(AtomicUsize::new(0));
        let state = (seen.clone(), reply, count);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, reply, count) = (state.0.clone(), state.1.clone(), state.2.clone());
                std::thread::spawn(move || serve(stream, &seen, reply.as_ref(), &count));
            }
        });
        Mock { url, seen }
    }

    fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Value>>, reply: &Reply, count: &AtomicUsize) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /v1/chat/completions "), "unexpected request line {line:?}");
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let n = count.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(body.clone());
        let (status, text) = reply(n, &body);
        let head =
            format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", text.len());
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(text.as_bytes())).is_err() {
            return;
        }
    }
}

/// An OpenAI chat completion with `content`.
fn completion(content: &str) -> String {
    json!({
        "id": "mock", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    })
    .to_string()
}

/// Whether the mock persona says "Yes." to `question` (else "No.").
fn mock_yes(question: &str) -> bool {
    let q = question.to_lowercase();
    q.contains("alive") || q.contains("outdoors")
}

/// The persona mock: "Yes." when the last user message mentions "alive" or "outdoors" (greedy
/// EIG's first question), else "No.".
fn persona_reply(_: usize, body: &Value) -> (u16, String) {
    let last_user = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .unwrap_or_default();
    let answer = if mock_yes(&last_user) { "Yes." } else { "No." };
    (200, completion(answer))
}

fn options(model: &str) -> ServerOptions {
    ServerOptions { model: model.into(), backoff_ms: 10, timeout_s: 10.0, ..ServerOptions::default() }
}

fn request(text: &str, seed: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage { role: "system".into(), content: "You are a cat.".into() },
            ChatMessage { role: "user".into(), content: text.into() },
        ],
        sampling: Sampling { temperature: 0.3, top_p: 0.9, top_k: 0, max_tokens: 8, stop: vec!["\n".into()], seed },
    }
}

#[test]
fn a_batch_comes_back_in_order_with_the_right_fields() {
    // The reply echoes the request's seed, so order is checked per request.
    let mock = Mock::start(Box::new(|n, body: &Value| {
        // Early requests answer late: a batch that came back in arrival order would fail.
        std::thread::sleep(std::time::Duration::from_millis(50u64.saturating_sub(10 * n as u64)));
        (200, completion(&format!("{} seed={}", persona_reply(n, body).1.contains("Yes."), body["seed"])))
    }));
    let mut model = ServerModel::new(&mock.url, options("smollm2")).unwrap();
    assert_eq!(model.id(), format!("server:{}#smollm2", mock.url));
    let seeds = [7_u64, 1 << 40, 3, u64::MAX, 12];
    let batch: Vec<ChatRequest> = seeds
        .iter()
        .enumerate()
        .map(|(i, &s)| request(if i % 2 == 0 { "Is it alive?" } else { "Is it blue?" }, s))
        .collect();
    let out = model.complete(&batch).unwrap();
    let want: Vec<String> =
        seeds.iter().enumerate().map(|(i, &s)| format!("{} seed={}", i % 2 == 0, wire_seed(s))).collect();
    assert_eq!(out, want);
    let seen = mock.requests();
    assert_eq!(seen.len(), 5);
    for body in &seen {
        assert_eq!(body["model"], "smollm2");
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["max_tokens"], 8);
        assert_eq!(body["stop"], json!(["\n"]));
        assert!(body.get("top_k").is_none(), "top_k 0 is not sent");
        assert_eq!(body["messages"][0]["role"], "system");
    }
    let mut sent: Vec<u64> = seen.iter().map(|b| b["seed"].as_u64().unwrap()).collect();
    let mut expected: Vec<u64> = seeds.iter().map(|&s| wire_seed(s)).collect();
    sent.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sent, expected);
    assert!(model.complete(&[]).unwrap().is_empty());
}

#[test]
fn twenty_questions_runs_to_the_end_with_a_server_persona() {
    let mock = Mock::start(Box::new(persona_reply));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    // Canonical (sorted) parameters: the corpus records the spec as written here.
    let persona = format!("server:{}(max_tokens=4,model=mock)", mock.url);
    let o = run(&[
        "generate",
        "--agent",
        "greedy-eig",
        "--persona",
        &persona,
        "--episodes",
        "3",
        "--concurrency",
        "3",
        "--format",
        "jsonl",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<Value> = common::shards(&out)
        .iter()
        .flat_map(|(_, bytes)| {
            String::from_utf8(bytes.clone()).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let (mut persona_turns, mut yes) = (0, 0);
    for r in &rows {
        assert_eq!(r["persona"], persona, "the corpus records the server speaker");
        assert_eq!(r["agent"], "greedy-eig");
        let msgs = r["messages"].as_array().unwrap();
        assert!(msgs.len() >= 2, "the episode was played");
        for pair in msgs.windows(2) {
            if pair[1]["role"] == "persona" {
                persona_turns += 1;
                let asked = pair[0]["content"].as_str().unwrap().to_lowercase();
                let want = if mock_yes(&asked) { "Yes." } else { "No." };
                yes += usize::from(want == "Yes.");
                assert_eq!(pair[1]["content"], want, "reply to {asked:?}");
            }
        }
    }
    assert!(yes > 0 && yes < persona_turns, "both mock answers occur ({yes} of {persona_turns})");
    let seen = mock.requests();
    assert_eq!(seen.len(), persona_turns, "one request per persona turn");
    assert!(seen.iter().all(|b| b["model"] == "mock" && b["max_tokens"] == 4));
}

#[test]
fn a_dead_server_is_a_clear_error_not_a_panic() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let mut model = ServerModel::new(&url, ServerOptions { retries: 1, ..options("m") }).unwrap();
    let e = model.complete(&[request("hi", 1)]).unwrap_err().to_string();
    assert!(e.contains(&format!("cannot reach the LLM server at {url}")), "{e}");
    assert!(e.contains("connection refused"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let persona = format!("server:{url}(model=m,retries=0)");
    let o = run(&["generate", "--persona", &persona, "--episodes", "2", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "generate succeeded against a dead server");
    assert!(err.contains(&format!("cannot reach the LLM server at {url}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o =
        run(&["imagine", "personas", "--model", &persona, "--n", "2", "--out", out.join("p.jsonl").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "imagine succeeded against a dead server");
    assert!(err.contains(&format!("cannot reach the LLM server at {url}")) && !err.contains("panicked"), "{err}");

    let o = run(&["generate", "--agent", "server:https://example.com/v1(model=m)", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("TLS"), "{err}");
    let o = run(&["generate", "--agent", &format!("server:{url}(modle=m)"), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("unknown parameter `modle`"), "{err}");
}

#[test]
fn a_malformed_answer_is_a_clear_error() {
    let mock = Mock::start(Box::new(|_, _: &Value| (200, "<html>not json at all</html>".to_string())));
    let mut model = ServerModel::new(&mock.url, options("m")).unwrap();
    let e = model.complete(&[request("hi", 1), request("ho", 2)]).unwrap_err().to_string();
    assert!(e.contains(&mock.url) && e.contains("not a chat completion"), "{e}");
    assert!(e.contains("<html>not json at all</html>"), "the body is shown: {e}");

    let mock = Mock::start(Box::new(|_, _: &Value| (200, r#"{"choices": "many"}"#.to_string())));
    let mut model = ServerModel::new(&mock.url, options("m")).unwrap();
    let e = model.complete(&[request("hi", 1)]).unwrap_err().to_string();
    assert!(e.contains("no choices[0]"), "{e}");
    assert_eq!(mock.requests().len(), 1, "a malformed answer is not retried");
}

#[test]
fn a_server_error_is_retried() {
    let mock = Mock::start(Box::new(|n, body: &Value| {
        if n == 0 { (500, r#"{"error":{"message":"busy"}}"#.to_string()) } else { persona_reply(n, body) }
    }));
    let mut model = ServerModel::new(&mock.url, options("m")).unwrap();
    assert_eq!(model.complete(&[request("Is it alive?", 1)]).unwrap(), vec!["Yes.".to_string()]);
    assert_eq!(mock.requests().len(), 2, "one failure, one retry");

    // Without retries the 500 is the error, with the server's words.
    let mock = Mock::start(Box::new(|_, _: &Value| (503, r#"{"error":"overloaded"}"#.to_string())));
    let mut model = ServerModel::new(&mock.url, ServerOptions { retries: 2, ..options("m") }).unwrap();
    let e = model.complete(&[request("hi", 1)]).unwrap_err().to_string();
    assert!(e.contains("HTTP 503") && e.contains("overloaded") && e.contains("after 3 tries"), "{e}");
    assert_eq!(mock.requests().len(), 3);
    // A 400 is not retried.
    let mock = Mock::start(Box::new(|_, _: &Value| (400, r#"{"error":"bad model"}"#.to_string())));
    let mut model = ServerModel::new(&mock.url, options("m")).unwrap();
    let e = model.complete(&[request("hi", 1)]).unwrap_err().to_string();
    assert!(e.contains("HTTP 400") && e.contains("bad model"), "{e}");
    assert_eq!(mock.requests().len(), 1);
}

/// The critic mock: a valid critique and rewrite for every other request it receives
/// (0-based count even), garbage for the rest, whatever the order they arrive in.
fn critic_reply(n: usize, _: &Value) -> (u16, String) {
    if n.is_multiple_of(2) {
        (200, completion("Critique: it asked too much.\nAgent: Is it a dog?\nPersona: Yes."))
    } else {
        (200, completion("I liked this dialogue."))
    }
}

#[test]
fn imagine_critique_keeps_both_versions_and_counts_invalid_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let o = run(&["generate", "--episodes", "4", "--format", "jsonl", "--out", corpus.to_str().unwrap()]);
    assert!(o.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let mock = Mock::start(Box::new(critic_reply));
    let out = tmp.path().join("critique.jsonl");
    let model = format!("server:{}(model=critic)", mock.url);
    let args = ["imagine", "critique", "--corpus", corpus.to_str().unwrap(), "--model", &model, "--out"];
    let o = run(&[&args[..], &[out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "critique failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "one line per episode");
    // Round 1: 4 requests, 2 valid; round 2: the 2 others, 1 valid; round 3: the last, valid.
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 revised, 3 invalid outputs retried, 0 left unrevised"));
    assert_eq!(mock.requests().len(), 7);
    let rows: Vec<Value> = common::shards(&corpus)
        .iter()
        .flat_map(|(_, b)| String::from_utf8(b.clone()).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    for (l, row) in lines.iter().zip(&rows) {
        assert_eq!(l["episode"], row["episode"]);
        assert_eq!(l["original"], row["messages"], "the original is kept verbatim");
        assert_eq!(l["critique"], "it asked too much.");
        assert_eq!(l["revised"][0]["content"], "Is it a dog?");
        assert_eq!(l["revised"][1]["role"], "persona");
    }
    let retried = lines.iter().filter(|l| l["raw"].as_array().unwrap().len() > 1).count();
    assert_eq!(retried, 2, "two dialogues needed a retry");

    // A critic that never complies: every dialogue is retried, counted, kept unrevised.
    let mock = Mock::start(Box::new(|_, _| (200, completion("No."))));
    let model = format!("server:{}(model=critic)", mock.url);
    let o = run(&[&args[..4], &["--model", &model, "--episodes", "2", "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "critique failed:\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 revised, 6 invalid outputs retried, 2 left unrevised"));
    assert_eq!(mock.requests().len(), 6, "2 dialogues x 3 rounds");
}
