//! AdamW, fused on the CPU.
//!
//! candle-nn's AdamW runs ~10 tensor ops per parameter per step, each a pass over memory
//! with a fresh allocation. Here each parameter is updated in ONE pass, in place, with the
//! moments kept beside it (an in-place custom op). On CUDA the same update runs as tensor
//! ops. The moments are part of the checkpoint, so `--resume` continues the exact run.
//!
//! Update (Loshchilov & Hutter), for step t ≥ 1:
//!   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//!   θ ← θ − lr·( m/(1−β1ᵗ) / (√(v/(1−β2ᵗ)) + ε) + λ·θ )

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::nn::Params;

/// AdamW settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

enum Moments {
    /// CPU: plain vectors updated by the fused op.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Other devices: tensors updated by tensor ops.
    Device { m: Var, v: Var },
}

struct Slot {
    name: String,
    var: Var,
    moments: Moments,
}

/// AdamW over a [`Params`] store.
pub struct AdamW {
    /// Settings.
    pub config: AdamWConfig,
    /// Steps taken.
    pub t: u64,
    slots: Vec<Slot>,
}

struct FusedStep<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
    c1: f32,
    c2: f32,
}

impl InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("fused-adamw: f32 parameters only");
        };
        let (Some((a0, a1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("fused-adamw: non-contiguous parameter or gradient");
        };
        let (theta, grad) = (&mut theta[a0..a1], &grad[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        let (lr, b1, b2, eps, wd, c1, c2) = (self.lr, self.b1, self.b2, self.eps, self.wd, self.c1, self.c2);
        for (((p, &g), m), v) in theta.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps) + wd * *p);
        }
        Ok(())
    }
}

impl AdamW {
    /// An optimizer for every parameter of `params`; `fused` selects the one-pass CPU update
    /// (ignored off the CPU), else the tensor-op update runs everywhere.
    pub fn new(params: &Params, config: AdamWConfig, fused: bool) -> Result<Self> {
        let slots = params
            .iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                let moments = if fused && var.device().is_cpu() {
                    Moments::Host { m: vec![0.0; n], v: vec![0.0; n] }
                } else {
                    Moments::Device {
                        m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                        v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    }
                };
                Ok(Slot { name: name.clone(), var: var.clone(), moments })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { config, t: 0, slots })
    }

    /// One update from `grads`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let c1 = 1.0 - c.beta1.powi(self.t as i32);
        let c2 = 1.0 - c.beta2.powi(self.t as i32);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            match &mut slot.moments {
                Moments::Host { m, v } => {
                    let g = g.contiguous()?;
                    let op = FusedStep {
                        m: RefCell::new(m.as_mut_slice()),
                        v: RefCell::new(v.as_mut_slice()),
                        lr: c.lr as f32,
                        b1: c.beta1 as f32,
                        b2: c.beta2 as f32,
                        eps: c.eps as f32,
                        wd: c.weight_decay as f32,
                        c1: c1 as f32,
                        c2: c2 as f32,
                    };
                    slot.var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Device { m, v } => {
                    let m_new = ((m.as_tensor() * c.beta1)? + (g * (1.0 - c.beta1))?)?;
                    let v_new = ((v.as_tensor() * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let step = ((&m_new / c1)? / ((&v_new / c2)?.sqrt()? + c.eps)?)?;
                    let theta = slot.var.as_tensor();
                    let new = (theta - ((step + (theta * c.weight_decay)?)? * c.lr)?)?;
                    m.set(&m_new)?;
                    v.set(&v_new)?;
                    slot.var.set(&new)?;
                }
            }
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for s in &self.slots {
            let (m, v) = match &s.moments {
                Moments::Host { m, v } => (
                    Tensor::from_slice(m, s.var.shape(), &Device::Cpu)?,
                    Tensor::from_slice(v, s.var.shape(), &Device::Cpu)?,
                ),
                Moments::Device { m, v } => (m.as_tensor().clone(), v.as_tensor().clone()),
            };
            out.push((format!("m.{}", s.name), m));
            out.push((format!("v.{}", s.name), v));
        }
        Ok(out)
    }

    /// Restores the moments saved by [`AdamW::state`] (either kind: the checkpoint format is
    /// the same).
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for s in &mut self.slots {
            let get = |k: String| -> Result<Tensor> {
                match tensors.get(&k) {
                    Some(x) if x.dims() == s.var.dims() => Ok(x.clone()),
                    Some(x) => bail!("optimizer tensor `{k}` has shape {:?}, expected {:?}", x.dims(), s.var.dims()),
                    None => bail!("checkpoint lacks optimizer tensor `{k}`"),
                }
            };
            let (m_t, v_t) = (get(format!("m.{}", s.name))?, get(format!("v.{}", s.name))?);
            match &mut s.moments {
                Moments::Host { m, v } => {
                    *m = m_t.flatten_all()?.to_vec1()?;
                    *v = v_t.flatten_all()?.to_vec1()?;
                }
                Moments::Device { m, v } => {
                    m.set(&m_t.to_device(s.var.device())?)?;
                    v.set(&v_t.to_device(s.var.device())?)?;
                }
            }
        }
        self.t = t;
        Ok(())
    }
}

struct PolyakOp {
    alpha: f32,
}

impl InplaceOp2 for PolyakOp {
    fn name(&self) -> &'static str {
        "polyak"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(t), CpuStorage::F32(o)) = (s1, s2) else {
            candle_core::bail!("polyak: f32 only");
        };
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("polyak: non-contiguous tensors");
        };
        let a = self.alpha;
        for (t, &o) in t[a0..a1].iter_mut().zip(&o[b0..b1]) {
            *t += a * (o - *t);
        }
        Ok(())
    }
}

/// target ← (1 − α)·target + α·online, in place.
pub fn polyak(target: &Var, online: &Tensor, alpha: f64) -> Result<()> {
    if target.device().is_cpu() {
        target.as_tensor().inplace_op2(online, &PolyakOp { alpha: alpha as f32 })?;
    } else {
        target.set(&((target.as_tensor() * (1.0 - alpha))? + (online * alpha)?)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused CPU update equals the textbook formula (values from the reference above,
    /// computed by hand for one scalar).
    #[test]
    fn fused_step_matches_the_formula() -> Result<()> {
        let mut p = Params::new(&Device::Cpu);
        let w = p.zeros("w", &[2])?;
        let var = p.get("w").cloned().ok_or_else(|| anyhow::anyhow!("w"))?;
        var.set(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu)?)?;
        let cfg = AdamWConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let mut opt = AdamW::new(&p, cfg, true)?;
        for _ in 0..3 {
            // loss = Σ w² → g = 2w
            let loss = w.sqr()?.sum_all()?;
            opt.step(&loss.backward()?)?;
        }
        // Reference: the same three steps in f64.
        let mut expect = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            for i in 0..2 {
                let g = 2.0 * expect[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                expect[i] -= 0.1 * (mh / (vh.sqrt() + 1e-8) + 0.01 * expect[i]);
            }
        }
        let got: Vec<f32> = var.as_tensor().to_vec1()?;
        for i in 0..2 {
            assert!((got[i] as f64 - expect[i]).abs() < 1e-5, "{got:?} vs {expect:?}");
        }
        Ok(())
    }
}
