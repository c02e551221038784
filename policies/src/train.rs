//! The offline trainer: one loop for ILQL and its baselines, checkpoints, resume, metrics.
//!
//! A checkpoint folder holds:
//! - `config.json`: every hyperparameter ([`TrainConfig`]), the featurizer, the scenario;
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

use crate::baselines::{bc_loss, mc_loss};
use crate::data::{Transitions, sample};
use crate::featurize::{Featurizer, HashedNgrams};
use crate::ilql::{self, IlqlParams, Terms};
use crate::model::{ModelConfig, Network};
use crate::nn::{Bags, Params};
use crate::optim::{AdamW, AdamWConfig, polyak};

/// Which learner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// Implicit Language Q-Learning (utterance level) with CQL.
    Ilql,
    /// Behaviour cloning over the candidates.
    Bc,
    /// BC on the top episodes by return.
    FilteredBc,
    /// Q regression on Monte-Carlo returns, with CQL.
    Mc,
}

impl std::str::FromStr for Algo {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Algo> {
        Ok(match s {
            "ilql" => Algo::Ilql,
            "bc" => Algo::Bc,
            "filtered-bc" => Algo::FilteredBc,
            "mc" => Algo::Mc,
            other => bail!("unknown algorithm `{other}` (valid: ilql, bc, filtered-bc, mc)"),
        })
    }
}

impl Algo {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ilql => "ilql",
            Algo::Bc => "bc",
            Algo::FilteredBc => "filtered-bc",
            Algo::Mc => "mc",
        }
    }

    /// Whether the agent acts from the policy head (else from min Q).
    pub fn acts_from_policy(self) -> bool {
        matches!(self, Algo::Bc | Algo::FilteredBc)
    }
}

/// Every hyperparameter of a training run, with its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The learner.
    pub algo: Algo,
    /// Gradient steps.
    pub steps: usize,
    /// Transitions per minibatch.
    pub batch_size: usize,
    /// Discount per agent utterance. 1.0 for 20 Questions: episodes end within 20
    /// utterances and the reward already charges every question.
    pub gamma: f64,
    /// Expectile τ of ILQL's V regression (0.5 = mean; → 1 = max over data actions).
    pub tau: f64,
    /// Polyak rate α of the target Q copies: Q̄ ← (1 − α)Q̄ + αQ after every step.
    pub polyak_alpha: f64,
    /// Weight of the CQL term (ILQL and MC).
    pub cql_weight: f64,
    /// Weight of the BC term on ILQL's π head (0 = no π head training).
    pub bc_weight: f64,
    /// Filtered BC keeps the top `filter_fraction` of episodes by return.
    pub filter_fraction: f64,
    /// Optimizer (`optimizer.lr` is the peak learning rate of the schedule).
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule over `steps`.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Network sizes.
    pub model: ModelConfig,
    /// Text featurizer.
    pub featurizer: HashedNgrams,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Log metrics every this many steps.
    pub log_every: usize,
    /// Seed of initialization and minibatch draws.
    pub seed: u64,
    /// Use dialogym's fused CPU kernels (AdamW, embedding bags); false runs the generic
    /// tensor-op versions (the benchmark's baseline). Same math either way.
    #[serde(default = "yes")]
    pub fused_cpu_kernels: bool,
}

fn yes() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            algo: Algo::Ilql,
            steps: 12_000,
            batch_size: 256,
            gamma: 1.0,
            tau: 0.8,
            polyak_alpha: 0.005,
            cql_weight: 1.0,
            bc_weight: 1.0,
            filter_fraction: 0.3,
            optimizer: AdamWConfig { lr: 1e-3, ..Default::default() },
            lr_schedule: LrSchedule::Constant,
            model: ModelConfig::default(),
            featurizer: HashedNgrams::default(),
            checkpoint_every: 1000,
            log_every: 50,
            seed: 0,
            fused_cpu_kernels: true,
        }
    }
}

/// How the learning rate moves over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// `optimizer.lr` throughout.
    #[default]
    Constant,
    /// Cosine annealing from `optimizer.lr` at step 0 to `final_ratio·optimizer.lr` at the
    /// last step: lr(t) = lr·(ρ + (1 − ρ)·½(1 + cos(π t / steps))).
    Cosine {
        /// ρ, the final fraction of the peak rate.
        final_ratio: f64,
    },
}

