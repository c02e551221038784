//! `dialogym export`: TRL rows read back by Hugging Face `datasets` (JSONL and Parquet),
//! LMRL-Gym trajectories and trlx ILQL samples checked field by field against their
//! documented schema, on a corpus of every built-in scenario (and the example file).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::run;
use dialogym::engine::corpus::{EpisodeRecord, Format, Manifest, read_corpus, read_jsonl, shard_name};
use dialogym::engine::{Message, Role};
use dialogym::export::{ExportArgs, OutFormat, Target, export, read_parquet};
use dialogym::generate::{GenerateArgs, generate};
use serde_json::Value;

const SCENARIOS: &[&str] = &[
    "twenty-questions",
    "guess-my-city",
    "opinion-polling",
    "tutoring",
    "preference-elicitation",
    "examples/diagnose_the_fault.toml",
];

/// One small corpus per scenario, with its main scripted agent and persona.
fn corpora(root: &Path, formats: Vec<Format>) -> Vec<PathBuf> {
    SCENARIOS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let session = dialogym::session::load(s).unwrap();
            let (agents, personas) = session.cast_names();
            let out = root.join(format!("c{i}"));
            let args = GenerateArgs {
                scenario: s.to_string(),
                agent: format!("mix:{}@1,uniform@1", agents[0]),
                persona: personas[0].clone(),
                episodes: 30,
                seed: 5,
                concurrency: 16,
                out: out.clone(),
                resume: false,
                shard_size: 12,
                formats: formats.clone(),
                shard: None,
            };
            generate(&args, vec![], &AtomicBool::new(false), false).unwrap();
            out
        })
        .collect()
}

fn brief(scenario: &str) -> String {
    dialogym::session::load(scenario).unwrap().agent_brief()
}

fn python(script: &str, args: &[&Path]) -> Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for this test (scripts/test installs datasets)");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const LOAD_WITH_DATASETS: &str = r#"
import json, sys
from datasets import load_dataset
out = []
for kind, path in json.load(open(sys.argv[1])):
    ds = load_dataset(kind, data_files=path, split="train", cache_dir=sys.argv[2])
    out.append({"columns": ds.column_names, "rows": ds.to_list()})
print(json.dumps(out))
"#;

fn export_to(corpus: &Path, to: Target, out: &Path, per_turn: bool) {
    let args = ExportArgs { corpus: corpus.into(), to, out: out.into(), format: None, per_turn };
    export(&args, &AtomicBool::new(false)).unwrap();
}

fn chat(m: &Value) -> (String, String) {
    (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string())
}

fn expected_chat(r: &EpisodeRecord, upto: usize) -> Vec<(String, String)> {
    std::iter::once(("system".to_string(), brief(&r.scenario)))
        .chain(r.messages[..upto].iter().map(|m| {
            let role = if m.role == Role::Agent { "assistant" } else { "user" };
            (role.to_string(), m.content.clone())
        }))
        .collect()
}

/// Per agent turn: (message index, reward up to the next action, reward-to-go).
fn turns(r: &EpisodeRecord) -> Vec<(usize, f64, f64)> {
    let idx: Vec<usize> = (0..r.messages.len()).filter(|&i| r.messages[i].is_action).collect();
    idx.iter()
        .enumerate()
        .map(|(n, &i)| {
            let end = idx.get(n + 1).copied().unwrap_or(r.messages.len());
            (i, r.rewards[i..end].iter().sum(), r.rewards[i..].iter().sum())
        })
        .collect()
}

