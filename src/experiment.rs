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
use dialogym_policies::learners::{Acting, Algo};
use dialogym_policies::train::{TrainConfig, load_info};
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
    /// Every learner is trained this many times, with training seeds `train.seed`,
    /// `train.seed + 1`, ... (same corpus): the spread between seeds is part of the result.
    pub train_seeds: u64,
}

/// The experiment's tables.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    /// All objects as secrets.
    pub main: Vec<AgentResult>,
    /// Held-out objects only (agents trained without them as secrets).
    pub generalization: Vec<AgentResult>,
    /// Each learned agent of the main table over its training seeds.
    pub across_seeds: Vec<SeedSummary>,
    /// The bars, from the means over training seeds.
    pub bars: Vec<Bar>,
}

/// One learned agent (learner and way of acting) over training seeds.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSummary {
    /// Learner.
    pub algo: String,
    /// `argmax`, or `sample(T=1)` for cloning learners.
    pub acting: String,
    /// Training seeds, in order.
    pub seeds: Vec<u64>,
    /// Mean return of each seed's agent.
    pub returns: Vec<f64>,
    /// Success rate of each seed's agent.
    pub successes: Vec<f64>,
    /// Mean over seeds of the mean return.
    pub mean_return: f64,
    /// Mean over seeds of the success rate.
    pub mean_success: f64,
}

/// A target of the experiment and what was measured against it.
#[derive(Clone, Debug, Serialize)]
pub struct Bar {
    /// What is compared.
    pub what: String,
    /// Measured difference of mean returns (ILQL minus the other).
    pub measured: f64,
    /// The target (ILQL − other ≥ target; for greedy EIG, ≥ −2.0).
    pub target: f64,
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
        shard: None,
    };
    let s = generate(&args, vec!["dialogym".into(), "experiment".into()], stop, true)?;
    if s.played > 0 {
        eprintln!("    {} episodes in {:.1}s -> {}", s.played, s.seconds, out.display());
    }
    Ok(())
}

/// A learner's checkpoint folder: `ilql` for the first training seed, `ilql-seed1`, ... after.
fn learner_dir(out: &Path, algo: Algo, k: u64, seed: u64) -> PathBuf {
    if k == 0 { out.join(algo.name()) } else { out.join(format!("{}-seed{seed}", algo.name())) }
}

