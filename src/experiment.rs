//! `dialogym experiment offline-20q`: the experiment that shows offline RL works.
//!
//! 1. A corpus from a documented mix of weak behaviour policies against an oracle that
//!    slips (human-like, suboptimal dialogues).
//! 2. BC, filtered BC, MC returns and ILQL trained on it (same seed, same budget).
//! 3. Each learned agent, each behaviour policy and greedy EIG evaluated on fresh episodes.
//! 4. Generalization: the same, with a fraction of the objects never a secret in the
//!    corpus, evaluated on those objects only.
//!
//! Every stage reuses what a previous run of the same command left in `--out`, so an
//! interrupted experiment continues where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use dialogym_engine::MixSpec;
use dialogym_engine::corpus::Format;
use dialogym_policies::train::{Algo, TrainConfig};
use serde::Serialize;

use crate::eval::{AgentResult, EvalArgs, eval, table};
use crate::generate::{GenerateArgs, generate};

/// The behaviour policies of the corpus: weak, human-like questioners. Each assumes the
/// oracle's 5% slips where it reasons at all.
pub const BEHAVIOUR_MIX: &str = "mix:random@0.25,eps-greedy(eps=0.5,slip=0.05)@0.25,early-guesser(slip=0.05,threshold=0.05)@0.25,redundant(p=0.5,slip=0.05)@0.25";
/// The persona: the table oracle with 5% slips.
pub const PERSONA: &str = "oracle(slip=0.05)";
/// The strong classical baseline, told about the slips.
pub const GREEDY: &str = "greedy-eig(slip=0.05)";

/// Sizes and seeds of the experiment.
#[derive(Clone, Debug)]
pub struct ExperimentArgs {
    /// Output folder (corpora, checkpoints, results).
    pub out: PathBuf,
    /// Corpus episodes.
    pub episodes: u64,
    /// Evaluation episodes per agent.
    pub eval_episodes: u64,
    /// Training config shared by the learners (the algorithm is set per learner).
    pub train: TrainConfig,
    /// Learners to train.
    pub algos: Vec<Algo>,
    /// Master seed (corpus; evaluation uses seed + 1,000,000: fresh episodes).
    pub seed: u64,
    /// Fraction of objects held out for the generalization run (0 = skip it).
    pub holdout: f64,
}

/// The experiment's tables.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    /// All objects as secrets.
    pub main: Vec<AgentResult>,
    /// Held-out objects only (agents trained without them as secrets).
    pub generalization: Vec<AgentResult>,
}

fn corpus(out: &Path, scenario: &str, episodes: u64, seed: u64, stop: &AtomicBool) -> Result<()> {
    let args = GenerateArgs {
        scenario: scenario.into(),
        agent: BEHAVIOUR_MIX.into(),
        persona: PERSONA.into(),
        episodes,
        seed,
        concurrency: 256,
        out: out.to_path_buf(),
        resume: out.join("manifest.json").exists(),
        shard_size: 10_000,
        formats: vec![Format::Jsonl, Format::Parquet],
    };
    let s = generate(&args, vec!["dialogym".into(), "experiment".into()], stop, true)?;
    if s.played > 0 {
        eprintln!("    {} episodes in {:.1}s -> {}", s.played, s.seconds, out.display());
    }
    Ok(())
}

fn learners(corpus: &Path, out: &Path, args: &ExperimentArgs, stop: &AtomicBool) -> Result<Vec<(Algo, PathBuf)>> {
    let mut done = Vec::new();
    for &algo in &args.algos {
        let dir = out.join(algo.name());
        let config = TrainConfig { algo, ..args.train.clone() };
        let s = crate::train::run(corpus, &config, &dir, dir.join("model.safetensors").exists(), "cpu", stop, true)
            .with_context(|| format!("training {}", algo.name()))?;
        eprintln!(
            "    {}: {} transitions, {:.1} steps/s -> {}",
            algo.name(),
            s.transitions,
            s.steps_per_second,
            dir.display()
        );
        done.push((algo, dir));
    }
    Ok(done)
}