/// Equal JSON, numbers to 1e-12 relative.
fn approx_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| approx_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| approx_eq(v, w)))
        }
        _ => a == b,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn trl_rows_load_in_hugging_face_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = corpora(tmp.path(), vec![Format::Jsonl]);
    // Every export first, then one Python process loads them all (importing datasets is slow).
    let mut files: Vec<(usize, &str, bool, PathBuf)> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        for (ext, kind) in [("jsonl", "json"), ("parquet", "parquet")] {
            for per_turn in [false, true] {
                let out = tmp.path().join(format!("trl{i}-{per_turn}.{ext}"));
                export_to(dir, Target::Trl, &out, per_turn);
                files.push((i, kind, per_turn, out));
            }
        }
    }
    let list = tmp.path().join("files.json");
    let spec: Vec<Value> = files.iter().map(|(_, k, _, p)| serde_json::json!([k, p])).collect();
    std::fs::write(&list, serde_json::to_string(&spec).unwrap()).unwrap();
    let loaded = python(LOAD_WITH_DATASETS, &[&list, &tmp.path().join("hf-cache")]);
    for ((i, _, per_turn, out), got) in files.iter().zip(loaded.as_array().unwrap()) {
        let (_, rows) = read_corpus(&dirs[*i]).unwrap();
        let cols: Vec<&str> = got["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let got = got["rows"].as_array().unwrap();
        if !per_turn {
            for c in ["messages", "reward", "return", "success", "scenario", "episode"] {
                assert!(cols.contains(&c), "{}: column {c} missing in {cols:?}", out.display());
            }
            assert_eq!(got.len(), rows.len(), "{}", out.display());
            for (g, r) in got.iter().zip(&rows) {
                let msgs: Vec<_> = g["messages"].as_array().unwrap().iter().map(chat).collect();
                assert_eq!(msgs, expected_chat(r, r.messages.len()), "{} episode {}", out.display(), r.episode);
                assert!(close(g["reward"].as_f64().unwrap(), r.ret));
                assert!(close(g["return"].as_f64().unwrap(), r.ret));
                assert_eq!(g["success"].as_bool().unwrap(), r.success);
                assert_eq!(g["episode"].as_u64().unwrap(), r.episode);
            }
            continue;
        }
        for c in ["prompt", "completion", "reward", "return", "done", "turn"] {
            assert!(cols.contains(&c), "{}: column {c} missing in {cols:?}", out.display());
        }
        let want: Vec<(&EpisodeRecord, usize, (usize, f64, f64))> =
            rows.iter().flat_map(|r| turns(r).into_iter().enumerate().map(move |(n, t)| (r, n, t))).collect();
        assert_eq!(got.len(), want.len(), "{}: one row per agent turn", out.display());
        for (g, (r, n, (i, reward, to_go))) in got.iter().zip(want) {
            let prompt: Vec<_> = g["prompt"].as_array().unwrap().iter().map(chat).collect();
            assert_eq!(prompt, expected_chat(r, i));
            let completion: Vec<_> = g["completion"].as_array().unwrap().iter().map(chat).collect();
            assert_eq!(completion, vec![("assistant".to_string(), r.messages[i].content.clone())]);
            assert!(close(g["reward"].as_f64().unwrap(), reward));
            assert!(close(g["return"].as_f64().unwrap(), to_go));
            assert_eq!(g["turn"].as_u64().unwrap(), n as u64);
            let last = n + 1 == r.turns as usize;
            assert_eq!(g["done"].as_bool().unwrap(), last, "done only after the last action");
        }
    }
}

#[test]
fn lmrl_trajectories_follow_text_trajectory() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = corpora(tmp.path(), vec![Format::Jsonl]);
    for (i, dir) in dirs.iter().enumerate() {
        let (_, rows) = read_corpus(dir).unwrap();
        let out = tmp.path().join(format!("lmrl{i}.jsonl"));
        export_to(dir, Target::Lmrl, &out, false);
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), rows.len());
        for (g, r) in lines.iter().zip(&rows) {
            // LLM_RL.environment: TextTrajectory(text_history: Tuple[Text, ...], reward: Tuple[float, ...], done: bool)
            // with Text(text: str, is_action: bool); its __post_init__ asserts one reward
            // per text and 0.0 on every non-action.
            let history = g["text_history"].as_array().unwrap();
            let reward: Vec<f64> = g["reward"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert_eq!(history.len(), r.messages.len() + 1, "the brief, then every message");
            assert_eq!(reward.len(), history.len());
            assert_eq!(history[0], serde_json::json!([brief(&r.scenario), false]));
            for (h, m) in history[1..].iter().zip(&r.messages) {
                let pair = h.as_array().unwrap();
                assert_eq!(pair.len(), 2);
                assert_eq!(pair[0].as_str().unwrap(), m.content);
                assert_eq!(pair[1].as_bool().unwrap(), m.is_action);
            }
            for (h, x) in history.iter().zip(&reward) {
                if !h[1].as_bool().unwrap() {
                    assert_eq!(*x, 0.0, "reward on a non-action");
                }
            }
            let per_action: Vec<f64> = turns(r).iter().map(|t| t.1).collect();
            let got: Vec<f64> =
                history.iter().zip(&reward).filter(|(h, _)| h[1].as_bool().unwrap()).map(|(_, x)| *x).collect();
            assert_eq!(got, per_action);
            assert!(close(reward.iter().sum(), r.ret));
            assert_eq!(g["done"].as_bool().unwrap(), *r.dones.last().unwrap());
        }
    }
}