fn learners(corpus: &Path, out: &Path, args: &ExperimentArgs, stop: &AtomicBool) -> Result<Vec<(Algo, u64, PathBuf)>> {
    let mut done = Vec::new();
    for (k, &algo) in (0..args.train_seeds.max(1)).flat_map(|k| args.algos.iter().map(move |a| (k, a))) {
        let seed = args.train.seed + k;
        let dir = learner_dir(out, algo, k, seed);
        let config = TrainConfig { algo, seed, ..args.train.clone() };
        let s = crate::train::run(corpus, &config, &dir, dir.join("model.safetensors").exists(), "cpu", stop, true)
            .with_context(|| format!("training {}", algo.name()))?;
        if s.steps == 0 {
            eprintln!("    {}: reused {}", algo.name(), dir.display());
        } else {
            eprintln!(
                "    {}: {} transitions, {:.1} steps/s -> {}",
                algo.name(),
                s.transitions,
                s.steps_per_second,
                dir.display()
            );
        }
        done.push((algo, seed, dir));
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
fn learned(dirs: &[(Algo, u64, PathBuf)]) -> Result<Vec<(Algo, u64, &'static str, String)>> {
    let mut out = Vec::new();
    for (algo, seed, d) in dirs {
        if load_info(d)?.config.learner()?.acting() == Acting::Policy {
            out.push((*algo, *seed, "sample(T=1)", format!("learned:{}(temperature=1)", d.display())));
        }
        out.push((*algo, *seed, "argmax", format!("learned:{}", d.display())));
    }
    Ok(out)
}

/// Groups the learned agents' results by (learner, way of acting) over training seeds.
fn across_seeds(results: &[AgentResult], learned: &[(Algo, u64, &'static str, String)]) -> Vec<SeedSummary> {
    let mut out: Vec<SeedSummary> = Vec::new();
    for (algo, seed, acting, spec) in learned {
        let Some(r) = results.iter().find(|r| &r.agent == spec) else { continue };
        let i = match out.iter().position(|s| s.algo == algo.name() && s.acting == *acting) {
            Some(i) => i,
            None => {
                out.push(SeedSummary {
                    algo: algo.name().into(),
                    acting: acting.to_string(),
                    seeds: vec![],
                    returns: vec![],
                    successes: vec![],
                    mean_return: 0.0,
                    mean_success: 0.0,
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        s.seeds.push(*seed);
        s.returns.push(r.ret.mean);
        s.successes.push(r.success.mean);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for s in &mut out {
        (s.mean_return, s.mean_success) = (mean(&s.returns), mean(&s.successes));
    }
    out
}

/// The bars: ILQL (argmax, mean over seeds) against the best behaviour policy, BC
/// (sampled and argmax) and greedy EIG.
fn bars(results: &[AgentResult], seeds: &[SeedSummary], behaviour: &[String]) -> Vec<Bar> {
    let mean_of =
        |algo: &str, acting: &str| seeds.iter().find(|s| s.algo == algo && s.acting == acting).map(|s| s.mean_return);
    let Some(ilql) = mean_of("ilql", "argmax") else { return Vec::new() };
    let mut out = Vec::new();
    let best = results.iter().filter(|r| behaviour.contains(&r.agent)).max_by(|a, b| a.ret.mean.total_cmp(&b.ret.mean));
    if let Some(b) = best {
        out.push(Bar {
            what: format!("ILQL vs the best behaviour policy ({})", b.agent),
            measured: ilql - b.ret.mean,
            target: 2.0,
        });
    }
    for (acting, label) in [("sample(T=1)", "BC (sampled)"), ("argmax", "BC (argmax)")] {
        if let Some(bc) = mean_of("bc", acting) {
            out.push(Bar { what: format!("ILQL vs {label}"), measured: ilql - bc, target: 3.0 });
        }
    }
    if let Some(g) = results.iter().find(|r| r.agent == GREEDY) {
        out.push(Bar { what: "ILQL vs greedy EIG (within 2.0)".into(), measured: ilql - g.ret.mean, target: -2.0 });
    }
    out
}

fn seeds_table(seeds: &[SeedSummary]) -> String {
    let mut md = String::from(
        "| learner | acting | seeds | return per seed | mean return | mean success % |\n|---|---|---|---|---:|---:|\n",
    );
    for s in seeds {
        let per: Vec<String> = s.returns.iter().map(|r| format!("{r:.2}")).collect();
        let ids: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.1} |\n",
            s.algo,
            s.acting,
            ids.join(", "),
            per.join(", "),
            s.mean_return,
            100.0 * s.mean_success
        ));
    }
    md
}

fn bars_table(bars: &[Bar]) -> String {
    let mut md = String::from("| bar | ILQL − other | target | |\n|---|---:|---:|---|\n");
    for b in bars {
        let met = b.measured >= b.target;
        md.push_str(&format!(
            "| {} | {:+.2} | ≥ {:+.1} | {} |\n",
            b.what,
            b.measured,
            b.target,
            if met { "met" } else { "missed" }
        ));
    }
    md
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
    let behaviour = behaviour_components()?;
    let mut agents = behaviour.clone();
    agents.push(GREEDY.into());
    let learned_main = learned(&dirs)?;
    agents.extend(learned_main.iter().map(|l| l.3.clone()));
    let main = evaluate("twenty-questions", agents, args, stop)?;
    let seeds = across_seeds(&main, &learned_main);
    let bars = bars(&main, &seeds, &behaviour);

    let mut generalization = Vec::new();
    if args.holdout > 0.0 {
        let train_scenario = format!("twenty-questions(holdout={},split=train)", args.holdout);
        let test_scenario = format!("twenty-questions(holdout={},split=test)", args.holdout);
        let gen_out = args.out.join("holdout");
        eprintln!("4/{steps} generalization corpus: no held-out object is ever the secret");
        let gen_corpus = gen_out.join("corpus");
        corpus(&gen_corpus, &train_scenario, args.episodes, args.seed, stop)?;
        let gen_args = ExperimentArgs { algos: vec![Algo::named("bc")?, Algo::named("ilql")?], ..args.clone() };
        let gen_dirs = learners(&gen_corpus, &gen_out, &gen_args, stop)?;
        eprintln!("5/{steps} evaluating on the held-out objects only");
        let mut agents = behaviour_components()?;
        agents.push(GREEDY.into());
        agents.extend(learned(&gen_dirs)?.into_iter().map(|l| l.3));
        generalization = evaluate(&test_scenario, agents, args, stop)?;
    }
    let report = ExperimentReport { main, generalization, across_seeds: seeds, bars };
    let mut md = format!(
        "# offline-20q\n\ncorpus: {} episodes of `{BEHAVIOUR_MIX}` vs `{PERSONA}` (seed {}); \
         learners: {} steps, batch {}, {} training seed(s) from {}; evaluation: {} episodes per agent vs `{PERSONA}` (seed {}).\n\n",
        args.episodes,
        args.seed,
        args.train.steps,
        args.train.batch_size,
        args.train_seeds,
        args.train.seed,
        args.eval_episodes,
        args.seed + 1_000_000
    );
    md.push_str(&table(&report.main));
    if args.train_seeds > 1 {
        md.push_str(&format!("\n## Learned agents over {} training seeds\n\n", args.train_seeds));
        md.push_str(&seeds_table(&report.across_seeds));
    }
    if !report.bars.is_empty() {
        md.push_str("\n## Bars (ILQL: mean over training seeds)\n\n");
        md.push_str(&bars_table(&report.bars));
    }
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
