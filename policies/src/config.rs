//! A training run's configuration: the settings every learner shares, plus one section per
//! learner (`learners.ilql`, `learners.mc`, ... each that learner's own serde struct), with
//! the validation every path goes through (`--config FILE`, flags, the experiment, the
//! library's `train`).
//!
//! Bounds, checked before anything is allocated:
//! - `steps`, `log_every`, `checkpoint_every` ≥ 1; `batch_size` in 1..=[`MAX_BATCH`];
//! - `model.hidden`, `model.head_dim` in 1..=[`MAX_WIDTH`]; `model.state_layers` in
//!   1..=[`MAX_STATE_LAYERS`]; `model.said_classes` in `SAID_CLASSES`..=64;
//! - `featurizer.state_bits`, `featurizer.action_bits` in 1..=[`MAX_HASH_BITS`], and the
//!   embedding tables, (2^state_bits + 2^action_bits)·hidden floats, at most
//!   [`MAX_EMBEDDING_FLOATS`] (1 GiB of f32; training holds four copies: online, target,
//!   two AdamW moments);
//! - `gamma` in [0, 1]; `optimizer.lr` > 0, `beta1`, `beta2` in [0, 1), `eps` > 0,
//!   `weight_decay` ≥ 0, all finite; a cosine schedule's `final_ratio` in [0, 1];
//! - each learner's section: what its `build` checks (e.g. ILQL's `tau` in (0, 1)).

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::featurize::{HashedNgrams, SAID_CLASSES};
use crate::learners::{Algo, Learner, Range, check};
use crate::model::ModelConfig;
use crate::optim::AdamWConfig;

/// The largest minibatch: a (batch, candidates) score matrix of 65,536 rows and a few
/// hundred candidates is ~100 MB per tensor, and a step holds a handful of them.
pub const MAX_BATCH: usize = 65_536;
/// The widest encoder or head.
pub const MAX_WIDTH: usize = 4096;
/// The most Linear+ReLU layers after the state bag.
pub const MAX_STATE_LAYERS: usize = 16;
/// The most hash bits of the state or action buckets (2^24 buckets).
pub const MAX_HASH_BITS: u32 = 24;
/// The most floats in the two embedding tables together (2^28 f32 = 1 GiB per copy).
pub const MAX_EMBEDDING_FLOATS: u64 = 1 << 28;

/// Every hyperparameter of a training run, with its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The learner (a name of `learners::LEARNERS`).
    pub algo: Algo,
    /// Gradient steps (≥ 1).
    pub steps: usize,
    /// Transitions per minibatch (1..=[`MAX_BATCH`]).
    pub batch_size: usize,
    /// Discount per agent utterance, in [0, 1]: ILQL's TD target and every learner's
    /// returns-to-go. 1.0 for 20 Questions: episodes end within 20 utterances and the
    /// reward already charges every question.
    pub gamma: f64,
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
    /// Each learner's own section, by learner name (`{"ilql": {"tau": 0.7}}`); a learner
    /// without one takes its defaults. A checkpoint records only its learner's section,
    /// with every default filled in.
    #[serde(default)]
    pub learners: BTreeMap<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            algo: Algo::default(),
            steps: 12_000,
            batch_size: 256,
            gamma: 1.0,
            optimizer: AdamWConfig { lr: 1e-3, ..Default::default() },
            lr_schedule: LrSchedule::Constant,
            model: ModelConfig::default(),
            featurizer: HashedNgrams::default(),
            checkpoint_every: 1000,
            log_every: 50,
            seed: 0,
            fused_cpu_kernels: true,
            learners: BTreeMap::new(),
        }
    }
}

/// How the learning rate moves over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum LrSchedule {
    /// `optimizer.lr` throughout.
    #[default]
    Constant,
    /// Cosine annealing from `optimizer.lr` at step 0 to `final_ratio·optimizer.lr` at the
    /// last step: lr(t) = lr·(ρ + (1 − ρ)·½(1 + cos(π t / steps))).
    Cosine {
        /// ρ, the final fraction of the peak rate, in [0, 1].
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

fn count(key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        bail!("{key} = {v} must be in {lo}..={hi}");
    }
    Ok(())
}

impl TrainConfig {
    /// The learner of `algo`, built from its section (or its defaults).
    pub fn learner(&self) -> Result<Box<dyn Learner>> {
        let empty = serde_json::Value::Object(Default::default());
        self.algo.build(self.learners.get(self.algo.name()).unwrap_or(&empty))
    }

    /// Sets setting `key` of the chosen learner's section (a flag such as `--tau`);
    /// an error if that learner has no such setting.
    pub fn set_learner_setting(&mut self, key: &str, value: f64) -> Result<()> {
        let settings = self.learner()?.section();
        if settings.get(key).is_none() {
            let names: Vec<&String> = settings.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            bail!(
                "`{key}` is not a setting of learner `{}` (its settings: {})",
                self.algo,
                if names.is_empty() { "none".into() } else { format!("{names:?}") }
            );
        }
        let section = self.learners.entry(self.algo.name().to_string()).or_insert_with(|| serde_json::json!({}));
        match section.as_object_mut() {
            Some(map) => {
                map.insert(key.to_string(), serde_json::json!(value));
            }
            None => bail!("learners.{} must be a JSON object", self.algo),
        }
        Ok(())
    }

