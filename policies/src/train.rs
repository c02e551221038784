//! The offline trainer: one loop for every learner (`crate::learners`), checkpoints,
//! resume, metrics. The loop knows no learner: it asks the [`Learner`] for its sample pool,
//! its loss and its Polyak rate.
//!
//! A checkpoint folder holds:
//! - `config.json` ([`CheckpointInfo`]): every hyperparameter ([`TrainConfig`], with the
//!   learner's own section), the featurizer, the scenario and its candidate list;
//! - `model.safetensors`: online (`online.*`) and target (`target.*`) parameters, AdamW
//!   moments (`opt.*`) and the step (`meta.step`), written atomically;
//! - `metrics.jsonl`: one line per logged step; `curve.svg`: the learning curve.
//!
//! Every minibatch is drawn by a generator keyed by (seed, step), and the optimizer state is
//! saved, so `--resume` continues exactly where the run stopped: the final checkpoint is
//! byte-identical to an uninterrupted run's.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{Device, Tensor};
use dialogym_engine::corpus::write_atomic;
use dialogym_engine::seed::{Stream, mix64, turn_rng};
use serde::{Deserialize, Serialize};

use crate::config::FlatConfigV1;
pub use crate::config::{LrSchedule, TrainConfig};
use crate::data::{Transitions, sample};
use crate::featurize::Featurizer;
use crate::learners::{Learner, StepInput, Terms};
use crate::model::Network;
use crate::nn::{Bags, Params};
use crate::optim::{AdamW, polyak};

/// The version of `config.json` this code writes. Version 1 held one flat config of every
/// learner's settings; version 2 holds sections (`config.learners.NAME`) and the candidate
/// list. Both load; only version 2 resumes.
pub const CHECKPOINT_VERSION: u32 = 2;

/// What `config.json` holds: the config plus what the data and the agent need to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointInfo {
    /// Format version of the checkpoint folder ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// Hyperparameters, resolved (only the learner's own section, every default filled in).
    pub config: TrainConfig,
    /// Scenario the corpus was made in (its canonical spec, `Scenario::id`).
    pub scenario: String,
    /// Number of transitions trained on.
    pub transitions: usize,
    /// Candidate vocabulary size.
    pub candidates: usize,
    /// The candidate utterances, in index order (empty for version 1, which recorded only
    /// their number).
    #[serde(default)]
    pub candidate_list: Vec<String>,
}

/// The networks, optimizer and learner of a run.
pub struct Trainer {
    /// Hyperparameters.
    pub config: TrainConfig,
    /// The learner (its loss, its target networks, its sample pool).
    pub learner: Box<dyn Learner>,
    /// Online parameters.
    pub params: Params,
    /// Online network.
    pub online: Network,
    target_params: Params,
    target: Network,
    opt: AdamW,
    /// Steps taken.
    pub step: usize,
    /// The step this run started from (non-zero after a resume).
    pub start_step: usize,
}

impl Trainer {
    /// Fresh networks initialized from the config's seed.
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Trainer> {
        config.validate()?;
        let learner = config.learner()?;
        let f = &config.featurizer;
        let mut rng = turn_rng(mix64(config.seed), 0, Stream::Learner);
        let mut params = Params::new(device);
        let mut online =
            Network::new(&mut params, &config.model, f.state_buckets(), f.action_buckets(), true, &mut rng)?;
        // The target copy starts equal to the online encoders and Q heads.
        let mut target_params = Params::new(device);
        let mut target =
            Network::new(&mut target_params, &config.model, f.state_buckets(), f.action_buckets(), false, &mut rng)?;
        online.set_fused(config.fused_cpu_kernels);
        target.set_fused(config.fused_cpu_kernels);
        for (name, var) in target_params.iter() {
            let src = params.get(name).ok_or_else(|| anyhow!("target parameter {name} has no online twin"))?;
            var.set(src.as_tensor())?;
        }
        let opt = AdamW::new(&params, config.optimizer, config.fused_cpu_kernels)?;
        Ok(Trainer {
            config: config.clone(),
            learner,
            params,
            online,
            target_params,
            target,
            opt,
            step: 0,
            start_step: 0,
        })
    }

