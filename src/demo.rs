//! `dialogym demo`: the whole pipeline, small, on the embedded 20 Questions: imagine a
//! corpus with weak questioners, train ILQL and BC on it, evaluate them beside the
//! behaviour policies and greedy EIG.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use dialogym_policies::learners::Algo;
use dialogym_policies::train::TrainConfig;

use crate::experiment::{ExperimentArgs, offline_20q};

/// Runs the demo into `out` (re-running it reuses what is there).
pub fn run(out: &Path, seed: u64, stop: &AtomicBool) -> Result<()> {
    let args = ExperimentArgs {
        out: out.to_path_buf(),
        episodes: 4000,
        eval_episodes: 500,
        train: TrainConfig { seed, steps: 1500, ..TrainConfig::default() },
        algos: vec![Algo::named("bc")?, Algo::named("ilql")?],
        seed,
        holdout: 0.0,
        train_seeds: 1,
    };
    offline_20q(&args, stop)?;
    crate::llm::demo_llm(seed, stop)?;
    Ok(())
}
