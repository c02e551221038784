//! `dialogym play`: a person at the table, driven through standard input and output of the
//! built binary. A person who answers like the table oracle plays exactly the world's
//! episode; the transcript is a corpus row the scenario rejudges to the same rewards; end
//! of input and Ctrl-C end cleanly and keep the transcript.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{dialogym, run};
use dialogym::engine::Scenario;
use dialogym::engine::corpus::{EpisodeRecord, read_corpus, read_jsonl};
use dialogym::engine::seed::{Stream, episode_seed, turn_rng};
use dialogym::scenarios::entity::{EntityScenario, Secret, Utterance};

fn secret(seed: u64, episode: u64) -> (EntityScenario, Secret) {
    let s = (*dialogym::session::entity("twenty-questions").unwrap()).clone();
    let h = s.sample_hidden(&mut turn_rng(episode_seed(seed, episode), 0, Stream::Hidden));
    (s, h)
}

fn rows(path: &Path) -> Vec<EpisodeRecord> {
    let mut rows = Vec::new();
    read_jsonl(path, &mut rows).unwrap();
    rows
}

/// The row rejudged by the scenario gives the recorded rewards and done flags.
fn rejudges(r: &EpisodeRecord) {
    let session = dialogym::session::load(&r.scenario).unwrap();
    let (hidden, verdicts) = session.rejudge(r.seed, &r.messages).unwrap();
    let rewards: Vec<f64> = verdicts.iter().map(|v| v.reward).collect();
    assert_eq!(rewards, r.rewards);
    if r.dones.last() == Some(&true) {
        let dones: Vec<bool> = verdicts.iter().map(|v| v.done).collect();
        assert_eq!(dones, r.dones);
        assert_eq!(hidden, r.hidden, "a shown secret is the world's");
    }
}