    /// One gradient step on a batch; returns the logged terms.
    pub fn train_step(&mut self, data: &Transitions, pool: &[u32], candidates: &Bags) -> Result<Terms> {
        let c = &self.config;
        let device = self.params.device().clone();
        let mut rng = turn_rng(mix64(c.seed ^ 0x5eed), self.step as u32, Stream::Learner);
        let batch = sample(data, pool, c.batch_size, &mut rng, &device)?;
        let u = self.online.encode_actions(candidates)?;
        let input = StepInput { online: &self.online, target: &self.target, candidates, u: &u, gamma: c.gamma };
        let (loss, terms) = self.learner.loss(&input, &batch)?;
        let total = loss.to_scalar::<f32>()?;
        if !total.is_finite() {
            bail!("loss became {total} at step {}; lower the learning rate", self.step);
        }
        let grads = loss.backward()?;
        self.opt.config.lr = c.lr_schedule.at(c.optimizer.lr, self.step, c.steps);
        self.opt.step(&grads)?;
        if let Some(alpha) = self.learner.polyak_alpha() {
            for (name, var) in self.target_params.iter() {
                let online = self.params.get(name).ok_or_else(|| anyhow!("no online {name}"))?;
                polyak(var, online.as_tensor(), alpha)?;
            }
        }
        self.step += 1;
        Ok(terms)
    }

    /// All tensors of a checkpoint.
    fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut map = HashMap::new();
        for (n, v) in self.params.iter() {
            map.insert(format!("online.{n}"), v.as_tensor().to_device(&Device::Cpu)?);
        }
        for (n, v) in self.target_params.iter() {
            map.insert(format!("target.{n}"), v.as_tensor().to_device(&Device::Cpu)?);
        }
        for (n, t) in self.opt.state()? {
            map.insert(format!("opt.{n}"), t.to_device(&Device::Cpu)?);
        }
        map.insert("meta.step".into(), Tensor::new(&[self.step as i64], &Device::Cpu)?);
        Ok(map)
    }

    /// Writes `model.safetensors` atomically into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let map = self.tensors()?;
        let bytes = safetensors_bytes(&map)?;
        write_atomic(&dir.join(MODEL_FILE), |w| Ok(w.write_all(&bytes)?))
    }

    /// Restores a checkpoint written by [`Trainer::save`].
    pub fn restore(&mut self, dir: &Path) -> Result<()> {
        let map = load_tensors(&dir.join(MODEL_FILE))?;
        self.params.load(&map, "online.")?;
        self.target_params.load(&map, "target.")?;
        let step = map
            .get("meta.step")
            .ok_or_else(|| anyhow!("checkpoint lacks meta.step"))?
            .to_vec1::<i64>()?
            .first()
            .copied()
            .ok_or_else(|| anyhow!("empty meta.step"))?;
        let opt: HashMap<String, Tensor> =
            map.iter().filter_map(|(k, v)| k.strip_prefix("opt.").map(|k| (k.to_string(), v.clone()))).collect();
        self.opt.load_state(&opt, step as u64)?;
        self.step = step as usize;
        self.start_step = self.step;
        Ok(())
    }
}

/// The checkpoint's tensor file.
pub const MODEL_FILE: &str = "model.safetensors";
/// The checkpoint's config file.
pub const CONFIG_FILE: &str = "config.json";

/// Serializes tensors (safetensors orders them by dtype and name, so the bytes are stable).
fn safetensors_bytes(map: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    Ok(safetensors::serialize(map.iter().map(|(k, v)| (k.as_str(), v)), None)?)
}

/// Loads a safetensors file, turning any failure into an error that names it.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        bail!("{}: no such checkpoint file", path.display());
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| anyhow!("{}: corrupt or truncated checkpoint: {e}", path.display()))
}

/// Reads a checkpoint's `config.json` (version 2, or a flat version-1 config, turned into
/// sections).
pub fn load_info(dir: &Path) -> Result<CheckpointInfo> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    let bad = |e: anyhow::Error| anyhow!("{}: {e:#}", path.display());
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(2) => {
            let info: CheckpointInfo = serde_json::from_value(value).map_err(|e| bad(e.into()))?;
            info.config.validate().map_err(bad)?;
            Ok(info)
        }
        Some(1) => {
            #[derive(Deserialize)]
            struct InfoV1 {
                config: FlatConfigV1,
                scenario: String,
                transitions: usize,
                candidates: usize,
            }
            let old: InfoV1 = serde_json::from_value(value).map_err(|e| bad(e.into()))?;
            Ok(CheckpointInfo {
                version: 1,
                config: old.config.into_sections().map_err(bad)?,
                scenario: old.scenario,
                transitions: old.transitions,
                candidates: old.candidates,
                candidate_list: Vec::new(),
            })
        }
        other => bail!(
            "{}: checkpoint version {} is not one this dialogym reads (1 or {CHECKPOINT_VERSION})",
            path.display(),
            other.map_or("(none)".to_string(), |v| v.to_string())
        ),
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Step after the update.
    pub step: usize,
    /// Loss terms.
    pub losses: HashMap<String, f32>,
    /// Mean Q of data actions.
    pub q_mean: f32,
    /// Mean V.
    pub v_mean: f32,
}

/// Progress callbacks of a run.
pub trait Progress {
    /// After every logged step.
    fn log(&mut self, line: &MetricsLine);
}

impl<F: FnMut(&MetricsLine)> Progress for F {
    fn log(&mut self, line: &MetricsLine) {
        self(line)
    }
}

