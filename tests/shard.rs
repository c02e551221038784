//! Sharded generation (`generate --shard I/N`) and `corpus merge`, through the binary:
//! 4 shard processes merged give the one-process corpus byte for byte; a re-run or resumed
//! part writes the same bytes; the merged Parquet loads with Hugging Face `datasets`;
//! every bad merge is refused with a line naming the cause.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::dialogym;
use sha2::{Digest, Sha256};

const AGENT: &str = "mix:greedy-eig@0.5,random(guess=0.1)@0.3,eps-greedy(eps=0.3)@0.2";
const PERSONA: &str = "oracle(slip=0.05)";

/// `generate` in `cwd` into the relative folder `out`, with extra arguments.
fn generate(cwd: &Path, out: &str, seed: &str, extra: &[&str]) -> Command {
    std::fs::create_dir_all(cwd).unwrap();
    let mut c = dialogym();
    c.current_dir(cwd)
        .args(["generate", "--agent", AGENT, "--persona", PERSONA, "--episodes", "1000", "--shard-size", "90"])
        .args(["--seed", seed, "--concurrency", "64", "--out", out])
        .args(extra);
    for v in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "RANK"] {
        c.env_remove(v);
    }
    c
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fails(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "not one line:\n{err}");
    fails_flag(out, needle);
}

/// A flag clap refuses: its error line, then clap's "For more information" hint.
fn fails_flag(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded, expected `{needle}`");
    assert!(err.lines().next().unwrap_or("").contains(needle), "first line of stderr lacks `{needle}`:\n{err}");
    assert!(!err.contains("panicked"), "panicked:\n{err}");
}

/// sha256 of every file under `dir` (recursively), by relative path.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, format!("{:x}", Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn merge(cwd: &Path, out: &str, parts: &[&Path]) -> Output {
    std::fs::create_dir_all(cwd).unwrap();
    dialogym().current_dir(cwd).args(["corpus", "merge", out]).args(parts).output().unwrap()
}

/// Four parts played by four processes at once (two told their index by the scheduler's
/// variables), merged in any order.
fn four_parts(root: &Path, seed: &str) -> Vec<std::path::PathBuf> {
    let cwd = root.join("parts");
    let children: Vec<_> = (0..4)
        .map(|i| {
            let out = format!("p{i}");
            let mut c = match i {
                1 => {
                    let mut c = generate(&cwd, &out, seed, &["--shard", "auto/4"]);
                    c.env("SLURM_ARRAY_TASK_ID", "1");
                    c
                }
                3 => {
                    let mut c = generate(&cwd, &out, seed, &["--shard", "auto/4"]);
                    c.env("JOB_COMPLETION_INDEX", "3");
                    c
                }
                _ => generate(&cwd, &out, seed, &["--shard", &format!("{i}/4")]),
            };
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        ok(c.wait_with_output().unwrap());
    }
    (0..4).map(|i| cwd.join(format!("p{i}"))).collect()
}

#[test]
fn four_shard_processes_merge_into_the_one_process_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(generate(&root.join("single"), "corpus", "5", &[]).output().unwrap());
    let parts = four_parts(root, "5");
    // Round-robin: 12 shards of 90 (the last of 10), three per part.
    for (i, p) in parts.iter().enumerate() {
        let names: Vec<String> = digests(p).into_keys().filter(|n| n.ends_with(".jsonl")).collect();
        let want: Vec<String> = (0..12).filter(|k| k % 4 == i).map(|k| format!("episodes-{k:05}.jsonl")).collect();
        assert_eq!(names, want, "part {i}");
    }
    let order = [&parts[2], &parts[0], &parts[3], &parts[1]].map(|p| p.as_path());
    ok(merge(&root.join("merged"), "corpus", &order));

    let single = digests(&root.join("single/corpus"));
    let merged = digests(&root.join("merged/corpus"));
    assert_eq!(single.len(), 25, "12 shards × 2 formats + manifest");
    for (name, digest) in &single {
        assert_eq!(merged.get(name), Some(digest), "{name} differs from the one-process run");
    }
    // The Hugging Face layout: the same Parquet bytes under data/, and a card.
    for k in 0..12 {
        let hf = format!("data/train-{k:05}-of-00012.parquet");
        assert_eq!(merged.get(&hf), single.get(&format!("episodes-{k:05}.parquet")), "{hf}");
    }
    assert!(merged.contains_key("README.md"));
    assert_eq!(merged.len(), single.len() + 13);

    // The merged corpus reads like any other.
    let eval = ok(dialogym().args(["eval", "--corpus"]).arg(root.join("merged/corpus")).output().unwrap());
    assert!(String::from_utf8_lossy(&eval.stdout).contains("greedy-eig"));
}

#[test]
fn a_rerun_or_resumed_part_writes_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let first = root.join("a");
    ok(generate(&first, "part", "9", &["--shard", "2/4"]).output().unwrap());
    let before = digests(&first.join("part"));
    assert_eq!(before.len(), 7, "shards 2, 6, 10 × 2 formats + manifest");
    // A replaced pod: the same command elsewhere, its index from the scheduler.
    let mut again = generate(&root.join("b"), "part", "9", &["--shard", "auto/4"]);
    again.env("RANK", "2");
    ok(again.output().unwrap());
    let b = digests(&root.join("b/part"));
    for (name, d) in &before {
        if name != "manifest.json" {
            assert_eq!(b.get(name), Some(d), "{name}");
        }
    }
    // --resume replays the missing shard of this part only.
    std::fs::remove_file(first.join("part/episodes-00006.jsonl")).unwrap();
    std::fs::remove_file(first.join("part/episodes-00006.parquet")).unwrap();
    let out = ok(generate(&first, "part", "9", &["--shard", "2/4", "--resume"]).output().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrote 90 episodes") && err.contains("2 shards kept"), "{err}");
    assert_eq!(digests(&first.join("part")), before);
    // Another part in the same folder is another config.
    fails(generate(&first, "part", "9", &["--shard", "1/4", "--resume"]).output().unwrap(), "made with another config");
}

