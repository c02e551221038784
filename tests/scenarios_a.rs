//! Tutoring and preference elicitation end to end: corpora re-judge to the same rewards,
//! episodes end by the turn limit, returns stay in the documented ranges, the informed
//! baselines beat the naive ones, and generate → train → eval runs on both.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::run;
use dialogym::engine::corpus::{EpisodeRecord, Format, read_corpus};
use dialogym::engine::seed::{Stream, turn_rng};
use dialogym::engine::{Scenario, Spec};
use dialogym::eval::{AgentResult, EvalArgs, eval};
use dialogym::generate::{GenerateArgs, generate};
use dialogym::scenarios::preference::Preference;
use dialogym::scenarios::tutoring::Tutoring;

fn corpus(dir: &Path, scenario: &str, agent: &str, persona: &str, episodes: u64) -> Vec<EpisodeRecord> {
    let args = GenerateArgs {
        scenario: scenario.into(),
        agent: agent.into(),
        persona: persona.into(),
        episodes,
        seed: 21,
        concurrency: 64,
        out: dir.to_path_buf(),
        resume: false,
        shard_size: 10_000,
        formats: vec![Format::Jsonl],
        shard: None,
    };
    generate(&args, vec![], &AtomicBool::new(false), false).unwrap();
    read_corpus(dir).unwrap().1
}

/// Re-draws each episode's hidden state from its seed, as the world does, and re-judges
/// every prefix of its transcript: a pure judge gives back the recorded rewards, dones and
/// success. Also checks the turn limit and the return range.
fn rejudge<S: Scenario>(s: &S, rows: &[EpisodeRecord], range: (f64, f64)) {
    for r in rows {
        let hidden = s.sample_hidden(&mut turn_rng(r.seed, 0, Stream::Hidden));
        // Compared through the same JSON text and parser, as the corpus stores it (serde_json
        // reads some floats one ulp off).
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&hidden).unwrap()).unwrap();
        assert_eq!(json, r.hidden, "episode {}", r.episode);
        let mut success = false;
        for i in 0..r.messages.len() {
            let j = s.judge(&hidden, &r.messages[..=i]);
            // serde_json (without its `float_roundtrip` feature) may read a float back one ulp
            // off, so the recorded reward is compared to within rounding.
            assert!(
                (j.reward - r.rewards[i]).abs() <= 1e-12,
                "episode {} message {i}: {} vs {}",
                r.episode,
                j.reward,
                r.rewards[i]
            );
            assert_eq!(j.done, r.dones[i], "episode {} message {i}", r.episode);
            success = j.success;
        }
        assert_eq!(success, r.success, "episode {}", r.episode);
        assert!(r.turns as usize <= s.max_agent_turns());
        assert!(r.ret >= range.0 - 1e-9 && r.ret <= range.1 + 1e-9, "return {} outside {range:?}", r.ret);
    }
}

#[test]
fn tutoring_corpora_rejudge_exactly_and_stay_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus(tmp.path(), "tutoring", "mix:random(end=0)@1,adaptive(eps=0.3)@1,lecture@1", "student", 300);
    let s = Tutoring::from_spec(&Spec::parse("tutoring").unwrap()).unwrap();
    let cost = s.rules.turn_cost * s.rules.max_turns as f64;
    rejudge(&s, &rows, (-cost, 1.0));
    // Random without ending always runs out of turns.
    let random: Vec<&EpisodeRecord> = rows.iter().filter(|r| r.agent == "random(end=0)").collect();
    assert!(random.len() > 50);
    assert!(random.iter().all(|r| r.turns as usize == s.rules.max_turns));
    for r in &rows {
        let gain = r.metrics["post_score"] - r.metrics["pre_score"];
        assert!(gain >= -1e-12, "mastery is never lost");
        assert_eq!(r.success, r.metrics["post_score"] >= s.rules.success_threshold);
    }
}

#[test]
fn preference_corpora_rejudge_exactly_and_stay_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus(
        tmp.path(),
        "preference-elicitation",
        "mix:random(ask=0.95)@1,bayesian(one_by_one=true,eps=0.3)@1,popular@1",
        "traveller",
        300,
    );
    let s = Preference::from_spec(&Spec::parse("preference-elicitation").unwrap()).unwrap();
    rejudge(&s, &rows, (-s.rules.question_cost * s.rules.max_turns as f64, 1.0));
    // A random agent that mostly asks often runs out of turns.
    assert!(rows.iter().any(|r| r.turns as usize == s.rules.max_turns));
    for r in &rows {
        let u = r.metrics["normalized_utility"];
        assert!((0.0..=1.0).contains(&u));
        assert_eq!(r.success, u >= s.rules.success_threshold);
    }
}

