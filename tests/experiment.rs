//! `dialogym experiment offline-20q`, small: every stage runs, every learner is trained
//! once per training seed, and the report groups the seeds and states the bars.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;

#[test]
fn experiment_reports_every_training_seed_and_the_bars() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    #[rustfmt::skip]
    let args = ["experiment", "offline-20q", "--out", out.to_str().unwrap(), "--episodes", "300", "--eval-episodes",
                "40", "--steps", "20", "--holdout", "0", "--train-seeds", "2", "--seed", "3"];
    let res = run(&args);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    for dir in ["bc", "bc-seed4", "filtered-bc", "filtered-bc-seed4", "mc", "mc-seed4", "ilql", "ilql-seed4"] {
        let info = std::fs::read_to_string(out.join(dir).join("config.json")).unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["config"]["seed"], if dir.ends_with("seed4") { 4 } else { 3 }, "{dir}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let seeds = report["across_seeds"].as_array().unwrap();
    // BC and filtered BC are shown sampled and argmax; MC and ILQL argmax.
    assert_eq!(seeds.len(), 6, "{seeds:?}");
    for s in seeds {
        assert_eq!(s["seeds"], serde_json::json!([3, 4]), "{s}");
        let r: Vec<f64> = s["returns"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let mean = s["mean_return"].as_f64().unwrap();
        assert!((mean - (r[0] + r[1]) / 2.0).abs() < 1e-9, "{s}");
        assert!(r.iter().all(|x| (-20.0..=0.0).contains(x)), "{s}");
    }
    let bars = report["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 4, "{bars:?}");
    let ilql = seeds.iter().find(|s| s["algo"] == "ilql").unwrap()["mean_return"].as_f64().unwrap();
    let greedy = report["main"].as_array().unwrap().iter().find(|r| r["agent"] == "greedy-eig(slip=0.05)").unwrap();
    let vs_greedy = bars.iter().find(|b| b["what"].as_str().unwrap().contains("greedy")).unwrap();
    assert!(
        (vs_greedy["measured"].as_f64().unwrap() - (ilql - greedy["return"]["mean"].as_f64().unwrap())).abs() < 1e-9
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("## Learned agents over 2 training seeds") && md.contains("## Bars"), "{md}");
    // A second run reuses everything (no retraining): same report.
    let again = run(&args);
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(out.join("results.md")).unwrap(), md);
}
