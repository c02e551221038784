//! The classical baselines reach the numbers the docs claim (small samples, wide margins).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use dialogym::eval::{EvalArgs, eval};

#[test]
fn greedy_eig_solves_noise_free_20q_and_random_does_not() {
    let results = eval(
        &EvalArgs {
            scenario: "twenty-questions".into(),
            agents: vec!["greedy-eig".into(), "random".into()],
            persona: "oracle".into(),
            episodes: 2000,
            seed: 3,
            concurrency: 256,
        },
        &AtomicBool::new(false),
        false,
    )
    .unwrap();
    let (greedy, random) = (&results[0], &results[1]);
    assert_eq!(greedy.agent, "greedy-eig");
    assert!(greedy.success.mean >= 0.99, "{greedy:?}");
    assert!(greedy.ret.mean >= -9.0, "{greedy:?}");
    assert!(random.ret.mean < -15.0, "{random:?}");
    assert!(greedy.info_gain_bits.unwrap().mean > random.info_gain_bits.unwrap().mean);
}

#[test]
fn greedy_eig_copes_with_a_slipping_oracle_when_it_expects_slips() {
    let run = |agent: &str| {
        eval(
            &EvalArgs {
                scenario: "twenty-questions".into(),
                agents: vec![agent.into()],
                persona: "oracle(slip=0.1)".into(),
                episodes: 600,
                seed: 4,
                concurrency: 128,
            },
            &AtomicBool::new(false),
            false,
        )
        .unwrap()
        .remove(0)
    };
    let aware = run("greedy-eig(slip=0.1)");
    let naive = run("greedy-eig");
    assert!(aware.success.mean > 0.9, "{aware:?}");
    assert!(aware.success.mean > naive.success.mean, "aware {aware:?} naive {naive:?}");
}
