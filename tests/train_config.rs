//! `train` on bad settings and `learned:` on the wrong scenario, through the binary: a
//! non-zero exit, one line naming the setting (and the file), no panic, nothing written.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::run;

/// Runs dialogym; asserts failure, one line of stderr containing every needle, no panic.
fn one_line_error(args: &[&str], needles: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "{args:?} succeeded:\n{err}");
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
    err
}

fn corpus(dir: &Path, scenario: &str) {
    let out = run(&[
        "generate",
        "--scenario",
        scenario,
        "--episodes",
        "60",
        "--seed",
        "2",
        "--agent",
        "random",
        "--format",
        "jsonl",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_training_settings_are_one_line_errors_naming_the_setting_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("corpus");
    corpus(&c, "twenty-questions");
    let c = c.to_str().unwrap();
    let ck = tmp.path().join("ck");
    let o = ck.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (r#"{"gamma": 5}"#, &["gamma = 5", "[0, 1]"]),
        (r#"{"learners": {"ilql": {"tau": 7}}}"#, &["learners.ilql", "tau = 7", "(0, 1)"]),
        (r#"{"learners": {"filtered-bc": {"filter_fraction": -3}}}"#, &["filter_fraction = -3", "(0, 1]"]),
        (r#"{"stepz": 10}"#, &["unknown field `stepz`"]),
        (r#"{"learners": {"ilql": {"taux": 0.5}}}"#, &["learners.ilql", "unknown field `taux`"]),
        (r#"{"learners": {"dqn": {}}}"#, &["unknown learner `dqn`"]),
        (r#"{"steps": 0}"#, &["steps = 0", "1.."]),
        (r#"{"steps": -4}"#, &["-4"]),
        (r#"{"model": {"hidden": 0}}"#, &["model.hidden = 0"]),
        (r#"{"model": {"state_layers": 0}}"#, &["model.state_layers = 0"]),
        (r#"{"featurizer": {"state_bits": 40, "action_bits": 12}}"#, &["featurizer.state_bits = 40", "1..=24"]),
        (r#"{"featurizer": {"state_bits": 24, "action_bits": 24}}"#, &["embedding tables", "1 GiB"]),
        (r#"{"batch_size": 100000000}"#, &["batch_size = 100000000", "65536"]),
        (r#"{"optimizer": {"lr": -1}}"#, &["optimizer.lr = -1"]),
        (r#"{"learners": {"mc": {"cql_weight": -1}}}"#, &["learners.mc", "cql_weight = -1"]),
        (r#"{"lr_schedule": {"kind": "cosine", "final_ratio": 2}}"#, &["final_ratio = 2"]),
        (r#"[1, 2]"#, &["must be a JSON object"]),
        (r#"{"gamma": "#, &["cfg.json:1:"]),
    ];
    let cfg = tmp.path().join("cfg.json");
    let f = cfg.to_str().unwrap();
    for (text, needles) in cases {
        std::fs::write(&cfg, text).unwrap();
        let mut needles = needles.to_vec();
        needles.push("cfg.json");
        one_line_error(&["train", "--corpus", c, "--out", o, "--config", f], &needles);
        assert!(!ck.exists(), "{text}: a rejected config left {o} behind");
    }
    // Flags go through the same validation.
    for (args, needles) in [
        (&["--gamma", "5"][..], &["gamma = 5"][..]),
        (&["--tau", "1"], &["tau = 1", "(0, 1)"]),
        (&["--cql-weight", "-2"], &["cql_weight = -2"]),
        (&["--batch-size", "100000000"], &["batch_size = 100000000", "65536"]),
        (&["--lr", "0"], &["optimizer.lr = 0"]),
        (&["--algo", "bc", "--tau", "0.5"], &["--tau", "not a setting of learner `bc`"]),
        (&["--algo", "mc", "--filter-fraction", "0.5"], &["--filter-fraction", "learner `mc`"]),
    ] {
        let mut full = vec!["train", "--corpus", c, "--out", o];
        full.extend(args);
        one_line_error(&full, needles);
        assert!(!ck.exists());
    }
    // Counts are checked by the flag parser (clap's own message, first line names the flag).
    for args in [&["--steps", "0"][..], &["--batch-size", "0"], &["--algo", "dqn"]] {
        let mut full = vec!["train", "--corpus", c, "--out", o];
        full.extend(args);
        let out = run(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !err.contains("panicked"), "{args:?}: {err}");
        assert!(err.lines().next().unwrap().contains(args[0]), "{args:?}: {err}");
    }
}

#[test]
fn the_checkpoint_may_not_go_into_its_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("corpus");
    corpus(&c, "twenty-questions");
    let before = common::files(&c);
    let cs = c.to_str().unwrap();
    let inside = c.join("ck");
    let dotted = format!("{}/../corpus/sub/ck", cs);
    for out in [cs, inside.to_str().unwrap(), &dotted] {
        one_line_error(&["train", "--corpus", cs, "--out", out, "--steps", "2"], &["is inside the corpus folder"]);
    }
    assert_eq!(before, common::files(&c), "the corpus folder changed");
}

#[test]
fn a_checkpoint_refuses_another_scenario_or_candidate_set() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("corpus");
    corpus(&c, "twenty-questions");
    let ck = tmp.path().join("ck");
    let o = ck.to_str().unwrap();
    let out = run(&["train", "--corpus", c.to_str().unwrap(), "--out", o, "--algo", "bc", "--steps", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let learned = format!("learned:{o}");
    let eval = |scenario: &str| run(&["eval", "--scenario", scenario, "--agent", &learned, "--episodes", "3"]);
    // The scenario it was trained on plays; so does another split of it (same game and
    // candidates, other secrets).
    for ok in ["twenty-questions", "twenty-questions(holdout=0.2,split=test)"] {
        let out = eval(ok);
        assert!(out.status.success(), "{ok}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for other in ["guess-my-city", "tutoring", "examples/diagnose_the_fault.toml"] {
        one_line_error(
            &["eval", "--scenario", other, "--agent", &learned, "--episodes", "3"],
            &["trained on scenario `twenty-questions`", other],
        );
    }
    // Same scenario name, another candidate list: edit one recorded candidate.
    let path = ck.join("config.json");
    let mut info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let first = info["candidate_list"][0].as_str().unwrap().to_string();
    info["candidate_list"][0] = serde_json::json!("Is it made of cheese?");
    std::fs::write(&path, serde_json::to_string(&info).unwrap()).unwrap();
    one_line_error(
        &["eval", "--scenario", "twenty-questions", "--agent", &learned, "--episodes", "3"],
        &["candidate 0 was `Is it made of cheese?`", &format!("is `{first}`")],
    );
}