fn results(scenario: &str, agents: &[&str], persona: &str, episodes: u64) -> Vec<AgentResult> {
    eval(
        &EvalArgs {
            scenario: scenario.into(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            persona: persona.into(),
            episodes,
            seed: 5,
            concurrency: 128,
        },
        &AtomicBool::new(false),
        false,
    )
    .unwrap()
}

#[test]
fn the_adaptive_tutor_beats_lecture_and_random() {
    let r = results("tutoring", &["adaptive", "lecture", "random"], "student", 400);
    let (adaptive, lecture, random) = (&r[0], &r[1], &r[2]);
    assert_eq!(adaptive.agent, "adaptive");
    let beats = |a: &AgentResult, b: &AgentResult| a.ret.mean - a.ret.ci95 > b.ret.mean + b.ret.ci95;
    assert!(beats(adaptive, lecture), "adaptive {adaptive:?}\nlecture {lecture:?}");
    assert!(beats(adaptive, random), "adaptive {adaptive:?}\nrandom {random:?}");
    assert!(adaptive.success.mean > lecture.success.mean && adaptive.success.mean > random.success.mean);
}

#[test]
fn bayesian_elicitation_beats_the_popular_list() {
    let r = results("preference-elicitation", &["bayesian", "popular", "random"], "traveller", 300);
    let (bayes, popular, random) = (&r[0], &r[1], &r[2]);
    // Popular asks nothing, so its return is its normalized utility; Bayesian's return is
    // its utility minus what its questions cost, so beating it on return beats it on utility.
    assert_eq!(popular.turns.mean, 1.0);
    assert!(bayes.ret.mean - bayes.ret.ci95 > popular.ret.mean + popular.ret.ci95, "{bayes:?}\n{popular:?}");
    assert!(bayes.success.mean > popular.success.mean + 0.2, "{bayes:?}\n{popular:?}");
    assert!(popular.ret.mean > random.ret.mean, "{popular:?}\n{random:?}");
}

#[test]
fn generate_train_eval_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    for (scenario, agent, persona) in [
        ("tutoring", "mix:adaptive(eps=0.2)@2,random@1", "student"),
        ("preference-elicitation", "mix:bayesian(one_by_one=true,eps=0.2)@2,random@1", "traveller"),
    ] {
        let data = tmp.path().join(format!("{scenario}-data"));
        let ckpt = tmp.path().join(format!("{scenario}-bc"));
        let (d, c) = (data.to_str().unwrap(), ckpt.to_str().unwrap());
        let out = run(&[
            "generate",
            "--scenario",
            scenario,
            "--agent",
            agent,
            "--persona",
            persona,
            "--episodes",
            "200",
            "--out",
            d,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (manifest, rows) = read_corpus(&data).unwrap();
        assert_eq!(rows.len(), 200);
        assert_eq!(manifest.config["scenario"], scenario);
        let out = run(&["train", "--corpus", d, "--algo", "bc", "--steps", "50", "--batch-size", "64", "--out", c]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let learned = format!("learned:{c}");
        let out = run(&["eval", "--scenario", scenario, "--agent", &learned, "--persona", persona, "--episodes", "40"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("| {learned} | 40 |")), "{text}");
    }
    let out = run(&["scenarios", "describe", "tutoring"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("skills: 8") && text.contains("adaptive"), "{text}");
    let out = run(&["scenarios", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tutoring") && text.contains("preference-elicitation"), "{text}");
    let out = run(&["eval", "--scenario", "tutoring", "--agent", "greedy-eig", "--persona", "student"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown agent `greedy-eig`; valid agents: adaptive"));
}

#[test]
fn same_seed_same_corpus_bytes_whatever_the_concurrency() {
    let tmp = tempfile::tempdir().unwrap();
    for (scenario, agent, persona) in [
        ("tutoring", "mix:adaptive(eps=0.2)@1,random@1", "student"),
        ("preference-elicitation", "mix:bayesian(eps=0.2)@1,random@1", "traveller"),
    ] {
        let dir = |name: &str| tmp.path().join(format!("{scenario}-{name}"));
        let args = |out: std::path::PathBuf, concurrency: usize, seed: u64| GenerateArgs {
            scenario: scenario.into(),
            agent: agent.into(),
            persona: persona.into(),
            episodes: 150,
            seed,
            concurrency,
            out,
            resume: false,
            shard_size: 64,
            formats: vec![Format::Jsonl, Format::Parquet],
            shard: None,
        };
        let stop = AtomicBool::new(false);
        generate(&args(dir("a"), 1, 7), vec![], &stop, false).unwrap();
        generate(&args(dir("b"), 128, 7), vec![], &stop, false).unwrap();
        generate(&args(dir("c"), 128, 8), vec![], &stop, false).unwrap();
        let a = common::shards(&dir("a"));
        assert_eq!(a.len(), 6, "{scenario}: 3 shards × 2 formats");
        assert_eq!(a, common::shards(&dir("b")), "{scenario}: same seed, same bytes");
        assert_ne!(a, common::shards(&dir("c")), "{scenario}: another seed, another corpus");
    }
}

#[test]
fn malformed_parameters_are_errors_not_panics() {
    use dialogym::session::load;
    for bad in [
        "tutoring(max_turns=0)",
        "tutoring(max_turns=-3)",
        "tutoring(cost=-0.1)",
        "tutoring(cost=nan)",
        "tutoring(cost=abc)",
        "tutoring(threshold=1.5)",
        "tutoring(turns=3)",
        "tutoring(cost=0.1",
        "preference-elicitation(k=0)",
        "preference-elicitation(k=11)",
        "preference-elicitation(k=two)",
        "preference-elicitation(max_turns=0)",
        "preference-elicitation(cost=-1)",
        "preference-elicitation(threshold=-0.5)",
        "preference-elicitation(budget=3)",
    ] {
        assert!(load(bad).is_err(), "{bad} should be rejected");
    }
    assert!(load("tutoring(max_turns=5,cost=0.02,threshold=0.7)").is_ok());
    assert!(load("preference-elicitation(k=5,cost=0.01)").is_ok());

    let ctx = dialogym::engine::Context::new();
    let t = Tutoring::from_spec(&Spec::parse("tutoring").unwrap()).unwrap();
    for bad in [
        "adaptive(eps=2)",
        "adaptive(horizon=-1)",
        "adaptive(depth=3)",
        "lecture(level=expert)",
        "lecture(passes=x)",
        "random(end=1.1)",
        "greedy-eig",
    ] {
        assert!(dialogym::session::agent(&Spec::parse(bad).unwrap(), &t, &ctx).is_err(), "{bad}");
    }
    assert!(dialogym::session::persona(&Spec::parse("student(slip=0.1)").unwrap(), &t, &ctx).is_err());
    assert!(dialogym::session::persona(&Spec::parse("oracle").unwrap(), &t, &ctx).is_ok());
    // The generic agents check their parameters too (`uniform` has none).
    assert!(dialogym::session::agent(&Spec::parse("uniform(x=1)").unwrap(), &t, &ctx).is_err());
    assert!(dialogym::session::agent(&Spec::parse("uniform").unwrap(), &t, &ctx).is_ok());

    let p = Preference::from_spec(&Spec::parse("preference-elicitation").unwrap()).unwrap();
    for bad in
        ["bayesian(eps=-0.1)", "bayesian(min_voi=-1)", "bayesian(one_by_one=maybe)", "popular(k=3)", "random(ask=7)"]
    {
        assert!(dialogym::session::agent(&Spec::parse(bad).unwrap(), &p, &ctx).is_err(), "{bad}");
    }
    for bad in ["traveller(noise=-1)", "traveller(temperature=x)", "traveller(slip=0.1)", "oracle2"] {
        assert!(dialogym::session::persona(&Spec::parse(bad).unwrap(), &p, &ctx).is_err(), "{bad}");
    }
}

/// The scripted student answers a diagnostic right with probability 1 − slip when it has
/// mastered the skill and `guess` when not: with P(mastered) = p, P(correct) =
/// p(1 − slip) + (1 − p)guess.
#[test]
fn the_student_answers_by_bkt() {
    use dialogym::engine::Message;
    use dialogym::scenarios::tutoring::{Outcome, TutorAction};
    let s = Tutoring::from_spec(&Spec::parse("tutoring").unwrap()).unwrap();
    let n = 4000;
    for seed in 0..4u64 {
        let mut st = s.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden));
        st.misconceptions.clear();
        for skill in 0..s.n_skills() {
            let ask = [Message::agent(s.text(TutorAction::Diagnose(skill, 0)))];
            let correct = (0..n)
                .filter(|&e| {
                    let reply = s.student_reply(&st, &ask, &mut turn_rng(e, 1, Stream::Persona));
                    s.classify(skill, 0, &reply) == Outcome::Correct
                })
                .count() as f64
                / n as f64;
            let b = st.skills[skill].bkt;
            let p = if st.skills[skill].mastered { 1.0 - b.slip } else { b.guess };
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((correct - p).abs() <= 4.0 * sd + 1e-9, "skill {skill}: {correct} vs {p}");
        }
    }
    // Mixing mastered and unmastered students at rate q gives q(1 − slip) + (1 − q)guess.
    let mut st = s.sample_hidden(&mut turn_rng(0, 0, Stream::Hidden));
    st.misconceptions.clear();
    let b = st.skills[0].bkt;
    let ask = [Message::agent(s.text(TutorAction::Diagnose(0, 0)))];
    let mut correct = 0;
    for e in 0..n {
        st.skills[0].mastered = e % 10 < 3;
        let reply = s.student_reply(&st, &ask, &mut turn_rng(e, 1, Stream::Persona));
        correct += (s.classify(0, 0, &reply) == Outcome::Correct) as usize;
    }
    let p = 0.3 * (1.0 - b.slip) + 0.7 * b.guess;
    let freq = correct as f64 / n as f64;
    assert!((freq - p).abs() <= 4.0 * (p * (1.0 - p) / n as f64).sqrt(), "{freq} vs {p}");
}
