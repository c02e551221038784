//! `dialogym train`: offline RL on a corpus.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
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

/// Refuses an `out` that is `corpus` or lies inside it (a checkpoint written into its own
/// corpus would mix files a reader trusts with files it does not know).
pub fn refuse_out_inside_corpus(corpus: &Path, out: &Path) -> Result<()> {
    let corpus_abs =
        corpus.canonicalize().with_context(|| format!("cannot open corpus folder {}", corpus.display()))?;
    if resolved(out)?.starts_with(&corpus_abs) {
        bail!(
            "--out {} is inside the corpus folder {}; write the checkpoint to another folder",
            out.display(),
            corpus.display()
        );
    }
    Ok(())
}

/// `path` made absolute with its deepest existing ancestor canonicalized (links and `..`
/// resolved), whether or not the rest exists yet.
fn resolved(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).with_context(|| format!("bad path {}", path.display()))?;
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    loop {
        if let Ok(real) = base.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |p, part| p.join(part)));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent;
            }
            _ => return Ok(abs),
        }
    }
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
    refuse_out_inside_corpus(corpus, out)?;
    config.validate()?;
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
