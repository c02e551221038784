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

fn eval_on(scenario: &str, agents: &[&str], episodes: u64, seed: u64) -> Vec<dialogym::eval::AgentResult> {
    eval(
        &EvalArgs {
            scenario: scenario.into(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            persona: "oracle".into(),
            episodes,
            seed,
            concurrency: 256,
        },
        &AtomicBool::new(false),
        false,
    )
    .unwrap()
}

#[test]
fn greedy_eig_wins_noise_free_guess_my_city() {
    let results = eval_on("guess-my-city", &["greedy-eig", "random"], 1000, 5);
    let (greedy, random) = (&results[0], &results[1]);
    assert!(greedy.success.mean >= 0.95, "{greedy:?}");
    assert!(greedy.ret.mean > random.ret.mean + 10.0, "greedy {greedy:?} random {random:?}");
    // log2(100) bits identify the city.
    assert!(greedy.info_gain_bits.unwrap().mean > 6.6, "{greedy:?}");
}

#[test]
fn eig_question_choice_beats_random_in_polling() {
    let results = eval_on("opinion-polling", &["eig-poll", "random-poll"], 2000, 6);
    let (eig, random) = (&results[0], &results[1]);
    let m = |r: &dialogym::eval::AgentResult, k: &str| r.metrics[k].mean;
    // Before any question both predict from the prior, on the same respondents.
    assert_eq!(m(eig, "acc_after_0"), m(random, "acc_after_0"));
    for k in 1..=5 {
        let (acc, ll) = (format!("acc_after_{k}"), format!("ll_after_{k}"));
        assert!(m(eig, &acc) > m(random, &acc), "{acc}: eig {} random {}", m(eig, &acc), m(random, &acc));
        assert!(m(eig, &ll) > m(random, &ll), "{ll}: eig {} random {}", m(eig, &ll), m(random, &ll));
    }
    assert!(m(eig, "accuracy") > m(random, "accuracy") + 0.02, "eig {eig:?} random {random:?}");
    assert!(eig.ret.mean > random.ret.mean, "eig {eig:?} random {random:?}");
    // Questions help: five of them beat the prior by a wide margin.
    assert!(m(eig, "acc_after_5") > m(eig, "acc_after_0") + 0.15, "{eig:?}");
}
