//! Properties every registered scenario keeps, whatever the agent says: episodes end by the
//! scenario's max turns, returns lie in its documented range, and judging is pure (the
//! same hidden state and transcript give the same verdicts; a corpus row re-judged prefix
//! by prefix gives back its recorded rewards, dones and success).
//!
//! Episodes come from the generic `uniform` agent (random candidate utterances) and each
//! scenario's main scripted agent; random transcripts mix candidates, utterances of other
//! episodes and junk, drawn from seeded generators.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use dialogym::engine::corpus::EpisodeRecord;
use dialogym::engine::seed::{Rng, Stream, turn_rng};
use dialogym::engine::world::PlayConfig;
use dialogym::engine::{Judgement, Message, MixSpec};
use dialogym::session::{SCENARIOS, Session, load};
use rand::Rng as _;

/// Every scenario `--scenario` accepts by name (the registry in `session::SCENARIOS`, so a
/// scenario registered later is covered without touching this file), and the example
/// scenario file. Per-scenario knowledge (the return range, the cast) comes from the
/// scenario itself.
fn scenarios() -> Vec<String> {
    let mut names: Vec<String> = SCENARIOS.iter().map(|row| row.name.to_string()).collect();
    assert!(names.len() >= 3, "the registry lost scenarios: {names:?}");
    names.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/diagnose_the_fault.toml").to_string());
    names
}

/// Episodes played per scenario and agent.
const EPISODES: u64 = 120;
/// Random transcripts judged per scenario.
const RANDOM_TRANSCRIPTS: u64 = 150;

fn play(session: &dyn Session, agent: &str, persona: &str, seed: u64) -> Vec<EpisodeRecord> {
    let cast = session.prepare(&MixSpec::parse(agent).unwrap(), &MixSpec::parse(persona).unwrap()).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = PlayConfig { seed, run_id: "properties".into(), episodes: (0..EPISODES).collect(), concurrency: 64 };
    cast.play(&config, tx, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let mut rows: Vec<EpisodeRecord> = rx.iter().collect();
    rows.sort_by_key(|r| r.episode);
    assert_eq!(rows.len() as u64, EPISODES);
    rows
}

fn in_range(x: f64, (lo, hi): (f64, f64)) -> bool {
    x >= lo - 1e-9 && x <= hi + 1e-9
}

/// Partial returns up to the first `done` (inclusive) all lie in the range; returns where
/// the episode ended, if it did.
fn check_returns(name: &str, verdicts: &[Judgement], range: (f64, f64)) -> Option<usize> {
    let mut ret = 0.0;
    for (i, v) in verdicts.iter().enumerate() {
        ret += v.reward;
        assert!(in_range(ret, range), "{name}: partial return {ret} after message {i} outside {range:?}");
        if v.done {
            return Some(i);
        }
    }
    None
}

#[test]
fn generated_episodes_end_in_time_in_range_and_rejudge_exactly() {
    for name in scenarios() {
        let name = name.as_str();
        let session = load(name).unwrap();
        let range = session.return_range().unwrap_or_else(|| panic!("{name}: document a return range"));
        let max = session.max_agent_turns();
        let (agents, personas) = session.cast_names();
        for agent in ["uniform", agents[0].as_str()] {
            for row in play(&*session, agent, &personas[0], 7) {
                let ctx = format!("{name} / {agent} / episode {}", row.episode);
                assert!(row.turns >= 1 && row.turns as usize <= max, "{ctx}: {} turns, max {max}", row.turns);
                assert_eq!(row.rewards.len(), row.messages.len(), "{ctx}");
                assert_eq!(row.dones.iter().filter(|&&d| d).count(), 1, "{ctx}: one done");
                assert_eq!(row.dones.last(), Some(&true), "{ctx}: done at the end");
                assert!(in_range(row.ret, range), "{ctx}: return {} outside {range:?}", row.ret);
                let (hidden, verdicts) = session.rejudge(row.seed, &row.messages).unwrap();
                assert_eq!(hidden, row.hidden, "{ctx}: the hidden state is drawn again identically");
                let rewards: Vec<f64> = verdicts.iter().map(|v| v.reward).collect();
                let dones: Vec<bool> = verdicts.iter().map(|v| v.done).collect();
                assert_eq!(rewards, row.rewards, "{ctx}: re-judged rewards");
                assert_eq!(dones, row.dones, "{ctx}: re-judged dones");
                assert_eq!(verdicts.last().map(|v| v.success), Some(row.success), "{ctx}: success");
            }
        }
    }
}

/// Junk an agent or persona might say.
const JUNK: &[&str] = &["", "???", "Hello there!", "Is it?", "Predictions:", "Yes. No.", "Is it a the"];

fn pick<'a>(rng: &mut Rng, xs: &'a [String]) -> &'a str {
    &xs[rng.random_range(0..xs.len())]
}

