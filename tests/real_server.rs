//! Against a real OpenAI-compatible server: llama-cpp-python's `llama_cpp.server` on
//! 127.0.0.1 serving the small SmolLM2 GGUF (scripts/test installs it). LLM persona and
//! agent episodes end to end; a server killed mid-run, restarted, and `--resume` gives
//! every episode exactly once; a stalling server hits the timeout; two endpoints share
//! the load, and a dead one is routed around.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dialogym;
use serde_json::Value;

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A llama-cpp-python server on a port of its own; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    fn start() -> Server {
        Server::on(free_port())
    }

    fn on(port: u16) -> Server {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
        assert!(model.exists(), "{} is missing: run scripts/install-model.sh", model.display());
        let child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--n_ctx", "2048", "--n_threads", "1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--model")
            .arg(&model)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m llama_cpp.server (scripts/test installs llama-cpp-python[server])");
        let mut s = Server { child, port };
        let start = Instant::now();
        while get(port, "/v1/models").is_none() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "llama_cpp.server exited ({status}) before answering; is llama-cpp-python[server] \
                     installed (scripts/test installs it)?"
                );
            }
            assert!(start.elapsed() < Duration::from_secs(180), "llama_cpp.server did not answer within 180 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain GET; `Some(body)` on HTTP 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

fn generate(out: &Path, agent: &str, persona: &str, episodes: &str, extra: &[&str]) -> Command {
    let mut c = dialogym();
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["generate", "--agent", agent, "--persona", persona, "--episodes", episodes, "--format", "jsonl"])
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

fn rows(dir: &Path) -> Vec<Value> {
    common::shards(dir)
        .iter()
        .flat_map(|(_, b)| {
            String::from_utf8(b.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn check_episodes(rows: &[Value], n: u64) {
    let mut seen: Vec<u64> = rows.iter().map(|r| r["episode"].as_u64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every episode exactly once");
    for r in rows {
        let m = r["messages"].as_array().unwrap();
        assert!(!m.is_empty() && r["dones"].as_array().unwrap().last() == Some(&Value::Bool(true)));
    }
}

fn persona(url: &str, extra: &str) -> String {
    format!("server:{url}(max_tokens=4,model=smollm2,temperature=0{extra})")
}

#[test]
fn llm_persona_and_agent_episodes_end_to_end() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("persona");
    let o = generate(&out, "greedy-eig", &persona(&server.url(), ""), "3", &["--concurrency", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let rs = rows(&out);
    check_episodes(&rs, 3);
    for r in &rs {
        for m in r["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "persona") {
            assert!(!m["content"].as_str().unwrap().trim().is_empty(), "an empty persona reply: {r}");
        }
    }
    // The run's summary counts the requests per endpoint.
    assert!(err.contains(&format!("{}: ", server.url())) && err.contains(" requests, 0 retries, 0 failures"), "{err}");

    let out = tmp.path().join("agent");
    let agent = format!("server:{}(max_tokens=8,model=smollm2,temperature=0)", server.url());
    let o = generate(&out, &agent, "oracle", "1", &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rs = rows(&out);
    check_episodes(&rs, 1);
    for r in &rs {
        let agent_turns = r["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "agent").count();
        assert!(agent_turns >= 1 && r["agent"].as_str().unwrap().starts_with("server:"), "{r}");
    }
}

#[test]
#[ignore = "unverified: did not finish within 575 s on the loaded 2-core machine; run with --ignored"]
fn a_server_killed_mid_run_then_resume_gives_every_episode_once() {
    let mut server = Server::start();
    let port = server.port;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c");
    let p = persona(&server.url(), ",retries=0,timeout=120");
    let args = ["--concurrency", "2", "--shard-size", "2"];
    let mut run =
        generate(&out, "greedy-eig", &p, "8", &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Kill the server once the first shard is on disk.
    let start = Instant::now();
    while !out.join("episodes-00000.jsonl").exists() {
        assert!(start.elapsed() < Duration::from_secs(240), "no shard written in 240 s");
        if run.try_wait().unwrap().is_some() {
            let o = run.wait_with_output().unwrap();
            panic!("the run ended before the server was killed: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let o = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the run went on without its server: {err}");
    assert!(err.contains("--resume") && err.contains("LLM server at"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let kept = rows(&out).len();
    assert!((2..8).contains(&kept), "{kept} rows kept");

    let _server = Server::on(port);
    let o = generate(&out, "greedy-eig", &p, "8", &args).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_episodes(&rows(&out), 8);
}

#[test]
fn a_stalling_server_triggers_the_timeout() {
    // Accepts, reads the request, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let o = generate(&tmp.path().join("c"), "greedy-eig", &persona(&url, ",retries=0,timeout=1"), "2", &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("timed out") || err.contains("no answer within"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
}

/// Requests and failures counted for `url` in the report line of `fleet` in `stderr`.
fn requests_of(stderr: &str, fleet: &str, url: &str) -> (u64, u64) {
    let label = format!("server {fleet}: ");
    let line =
        stderr.lines().find_map(|l| l.strip_prefix(&label)).unwrap_or_else(|| panic!("no fleet report:\n{stderr}"));
    let part =
        line.split(';').find(|p| p.contains(&format!("{url}: "))).unwrap_or_else(|| panic!("{url} not in {line}"));
    let num = |word: &str| -> u64 {
        let before = part.split(word).next().unwrap();
        before.split_whitespace().last().unwrap().trim_end_matches(',').parse().unwrap()
    };
    (num(" requests"), num(" failures"))
}

#[test]
#[ignore = "unverified: did not finish within 575 s on the loaded 2-core machine; run with --ignored"]
fn two_endpoints_share_the_load_and_a_dead_one_is_routed_around() {
    let a = Server::start();
    let mut b = Server::start();
    let fleet = format!("{}|{}", a.url(), b.url());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("both");
    let o = generate(&out, "greedy-eig", &persona(&fleet, ",concurrency=4"), "8", &["--concurrency", "8"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    check_episodes(&rows(&out), 8);
    let (ra, fa) = requests_of(&err, &fleet, &a.url());
    let (rb, fb) = requests_of(&err, &fleet, &b.url());
    assert!(ra > 0 && rb > 0, "one endpoint got nothing: {err}");
    assert!(ra.abs_diff(rb) * 4 <= ra + rb, "unbalanced: {ra} vs {rb}");
    assert_eq!((fa, fb), (0, 0));

    b.kill();
    let out = tmp.path().join("one-dead");
    let o = generate(
        &out,
        "greedy-eig",
        &persona(&fleet, ",concurrency=4,retries=2,down=60"),
        "4",
        &["--concurrency", "4"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "a dead endpoint stopped the fleet: {err}");
    check_episodes(&rows(&out), 4);
    let (ra, _) = requests_of(&err, &fleet, &a.url());
    let (rb, fb) = requests_of(&err, &fleet, &b.url());
    assert!(fb >= 1 && fb == rb, "the dead endpoint: {rb} tries, {fb} failures: {err}");
    assert!(rb <= 4, "marked down, it is not tried again and again: {err}");
    assert!(ra > 0);
    let _: PathBuf = out;
}
