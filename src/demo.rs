//! `dialogym demo`: the whole pipeline, small, on the embedded 20 Questions.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use dialogym_engine::corpus::Format;

use crate::eval::{EvalArgs, eval, table};
use crate::generate::{GenerateArgs, generate};

/// The behaviour policies the demo's corpus is made from: weak, human-like questioners.
pub const BEHAVIOUR_MIX: &str = "mix:random@0.25,eps-greedy(eps=0.5,slip=0.05)@0.25,early-guesser(slip=0.05,threshold=0.05)@0.25,redundant(p=0.5,slip=0.05)@0.25";
/// The persona of the demo: the scripted oracle with human-like slips.
pub const PERSONA: &str = "oracle(slip=0.05)";

/// Runs the demo into `out` (re-running it finishes or reuses what is there).
pub fn run(out: &Path, seed: u64, stop: &AtomicBool) -> Result<()> {
    let corpus = out.join("corpus");
    let args = GenerateArgs {
        scenario: "twenty-questions".into(),
        agent: BEHAVIOUR_MIX.into(),
        persona: PERSONA.into(),
        episodes: 2000,
        seed,
        concurrency: 256,
        out: corpus.clone(),
        resume: corpus.join("manifest.json").exists(),
        shard_size: 1000,
        formats: vec![Format::Jsonl, Format::Parquet],
    };
    eprintln!("1/2 imagining a corpus: 2,000 episodes of 20 Questions by weak questioners vs a slipping oracle");
    let s = generate(&args, vec!["dialogym".into(), "demo".into()], stop, true)?;
    eprintln!("    {} episodes in {:.2}s -> {}", s.played, s.seconds, corpus.display());
    eprintln!("2/2 evaluating the behaviour policies and greedy EIG on 500 fresh episodes");
    let mut agents: Vec<String> =
        dialogym_engine::MixSpec::parse(BEHAVIOUR_MIX)?.components.iter().map(|(s, _)| s.to_string()).collect();
    agents.push("greedy-eig(slip=0.05)".into());
    let results = eval(
        &EvalArgs {
            scenario: "twenty-questions".into(),
            agents,
            persona: PERSONA.into(),
            episodes: 500,
            seed: seed + 1_000_000,
            concurrency: 256,
        },
        stop,
        true,
    )?;
    println!("{}", table(&results));
    Ok(())
}
