//! The value network: a state encoder, an action encoder, and heads that score every
//! candidate at once.
//!
//! ```text
//! h(s) = relu(L_s(relu(Σ_{f∈feat(s)} E_s[f])))        state encoder   (B, H), + more layers
//!                                                      with `state_layers` > 1
//! u(a) = relu(L_a(relu(Σ_{f∈feat(a)} E_a[f])))        action encoder  (C, H)
//! Q_i(s, a) = ⟨W_i h(s), U_i u(a)⟩ + b_i(u(a))        two Q heads     (B, C), one matmul each
//! V(s) = L_v2(relu(L_v1 h(s)))                         value head      (B, 1)
//! π(a|s) ∝ exp(⟨W_π h(s), U_π u(a)⟩ + b_π(u(a)))       policy head (BC) (B, C)
//! ```
//!
//! Scoring all candidates is one (B, d)·(d, C) product, so CQL's log-sum-exp over the
//! candidate set costs little.
//!
//! Each pair head also adds ρ[class(s, a)], a learned scalar per "already said" class
//! (`featurize::said_before`): whether the agent already said `a` in `s`, and what the
//! persona replied. The bilinear form cannot express "this exact question was asked"; this
//! term can, and without it learned agents repeat themselves.

use anyhow::Result;
use candle_core::{D, Tensor};
use dialogym_engine::seed::Rng;
use serde::{Deserialize, Serialize};

use crate::nn::{Bags, EmbeddingBag, Linear, Params};

/// Network sizes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Width of the encoders.
    pub hidden: usize,
    /// Width of the bilinear heads.
    pub head_dim: usize,
    /// Classes of the "already said" term (`featurize::SAID_CLASSES`).
    #[serde(default = "said_classes")]
    pub said_classes: usize,
    /// Linear+ReLU layers after the state bag (≥ 1).
    #[serde(default = "one")]
    pub state_layers: usize,
}

fn one() -> usize {
    1
}

fn said_classes() -> usize {
    crate::featurize::SAID_CLASSES
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { hidden: 256, head_dim: 128, said_classes: crate::featurize::SAID_CLASSES, state_layers: 1 }
    }
}

/// The "already said" class of every (state, candidate) of a batch: (B·C,) u32.
#[derive(Clone, Debug)]
pub struct SaidMatrix {
    /// Flattened (B, C) classes.
    pub classes: Tensor,
    /// Rows (states).
    pub rows: usize,
    /// Columns (candidates).
    pub cols: usize,
}

impl SaidMatrix {
    /// From each state's (candidate, class) list.
    pub fn new<'a>(
        said: impl ExactSizeIterator<Item = &'a [(u32, u32)]>,
        candidates: usize,
        device: &candle_core::Device,
    ) -> Result<SaidMatrix> {
        let rows = said.len();
        let mut classes = vec![0u32; rows * candidates];
        for (b, list) in said.enumerate() {
            for &(c, class) in list {
                if (c as usize) < candidates {
                    classes[b * candidates + c as usize] = class;
                }
            }
        }
        Ok(SaidMatrix { classes: Tensor::from_vec(classes, rows * candidates, device)?, rows, cols: candidates })
    }
}

/// A bilinear head scoring (state, candidate) pairs.
#[derive(Clone)]
pub struct PairHead {
    ws: Linear,
    ua: Linear,
    bias: Linear,
    said: Tensor,
}

impl PairHead {
    fn new(p: &mut Params, name: &str, cfg: &ModelConfig, rng: &mut Rng) -> Result<Self> {
        Ok(PairHead {
            ws: Linear::new(p, &format!("{name}.state"), cfg.hidden, cfg.head_dim, rng)?,
            ua: Linear::new(p, &format!("{name}.action"), cfg.hidden, cfg.head_dim, rng)?,
            bias: Linear::new(p, &format!("{name}.bias"), cfg.hidden, 1, rng)?,
            said: p.zeros(&format!("{name}.said"), &[cfg.said_classes])?,
        })
    }