fn random_transcript(rng: &mut Rng, session: &dyn Session, said: &[String], heard: &[String]) -> Vec<Message> {
    let mut t = Vec::new();
    let turns = rng.random_range(1..=session.max_agent_turns() + 2);
    for _ in 0..turns {
        let u: f64 = rng.random();
        let text = if u < 0.7 {
            let c = session.candidates_after(&t);
            let c = pick(rng, &c).to_string();
            // Case and punctuation must not matter to the judge.
            if rng.random_bool(0.2) { format!("  {}!! ", c.to_uppercase()) } else { c }
        } else if u < 0.85 {
            pick(rng, said).to_string()
        } else {
            JUNK[rng.random_range(0..JUNK.len())].to_string()
        };
        t.push(Message::agent(text));
        let reply = if rng.random_bool(0.8) {
            pick(rng, heard).to_string()
        } else {
            JUNK[rng.random_range(0..JUNK.len())].to_string()
        };
        t.push(Message::persona(reply));
    }
    t
}

#[test]
fn judging_random_transcripts_is_pure_and_bounded() {
    for name in scenarios() {
        let name = name.as_str();
        let session = load(name).unwrap();
        let fresh = load(name).unwrap();
        let range = session.return_range().unwrap_or_else(|| panic!("{name}: document a return range"));
        let max = session.max_agent_turns();
        // What agents and personas really say in this scenario, to splice into transcripts.
        let rows = play(&*session, "uniform", &session.cast_names().1[0], 3);
        let (mut said, mut heard) = (Vec::new(), Vec::new());
        for r in &rows {
            for m in &r.messages {
                if m.is_action { said.push(m.content.clone()) } else { heard.push(m.content.clone()) }
            }
        }
        heard.push("No.".into());
        for k in 0..RANDOM_TRANSCRIPTS {
            let mut rng = turn_rng(k, 0, Stream::Learner);
            let t = random_transcript(&mut rng, &*session, &said, &heard);
            let seed = rng.random::<u64>();
            let (h1, v1) = session.rejudge(seed, &t).unwrap();
            let (h2, v2) = session.rejudge(seed, &t).unwrap();
            let (h3, v3) = fresh.rejudge(seed, &t).unwrap();
            assert!(h1 == h2 && h1 == h3 && v1 == v2 && v1 == v3, "{name}: transcript {k} judged differently");
            let end = check_returns(name, &v1, range);
            let agent_turns_at_end = end.map_or(t.len(), |i| i + 1).div_ceil(2);
            assert!(agent_turns_at_end <= max, "{name}: transcript {k} ran past {max} agent turns");
            if t.len() / 2 >= max {
                assert!(end.is_some(), "{name}: transcript {k} has {} agent turns and never ended", t.len() / 2);
            }
        }
    }
}

/// Every speaker of every scenario reads its parameters strictly: an unknown parameter is
/// an error that names it, for scripted and language-model speakers alike (a typo never
/// passes silently), and an out-of-range probability is refused where a speaker takes one.
#[test]
fn every_speaker_refuses_unknown_parameters() {
    for name in scenarios() {
        let session = load(&name).unwrap();
        let (agents, personas) = session.cast_names();
        let none = MixSpec::parse(&personas[0]).unwrap();
        let some_agent = MixSpec::parse(&agents[0]).unwrap();
        let mut checked = 0;
        for a in agents.iter().map(String::as_str).chain(["uniform", "learned:nowhere"]) {
            let spec = dialogym::engine::Spec::parse(a).unwrap();
            let base = spec.name.clone() + &spec.arg.map(|x| format!(":{x}")).unwrap_or_default();
            let bad = format!("{base}(zzz=1)");
            let err = session.prepare(&MixSpec::parse(&bad).unwrap(), &none).err().map(|e| format!("{e:#}"));
            let err = err.unwrap_or_else(|| panic!("{name}: agent `{bad}` was accepted"));
            assert!(err.contains("unknown parameter `zzz`"), "{name}: agent `{bad}`: {err}");
            checked += 1;
        }
        for p in &personas {
            let spec = dialogym::engine::Spec::parse(p).unwrap();
            let base = spec.name.clone() + &spec.arg.map(|x| format!(":{x}")).unwrap_or_default();
            let bad = format!("{base}(zzz=1)");
            let err = session.prepare(&some_agent, &MixSpec::parse(&bad).unwrap()).err().map(|e| format!("{e:#}"));
            let err = err.unwrap_or_else(|| panic!("{name}: persona `{bad}` was accepted"));
            assert!(err.contains("unknown parameter `zzz`"), "{name}: persona `{bad}`: {err}");
            checked += 1;
        }
        assert!(checked >= 4, "{name}: only {checked} speakers");
    }
}
