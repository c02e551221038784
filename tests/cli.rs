//! The command line on bad input: one clear line, a non-zero exit, no panic.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;

fn fails_with(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: stderr lacks `{needle}`:\n{err}");
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    fails_with(
        &["generate", "--scenario", "chess", "--out", o],
        "unknown scenario `chess`; built-in scenarios: twenty-questions",
    );
    fails_with(&["generate", "--agent", "genius", "--out", o], "unknown agent `genius`; valid agents: greedy-eig");
    fails_with(&["generate", "--persona", "sphinx", "--out", o], "unknown persona `sphinx`");
    fails_with(&["generate", "--agent", "eps-greedy(eps=2)", "--out", o], "parameter eps=2: must lie in [0, 1]");
    fails_with(&["generate", "--agent", "eps-greedy(epz=0.1)", "--out", o], "unknown parameter `epz`");
    fails_with(&["generate", "--episodes", "0", "--out", o], "--episodes must be at least 1");
    fails_with(&["generate", "--episodes=-3", "--out", o], "--episodes must be at least 1");
    fails_with(&["generate", "--concurrency", "0", "--out", o], "--concurrency must be at least 1");
    fails_with(&["generate", "--format", "csv", "--out", o], "unknown format `csv`");
    fails_with(&["eval", "--episodes", "0"], "--episodes must be at least 1");
    // Unwritable output: a path under a regular file.
    let file = tmp.path().join("f");
    std::fs::write(&file, "x").unwrap();
    fails_with(&["generate", "--out", file.join("sub").to_str().unwrap()], "cannot create output folder");
}

#[test]
fn resume_state_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    let ok = run(&["generate", "--episodes", "50", "--out", o]);
    assert!(ok.status.success());
    fails_with(&["generate", "--episodes", "50", "--out", o], "already holds a corpus; pass --resume");
    fails_with(&["generate", "--episodes", "60", "--out", o, "--resume"], "made with another config");
    // Finishing a complete run again is a no-op that succeeds.
    assert!(run(&["generate", "--episodes", "50", "--out", o, "--resume"]).status.success());
    std::fs::write(out.join("episodes-00000.jsonl"), "{\"trunc").unwrap();
    fails_with(&["generate", "--episodes", "50", "--out", o, "--resume"], "corrupt resume state");
    fails_with(&["eval", "--corpus", o], "episodes-00000.jsonl:1:");
    std::fs::write(out.join("manifest.json"), "{ not json").unwrap();
    fails_with(&["generate", "--episodes", "50", "--out", o, "--resume"], "corrupt resume state");
}

#[test]
fn scenario_files_report_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.toml");
    std::fs::write(&f, "[scenario]\nname = \"x\"\nmax_turns = \"many\"\n").unwrap();
    fails_with(&["scenarios", "validate", f.to_str().unwrap()], "bad.toml:3:13:");
}

#[test]
fn scenarios_list_and_describe() {
    let out = run(&["scenarios", "list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("twenty-questions"));
    let out = run(&["scenarios", "describe", "twenty-questions"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("entities: 158"), "{text}");
    assert!(text.contains("greedy-eig"));
    let out = run(&["scenarios", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("guess-my-city") && list.contains("opinion-polling"), "{list}");
    let out = run(&["scenarios", "describe", "guess-my-city"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("entities: 100") && text.contains("5 of them open"), "{text}");
    let out = run(&["scenarios", "describe", "opinion-polling"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("eig-poll") && text.contains("6 targets"), "{text}");
}