    /// Scores of every candidate: h (B, H), u (C, H) → (B, C).
    pub fn all(&self, h: &Tensor, u: &Tensor, said: &SaidMatrix) -> Result<Tensor> {
        let s = self.ws.forward(h)?;
        let a = self.ua.forward(u)?;
        let b = self.bias.forward(u)?.squeeze(1)?;
        let rho = self.said.index_select(&said.classes, 0)?.reshape((said.rows, said.cols))?;
        Ok((s.matmul(&a.t()?)?.broadcast_add(&b)? + rho)?)
    }

    /// Score of one candidate per row: h (B, H), u_a (B, H), class (B,) → (B,).
    pub fn pairs(&self, h: &Tensor, u_a: &Tensor, said_a: &Tensor) -> Result<Tensor> {
        let s = self.ws.forward(h)?;
        let a = self.ua.forward(u_a)?;
        let rho = self.said.index_select(said_a, 0)?;
        Ok(((s * a)?.sum(D::Minus1)? + self.bias.forward(u_a)?.squeeze(1)? + rho)?)
    }
}

/// The encoders and Q heads (what the target copy holds), plus optional V and π heads.
#[derive(Clone)]
pub struct Network {
    state_bag: EmbeddingBag,
    state_l1: Linear,
    state_deep: Vec<Linear>,
    action_bag: EmbeddingBag,
    action_l1: Linear,
    /// The two Q heads.
    pub q: [PairHead; 2],
    /// The value head (online network only).
    pub v: Option<(Linear, Linear)>,
    /// The policy head (online network only).
    pub pi: Option<PairHead>,
}

impl Network {
    /// Builds the network's parameters into `p`; `full` adds the V and π heads.
    pub fn new(
        p: &mut Params,
        cfg: &ModelConfig,
        state_buckets: usize,
        action_buckets: usize,
        full: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let h = cfg.hidden;
        let net = Network {
            state_bag: EmbeddingBag::new(p, "state.bag", state_buckets, h, 16, rng)?,
            state_l1: Linear::new(p, "state.l1", h, h, rng)?,
            state_deep: (2..=cfg.state_layers)
                .map(|i| Linear::new(p, &format!("state.l{i}"), h, h, rng))
                .collect::<Result<_>>()?,
            action_bag: EmbeddingBag::new(p, "action.bag", action_buckets, h, 8, rng)?,
            action_l1: Linear::new(p, "action.l1", h, h, rng)?,
            q: [PairHead::new(p, "q1", cfg, rng)?, PairHead::new(p, "q2", cfg, rng)?],
            v: if full { Some((Linear::new(p, "v.l1", h, h, rng)?, Linear::new(p, "v.l2", h, 1, rng)?)) } else { None },
            pi: if full { Some(PairHead::new(p, "pi", cfg, rng)?) } else { None },
        };
        Ok(net)
    }

    /// Selects the fused CPU embedding bags (default) or the generic tensor ops.
    pub fn set_fused(&mut self, fused: bool) {
        self.state_bag.fused = fused;
        self.action_bag.fused = fused;
    }

    /// h(s) for a batch of states → (B, H).
    pub fn encode_states(&self, s: &Bags) -> Result<Tensor> {
        let x = self.state_bag.forward(s)?.relu()?;
        let mut h = self.state_l1.forward(&x)?.relu()?;
        for layer in &self.state_deep {
            h = layer.forward(&h)?.relu()?;
        }
        Ok(h)
    }

    /// u(a) for the candidates → (C, H).
    pub fn encode_actions(&self, a: &Bags) -> Result<Tensor> {
        let x = self.action_bag.forward(a)?.relu()?;
        Ok(self.action_l1.forward(&x)?.relu()?)
    }

    /// V(s) → (B,).
    pub fn value(&self, h: &Tensor) -> Result<Tensor> {
        let (l1, l2) = self.v.as_ref().ok_or_else(|| anyhow::anyhow!("this network has no V head"))?;
        Ok(l2.forward(&l1.forward(h)?.relu()?)?.squeeze(1)?)
    }

    /// π logits over the candidates → (B, C).
    pub fn policy(&self, h: &Tensor, u: &Tensor, said: &SaidMatrix) -> Result<Tensor> {
        self.pi.as_ref().ok_or_else(|| anyhow::anyhow!("this network has no policy head"))?.all(h, u, said)
    }
}
