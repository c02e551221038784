//! Loss terms more than one learner uses, written once: the Q-head regression with its CQL
//! term (ILQL, MC) and the cross-entropy of the π head (ILQL's BC term, BC, filtered BC).

use anyhow::Result;
use candle_core::{D, Tensor};

use crate::data::Batch;
use crate::model::Network;

/// The terms of one step, as scalars for logs.
#[derive(Clone, Debug, Default)]
pub struct Terms {
    /// Named loss terms.
    pub parts: Vec<(&'static str, f32)>,
    /// Mean over the batch of min(Q1, Q2)(s, a) at the data actions: the value the learned
    /// agent acts on (0 for learners without Q heads).
    pub q_mean: f32,
    /// Mean V of the states (0 for learners without a V head).
    pub v_mean: f32,
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

/// L_BC = mean[−log π(a|s)] of the π head at the data actions.
pub fn policy_cross_entropy(net: &Network, h: &Tensor, u: &Tensor, batch: &Batch) -> Result<Tensor> {
    let logits = net.policy(h, u, &batch.said)?;
    logsumexp_minus_data(&logits, &at_actions(&logits, &batch.a)?)
}

/// The Q heads regressed on a target, with the CQL term.
pub struct QFit {
    /// L_Q = Σ_i mean[(Q_i(s,a) − y)²].
    pub l_q: Tensor,
    /// L_CQL = Σ_i mean[log Σ_{a'∈C} exp Q_i(s,a') − Q_i(s,a)].
    pub l_cql: Tensor,
    /// mean[min_i Q_i(s,a)] (see [`Terms::q_mean`]).
    pub q_mean: f32,
}

/// Both Q heads of `net` in states `h` against the target `y` (B,), summed over heads.
pub fn q_regression_with_cql(net: &Network, h: &Tensor, u: &Tensor, batch: &Batch, y: &Tensor) -> Result<QFit> {
    let mut l_q = Tensor::zeros((), h.dtype(), h.device())?;
    let mut l_cql = l_q.clone();
    let mut q_min: Option<Tensor> = None;
    for head in &net.q {
        let q_all = head.all(h, u, &batch.said)?;
        let q_data = at_actions(&q_all, &batch.a)?;
        l_q = (l_q + (&q_data - y)?.sqr()?.mean_all()?)?;
        l_cql = (l_cql + logsumexp_minus_data(&q_all, &q_data)?)?;
        q_min = Some(match q_min {
            None => q_data.detach(),
            Some(m) => m.minimum(&q_data.detach())?,
        });
    }
    let q_mean = q_min.map(|m| m.mean_all()?.to_scalar::<f32>()).transpose()?.unwrap_or(0.0);
    Ok(QFit { l_q, l_cql, q_mean })
}
