//! The baselines trained by the same trainer as ILQL, on the same data and budget.
//!
//! - BC: a softmax policy over the candidates, L = mean[−log π(a|s)].
//! - Filtered BC: BC on the transitions of the top x% of episodes by return.
//! - MC returns: Q regresses on the return-to-go, with the same CQL term as ILQL:
//!   L = Σ_i mean[(Q_i(s,a) − G)²] + α_cql·Σ_i mean[log Σ_{a'} exp Q_i(s,a') − Q_i(s,a)].

use anyhow::Result;
use candle_core::Tensor;

use crate::data::Batch;
use crate::ilql::{Terms, at_actions, logsumexp_minus_data};
use crate::model::Network;

/// Behaviour cloning (and filtered BC, which differs only in its data).
pub fn bc_loss(net: &Network, u: &Tensor, batch: &Batch) -> Result<(Tensor, Terms)> {
    let h = net.encode_states(&batch.s)?;
    let logits = net.policy(&h, u, &batch.said)?;
    let l = logsumexp_minus_data(&logits, &at_actions(&logits, &batch.a)?)?;
    let terms = Terms { parts: vec![("bc", l.to_scalar::<f32>()?)], ..Default::default() };
    Ok((l, terms))
}

/// Monte-Carlo return regression with CQL.
pub fn mc_loss(net: &Network, u: &Tensor, batch: &Batch, cql_weight: f64) -> Result<(Tensor, Terms)> {
    let h = net.encode_states(&batch.s)?;
    let mut l_q = Tensor::zeros((), h.dtype(), h.device())?;
    let mut l_cql = l_q.clone();
    let mut q_mean = 0.0;
    for head in &net.q {
        let q_all = head.all(&h, u, &batch.said)?;
        let q_data = at_actions(&q_all, &batch.a)?;
        q_mean = q_data.mean_all()?.to_scalar::<f32>()?;
        l_q = (l_q + (&q_data - &batch.rtg)?.sqr()?.mean_all()?)?;
        l_cql = (l_cql + logsumexp_minus_data(&q_all, &q_data)?)?;
    }
    let total = (&l_q + l_cql.affine(cql_weight, 0.0)?)?;
    let terms =
        Terms { parts: vec![("q", l_q.to_scalar::<f32>()?), ("cql", l_cql.to_scalar::<f32>()?)], q_mean, v_mean: 0.0 };
    Ok((total, terms))
}
