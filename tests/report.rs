//! `dialogym report`: the page is parsed with an HTML parser (Python's html.parser, through
//! `scripts/check_report.py`) and every section, plot and transcript pair is checked; the
//! page renders in headless Chromium without network (`scripts/render_report.sh`) to a
//! screenshot that is not blank; bad inputs get one clear line.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::run;
use serde_json::Value;

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Two corpora of learned agents (BC and ILQL) on the same episodes, the greedy corpus they
/// learned from, both training runs and an evaluation JSON file.
fn fixture(root: &Path) -> Vec<PathBuf> {
    let p = |n: &str| root.join(n).to_str().unwrap().to_string();
    ok(&["generate", "--agent", "eps-greedy(eps=0.5)", "--episodes", "60", "--seed", "3", "--out", &p("data")]);
    for algo in ["bc", "ilql"] {
        ok(&["train", "--corpus", &p("data"), "--algo", algo, "--steps", "40", "--out", &p(algo)]);
        let agent = format!("learned:{}", p(algo));
        ok(&["generate", "--agent", &agent, "--episodes", "12", "--seed", "9", "--out", &p(&format!("eval-{algo}"))]);
    }
    ok(&["eval", "--agent", "random", "--episodes", "20", "--json", &p("random.json")]);
    ["data", "bc", "ilql", "eval-bc", "eval-ilql", "random.json"].iter().map(|n| root.join(n)).collect()
}

fn report(inputs: &[PathBuf], out: &Path) {
    let mut args = vec!["report".to_string()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap().to_string()));
    args.extend(["--out".to_string(), out.to_str().unwrap().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
}

fn parse(html: &Path) -> Value {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_report.py"))
        .arg(html)
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success(), "check_report.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn plots(v: &Value, section: &str) -> Vec<Value> {
    v["sections"][section]["plots"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_report_has_every_section_plot_and_transcript_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = fixture(tmp.path());
    let html = tmp.path().join("out/report.html");
    report(&inputs, &html);
    let v = parse(&html);
    let order: Vec<&str> = v["order"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(order, dialogym::report::SECTIONS, "sections, in order");
    assert_eq!(v["errors"], Value::Array(vec![]), "badly nested tags");
    assert_eq!(v["unclosed"], Value::Array(vec![]), "unclosed tags");
    assert_eq!(v["external"], Value::Array(vec![]), "the page must load nothing from elsewhere");
    for id in dialogym::report::SECTIONS {
        assert!(!v["sections"][id]["h2"].as_str().unwrap().is_empty(), "section {id} has no heading");
    }

    // The agents table: every agent of the corpora and of the evaluation file.
    let rows = v["agent_rows"].as_array().unwrap();
    let agents: Vec<&str> = rows.iter().skip(1).map(|r| r[1].as_str().unwrap()).collect();
    assert!(agents.contains(&"eps-greedy(eps=0.5)"), "{agents:?}");
    assert!(agents.contains(&"random"), "the evaluation file's agent: {agents:?}");
    assert!(agents.iter().any(|a| a.starts_with("learned:") && a.ends_with("ilql")), "{agents:?}");
    assert_eq!(agents.len(), 4, "{agents:?}");
    for r in rows.iter().skip(1) {
        assert!(r[4].as_str().unwrap().contains('±'), "return with its interval: {r:?}");
    }

    // One plot each for returns and success, drawn with lines and labelled.
    for id in ["returns", "success"] {
        let p = plots(&v, id);
        assert_eq!(p.len(), 1, "{id}: {p:?}");
        assert_eq!(p[0]["svg"], 1);
        assert!(p[0]["paths"].as_u64().unwrap() > 10, "{id}: an empty chart: {p:?}");
        assert!(p[0]["texts"].as_u64().unwrap() > 5, "{id}: no axis labels: {p:?}");
    }
    // Learning curves: losses and Q/V for each of the two training runs.
    let learning = plots(&v, "learning");
    let classes: Vec<&str> = learning.iter().map(|p| p["class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["plot losses", "plot values", "plot losses", "plot values"]);
    assert!(learning.iter().all(|p| p["svg"] == 1 && p["paths"].as_u64().unwrap() > 10));

    // Transcripts: BC and ILQL on the same secrets, side by side; every message a row.
    let pairs = v["sections"]["transcripts"]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3, "three pairs of the same episodes: {pairs:?}");
    for p in pairs {
        let tables = p.as_array().unwrap();
        assert_eq!(tables.len(), 2, "two transcripts side by side: {p:?}");
        assert!(tables.iter().all(|t| t.as_u64().unwrap() >= 2), "header plus at least one message: {p:?}");
    }
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("learned bc against learned ilql"), "the pair is BC and ILQL");
    assert!(text.contains("question: "), "agent utterances are read back as bank questions");
    // Manifests: the corpus's command and the training config.
    assert!(text.contains("dialogym generate --agent eps-greedy(eps=0.5) --episodes 60"));
    assert!(text.contains("&quot;algo&quot;: &quot;ilql&quot;"));

    // The page depends only on its inputs: written again, the same bytes.
    let again = tmp.path().join("again.html");
    report(&inputs, &again);
    assert_eq!(std::fs::read(&html).unwrap(), std::fs::read(&again).unwrap(), "same inputs, same bytes");
}

#[test]
fn the_report_renders_in_headless_chromium_without_network() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = fixture(tmp.path());
    let html = tmp.path().join("report.html");
    report(&inputs, &html);
    let png = tmp.path().join("report.png");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/render_report.sh"))
        .args([&html, &png])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render_report.sh failed (scripts/test installs chromium): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_png.py"))
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "check_png.py: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(1280), Some(2000)), "{v}");
    // A blank page is one colour; the report has text (dark), tables and coloured curves.
    assert!(v["non_background"].as_f64().unwrap() > 0.03, "mostly blank: {v}");
    assert!(v["dark"].as_f64().unwrap() > 0.002, "no text: {v}");
    assert!(v["colours"].as_u64().unwrap() > 30, "too few colours for text and plots: {v}");
}

#[test]
fn bad_inputs_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = tmp.path().join("r.html");
    let o = out.to_str().unwrap();
    let check = |args: &[&str], needle: &str| {
        let r = run(args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: stderr lacks `{needle}`: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    check(&["report", empty.to_str().unwrap(), "--out", o], "found no corpus");
    check(&["report", tmp.path().join("nope").to_str().unwrap(), "--out", o], "no such file or folder");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "[{\"agent\": 3}").unwrap();
    check(&["report", bad.to_str().unwrap(), "--out", o], "bad.json:1:");
    // A training run whose metrics file was cut mid-line.
    let run_dir = tmp.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::write(run_dir.join("config.json"), "{}").unwrap();
    std::fs::write(run_dir.join("metrics.jsonl"), "{\"step\": 50, \"losses\": {}}\n{\"step\": 10").unwrap();
    check(&["report", run_dir.to_str().unwrap(), "--out", o], "metrics.jsonl:2: not a metrics line");
    assert!(!out.exists(), "no page is written from bad inputs");
}
