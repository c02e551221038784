//! `dialogym train`: offline RL on a corpus.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Result, anyhow};
use dialogym_engine::corpus::read_corpus;
use dialogym_policies::data::Transitions;
use dialogym_policies::train::{MetricsLine, TrainConfig, device, train};

/// What a finished training run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Transitions in the corpus.
    pub transitions: usize,
    /// Steps taken in this invocation (0: the checkpoint was already complete).
    pub steps: usize,
    /// Steps per second.
    pub steps_per_second: f64,
    /// The last logged metrics.
    pub last: Option<MetricsLine>,
}

/// Loads the corpus in `corpus`, builds transitions over its scenario's candidates, trains.
pub fn run(
    corpus: &Path,
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    device_name: &str,
    stop: &AtomicBool,
    progress: bool,
) -> Result<TrainSummary> {
    let (manifest, rows) = read_corpus(corpus)?;
    let scenario_id = manifest
        .config
        .get("scenario")
        .and_then(|s| s.as_str())
        .ok_or_else(|| anyhow!("{}: manifest names no scenario", corpus.display()))?
        .to_string();
    let session = crate::session::load(&scenario_id)?;
    let data = Transitions::build(&rows, &session.candidates(), &config.featurizer, config.gamma)?;
    let device = device(device_name)?;
    let pb = if progress {
        crate::progress_bar(config.steps as u64, config.algo.name())
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut last = None;
    let start = Instant::now();
    let mut log = |m: &MetricsLine| {
        pb.set_position(m.step as u64);
        let mut parts: Vec<String> = m.losses.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        parts.sort();
        pb.set_message(format!("{} Q {:.2} V {:.2}", parts.join(" "), m.q_mean, m.v_mean));
        last = Some(m.clone());
    };
    let learner = train(&data, &scenario_id, config, out, resume, &device, stop, &mut log)?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        transitions: data.len(),
        steps: learner.step - learner.start_step,
        steps_per_second: (learner.step - learner.start_step) as f64 / seconds.max(1e-9),
        last,
    })
}
