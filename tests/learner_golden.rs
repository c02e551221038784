//! Golden checkpoints: every learner, trained through the binary for a short run on a small
//! fixed corpus, writes a `model.safetensors` with these exact sha256 digests.
//!
//! The digests were recorded with the code before the learners moved behind the `Learner`
//! trait (commit 1a50bec, flat `TrainConfig`); the restructure left them alone, which is
//! what "behaviour did not change" means for the learners. They may only change in a commit
//! that says why (a deliberate change of a loss, an initialization or the checkpoint
//! layout). The flags and the config section of each case pin that every setting reaches
//! its learner. On a mismatch the test prints every digest it computed.

#![allow(clippy::unwrap_used)]

mod common;

use sha2::{Digest, Sha256};

/// (extra `train` arguments, digest of model.safetensors). Every case also passes
/// `--steps 12 --batch-size 32`, and `--seed 0` unless it names a seed.
const GOLDEN: &[(&[&str], &str)] = &[
    (&["--algo", "ilql"], "4deb3bf9b6723d481948c0456edb96dfbef72a14be698eaac8bf4e86d2345929"),
    (&["--algo", "bc"], "0801ebd36a3168a4bddc21c68ae7447f27b752e3c26fda3b9373f370f52e52da"),
    (&["--algo", "filtered-bc"], "ace11d7acf0b62259eddedcdbba10fd92614e9fd7b8a7cc9af8e875277786ea3"),
    (&["--algo", "mc"], "7f56ca9f819ab2705d93ce14c3b3f70288e98ad6000c18806994e06d43b1d876"),
    (
        &["--algo", "ilql", "--tau", "0.7", "--cql-weight", "0.5", "--gamma", "0.9", "--lr", "0.003"],
        "f3d3258f54338389e9e86bfe30340d471460566c4fda81c6ff25eb29914de153",
    ),
    (
        &["--algo", "filtered-bc", "--filter-fraction", "0.1"],
        "09886f6c0a5794b0764ec63a37b218add4984e7ba4a81ba7d24e96e83657765a",
    ),
    (
        &["--algo", "mc", "--cql-weight", "0.5", "--seed", "3"],
        "1bddbca34d17674139b2c59f8f70da8d06f9ffd1583cb45de6b69e98ade80b21",
    ),
    (&["--algo", "bc", "--seed", "5"], "97d9ff5b1e2147643c9ec11706811aa1813091d308169dee0dc3c3171924cb1d"),
    // Recorded with the flat config `{"polyak_alpha":0.05,"bc_weight":0.0,"model":...}`;
    // the same settings now sit in ILQL's section (see SECTIONED below).
    (&["--algo", "ilql", "--config", "SECTIONED"], "dad114c8e9975cee97b66c4960bf59f5da3868850d61b85f30257783b5cf04f8"),
];

/// The config file of the last case, in sections.
const SECTIONED: &str = r#"{"learners": {"ilql": {"polyak_alpha": 0.05, "bc_weight": 0.0}},
 "model": {"hidden": 64, "head_dim": 32}, "lr_schedule": {"kind": "cosine", "final_ratio": 0.1}}"#;

#[test]
fn every_learner_writes_the_recorded_checkpoint_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let c = corpus.to_str().unwrap();
    let out = common::run(&[
        "generate",
        "--episodes",
        "300",
        "--seed",
        "1",
        "--out",
        c,
        "--persona",
        "oracle(slip=0.05)",
        "--agent",
        "mix:random@0.5,eps-greedy(eps=0.5)@0.5",
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = tmp.path().join("sectioned.json");
    std::fs::write(&config, SECTIONED).unwrap();
    let mut report = Vec::new();
    let mut wrong = 0;
    for (i, (args, want)) in GOLDEN.iter().enumerate() {
        let ck = tmp.path().join(format!("ck{i}"));
        let mut full: Vec<&str> =
            vec!["train", "--corpus", c, "--out", ck.to_str().unwrap(), "--steps", "12", "--batch-size", "32"];
        if !args.contains(&"--seed") {
            full.extend(["--seed", "0"]);
        }
        full.extend(args.iter().map(|a| if *a == "SECTIONED" { config.to_str().unwrap() } else { a }));
        let out = common::run(&full);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let got = format!("{:x}", Sha256::digest(std::fs::read(ck.join("model.safetensors")).unwrap()));
        if got != *want {
            wrong += 1;
        }
        report.push(format!("{args:?} {got}"));
    }
    assert_eq!(wrong, 0, "checkpoint digests changed:\n{}", report.join("\n"));
}