impl LrSchedule {
    /// The learning rate of step `t` (0-based) of `steps`, for peak rate `lr`.
    pub fn at(self, lr: f64, t: usize, steps: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { final_ratio } => {
                let x = (t as f64 / steps.max(1) as f64).min(1.0);
                lr * (final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos()))
            }
        }
    }
}

/// What `config.json` holds: the config plus what the data and the agent need to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// Format version of the checkpoint folder.
    pub version: u32,
    /// Hyperparameters.
    pub config: TrainConfig,
    /// Scenario the corpus was made in.
    pub scenario: String,
    /// Number of transitions trained on.
    pub transitions: usize,
    /// Candidate vocabulary size.
    pub candidates: usize,
}

/// The networks and optimizer of a run.
pub struct Learner {
    /// Hyperparameters.
    pub config: TrainConfig,
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

impl Learner {
    /// Fresh networks initialized from the config's seed.
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Learner> {
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
        Ok(Learner { config: config.clone(), params, online, target_params, target, opt, step: 0, start_step: 0 })
    }

    /// One gradient step on a batch; returns the logged terms.
    pub fn train_step(&mut self, data: &Transitions, pool: &[u32], candidates: &Bags) -> Result<Terms> {
        let c = &self.config;
        let device = self.params.device().clone();
        let mut rng = turn_rng(mix64(c.seed ^ 0x5eed), self.step as u32, Stream::Learner);
        let batch = sample(data, pool, c.batch_size, &mut rng, &device)?;
        let u = self.online.encode_actions(candidates)?;
        let (loss, terms) = match c.algo {
            Algo::Ilql => {
                let u_t = self.target.encode_actions(candidates)?;
                let p = IlqlParams { gamma: c.gamma, tau: c.tau, cql_weight: c.cql_weight, bc_weight: c.bc_weight };
                ilql::loss(&self.online, &self.target, &u, &u_t, &batch, &p)?
            }
            Algo::Bc | Algo::FilteredBc => bc_loss(&self.online, &u, &batch)?,
            Algo::Mc => mc_loss(&self.online, &u, &batch, c.cql_weight)?,
        };
        let total = loss.to_scalar::<f32>()?;
        if !total.is_finite() {
            bail!("loss became {total} at step {}; lower the learning rate", self.step);
        }
        let grads = loss.backward()?;
        self.opt.config.lr = c.lr_schedule.at(c.optimizer.lr, self.step, c.steps);
        self.opt.step(&grads)?;
        if c.algo == Algo::Ilql {
            for (name, var) in self.target_params.iter() {
                let online = self.params.get(name).ok_or_else(|| anyhow!("no online {name}"))?;
                polyak(var, online.as_tensor(), c.polyak_alpha)?;
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

    /// Restores a checkpoint written by [`Learner::save`].
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

/// Reads a checkpoint's `config.json`.
pub fn load_info(dir: &Path) -> Result<CheckpointInfo> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
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
) -> Result<Learner> {
    if data.is_empty() {
        bail!("the corpus has no agent turns to learn from");
    }
    if config.batch_size == 0 || config.log_every == 0 || config.checkpoint_every == 0 {
        bail!("batch size, log interval and checkpoint interval must be at least 1");
    }
    let info = CheckpointInfo {
        version: 1,
        config: config.clone(),
        scenario: scenario.to_string(),
        transitions: data.len(),
        candidates: data.candidates.len(),
    };
    fs::create_dir_all(out).with_context(|| format!("cannot create checkpoint folder {}", out.display()))?;
    let mut learner = Learner::new(config, device)?;
    let metrics_path = out.join("metrics.jsonl");
    if resume && out.join(MODEL_FILE).exists() {
        let stored = load_info(out).context("cannot resume")?;
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
    let pool: Vec<u32> = match config.algo {
        Algo::FilteredBc => data.top_episodes(config.filter_fraction),
        _ => (0..data.len() as u32).collect(),
    };
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
pub fn steps_per_second(learner: &mut Learner, data: &Transitions, steps: usize) -> Result<f64> {
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