fn spawn(args: &[&str]) -> Child {
    dialogym().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn a_person_answering_like_the_oracle_plays_the_worlds_episode() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.jsonl");
    let (s, secret) = secret(4, 2);
    let mut child = spawn(&[
        "play",
        "--seat",
        "persona",
        "--agent",
        "greedy-eig",
        "--seed",
        "4",
        "--episode",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Enter: be shown the sampled secret.
    writeln!(stdin).unwrap();
    let mut screen = String::new();
    let mut asked: Option<String> = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        screen.push_str(&line);
        screen.push('\n');
        if let Some(q) = line.split("] agent  : ").nth(1) {
            asked = Some(q.to_string());
        } else if line.trim_start().starts_with("read as:")
            && let Some(q) = asked.take()
        {
            // Answer truthfully, as the table oracle without slips would.
            let reply = match s.interpret(&q) {
                Utterance::Ask(a) => s.rules.answers.of(s.table.answer(secret.index, a)).to_string(),
                Utterance::AskOpen(o) => s.table.open[o].reply_text(s.table.value(secret.index, o)),
                Utterance::Guess(e) if e == secret.index => continue,
                Utterance::Guess(_) => s.rules.answers.wrong.clone(),
                Utterance::Other => s.rules.answers.unknown.clone(),
            };
            writeln!(stdin, "{reply}").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains(&format!("Your secret (the agent does not see it):\n{}", s.persona_card(&secret).trim_end()))
    );
    assert!(screen.contains("[turn 1] agent  : "), "{screen}");
    assert!(screen.contains("read as: question: "), "{screen}");
    assert!(screen.contains("possible secrets left"), "{screen}");
    assert!(screen.contains("episode over: success"), "{screen}");
    let played = rows(&out);
    assert_eq!(played.len(), 1);
    let p = &played[0];
    assert!(p.success && p.dones.last() == Some(&true));
    assert_eq!(p.persona, "human");
    rejudges(p);

    // The world, with the table oracle in the persona's seat, plays the same conversation.
    let corpus = tmp.path().join("world");
    let o = run(&[
        "generate",
        "--agent",
        "greedy-eig",
        "--persona",
        "oracle(slip=0)",
        "--episodes",
        "3",
        "--seed",
        "4",
        "--format",
        "jsonl",
        "--out",
        corpus.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let (_, world) = read_corpus(&corpus).unwrap();
    let w = &world[2];
    assert_eq!(p.messages, w.messages);
    assert_eq!((p.rewards.clone(), p.ret, p.turns, p.seed), (w.rewards.clone(), w.ret, w.turns, w.seed));
    assert_eq!(p.hidden, w.hidden);
}

#[test]
fn a_person_asking_from_scripted_input_wins_and_keeps_the_transcript() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.jsonl");
    let (_, secret) = secret(0, 0);
    let script = format!("Is it alive?\n?\nIs it a {}?\n", secret.name);
    let mut child = spawn(&["play", "--seat", "agent", "--persona", "oracle", "--out", out.to_str().unwrap()]);
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}{}", String::from_utf8_lossy(&o.stderr));
    assert!(screen.contains("utterances, e.g.:"), "`?` lists candidates: {screen}");
    assert!(screen.contains("[turn 2] agent  : Is it a"), "{screen}");
    assert!(screen.contains(&format!("read as: guess: {}", secret.name)), "{screen}");
    assert!(screen.contains("episode over: success in 2 agent turns; return -1.00"), "{screen}");
    let played = rows(&out);
    assert_eq!(played.len(), 1);
    assert_eq!(played[0].messages.len(), 3, "question, answer, guess; `?` is not an utterance");
    assert_eq!(played[0].agent, "human");
    assert_eq!(played[0].ret, -1.0);
    rejudges(&played[0]);

    // A second game is appended; the first is kept.
    let mut child = spawn(&["play", "--seat", "agent", "--episode", "1", "--out", out.to_str().unwrap()]);
    child.stdin.take().unwrap().write_all(b"Is it alive?\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rows(&out).len(), 2);
}

#[test]
fn end_of_input_and_ctrl_c_end_cleanly_and_keep_the_transcript() {
    let tmp = tempfile::tempdir().unwrap();
    // End of input after one question.
    let eof = tmp.path().join("eof.jsonl");
    let mut child = spawn(&["play", "--seat", "agent", "--out", eof.to_str().unwrap()]);
    child.stdin.take().unwrap().write_all(b"Is it alive?\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("game ended by end of input after 1 agent turns"), "{screen}");
    let r = &rows(&eof)[0];
    assert_eq!(r.messages.len(), 2);
    assert!(r.dones.iter().all(|d| !d) && !r.success, "an unfinished episode");
    rejudges(r);

    // Ctrl-C while the person thinks about the second question.
    let int = tmp.path().join("int.jsonl");
    let mut child = spawn(&["play", "--seat", "agent", "--out", int.to_str().unwrap()]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "Is it alive?").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("persona: ") || !seen.ends_with("possible secrets left\n") {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "output ended early: {seen}");
        seen.push_str(&line);
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends the game cleanly: {rest}");
    assert!(rest.contains("game ended by Ctrl-C after 1 agent turns"), "{rest}");
    let r = &rows(&int)[0];
    assert_eq!(r.messages.len(), 2);
    assert!(r.dones.iter().all(|d| !d));
    drop(stdin);
}

#[test]
fn play_rejects_bad_input_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.jsonl");
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["play", "--agent", "mix:random@1,greedy-eig@1", "--out", o], "play takes one agent, not a mixture"),
        (vec!["play", "--scenario", "chess", "--out", o], "unknown scenario `chess`"),
        (vec!["play", "--agent", "genius", "--out", o], "unknown agent `genius`"),
    ] {
        let r = run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_session_under_tmux_shows_the_turns_and_ends_on_ctrl_c() {
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/play_tmux.sh"))
        .env("DIALOGYM", env!("CARGO_BIN_EXE_dialogym"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "play_tmux.sh failed (scripts/test installs tmux):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
