//! The corpus: deterministic bytes, crash-safe shards, resume after kill -9 and Ctrl-C,
//! and Parquet that other tools read.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{dialogym, shards};
use dialogym::engine::corpus::{Format, read_corpus};
use dialogym::generate::{GenerateArgs, generate};

fn args(out: &Path, concurrency: usize) -> GenerateArgs {
    GenerateArgs {
        scenario: "twenty-questions".into(),
        agent: "mix:random@1,eps-greedy(eps=0.3,slip=0.1)@1,greedy-eig@1".into(),
        persona: "oracle(slip=0.1)".into(),
        episodes: 700,
        seed: 11,
        concurrency,
        out: out.to_path_buf(),
        resume: false,
        shard_size: 256,
        formats: vec![Format::Jsonl, Format::Parquet],
        shard: None,
    }
}

#[test]
fn same_seed_same_bytes_whatever_the_concurrency() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let stop = AtomicBool::new(false);
    generate(&args(&a, 1), vec![], &stop, false).unwrap();
    generate(&args(&b, 256), vec![], &stop, false).unwrap();
    let sa = shards(&a);
    assert_eq!(sa.len(), 6, "3 shards × 2 formats");
    assert_eq!(sa, shards(&b));
    // The manifest (without the command) is identical too.
    assert_eq!(std::fs::read(a.join("manifest.json")).unwrap(), std::fs::read(b.join("manifest.json")).unwrap());
    // A different seed gives a different corpus.
    generate(&GenerateArgs { seed: 12, ..args(&c, 256) }, vec![], &stop, false).unwrap();
    assert_ne!(sa, shards(&c));
    let (_, rows) = read_corpus(&a).unwrap();
    assert_eq!(rows.len(), 700);
    assert!(rows.iter().enumerate().all(|(i, r)| r.episode == i as u64));
    // All three mixture components appear, with rows self-consistent.
    let agents: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.agent.as_str()).collect();
    assert_eq!(agents.len(), 3, "{agents:?}");
    for r in &rows {
        assert_eq!(r.ret, r.rewards.iter().sum::<f64>());
        assert!((-20.0..=0.0).contains(&r.ret));
        assert_eq!(r.dones.iter().filter(|&&d| d).count(), 1);
        assert_eq!(r.dones.last(), Some(&true));
    }
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Shards of `BIG` (16,000 episodes, 400 per shard).
const BIG_SHARDS: usize = 40;

const BIG: [&str; 10] = [
    "generate",
    "--episodes",
    "16000",
    "--shard-size",
    "400",
    "--format",
    "jsonl,parquet",
    "--persona",
    "oracle(slip=0.05)",
    "--seed=5",
];

fn interrupted_then_resumed(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (killed, clean) = (tmp.path().join("killed"), tmp.path().join("clean"));
    let killed_s = killed.to_str().unwrap();
    let child = dialogym()
        .args(BIG)
        .args(["--agent", "eps-greedy(eps=0.5)", "--out", killed_s])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&killed.join("episodes-00001.parquet"), Duration::from_secs(60));
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the run must not report success after {signal}");
    let partial = shards(&killed).len();
    assert!(partial < BIG_SHARDS * 2, "the run finished before it was interrupted; the test proves nothing");
    if signal == "-INT" {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(err.contains("--resume"), "{err}");
    }
    let resumed =
        dialogym().args(BIG).args(["--agent", "eps-greedy(eps=0.5)", "--out", killed_s, "--resume"]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let clean_run = dialogym()
        .args(BIG)
        .args(["--agent", "eps-greedy(eps=0.5)", "--out", clean.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(clean_run.status.success());
    let (a, b) = (shards(&killed), shards(&clean));
    assert_eq!(a.len(), BIG_SHARDS * 2, "jsonl and parquet per shard");
    assert!(a == b, "resumed corpus differs from an uninterrupted run");
    let (_, rows) = read_corpus(&killed).unwrap();
    assert_eq!(rows.len(), 16000, "no episode lost or written twice");
}

#[test]
fn resume_after_kill_9_is_byte_identical() {
    interrupted_then_resumed("-KILL");
}

#[test]
fn ctrl_c_keeps_complete_shards_and_says_how_to_resume() {
    interrupted_then_resumed("-INT");
}

#[test]
fn pyarrow_reads_the_parquet_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c");
    generate(
        &GenerateArgs { episodes: 300, shard_size: 128, ..args(&out, 64) },
        vec![],
        &AtomicBool::new(false),
        false,
    )
    .unwrap();
    let script = r#"
import json, sys, glob
import pyarrow.parquet as pq
d = sys.argv[1]
t = pq.read_table(sorted(glob.glob(d + "/episodes-*.parquet")))
rows = [json.loads(l) for f in sorted(glob.glob(d + "/episodes-*.jsonl")) for l in open(f)]
assert t.num_rows == len(rows) == 300, (t.num_rows, len(rows))
p = t.to_pylist()
for a, b in zip(p, rows):
    assert a["episode"] == b["episode"] and a["return"] == b["return"] and a["success"] == b["success"]
    assert [m["content"] for m in a["messages"]] == [m["content"] for m in b["messages"]]
    assert a["rewards"] == b["rewards"] and a["dones"] == b["dones"]
    assert json.loads(a["hidden"]) == b["hidden"]
print("ok", t.num_rows, t.schema.names)
"#;
    let py = std::process::Command::new("python3")
        .args(["-c", script, out.to_str().unwrap()])
        .output()
        .expect("python3 is needed for this test (.ci/run installs pyarrow)");
    assert!(
        py.status.success(),
        "pyarrow could not read the corpus: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}
