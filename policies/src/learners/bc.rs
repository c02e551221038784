//! Behaviour cloning: a softmax policy over the candidates fitted to the data's actions,
//!
//! ```text
//! L = mean[ −log π(a|s) ]
//! ```
//!
//! Its agent acts from the policy head (argmax, or sampling at a temperature).

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::terms::{Terms, policy_cross_entropy};
use super::{Acting, Learner, StepInput, parse_section};
use crate::data::Batch;

/// BC's config section (`learners.bc`): it has no settings of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BcConfig {}

/// The registry's builder.
pub fn build(section: &serde_json::Value) -> Result<Box<dyn Learner>> {
    let c: BcConfig = parse_section(section)?;
    Ok(Box::new(c))
}

/// The BC loss of one batch, shared with filtered BC (which differs only in its data).
pub fn loss(step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)> {
    let h = step.online.encode_states(&batch.s)?;
    let l = policy_cross_entropy(step.online, &h, step.u, batch)?;
    let terms = Terms { parts: vec![("bc", l.to_scalar::<f32>()?)], ..Default::default() };
    Ok((l, terms))
}

impl Learner for BcConfig {
    fn section(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn acting(&self) -> Acting {
        Acting::Policy
    }

    fn loss(&self, step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)> {
        loss(step, batch)
    }
}
