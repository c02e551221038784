//! A scenario written as a file, end to end through the binary: validate, generate, train
//! (ILQL, a few steps), evaluate the learned agent; and broken variants of the file are
//! reported with file, line and column.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;
use dialogym::engine::Role;
use dialogym::engine::corpus::read_corpus;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/diagnose_the_fault.toml");

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn the_example_file_generates_trains_and_evaluates() {
    let text = ok(&["scenarios", "validate", EXAMPLE]);
    assert!(text.contains("ok: 30 entities, 24 attributes, 3 open attributes, max 12 turns"), "{text}");
    assert!(!text.contains("warning"), "every pair of faults must be distinguishable:\n{text}");

    let tmp = tempfile::tempdir().unwrap();
    let (corpus, ckpt, json) = (tmp.path().join("corpus"), tmp.path().join("ilql"), tmp.path().join("eval.json"));
    let (corpus_s, ckpt_s) = (corpus.to_str().unwrap(), ckpt.to_str().unwrap());
    #[rustfmt::skip]
    ok(&["generate", "--scenario", EXAMPLE, "--agent", "mix:greedy-eig@1,random@1", "--persona", "oracle(slip=0.05)",
         "--episodes", "300", "--format", "jsonl", "--out", corpus_s]);
    ok(&["train", "--corpus", corpus_s, "--algo", "ilql", "--steps", "50", "--batch-size", "64", "--out", ckpt_s]);
    let learned = format!("learned:{ckpt_s}");
    #[rustfmt::skip]
    let table = ok(&["eval", "--scenario", EXAMPLE, "--agent", &learned, "--agent", "greedy-eig", "--episodes", "200",
                     "--json", json.to_str().unwrap()]);
    assert!(table.contains(&format!("| {learned} | 200 |")), "{table}");

    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = results.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["episodes"], 200);
        let (ret, success, turns) = (
            r["return"]["mean"].as_f64().unwrap(),
            r["success"]["mean"].as_f64().unwrap(),
            r["turns"]["mean"].as_f64().unwrap(),
        );
        assert!((-12.0..=0.0).contains(&ret), "{r}");
        assert!((0.0..=1.0).contains(&success), "{r}");
        assert!((1.0..=12.0).contains(&turns), "{r}");
    }
    // Greedy EIG solves the noise-free file well within its 12 questions.
    let greedy = &rows[1];
    assert!(greedy["success"]["mean"].as_f64().unwrap() > 0.95, "{greedy}");
    assert!(greedy["return"]["mean"].as_f64().unwrap() > -6.0, "{greedy}");

    // `repeat=false` keeps a learned agent from saying anything twice in one conversation;
    // the barely trained agent above does repeat itself without it.
    let repeats = |agent: &str, name: &str| {
        let out = tmp.path().join(name);
        #[rustfmt::skip]
        ok(&["generate", "--scenario", EXAMPLE, "--agent", agent, "--persona", "oracle(slip=0.05)", "--episodes", "100",
             "--format", "jsonl", "--out", out.to_str().unwrap()]);
        let (_, rows) = read_corpus(&out).unwrap();
        assert_eq!(rows.len(), 100);
        rows.iter()
            .filter(|r| {
                let said: Vec<&str> =
                    r.messages.iter().filter(|m| m.role == Role::Agent).map(|m| m.content.as_str()).collect();
                said.iter().collect::<std::collections::HashSet<_>>().len() < said.len()
            })
            .count()
    };
    assert!(repeats(&learned, "free") > 0, "the test needs an agent that repeats itself");
    assert_eq!(repeats(&format!("{learned}(repeat=false)"), "no-repeat"), 0);
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("`{needle}` is not in the file"));
    let before = &text[..at];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().unwrap().chars().count() + 1)
}

#[test]
fn broken_variants_are_reported_with_file_line_and_column() {
    let original = std::fs::read_to_string(EXAMPLE).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // (what to break, its replacement, where the error must point, what it must say). A
    // syntax error is located by the TOML parser (line checked); the others by our checks.
    let cases = [
        ("max_turns = 12", "max_turns = = 12", "= 12", "extra `=`", false),
        ("max_turns = 12", "max_turn = 12", "max_turn", "unknown field `max_turn`", true),
        (
            r#"yes = ["Malware infection"]"#,
            r#"yes = ["Malware infektion"]"#,
            "\"Malware infektion\"",
            "unknown entity `Malware infektion`",
            true,
        ),
        (
            r#"device = "printer", onset = "Suddenly""#,
            r#"device = "scanner", onset = "Suddenly""#,
            "\"scanner\"",
            "`scanner` is not an option of `device`",
            true,
        ),
        (r#""device=laptop""#, r#""devise=laptop""#, "\"devise=laptop\"", "unknown open attribute `devise`", true),
    ];
    for (i, (from, to, at, message, column_checked)) in cases.iter().enumerate() {
        assert!(original.contains(from), "{from}");
        let broken = original.replacen(from, to, 1);
        let path = tmp.path().join(format!("broken{i}.toml"));
        std::fs::write(&path, &broken).unwrap();
        let (line, column) = locate(&broken, at);
        let out = run(&["scenarios", "validate", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} validated");
        let located = if *column_checked {
            format!("{}:{line}:{column}: ", path.display())
        } else {
            format!("{}:{line}:", path.display())
        };
        assert!(err.contains(&located), "case {i}: expected `{located}` in:\n{err}");
        assert!(err.to_lowercase().contains(&message.to_lowercase()), "case {i}: expected `{message}` in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
