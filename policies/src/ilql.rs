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
use candle_core::{D, Tensor};

use crate::data::Batch;
use crate::model::Network;

/// The terms of one step, as scalars for logs.
#[derive(Clone, Debug, Default)]
pub struct Terms {
    /// Named loss terms.
    pub parts: Vec<(&'static str, f32)>,
    /// Mean Q of the data actions.
    pub q_mean: f32,
    /// Mean V of the states (ILQL only).
    pub v_mean: f32,
}

/// ILQL hyperparameters (see `TrainConfig` for their defaults and meaning).
#[derive(Clone, Copy, Debug)]
pub struct IlqlParams {
    /// Discount per utterance.
    pub gamma: f64,
    /// Expectile of the V regression.
    pub tau: f64,
    /// Weight of the CQL term.
    pub cql_weight: f64,
    /// Weight of the behaviour-cloning term on the π head.
    pub bc_weight: f64,
}

/// log Σ exp over candidates minus the data action's score, averaged: the CQL term for one
/// head, and also the cross-entropy of a softmax policy.
pub fn logsumexp_minus_data(scores_all: &Tensor, scores_data: &Tensor) -> Result<Tensor> {
    Ok((scores_all.log_sum_exp(D::Minus1)? - scores_data)?.mean_all()?)
}

/// Gathers each row's data-action score: (B, C), (B,) → (B,).
pub fn at_actions(scores_all: &Tensor, a: &Tensor) -> Result<Tensor> {
    Ok(scores_all.gather(&a.unsqueeze(1)?, 1)?.squeeze(1)?)
}

/// The ILQL loss of one batch.
pub fn loss(
    online: &Network,
    target: &Network,
    u: &Tensor,
    u_target: &Tensor,
    batch: &Batch,
    p: &IlqlParams,
) -> Result<(Tensor, Terms)> {
    let h = online.encode_states(&batch.s)?;
    // y = r + γ (1 − done) V(s'), V(s') held fixed.
    let v_next = online.value(&online.encode_states(&batch.s_next)?)?.detach();
    let not_done = (1.0 - &batch.done)?;
    let y = (&batch.r + (v_next * not_done)?.affine(p.gamma, 0.0)?)?;
    // min_i Q̄_i(s, a) from the target copies, held fixed.
    let h_t = target.encode_states(&batch.s)?;
    let u_ta = u_target.index_select(&batch.a, 0)?;
    let q_bar = target.q[0]
        .pairs(&h_t, &u_ta, &batch.said_a)?
        .minimum(&target.q[1].pairs(&h_t, &u_ta, &batch.said_a)?)?
        .detach();

    let mut l_q = Tensor::zeros((), h.dtype(), h.device())?;
    let mut l_cql = l_q.clone();
    let mut q_data_0 = None;
    for head in &online.q {
        let q_all = head.all(&h, u, &batch.said)?;
        let q_data = at_actions(&q_all, &batch.a)?;
        l_q = (l_q + (&q_data - &y)?.sqr()?.mean_all()?)?;
        l_cql = (l_cql + logsumexp_minus_data(&q_all, &q_data)?)?;
        q_data_0.get_or_insert(q_data);
    }
    let v = online.value(&h)?;
    let diff = (&q_bar - &v)?;
    let weight = diff.ge(0.0)?.where_cond(
        &Tensor::full(p.tau as f32, diff.shape(), diff.device())?,
        &Tensor::full((1.0 - p.tau) as f32, diff.shape(), diff.device())?,
    )?;
    let l_v = (weight * diff.sqr()?)?.mean_all()?;
    let mut total = ((&l_q + &l_v)? + l_cql.affine(p.cql_weight, 0.0)?)?;
    let mut parts =
        vec![("q", l_q.to_scalar::<f32>()?), ("v", l_v.to_scalar::<f32>()?), ("cql", l_cql.to_scalar::<f32>()?)];
    if p.bc_weight > 0.0 {
        let logits = online.policy(&h, u, &batch.said)?;
        let l_bc = logsumexp_minus_data(&logits, &at_actions(&logits, &batch.a)?)?;
        parts.push(("bc", l_bc.to_scalar::<f32>()?));
        total = (total + l_bc.affine(p.bc_weight, 0.0)?)?;
    }
    let terms = Terms {
        parts,
        q_mean: q_data_0.map(|q| q.mean_all()).transpose()?.map_or(Ok(0.0), |t| t.to_scalar::<f32>())?,
        v_mean: v.mean_all()?.to_scalar::<f32>()?,
    };
    Ok((total, terms))
}
