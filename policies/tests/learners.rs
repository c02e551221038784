//! The learners on a two-step MDP whose values are known in closed form, determinism of
//! checkpoints, exact resume, and clear errors on damaged checkpoints.
//!
//! The MDP (γ = 1): from s0, action a0 gives 0 and leads to s1; a1 gives 1 and ends; a2 is
//! never taken in the data. From s1, a0 gives 2 and ends; a1 gives 0 and ends. The data
//! takes a0 in s0 with probability 0.7 and a1 with 0.3; in s1, a0 and a1 with 0.5 each.
//!
//! Fixed points, with expectile τ for ILQL's V (the τ-expectile of a two-point
//! distribution {x: p, y: 1 − p}, x > y, is (τ p x + (1 − τ)(1 − p) y) / (τ p + (1 − τ)(1 − p))):
//! - ILQL: Q(s1,a0) = 2, Q(s1,a1) = 0, V(s1) = 2τ, Q(s0,a0) = V(s1) = 2τ, Q(s0,a1) = 1.
//! - MC:   Q(s1,a0) = 2, Q(s1,a1) = 0, Q(s0,a0) = E[G] = 1, Q(s0,a1) = 1.
//! - BC:   π(a0|s0) = 0.7, π(a1|s0) = 0.3.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use candle_core::{D, Device};
use dialogym_policies::data::Transitions;
use dialogym_policies::featurize::HashedNgrams;
use dialogym_policies::learners::Algo;
use dialogym_policies::model::{ModelConfig, SaidMatrix};
use dialogym_policies::nn::Bags;
use dialogym_policies::optim::AdamWConfig;
use dialogym_policies::train::{TrainConfig, Trainer, train};

/// 100 episodes: 70 take a0 then (a0 | a1 alternating), 30 take a1.
fn mdp() -> Transitions {
    let mut t = Transitions {
        candidates: vec!["a0".into(), "a1".into(), "a2".into()],
        candidate_features: vec![vec![0], vec![1], vec![2]],
        ..Default::default()
    };
    let mut push = |state: u32, a: u32, r: f32, next: Option<u32>, rtg: f32, ep: u32| {
        t.states.push(vec![state]);
        t.actions.push(a);
        t.said.push(Vec::new());
        t.rewards.push(r);
        t.next.push(next);
        t.returns_to_go.push(rtg);
        t.episode.push(ep);
    };
    let mut returns = Vec::new();
    for ep in 0..100u32 {
        if ep < 70 {
            let second = if ep % 2 == 0 { (0, 2.0) } else { (1, 0.0) };
            returns.push(second.1);
            let base = t_states_len(ep);
            push(0, 0, 0.0, Some(base + 1), second.1, ep);
            push(1, second.0, second.1, None, second.1, ep);
        } else {
            returns.push(1.0);
            push(0, 1, 1.0, None, 1.0, ep);
        }
    }
    t.episode_returns = returns;
    t
}

/// Index of the first transition of episode `ep` (70 two-step episodes first).
fn t_states_len(ep: u32) -> u32 {
    if ep < 70 { 2 * ep } else { 140 + (ep - 70) }
}

fn config(algo: &str) -> TrainConfig {
    let sections = [
        ("ilql", serde_json::json!({"tau": 0.9, "cql_weight": 0.0, "polyak_alpha": 0.05})),
        ("mc", serde_json::json!({"cql_weight": 0.0})),
    ];
    TrainConfig {
        algo: Algo::named(algo).unwrap(),
        steps: 1500,
        batch_size: 64,
        learners: sections.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        optimizer: AdamWConfig { lr: 3e-3, ..Default::default() },
        model: ModelConfig { hidden: 32, head_dim: 16, ..Default::default() },
        featurizer: HashedNgrams { state_bits: 4, action_bits: 4 },
        checkpoint_every: 10_000,
        log_every: 100,
        seed: 7,
        ..Default::default()
    }
}

fn fit(algo: &str, tweak: impl FnOnce(&mut TrainConfig)) -> Trainer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(algo);
    tweak(&mut c);
    train(&mdp(), "mdp", &c, dir.path(), false, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).unwrap()
}

/// (Q1 over [a0, a1, a2] in s0, in s1, V(s0), V(s1)).
fn values(l: &Trainer) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = Device::Cpu;
    let s = Bags::new([[0u32].as_slice(), [1u32].as_slice()].into_iter(), &d).unwrap();
    let a = Bags::new([[0u32].as_slice(), [1].as_slice(), [2].as_slice()].into_iter(), &d).unwrap();
    let h = l.online.encode_states(&s).unwrap();
    let u = l.online.encode_actions(&a).unwrap();
    let said = SaidMatrix::new([[].as_slice(), [].as_slice()].into_iter(), 3, &d).unwrap();
    let q: Vec<Vec<f32>> = l.online.q[0].all(&h, &u, &said).unwrap().to_vec2().unwrap();
    let v: Vec<f32> = l.online.value(&h).unwrap().to_vec1().unwrap();
    (q[0].clone(), q[1].clone(), v)
}

