//! Monte-Carlo returns: the Q heads regress on the return-to-go G, with the same CQL term
//! as ILQL, and no target networks:
//!
//! ```text
//! L = Σ_i mean[(Q_i(s,a) − G)²] + α_cql·Σ_i mean[log Σ_{a'} exp Q_i(s,a') − Q_i(s,a)]
//! ```
//!
//! Its agent acts by argmax_a min(Q1, Q2)(s, a).

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::terms::{Terms, q_regression_with_cql};
use super::{Acting, Learner, Range, StepInput, check, parse_section};
use crate::data::Batch;

/// MC's config section (`learners.mc`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McConfig {
    /// Weight α_cql of the CQL term, ≥ 0.
    pub cql_weight: f64,
}

impl Default for McConfig {
    fn default() -> Self {
        McConfig { cql_weight: 1.0 }
    }
}

/// The registry's builder.
pub fn build(section: &serde_json::Value) -> Result<Box<dyn Learner>> {
    let c: McConfig = parse_section(section)?;
    check("cql_weight", c.cql_weight, Range::NonNegative)?;
    Ok(Box::new(c))
}

impl Learner for McConfig {
    fn section(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn acting(&self) -> Acting {
        Acting::MinQ { beta: false }
    }

    fn loss(&self, step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)> {
        let h = step.online.encode_states(&batch.s)?;
        let fit = q_regression_with_cql(step.online, &h, step.u, batch, &batch.rtg)?;
        let total = (&fit.l_q + fit.l_cql.affine(self.cql_weight, 0.0)?)?;
        let parts = vec![("q", fit.l_q.to_scalar::<f32>()?), ("cql", fit.l_cql.to_scalar::<f32>()?)];
        Ok((total, Terms { parts, q_mean: fit.q_mean, v_mean: 0.0 }))
    }
}
