//! ILQL at the utterance level (Snell et al., 2022, "Offline RL for Natural Language
//! Generation with Implicit Language Q Learning"), as trlx computes it, with actions
//! being whole utterances chosen from the scenario's candidates.
//!
//! For a batch of transitions (s, a, r, s', done):
//!
//! ```text
//! y        = r + γ·(1 − done)·V(s')                       V(s') not differentiated
//! L_Q      = Σ_i mean[(Q_i(s,a) − y)²]
//! L_V      = mean[ |τ − 1(u < 0)|·u² ],  u = min_i Q̄_i(s,a) − V(s)   Q̄: target (Polyak) copies
//! L_CQL    = Σ_i mean[ log Σ_{a'∈C} exp Q_i(s,a') − Q_i(s,a) ]
//! L_BC     = mean[ −log π(a|s) ]                          optional, for β-extraction
//! L        = L_Q + L_V + α_cql·L_CQL + w_bc·L_BC
//! ```
//!
//! The expectile τ > 0.5 makes V(s) approach the best Q among actions the data took in s,
//! so Q learns the value of acting well after the data's action, without querying actions
//! the data never took (the "implicit" in ILQL). CQL pushes down candidates the data did
//! not take, which keeps the argmax over all candidates from picking an untried one.

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::terms::{Terms, policy_cross_entropy, q_regression_with_cql};
use super::{Acting, Learner, Range, StepInput, check, parse_section};
use crate::data::Batch;

/// ILQL's config section (`learners.ilql`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IlqlConfig {
    /// Expectile τ of the V regression, in (0, 1) (0.5 = mean; → 1 = max over data actions).
    pub tau: f64,
    /// Polyak rate α of the target Q copies, in (0, 1]: Q̄ ← (1 − α)Q̄ + αQ after every step.
    pub polyak_alpha: f64,
    /// Weight α_cql of the CQL term, ≥ 0.
    pub cql_weight: f64,
    /// Weight w_bc of the BC term on the π head, ≥ 0 (0 = no π head training, no β acting).
    pub bc_weight: f64,
}

impl Default for IlqlConfig {
    fn default() -> Self {
        IlqlConfig { tau: 0.8, polyak_alpha: 0.005, cql_weight: 1.0, bc_weight: 1.0 }
    }
}

/// The registry's builder.
pub fn build(section: &serde_json::Value) -> Result<Box<dyn Learner>> {
    let c: IlqlConfig = parse_section(section)?;
    check("tau", c.tau, Range::OpenUnit)?;
    check("polyak_alpha", c.polyak_alpha, Range::UpToOne)?;
    check("cql_weight", c.cql_weight, Range::NonNegative)?;
    check("bc_weight", c.bc_weight, Range::NonNegative)?;
    Ok(Box::new(c))
}

impl Learner for IlqlConfig {
    fn section(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn polyak_alpha(&self) -> Option<f64> {
        Some(self.polyak_alpha)
    }

    fn acting(&self) -> Acting {
        Acting::MinQ { beta: self.bc_weight > 0.0 }
    }

    fn loss(&self, step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)> {
        let (online, target) = (step.online, step.target);
        let u_target = target.encode_actions(step.candidates)?;
        let h = online.encode_states(&batch.s)?;
        // y = r + γ (1 − done) V(s'), V(s') held fixed.
        let v_next = online.value(&online.encode_states(&batch.s_next)?)?.detach();
        let not_done = (1.0 - &batch.done)?;
        let y = (&batch.r + (v_next * not_done)?.affine(step.gamma, 0.0)?)?;
        // min_i Q̄_i(s, a) from the target copies, held fixed.
        let h_t = target.encode_states(&batch.s)?;
        let u_ta = u_target.index_select(&batch.a, 0)?;
        let q_bar = target.q[0]
            .pairs(&h_t, &u_ta, &batch.said_a)?
            .minimum(&target.q[1].pairs(&h_t, &u_ta, &batch.said_a)?)?
            .detach();
        let fit = q_regression_with_cql(online, &h, step.u, batch, &y)?;
        // L_V: expectile regression of V(s) on min Q̄(s, a), weight τ above and 1 − τ below.
        let v = online.value(&h)?;
        let diff = (&q_bar - &v)?;
        let weight = diff.ge(0.0)?.where_cond(
            &Tensor::full(self.tau as f32, diff.shape(), diff.device())?,
            &Tensor::full((1.0 - self.tau) as f32, diff.shape(), diff.device())?,
        )?;
        let l_v = (weight * diff.sqr()?)?.mean_all()?;
        let mut total = ((&fit.l_q + &l_v)? + fit.l_cql.affine(self.cql_weight, 0.0)?)?;
        let mut parts = vec![
            ("q", fit.l_q.to_scalar::<f32>()?),
            ("v", l_v.to_scalar::<f32>()?),
            ("cql", fit.l_cql.to_scalar::<f32>()?),
        ];
        if self.bc_weight > 0.0 {
            let l_bc = policy_cross_entropy(online, &h, step.u, batch)?;
            parts.push(("bc", l_bc.to_scalar::<f32>()?));
            total = (total + l_bc.affine(self.bc_weight, 0.0)?)?;
        }
        let v_mean = v.mean_all()?.to_scalar::<f32>()?;
        Ok((total, Terms { parts, q_mean: fit.q_mean, v_mean }))
    }
}