fn evaluate(scenario: &str, agents: Vec<String>, args: &ExperimentArgs, stop: &AtomicBool) -> Result<Vec<AgentResult>> {
    eval(
        &EvalArgs {
            scenario: scenario.into(),
            agents,
            persona: PERSONA.into(),
            episodes: args.eval_episodes,
            seed: args.seed + 1_000_000,
            concurrency: 256,
        },
        stop,
        true,
    )
}

fn behaviour_components() -> Result<Vec<String>> {
    Ok(MixSpec::parse(BEHAVIOUR_MIX)?.components.iter().map(|(s, _)| s.to_string()).collect())
}

/// The learned agents to evaluate. Q learners act greedily (argmax min Q). Cloning
/// learners are evaluated twice: sampling from the cloned policy (temperature 1, what
/// behaviour cloning means and how LMRL-Gym evaluates BC) and taking its mode (argmax), a
/// stronger agent than the data's average.
fn learned(dirs: &[(Algo, PathBuf)]) -> Vec<String> {
    let mut out = Vec::new();
    for (algo, d) in dirs {
        if algo.acts_from_policy() {
            out.push(format!("learned:{}(temperature=1)", d.display()));
        }
        out.push(format!("learned:{}", d.display()));
    }
    out
}

/// Runs the experiment and writes `results.md` and `results.json` into `args.out`.
pub fn offline_20q(args: &ExperimentArgs, stop: &AtomicBool) -> Result<ExperimentReport> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let steps = args.algos.len() + if args.holdout > 0.0 { 3 } else { 1 };
    eprintln!("1/{steps} corpus: {} episodes, {BEHAVIOUR_MIX} vs {PERSONA}", args.episodes);
    let main_corpus = args.out.join("corpus");
    corpus(&main_corpus, "twenty-questions", args.episodes, args.seed, stop)?;
    eprintln!("2/{steps} training {:?}", args.algos.iter().map(|a| a.name()).collect::<Vec<_>>());
    let dirs = learners(&main_corpus, &args.out, args, stop)?;
    eprintln!("3/{steps} evaluating on {} fresh episodes per agent", args.eval_episodes);
    let mut agents = behaviour_components()?;
    agents.push(GREEDY.into());
    agents.extend(learned(&dirs));
    let main = evaluate("twenty-questions", agents, args, stop)?;

    let mut generalization = Vec::new();
    if args.holdout > 0.0 {
        let train_scenario = format!("twenty-questions(holdout={},split=train)", args.holdout);
        let test_scenario = format!("twenty-questions(holdout={},split=test)", args.holdout);
        let gen_out = args.out.join("holdout");
        eprintln!("4/{steps} generalization corpus: no held-out object is ever the secret");
        let gen_corpus = gen_out.join("corpus");
        corpus(&gen_corpus, &train_scenario, args.episodes, args.seed, stop)?;
        let gen_args = ExperimentArgs { algos: vec![Algo::Bc, Algo::Ilql], ..args.clone() };
        let gen_dirs = learners(&gen_corpus, &gen_out, &gen_args, stop)?;
        eprintln!("5/{steps} evaluating on the held-out objects only");
        let mut agents = behaviour_components()?;
        agents.push(GREEDY.into());
        agents.extend(learned(&gen_dirs));
        generalization = evaluate(&test_scenario, agents, args, stop)?;
    }
    let report = ExperimentReport { main, generalization };
    let mut md = format!(
        "# offline-20q\n\ncorpus: {} episodes of `{BEHAVIOUR_MIX}` vs `{PERSONA}` (seed {}); \
         learners: {} steps, batch {}; evaluation: {} episodes per agent vs `{PERSONA}` (seed {}).\n\n",
        args.episodes,
        args.seed,
        args.train.steps,
        args.train.batch_size,
        args.eval_episodes,
        args.seed + 1_000_000
    );
    md.push_str(&table(&report.main));
    if !report.generalization.is_empty() {
        md.push_str(&format!(
            "\n## Generalization: {:.0}% of objects never a secret in training, evaluated on those only\n\n",
            100.0 * args.holdout
        ));
        md.push_str(&table(&report.generalization));
    }
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{md}");
    Ok(report)
}