/// Trains on `data` into `out`; with `resume`, continues the run found there.
#[allow(clippy::too_many_arguments)] // each is a distinct, required input of a run
pub fn train(
    data: &Transitions,
    scenario: &str,
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    device: &Device,
    stop: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Trainer> {
    if data.is_empty() {
        bail!("the corpus has no agent turns to learn from");
    }
    let config = &config.resolved()?;
    let info = CheckpointInfo {
        version: CHECKPOINT_VERSION,
        config: config.clone(),
        scenario: scenario.to_string(),
        transitions: data.len(),
        candidates: data.candidates.len(),
        candidate_list: data.candidates.clone(),
    };
    fs::create_dir_all(out).with_context(|| format!("cannot create checkpoint folder {}", out.display()))?;
    let mut learner = Trainer::new(config, device)?;
    let metrics_path = out.join("metrics.jsonl");
    if resume && out.join(MODEL_FILE).exists() {
        let stored = load_info(out).context("cannot resume")?;
        if stored.version != CHECKPOINT_VERSION {
            bail!(
                "cannot resume: {} is a version-{} checkpoint; it still plays as learned:DIR, but train into a new --out",
                out.display(),
                stored.version
            );
        }
        let same =
            CheckpointInfo { config: TrainConfig { steps: config.steps, ..stored.config.clone() }, ..stored.clone() };
        if same != info {
            bail!("cannot resume: {} was trained with another config or corpus; use another --out", out.display());
        }
        learner.restore(out)?;
        truncate_metrics(&metrics_path, learner.step)?;
    } else {
        if out.join(MODEL_FILE).exists() {
            bail!("{} already holds a checkpoint; pass --resume or choose another --out", out.display());
        }
        let _ = fs::remove_file(&metrics_path);
    }
    write_atomic(&out.join(CONFIG_FILE), |w| {
        serde_json::to_writer_pretty(&mut *w, &info)?;
        Ok(w.write_all(b"\n")?)
    })?;
    let pool = learner.learner.pool(data);
    if pool.is_empty() {
        bail!("learner `{}` keeps no transition of this corpus to sample from", config.algo);
    }
    let candidates = Bags::new(data.candidate_features.iter().map(Vec::as_slice), device)?;
    let mut metrics = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("cannot open {}", metrics_path.display()))?;
    while learner.step < config.steps {
        if stop.load(Ordering::Relaxed) {
            learner.save(out)?;
            bail!(
                "interrupted at step {}; the checkpoint in {} is saved; rerun with --resume",
                learner.step,
                out.display()
            );
        }
        let terms = learner.train_step(data, &pool, &candidates)?;
        if learner.step % config.log_every == 0 || learner.step == config.steps {
            let line = MetricsLine {
                step: learner.step,
                losses: terms.parts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                q_mean: terms.q_mean,
                v_mean: terms.v_mean,
            };
            writeln!(metrics, "{}", serde_json::to_string(&line)?)?;
            progress.log(&line);
        }
        if learner.step % config.checkpoint_every == 0 || learner.step == config.steps {
            metrics.sync_data()?;
            learner.save(out)?;
        }
    }
    drop(metrics);
    crate::plot::learning_curve(&metrics_path, &out.join("curve.svg"), config.algo.name())?;
    Ok(learner)
}

/// Drops metric lines past `step` (they came after the checkpoint a resume starts from).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<MetricsLine>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, |w| Ok(w.write_all(kept.as_bytes())?))
}

/// CPU, or CUDA when built with `--features cuda` and a GPU is there.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                bail!("this build has no CUDA support; rebuild with `--features cuda` (see docs/training.md)");
            }
            // cudarc panics when no driver is found: turn that into an error, without the
            // panic message and backtrace the default hook would print first.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let opened = std::panic::catch_unwind(|| Device::new_cuda(0));
            std::panic::set_hook(hook);
            opened
                .map_err(|_| anyhow!("no usable CUDA device (is the NVIDIA driver installed?)"))?
                .map_err(|e| anyhow!("cannot open CUDA device 0: {e}"))
        }
        other => bail!("unknown device `{other}` (valid: cpu, cuda)"),
    }
}

/// Timing of training steps, for the benchmark.
pub fn steps_per_second(learner: &mut Trainer, data: &Transitions, steps: usize) -> Result<f64> {
    let pool: Vec<u32> = (0..data.len() as u32).collect();
    let device = learner.params.device().clone();
    let candidates = Bags::new(data.candidate_features.iter().map(Vec::as_slice), &device)?;
    learner.train_step(data, &pool, &candidates)?;
    device.synchronize()?;
    let start = Instant::now();
    for _ in 0..steps {
        learner.train_step(data, &pool, &candidates)?;
    }
    device.synchronize()?;
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}