#[test]
fn ilql_converges_to_the_expectile_fixed_point() {
    let l = fit("ilql", |_| {});
    let (q0, q1, v) = values(&l);
    let tau = 0.9;
    let tol = 0.08;
    let close = |got: f32, want: f64, what: &str| assert!((got as f64 - want).abs() < tol, "{what}: {got} vs {want}");
    close(q1[0], 2.0, "Q(s1,a0)");
    close(q1[1], 0.0, "Q(s1,a1)");
    close(v[1], 2.0 * tau, "V(s1)");
    close(q0[0], 2.0 * tau, "Q(s0,a0)");
    close(q0[1], 1.0, "Q(s0,a1)");
    // V(s0): τ-expectile of {2τ: 0.7, 1: 0.3}.
    let (p, x, y) = (0.7, 2.0 * tau, 1.0);
    close(v[0], (tau * p * x + (1.0 - tau) * (1.0 - p) * y) / (tau * p + (1.0 - tau) * (1.0 - p)), "V(s0)");
}

#[test]
fn mc_regresses_on_returns_and_cql_pushes_down_untried_actions() {
    let l = fit("mc", |_| {});
    let (q0, q1, _) = values(&l);
    for (got, want, what) in
        [(q0[0], 1.0, "Q(s0,a0)"), (q0[1], 1.0, "Q(s0,a1)"), (q1[0], 2.0, "Q(s1,a0)"), (q1[1], 0.0, "Q(s1,a1)")]
    {
        assert!((got - want).abs() < 0.08, "{what}: {got} vs {want}");
    }
    let l = fit("mc", |c| c.set_learner_setting("cql_weight", 0.5).unwrap());
    let (q0, _, _) = values(&l);
    assert!(q0[2] < q0[0].min(q0[1]) - 0.5, "the untried a2 must score lowest: {q0:?}");
}

#[test]
fn bc_reproduces_the_data_policy() {
    let l = fit("bc", |_| {});
    let d = Device::Cpu;
    let s = Bags::new([[0u32].as_slice()].into_iter(), &d).unwrap();
    let a = Bags::new([[0u32].as_slice(), [1].as_slice(), [2].as_slice()].into_iter(), &d).unwrap();
    let said = SaidMatrix::new([[].as_slice()].into_iter(), 3, &d).unwrap();
    let logits =
        l.online.policy(&l.online.encode_states(&s).unwrap(), &l.online.encode_actions(&a).unwrap(), &said).unwrap();
    let p: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1).unwrap().to_vec2().unwrap();
    assert!((p[0][0] - 0.7).abs() < 0.05 && (p[0][1] - 0.3).abs() < 0.05, "{p:?}");
    assert!(p[0][2] < 0.02, "{p:?}");
}

#[test]
fn same_seed_same_checkpoint_bytes_and_exact_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path, steps: usize, resume: bool| {
        let c = TrainConfig { steps, checkpoint_every: 10, log_every: 5, ..config("ilql") };
        train(&mdp(), "mdp", &c, dir, resume, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).unwrap();
        std::fs::read(dir.join("model.safetensors")).unwrap()
    };
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let full = run(&a, 40, false);
    assert_eq!(full, run(&b, 40, false), "same seed, different bytes");
    run(&c, 20, false);
    let resumed = run(&c, 40, true);
    assert_eq!(full, resumed, "a resumed run must equal an uninterrupted one");
    let metrics = std::fs::read_to_string(c.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 8, "one line per 5 steps, none twice:\n{metrics}");
    assert!(c.join("curve.svg").exists());
    // A different seed gives different weights.
    let other = {
        let d = tmp.path().join("d");
        let cfg = TrainConfig { steps: 40, seed: 8, ..config("ilql") };
        train(&mdp(), "mdp", &cfg, &d, false, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).unwrap();
        std::fs::read(d.join("model.safetensors")).unwrap()
    };
    assert_ne!(full, other);
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let c = TrainConfig { steps: 5, ..config("ilql") };
    train(&mdp(), "mdp", &c, &dir, false, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).unwrap();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = dialogym_policies::agent::LearnedAgent::load(&dir, 0.0, None, "x".into()).err().unwrap();
    assert!(err.to_string().contains("corrupt or truncated checkpoint"), "{err:#}");
    let c2 = TrainConfig { steps: 10, ..c.clone() };
    let err =
        train(&mdp(), "mdp", &c2, &dir, true, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).err().unwrap();
    assert!(format!("{err:#}").contains("corrupt or truncated"), "{err:#}");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(dialogym_policies::agent::LearnedAgent::load(&dir, 0.0, None, "x".into()).is_err());
    std::fs::write(dir.join("config.json"), b"{").unwrap();
    let err = dialogym_policies::agent::LearnedAgent::load(&dir, 0.0, None, "x".into()).err().unwrap();
    assert!(err.to_string().contains("config.json:1:"), "{err:#}");
}