#[test]
fn the_merged_parquet_loads_with_hugging_face_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let parts = four_parts(root, "3");
    let refs: Vec<&Path> = parts.iter().map(|p| p.as_path()).collect();
    ok(merge(root, "merged", &refs));
    let corpus = root.join("merged");
    let first = std::fs::read_to_string(corpus.join("episodes-00000.jsonl")).unwrap();
    let row0: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let script = r#"
import json, sys, datasets
ds = datasets.load_dataset(sys.argv[1])
train = ds["train"]
out = {
    "splits": sorted(ds.keys()),
    "rows": train.num_rows,
    "columns": train.column_names,
    "episodes_sorted": train["episode"] == list(range(train.num_rows)),
    "features": {k: str(v) for k, v in train.features.items()},
    "row0": {k: train[0][k] for k in ["episode", "seed", "run_id", "agent", "messages", "rewards", "dones", "return", "success", "turns"]},
}
print(json.dumps(out))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&corpus).output().expect("python3");
    assert!(
        out.status.success(),
        "datasets.load_dataset failed (scripts/test installs datasets):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        !warnings.contains("Ignoring") && !warnings.contains("malformed"),
        "the card was not read whole:\n{warnings}"
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["splits"], serde_json::json!(["train"]));
    assert_eq!(got["rows"], 1000);
    assert_eq!(got["episodes_sorted"], true);
    let columns: Vec<String> = serde_json::from_value(got["columns"].clone()).unwrap();
    let schema: Vec<String> =
        dialogym::engine::corpus::arrow_schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(columns, schema);
    let features = got["features"].to_string();
    // The card's features: unsigned ints as written, messages a list of structs.
    assert!(features.contains("uint64") && features.contains("List({'role'"), "{features}");
    for k in ["episode", "seed", "run_id", "agent", "messages", "rewards", "dones", "return", "success", "turns"] {
        assert_eq!(got["row0"][k], row0[k], "column {k} of episode 0");
    }
}

#[test]
fn bad_shards_and_bad_merges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cwd = root.join("x");
    fails(generate(&cwd, "o", "0", &["--shard", "auto/4"]).output().unwrap(), "none of SLURM_ARRAY_TASK_ID");
    let mut c = generate(&cwd, "o", "0", &["--shard", "auto/4"]);
    c.env("SLURM_ARRAY_TASK_ID", "4");
    fails(c.output().unwrap(), "SLURM_ARRAY_TASK_ID=4 is not below 4");
    fails_flag(generate(&cwd, "o", "0", &["--shard", "4/4"]).output().unwrap(), "I must be below N");
    fails_flag(generate(&cwd, "o", "0", &["--shard", "two/4"]).output().unwrap(), "I must be a whole number");
    fails_flag(generate(&cwd, "o", "0", &["--shard", "4"]).output().unwrap(), "is not I/N or auto/N");
    fails(generate(&cwd, "o", "0", &["--shard", "0/20"]).output().unwrap(), "the run has only 12 shards");
    assert!(!cwd.join("o").exists(), "a refused run leaves nothing behind");

    let parts = four_parts(root, "0");
    let p = |i: usize| parts[i].as_path();
    fails(dialogym().args(["eval", "--corpus"]).arg(p(0)).output().unwrap(), "part 0/4 of a sharded run");
    fails(merge(root, "m", &[p(0), p(1), p(3)]), "(is part 2/4 missing from the arguments?)");
    fails(merge(root, "m", &[p(0), p(1), p(2), p(3), p(1)]), "is given twice");
    // Another run's part.
    let other = root.join("other");
    ok(generate(&other, "p2", "1", &["--shard", "2/4"]).output().unwrap());
    fails(merge(root, "m", &[p(0), p(1), &other.join("p2"), p(3)]), "not a part of the same run");
    fails(merge(root, "m", &[p(0), p(1), &other.join("p2"), p(3)]), "(seed 1 vs 0)");
    // A shard file of another run copied in.
    std::fs::copy(other.join("p2/episodes-00006.jsonl"), p(2).join("episodes-00006.jsonl")).unwrap();
    fails(merge(root, "m", &[p(0), p(1), p(2), p(3)]), "a file of another run was copied in");
    // An unfinished part.
    std::fs::remove_file(p(2).join("episodes-00006.jsonl")).unwrap();
    fails(merge(root, "m", &[p(0), p(1), p(2), p(3)]), "finish that job with `generate ... --resume`");
    // A shard in two parts.
    std::fs::copy(p(0).join("episodes-00000.jsonl"), p(1).join("episodes-00000.jsonl")).unwrap();
    std::fs::copy(p(0).join("episodes-00000.parquet"), p(1).join("episodes-00000.parquet")).unwrap();
    ok(generate(&root.join("parts"), "p2", "0", &["--shard", "2/4", "--resume"]).output().unwrap());
    fails(merge(root, "m", &[p(0), p(1), p(2), p(3)]), "(shard 0) are in both");
    std::fs::remove_file(p(1).join("episodes-00000.jsonl")).unwrap();
    std::fs::remove_file(p(1).join("episodes-00000.parquet")).unwrap();
    assert!(!root.join("m/manifest.json").exists(), "no refused merge wrote a manifest");
    ok(merge(root, "m", &[p(0), p(1), p(2), p(3)]));
    fails(merge(root, "m", &[p(0), p(1), p(2), p(3)]), "already holds a corpus");
}