    /// Checks every bound (see the module docs); the error names the setting.
    pub fn validate(&self) -> Result<()> {
        count("steps", self.steps, 1, usize::MAX)?;
        count("batch_size", self.batch_size, 1, MAX_BATCH)?;
        count("log_every", self.log_every, 1, usize::MAX)?;
        count("checkpoint_every", self.checkpoint_every, 1, usize::MAX)?;
        check("gamma", self.gamma, Range::Unit)?;
        let o = &self.optimizer;
        check("optimizer.lr", o.lr, Range::Positive)?;
        check("optimizer.beta1", o.beta1, Range::BelowOne)?;
        check("optimizer.beta2", o.beta2, Range::BelowOne)?;
        check("optimizer.eps", o.eps, Range::Positive)?;
        check("optimizer.weight_decay", o.weight_decay, Range::NonNegative)?;
        if let LrSchedule::Cosine { final_ratio } = self.lr_schedule {
            check("lr_schedule.final_ratio", final_ratio, Range::Unit)?;
        }
        let m = &self.model;
        count("model.hidden", m.hidden, 1, MAX_WIDTH)?;
        count("model.head_dim", m.head_dim, 1, MAX_WIDTH)?;
        count("model.state_layers", m.state_layers, 1, MAX_STATE_LAYERS)?;
        count("model.said_classes", m.said_classes, SAID_CLASSES, 64)?;
        let f = &self.featurizer;
        for (key, bits) in [("featurizer.state_bits", f.state_bits), ("featurizer.action_bits", f.action_bits)] {
            count(key, bits as usize, 1, MAX_HASH_BITS as usize)?;
        }
        let floats = ((1u64 << f.state_bits) + (1u64 << f.action_bits)) * m.hidden as u64;
        if floats > MAX_EMBEDDING_FLOATS {
            bail!(
                "the embedding tables, (2^{} + 2^{})·{} = {floats} floats, exceed the bound of {MAX_EMBEDDING_FLOATS} \
                 (1 GiB of f32); lower featurizer.state_bits, featurizer.action_bits or model.hidden",
                f.state_bits,
                f.action_bits,
                m.hidden
            );
        }
        for (name, section) in &self.learners {
            Algo::named(name).map_err(|e| anyhow!("learners: {e}"))?.build(section)?;
        }
        self.learner()?;
        Ok(())
    }

    /// The validated config as a checkpoint records it: only the chosen learner's section,
    /// with every default filled in.
    pub fn resolved(&self) -> Result<TrainConfig> {
        self.validate()?;
        let section = self.learner()?.section();
        Ok(TrainConfig { learners: BTreeMap::from([(self.algo.name().to_string(), section)]), ..self.clone() })
    }
}

/// The flat config of version-1 checkpoints (every learner's settings side by side), read
/// so that old checkpoints still load.
#[derive(Deserialize)]
pub(crate) struct FlatConfigV1 {
    algo: Algo,
    steps: usize,
    batch_size: usize,
    gamma: f64,
    tau: f64,
    polyak_alpha: f64,
    cql_weight: f64,
    bc_weight: f64,
    filter_fraction: f64,
    optimizer: AdamWConfig,
    #[serde(default)]
    lr_schedule: LrSchedule,
    model: ModelConfig,
    featurizer: HashedNgrams,
    checkpoint_every: usize,
    log_every: usize,
    seed: u64,
    #[serde(default = "yes")]
    fused_cpu_kernels: bool,
}

impl FlatConfigV1 {
    /// The same run in sections: the chosen learner's section takes each of its settings
    /// from the flat field of that name.
    pub(crate) fn into_sections(self) -> Result<TrainConfig> {
        let flat = serde_json::json!({
            "tau": self.tau,
            "polyak_alpha": self.polyak_alpha,
            "cql_weight": self.cql_weight,
            "bc_weight": self.bc_weight,
            "filter_fraction": self.filter_fraction,
        });
        let mut config = TrainConfig {
            algo: self.algo,
            steps: self.steps,
            batch_size: self.batch_size,
            gamma: self.gamma,
            optimizer: self.optimizer,
            lr_schedule: self.lr_schedule,
            model: self.model,
            featurizer: self.featurizer,
            checkpoint_every: self.checkpoint_every,
            log_every: self.log_every,
            seed: self.seed,
            fused_cpu_kernels: self.fused_cpu_kernels,
            learners: BTreeMap::new(),
        };
        let defaults = config.learner()?.section();
        let mut section = serde_json::Map::new();
        for key in defaults.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if let Some(v) = flat.get(&key) {
                section.insert(key, v.clone());
            }
        }
        config.learners.insert(config.algo.name().to_string(), serde_json::Value::Object(section));
        config.resolved()
    }
}