#[test]
fn cosine_schedule_anneals_from_peak_to_the_final_ratio() {
    use dialogym_policies::train::LrSchedule;
    let s = LrSchedule::Cosine { final_ratio: 0.1 };
    assert!((s.at(1e-3, 0, 100) - 1e-3).abs() < 1e-12);
    assert!((s.at(1e-3, 50, 100) - 0.55e-3).abs() < 1e-12);
    assert!((s.at(1e-3, 100, 100) - 1e-4).abs() < 1e-12);
    assert!((0..100).all(|t| s.at(1e-3, t + 1, 100) <= s.at(1e-3, t, 100)));
    assert_eq!(LrSchedule::Constant.at(1e-3, 70, 100), 1e-3);
}

#[test]
fn every_registered_learner_builds_from_defaults_and_rejects_unknown_keys() {
    let names: Vec<&str> = Algo::all().map(|a| a.name()).collect();
    assert_eq!(names, ["ilql", "bc", "filtered-bc", "mc"]);
    for algo in Algo::all() {
        let learner = algo.build(&serde_json::json!({})).unwrap();
        // The resolved section parses back into the same learner.
        let again = algo.build(&learner.section()).unwrap();
        assert_eq!(learner.section(), again.section(), "{algo}");
        let err = algo.build(&serde_json::json!({"no_such_setting": 1})).err().unwrap();
        assert!(format!("{err:#}").contains("unknown field `no_such_setting`"), "{algo}: {err:#}");
        assert!(format!("{err:#}").contains(&format!("learners.{algo}")), "{algo}: {err:#}");
    }
    assert!(Algo::named("dqn").err().unwrap().to_string().contains("valid: ilql, bc, filtered-bc, mc"));
}

/// A version-1 `config.json` (one flat config) as dialogym wrote it before learner sections.
fn flat_v1(steps: usize, seed: u64) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "config": {
            "algo": "ilql", "steps": steps, "batch_size": 64, "gamma": 1.0, "tau": 0.9,
            "polyak_alpha": 0.05, "cql_weight": 0.0, "bc_weight": 1.0, "filter_fraction": 0.3,
            "optimizer": {"lr": 3e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
            "lr_schedule": {"kind": "constant"},
            "model": {"hidden": 32, "head_dim": 16, "said_classes": 9, "state_layers": 1},
            "featurizer": {"state_bits": 4, "action_bits": 4},
            "checkpoint_every": 10000, "log_every": 100, "seed": seed, "fused_cpu_kernels": true
        },
        "scenario": "mdp", "transitions": 170, "candidates": 3
    })
}

#[test]
fn version_one_checkpoints_still_load_and_refuse_to_resume() {
    use dialogym_policies::train::load_info;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let c = TrainConfig { steps: 5, ..config("ilql") };
    train(&mdp(), "mdp", &c, &dir, false, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).unwrap();
    let v2 = load_info(&dir).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.candidate_list, ["a0", "a1", "a2"]);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&flat_v1(5, 7)).unwrap()).unwrap();
    let v1 = load_info(&dir).unwrap();
    assert_eq!(v1.version, 1);
    // The flat settings land in ILQL's section: the same resolved config as version 2.
    assert_eq!(v1.config, v2.config);
    dialogym_policies::agent::LearnedAgent::load(&dir, 0.0, Some(1.0), "x".into()).unwrap();
    let c10 = TrainConfig { steps: 10, ..c };
    let err =
        train(&mdp(), "mdp", &c10, &dir, true, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {}).err().unwrap();
    assert!(err.to_string().contains("version-1 checkpoint"), "{err:#}");
    let mut future = flat_v1(5, 7);
    future["version"] = serde_json::json!(9);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&future).unwrap()).unwrap();
    let err = load_info(&dir).err().unwrap();
    assert!(err.to_string().contains("checkpoint version 9"), "{err:#}");
}

#[test]
fn invalid_configs_are_refused_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Box<dyn Fn(&mut TrainConfig)>, &str)> = vec![
        (Box::new(|c| c.model.hidden = 0), "model.hidden = 0"),
        (Box::new(|c| c.featurizer.state_bits = 40), "featurizer.state_bits = 40"),
        (Box::new(|c| c.batch_size = 100_000_000), "batch_size = 100000000"),
        (Box::new(|c| c.steps = 0), "steps = 0"),
        (Box::new(|c| c.gamma = f64::NAN), "gamma = NaN"),
        (Box::new(|c| c.set_learner_setting("tau", 1.0).unwrap()), "tau = 1"),
    ];
    for (tweak, needle) in cases {
        let mut c = config("ilql");
        tweak(&mut c);
        let dir = tmp.path().join("x");
        let err = train(&mdp(), "mdp", &c, &dir, false, &Device::Cpu, &AtomicBool::new(false), &mut |_: &_| {})
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains(needle), "{needle}: {err:#}");
        assert!(!dir.exists(), "{needle}: wrote {}", dir.display());
    }
}