#[test]
fn trlx_samples_alternate_prompt_and_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = corpora(tmp.path(), vec![Format::Jsonl]);
    for (i, dir) in dirs.iter().enumerate() {
        let (_, rows) = read_corpus(dir).unwrap();
        let out = tmp.path().join(format!("trlx{i}.json"));
        export_to(dir, Target::Trlx, &out, false);
        let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let samples = v["samples"].as_array().unwrap();
        let rewards = v["rewards"].as_array().unwrap();
        assert_eq!(samples.len(), rows.len());
        assert_eq!(rewards.len(), rows.len(), "trlx.train: one reward per sample");
        for ((s, x), r) in samples.iter().zip(rewards).zip(&rows) {
            let s: Vec<&str> = s.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            // trlx's tokenize_dialogue: an even number of phrases, prompt first.
            assert_eq!(s.len() % 2, 0);
            assert_eq!(s[0], brief(&r.scenario));
            let last = r.messages.iter().rposition(|m| m.is_action).unwrap();
            let want: Vec<&str> = r.messages[..=last].iter().map(|m| m.content.as_str()).collect();
            assert_eq!(&s[1..], &want[..]);
            for (k, t) in s.iter().enumerate().skip(1) {
                let m: &Message = &r.messages[k - 1];
                assert_eq!(m.is_action, k % 2 == 1, "outputs are the agent's, prompts the persona's");
                assert_eq!(*t, m.content);
            }
            assert!(close(x.as_f64().unwrap(), r.ret));
        }
    }
}

#[test]
fn parquet_only_corpora_export_like_jsonl_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let both = corpora(&tmp.path().join("both"), vec![Format::Jsonl, Format::Parquet]);
    let pq = corpora(&tmp.path().join("pq"), vec![Format::Parquet]);
    for (a, b) in both.iter().zip(&pq) {
        let m = Manifest::load(a).unwrap();
        let mut from_parquet: BTreeMap<u64, EpisodeRecord> = BTreeMap::new();
        for k in 0..m.shards() {
            let mut jsonl = Vec::new();
            read_jsonl(&a.join(shard_name(k, Format::Jsonl)), &mut jsonl).unwrap();
            let parquet = read_parquet(&a.join(shard_name(k, Format::Parquet))).unwrap();
            // Parquet keeps floats bit-exact; serde_json's parser may land one ulp off.
            let (pv, jv) = (serde_json::to_value(&parquet).unwrap(), serde_json::to_value(&jsonl).unwrap());
            assert!(approx_eq(&pv, &jv), "{}: shard {k} reads back otherwise from Parquet", a.display());
            from_parquet.extend(parquet.into_iter().map(|r| (r.episode, r)));
        }
        assert_eq!(from_parquet.len() as u64, m.episodes);
        let (x, y) = (tmp.path().join("x.jsonl"), tmp.path().join("y.jsonl"));
        export_to(a, Target::Trl, &x, true);
        export_to(b, Target::Trl, &y, true);
        // The same rows but for `run_id` (it hashes the formats of the run).
        let rows = |p: &Path| -> Vec<Value> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("run_id");
                    v
                })
                .collect()
        };
        let (rx, ry) = (rows(&x), rows(&y));
        assert_eq!(rx.len(), ry.len());
        assert!(
            approx_eq(&Value::Array(rx), &Value::Array(ry)),
            "{}: the Parquet-only corpus exports other rows",
            b.display()
        );
    }
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = corpora(tmp.path(), vec![Format::Jsonl]);
    let dir = dirs[0].to_str().unwrap();
    let out = tmp.path().join("out.parquet");
    let o = run(&["export", "--corpus", dir, "--to", "lmrl", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Parquet output is for `trl` only"));
    // A truncated row names its file and line, and leaves no output behind.
    let shard = dirs[0].join(shard_name(1, Format::Jsonl));
    let text = std::fs::read_to_string(&shard).unwrap();
    std::fs::write(&shard, &text[..text.len() - 40]).unwrap();
    let out = tmp.path().join("trl.jsonl");
    let o = run(&["export", "--corpus", dir, "--to", "trl", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("episodes-00001.jsonl:12"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists() && !tmp.path().join("trl.jsonl.tmp").exists());
    // A missing shard.
    std::fs::remove_file(&shard).unwrap();
    let o = run(&["export", "--corpus", dir, "--to", "trlx", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("episodes-00001.jsonl: shard missing"));
    let _ = OutFormat::Jsonl;
}
