//! The learners, one file each, behind the [`Learner`] trait, CleanRL style: what makes an
//! algorithm itself (its loss, whether it keeps target networks, how its agent acts, which
//! transitions it samples) sits in its file; the trainer loop (`crate::train`) is shared and
//! knows none of it.
//!
//! Each learner has its own config section (a serde struct with `deny_unknown_fields`,
//! under `learners.NAME` in a training config), and one row in [`LEARNERS`].
//!
//! Adding a learner takes two places: the new file (its config section, a `build`
//! function and its `impl Learner`) and, here, a `mod` line plus one row in [`LEARNERS`].

mod bc;
mod filtered_bc;
mod ilql;
mod mc;
pub mod terms;

use std::fmt;

use anyhow::{Result, anyhow, bail};
use candle_core::Tensor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::{Batch, Transitions};
use crate::model::Network;
use crate::nn::Bags;
pub use terms::Terms;

/// A learner: the parts of an offline RL algorithm that differ from one algorithm to the
/// next. Built from its config section by its registry row.
pub trait Learner {
    /// Its config section with every default filled in (what `config.json` records).
    fn section(&self) -> serde_json::Value;

    /// The Polyak rate α of its target copies (Q̄ ← (1 − α)Q̄ + αQ after every step), or
    /// `None`: it uses no target networks, and the trainer leaves them at their initial
    /// values (the checkpoint still holds them, so its layout is the same for every learner).
    fn polyak_alpha(&self) -> Option<f64> {
        None
    }

    /// How its trained agent acts.
    fn acting(&self) -> Acting;

    /// The transitions its minibatches are drawn from (indices into `data`).
    fn pool(&self, data: &Transitions) -> Vec<u32> {
        (0..data.len() as u32).collect()
    }

    /// The loss of one minibatch, and its terms for the logs.
    fn loss(&self, step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)>;
}

/// What a loss may look at besides its batch.
pub struct StepInput<'a> {
    /// The network being trained.
    pub online: &'a Network,
    /// The target copies (Polyak averages of `online`'s encoders and Q heads).
    pub target: &'a Network,
    /// The candidates' features.
    pub candidates: &'a Bags,
    /// u(a) of every candidate from `online`: (C, H).
    pub u: &'a Tensor,
    /// The discount per agent utterance.
    pub gamma: f64,
}

/// How a learned agent picks among the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acting {
    /// argmax_a min(Q1, Q2)(s, a). With `beta` true the π head was trained as well, and the
    /// agent may act by log π(a|s) + β·(min Q(s,a) − V(s)) (ILQL's policy extraction).
    MinQ {
        /// Whether β-advantage acting is available.
        beta: bool,
    },
    /// The policy head's logits: argmax, or a softmax sample at a temperature.
    Policy,
}

/// One row of the registry: a learner's name, its help and its builder.
pub struct Registration {
    /// The `--algo` name and the key of its config section.
    pub name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Builds the learner from its config section (`{}` = every default), validating it.
    pub build: fn(&serde_json::Value) -> Result<Box<dyn Learner>>,
}

/// Every learner, in the order `--help` lists them.
pub const LEARNERS: &[Registration] = &[
    Registration { name: "ilql", help: "Implicit Language Q-Learning (utterance level) with CQL", build: ilql::build },
    Registration { name: "bc", help: "behaviour cloning over the candidates", build: bc::build },
    Registration {
        name: "filtered-bc",
        help: "behaviour cloning on the top episodes by return",
        build: filtered_bc::build,
    },
    Registration { name: "mc", help: "Q regression on Monte-Carlo returns, with CQL", build: mc::build },
];

/// A learner's name, checked against [`LEARNERS`].
#[derive(Clone, Copy)]
pub struct Algo(&'static Registration);

impl Algo {
    /// The learner called `name`.
    pub fn named(name: &str) -> Result<Algo> {
        LEARNERS.iter().find(|r| r.name == name).map(Algo).ok_or_else(|| {
            let valid: Vec<&str> = LEARNERS.iter().map(|r| r.name).collect();
            anyhow!("unknown learner `{name}` (valid: {})", valid.join(", "))
        })
    }

    /// Every registered learner.
    pub fn all() -> impl Iterator<Item = Algo> {
        LEARNERS.iter().map(Algo)
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The one-line help.
    pub fn help(self) -> &'static str {
        self.0.help
    }

    /// Builds the learner from its config section.
    pub fn build(self, section: &serde_json::Value) -> Result<Box<dyn Learner>> {
        (self.0.build)(section).map_err(|e| anyhow!("learners.{}: {e:#}", self.name()))
    }
}

impl Default for Algo {
    fn default() -> Self {
        Algo(&LEARNERS[0])
    }
}

impl PartialEq for Algo {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Algo {}

impl fmt::Debug for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algo {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Algo> {
        Algo::named(s)
    }
}

impl Serialize for Algo {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Algo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Algo, D::Error> {
        let name = String::deserialize(d)?;
        Algo::named(&name).map_err(serde::de::Error::custom)
    }
}

/// Parses a learner's config section: missing keys take their defaults, unknown keys are
/// errors that name them.
pub fn parse_section<C: DeserializeOwned>(section: &serde_json::Value) -> Result<C> {
    serde_json::from_value(section.clone()).map_err(|e| anyhow!("{e}"))
}

/// The allowed values of a real-valued setting; NaN is never allowed.
#[derive(Clone, Copy, Debug)]
pub enum Range {
    /// [0, 1].
    Unit,
    /// (0, 1).
    OpenUnit,
    /// (0, 1].
    UpToOne,
    /// [0, 1).
    BelowOne,
    /// ≥ 0 and finite.
    NonNegative,
    /// > 0 and finite.
    Positive,
}

impl Range {
    fn contains(self, v: f64) -> bool {
        match self {
            Range::Unit => (0.0..=1.0).contains(&v),
            Range::OpenUnit => v > 0.0 && v < 1.0,
            Range::UpToOne => v > 0.0 && v <= 1.0,
            Range::BelowOne => (0.0..1.0).contains(&v),
            Range::NonNegative => v >= 0.0 && v.is_finite(),
            Range::Positive => v > 0.0 && v.is_finite(),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Range::Unit => "in [0, 1]",
            Range::OpenUnit => "in (0, 1)",
            Range::UpToOne => "in (0, 1]",
            Range::BelowOne => "in [0, 1)",
            Range::NonNegative => "finite and >= 0",
            Range::Positive => "finite and > 0",
        }
    }
}

/// Checks that setting `key` is `range`: `gamma = 5 must be in [0, 1]`.
pub fn check(key: &str, v: f64, range: Range) -> Result<()> {
    if !range.contains(v) {
        bail!("{key} = {v} must be {}", range.text());
    }
    Ok(())
}
