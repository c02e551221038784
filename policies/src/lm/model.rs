//! The decoder of the Llama family (Llama, SmolLM2, Qwen2), written for ragged batches.
//!
//! `candle-transformers`' `quantized_llama` moves every row of a batch in lockstep (one
//! shared position, no mask), so conversations of different lengths cannot share a forward
//! pass. This decoder takes a list of *rows*, each one token of one sequence at its own
//! position, with one KV cache per sequence. The linear layers run as one quantized matmul
//! over all rows of the step (candle's `QMatMul`, the expensive part); everything per row
//! (norms, RoPE, attention over the row's own cache) is plain Rust over `f32` buffers.
//!
//! Every row is computed independently of the other rows of its step: a row's numbers
//! depend only on its token, its position and its own sequence's cache. So the same prompt
//! gives bit-identical logits alone, inside a batch of 64, prefilled in one chunk or token
//! by token; `tests/llm.rs` checks it.

use std::sync::Mutex;

use anyhow::{Result, bail, ensure};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::quant::{self, Kernels, QActs, QMat};

/// Which member of the family: decides RoPE layout and biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama, SmolLM2, Mistral-style dense models: interleaved RoPE, no biases.
    Llama,
    /// Qwen2 / Qwen2.5: NeoX RoPE and biases on the q, k, v projections.
    Qwen2,
}

/// The shape of a decoder, read from GGUF metadata or a `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Family member.
    pub arch: Arch,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Feed-forward inner size.
    pub n_ff: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// True for the NeoX layout (pairs `i`, `i + d/2`), false for interleaved pairs.
    pub rope_neox: bool,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Positions the RoPE tables cover: the longest sequence this model accepts.
    pub context: usize,
}

impl Config {
    /// Width of one position's keys (or values) in the cache.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Width of the query projection.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Bytes of KV cache one token occupies.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.n_layer * 2 * self.kv_dim() * std::mem::size_of::<f32>()
    }

    fn check(&self) -> Result<()> {
        ensure!(self.n_layer > 0 && self.n_embd > 0 && self.n_head > 0, "model has an empty shape: {self:?}");
        ensure!(
            self.n_kv_head > 0 && self.n_head.is_multiple_of(self.n_kv_head),
            "{} query heads cannot share {} key/value heads",
            self.n_head,
            self.n_kv_head
        );
        ensure!(self.head_dim.is_multiple_of(2), "head size {} is odd; RoPE needs pairs", self.head_dim);
        ensure!(self.context > 0, "context length is 0");
        Ok(())
    }
}

/// A linear layer `y = x Wᵀ`, possibly several weight matrices fused side by side (q|k|v,
/// gate|up) so one matmul (one pass of the thread pool) computes them all.
pub struct Linear {
    imp: Imp,
    /// Input width.
    k: usize,
    /// Output width (sum of the parts).
    n: usize,
}

enum Imp {
    /// This crate's kernels ([`quant`]): Q4_1 or Q8_0 blocks, CPU.
    Own(QMat),
    /// Candle's `QMatMul`, one per part with its output width (weights as shipped, F32, and
    /// every format on other devices).
    Candle(Vec<(QMatMul, usize)>),
}

/// How weights are stored for the matmuls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// The default: this crate's kernels on the file's own blocks where they have a kernel
    /// (Q4_1, Q4_0, Q8_0: no re-quantization, the fewest bytes per weight), every other
    /// tensor re-quantized to Q8_0; parts fused. The same choice on every CPU, so a model
    /// gives the same tokens on AVX-512 and AVX2 machines (see [`quant`]).
    Auto,
    /// Every matmul weight re-quantized to Q8_0 at load (fused), on this crate's kernels:
    /// twice the bytes of Q4_1, no unpacking of 4-bit codes.
    Q8_0,
    /// Weights as the file ships them, on candle's kernels (no fusion): the reference the
    /// llama.cpp comparison test runs.
    AsShipped,
    /// Every matmul weight dequantized to F32 (fused): no quantization of weights or
    /// activations, the exact reference for comparing loaders (slow, 4 bytes a weight).
    F32,
}

impl WeightFormat {
    /// Every format, in the order help lists them.
    pub const ALL: [WeightFormat; 4] =
        [WeightFormat::Auto, WeightFormat::Q8_0, WeightFormat::AsShipped, WeightFormat::F32];

    /// The name specs use (`weights=q8_0`) and model ids show.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Auto => "auto",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::AsShipped => "as-shipped",
            WeightFormat::F32 => "f32",
        }
    }

    /// The format a name means.
    pub fn from_name(name: &str) -> Option<WeightFormat> {
        WeightFormat::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A tensor's blocks for this crate's kernels: the file's own (Q4_1, Q4_0, Q8_0) unless
/// `requantize`, else re-quantized to Q8_0.
fn own_blocks(w: &QTensor, requantize: bool) -> Result<QMat> {
    let (n, k) = w.shape().dims2()?;
    if (!requantize || w.dtype() == GgmlDType::Q8_0)
        && let Some(q) = QMat::from_gguf_blocks(w.dtype(), &w.data()?, n, k)?
    {
        return Ok(q);
    }
    let dense = w.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    QMat::quantize_q8_0(&dense, n, k)
}

impl Linear {
    /// Builds a linear layer from weight tensors `(n_i, k)`, fused into one matrix unless
    /// `format` is [`WeightFormat::AsShipped`].
    pub fn new(weights: Vec<QTensor>, format: WeightFormat, device: &Device) -> Result<Linear> {
        ensure!(!weights.is_empty(), "a linear layer needs a weight");
        let k = weights[0].shape().dims2()?.1;
        let mut widths = Vec::with_capacity(weights.len());
        for w in &weights {
            let (n, kw) = w.shape().dims2()?;
            ensure!(kw == k, "fused weights disagree on the input width: {kw} vs {k}");
            widths.push(n);
        }
        let n = widths.iter().sum();
        let own = device.is_cpu() && k.is_multiple_of(quant::QK);
        let imp = match format {
            WeightFormat::Auto | WeightFormat::Q8_0 if own => {
                let mut parts =
                    weights.iter().map(|w| own_blocks(w, format == WeightFormat::Q8_0)).collect::<Result<Vec<_>>>()?;
                if parts.iter().any(|p| p.format() != parts[0].format()) {
                    // Mixed block types cannot share one matrix: all to Q8_0.
                    parts = weights.iter().map(|w| own_blocks(w, true)).collect::<Result<Vec<_>>>()?;
                }
                Imp::Own(QMat::concat(parts)?)
            }
            WeightFormat::AsShipped => Imp::Candle(
                weights
                    .into_iter()
                    .zip(widths)
                    .map(|(w, n)| {
                        // Tensors are read on the CPU; other devices get their own copy.
                        let w = if device.is_cpu() {
                            w
                        } else {
                            QTensor::quantize_onto(&w.dequantize(&Device::Cpu)?, w.dtype(), device)?
                        };
                        Ok((QMatMul::from_qtensor(w)?, n))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            _ => {
                let dtype = if format == WeightFormat::F32 { GgmlDType::F32 } else { GgmlDType::Q8_0 };
                let dense: Vec<Tensor> =
                    weights.iter().map(|w| w.dequantize(&Device::Cpu)).collect::<candle_core::Result<_>>()?;
                let cat = Tensor::cat(&dense, 0)?;
                Imp::Candle(vec![(QMatMul::from_qtensor(QTensor::quantize_onto(&cat, dtype, device)?)?, n)])
            }
        };
        Ok(Linear { imp, k, n })
    }

    /// `x` holds `m` rows of width `k`; returns `m` rows of width `n`.
    pub fn forward(&self, x: &[f32], m: usize, device: &Device, kernels: Kernels) -> Result<Vec<f32>> {
        debug_assert_eq!(x.len(), m * self.k);
        let parts = match &self.imp {
            Imp::Own(w) => {
                let a = QActs::quantize(x, m, self.k)?;
                let mut out = vec![0f32; m * self.n];
                quant::matmul(w, &a, kernels, &mut out)?;
                return Ok(out);
            }
            Imp::Candle(parts) => parts,
        };
        let xt = Tensor::from_slice(x, (m, self.k), device)?;
        if let [(w, _)] = parts.as_slice() {
            return Ok(w.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let mut out = vec![0f32; m * self.n];
        let mut offset = 0;
        for (w, n) in parts {
            let y = w.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?;
            for r in 0..m {
                out[r * self.n + offset..r * self.n + offset + n].copy_from_slice(&y[r * n..(r + 1) * n]);
            }
            offset += n;
        }
        Ok(out)
    }

    /// The storage formats of the parts (for the model id and benchmarks).
    pub fn dtypes(&self) -> Vec<String> {
        match &self.imp {
            Imp::Own(w) => vec![format!("{:?} (own kernels)", w.format())],
            Imp::Candle(parts) => parts
                .iter()
                .map(|(w, _)| match w {
                    QMatMul::QTensor(t) => format!("{:?}", t.dtype()),
                    QMatMul::Tensor(_) => "F32".to_string(),
                    QMatMul::TensorF16(_) => "F16".to_string(),
                })
                .collect(),
        }
    }
}

/// One transformer block.
pub struct Block {
    /// RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// q | k | v projection.
    pub qkv: Linear,
    /// Biases of q | k | v (Qwen2).
    pub qkv_bias: Option<Vec<f32>>,
    /// Attention output projection.
    pub wo: Linear,
    /// RMSNorm weight before the feed-forward.
    pub ffn_norm: Vec<f32>,
    /// gate | up projection.
    pub gate_up: Linear,
    /// Down projection.
    pub down: Linear,
}

/// The weights of a decoder; shared (read-only) by every sequence and every clone.
pub struct Weights {
    /// The shape.
    pub config: Config,
    /// Token embeddings, dequantized: `vocab × n_embd`.
    pub embed: Vec<f32>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final RMSNorm weight.
    pub out_norm: Vec<f32>,
    /// Output projection (the embedding matrix itself when tied).
    pub output: Linear,
    /// RoPE tables, `context × head_dim/2`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Where the matmuls run.
    pub device: Device,
    /// Which kernel family runs this crate's matmuls (chosen at load; see [`quant`]).
    kernels: Kernels,
}

/// The keys and values one sequence has seen, per block: `[position][kv_head][head_dim]`.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layer` blocks.
    pub fn new(n_layer: usize) -> KvCache {
        KvCache { k: vec![Vec::new(); n_layer], v: vec![Vec::new(); n_layer], len: 0 }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `len` positions.
    pub fn truncate(&mut self, len: usize, kv_dim: usize) {
        if len >= self.len {
            return;
        }
        for l in 0..self.k.len() {
            self.k[l].truncate(len * kv_dim);
            self.v[l].truncate(len * kv_dim);
        }
        self.len = len;
    }

    /// A copy of the first `len` positions.
    pub fn prefix(&self, len: usize, kv_dim: usize) -> KvCache {
        let len = len.min(self.len);
        KvCache {
            k: self.k.iter().map(|k| k[..len * kv_dim].to_vec()).collect(),
            v: self.v.iter().map(|v| v[..len * kv_dim].to_vec()).collect(),
            len,
        }
    }
}

/// One token of one sequence in a forward step.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Index of the sequence's cache in the `caches` argument of [`Weights::forward`].
    pub seq: usize,
    /// The token.
    pub token: u32,
    /// Whether the caller wants this row's next-token logits.
    pub logits: bool,
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for ((o, xi), wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorize it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = 0f32;
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    acc.iter().sum::<f32>() + s
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl Weights {
    /// Assembles a model and precomputes its RoPE tables.
    pub fn new(
        config: Config,
        embed: Vec<f32>,
        blocks: Vec<Block>,
        out_norm: Vec<f32>,
        output: Linear,
        device: Device,
    ) -> Result<Weights> {
        config.check()?;
        ensure!(
            embed.len() == config.vocab * config.n_embd,
            "embedding has {} values, expected {} × {}",
            embed.len(),
            config.vocab,
            config.n_embd
        );
        ensure!(blocks.len() == config.n_layer, "{} blocks, expected {}", blocks.len(), config.n_layer);
        let half = config.head_dim / 2;
        let mut cos = Vec::with_capacity(config.context * half);
        let mut sin = Vec::with_capacity(config.context * half);
        for pos in 0..config.context {
            for i in 0..half {
                let theta = 1.0 / config.rope_theta.powf((2 * i) as f32 / config.head_dim as f32);
                let angle = pos as f32 * theta;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Weights { config, embed, blocks, out_norm, output, cos, sin, device, kernels: Kernels::best() })
    }

    /// The kernel family the matmuls run on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Runs the matmuls on `kernels` from now on (every family computes the same numbers;
    /// this changes only the speed). An error when this CPU lacks the family.
    pub fn set_kernels(&mut self, kernels: Kernels) -> Result<()> {
        ensure!(
            kernels.available(),
            "this CPU cannot run the {} kernels ({})",
            kernels.name(),
            quant::cpu_description()
        );
        self.kernels = kernels;
        Ok(())
    }

    /// Applies RoPE in place to `heads` heads of `x` at position `pos`.
    fn rope(&self, x: &mut [f32], heads: usize, pos: usize) {
        let hd = self.config.head_dim;
        let half = hd / 2;
        let (cos, sin) = (&self.cos[pos * half..(pos + 1) * half], &self.sin[pos * half..(pos + 1) * half]);
        for h in 0..heads {
            let v = &mut x[h * hd..(h + 1) * hd];
            for i in 0..half {
                let (a, b) = if self.config.rope_neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * cos[i] - x1 * sin[i];
                v[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }

    /// Runs one step: every row's token goes through the model, its keys and values are
    /// appended to its sequence's cache (rows of one sequence must come in order), and the
    /// logits of the rows that ask for them are returned, in row order.
    pub fn forward(&self, rows: &[Row], caches: &mut [KvCache]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let (m, d, kv_dim, q_dim, hd) = (rows.len(), c.n_embd, c.kv_dim(), c.q_dim(), c.head_dim);
        if m == 0 {
            return Ok(Vec::new());
        }
        // Each row's position: its sequence's cache length plus the rows of the same
        // sequence before it in this step.
        let mut next: Vec<usize> = caches.iter().map(|k| k.len).collect();
        let mut pos = Vec::with_capacity(m);
        for r in rows {
            ensure!(r.seq < caches.len(), "row refers to sequence {} of {}", r.seq, caches.len());
            ensure!((r.token as usize) < c.vocab, "token id {} is outside the vocabulary of {}", r.token, c.vocab);
            let p = next[r.seq];
            if p >= c.context {
                bail!("sequence is longer than the model's context of {} tokens", c.context);
            }
            pos.push(p);
            next[r.seq] += 1;
        }
        let mut x = Vec::with_capacity(m * d);
        for r in rows {
            x.extend_from_slice(&self.embed[r.token as usize * d..(r.token as usize + 1) * d]);
        }
        let mut h = vec![0f32; m * d];
        let group = c.n_head / c.n_kv_head;
        let scale = 1.0 / (hd as f32).sqrt();
        for (l, block) in self.blocks.iter().enumerate() {
            for r in 0..m {
                rms_norm(&x[r * d..(r + 1) * d], &block.attn_norm, c.rms_eps, &mut h[r * d..(r + 1) * d]);
            }
            let mut qkv = block.qkv.forward(&h, m, &self.device, self.kernels)?;
            let width = q_dim + 2 * kv_dim;
            for r in 0..m {
                let row = &mut qkv[r * width..(r + 1) * width];
                if let Some(b) = &block.qkv_bias {
                    for (v, bi) in row.iter_mut().zip(b) {
                        *v += bi;
                    }
                }
                let (q, kv) = row.split_at_mut(q_dim);
                self.rope(q, c.n_head, pos[r]);
                self.rope(&mut kv[..kv_dim], c.n_kv_head, pos[r]);
            }
            for (r, row) in rows.iter().enumerate() {
                let src = &qkv[r * width + q_dim..(r + 1) * width];
                let cache = &mut caches[row.seq];
                cache.k[l].extend_from_slice(&src[..kv_dim]);
                cache.v[l].extend_from_slice(&src[kv_dim..]);
            }
            // Attention, one row per work item on candle's thread pool (the same threads as
            // the matmuls, so the two never compete for cores).
            let mut attn = vec![0f32; m * q_dim];
            {
                let outs: Vec<Mutex<&mut [f32]>> = attn.chunks_mut(q_dim).map(Mutex::new).collect();
                let caches_ref: &[KvCache] = caches;
                let qkv_ref = &qkv;
                let pos_ref = &pos;
                candle_core::utils::barrier_pool().execute_chunked(m, |range| {
                    let mut scores: Vec<f32> = Vec::new();
                    let mut out = vec![0f32; q_dim];
                    for r in range {
                        let cache = &caches_ref[rows[r].seq];
                        let (keys, values) = (&cache.k[l], &cache.v[l]);
                        let n_pos = pos_ref[r] + 1;
                        let q = &qkv_ref[r * width..r * width + q_dim];
                        out.fill(0.0);
                        // The heads of one key/value group read each cached key and value
                        // once: scores[j * n_pos + t] for head g * group + j.
                        for g in 0..c.n_kv_head {
                            scores.clear();
                            scores.resize(group * n_pos, 0.0);
                            for t in 0..n_pos {
                                let kt = &keys[t * kv_dim + g * hd..t * kv_dim + (g + 1) * hd];
                                for j in 0..group {
                                    let head = g * group + j;
                                    scores[j * n_pos + t] = dot(&q[head * hd..(head + 1) * hd], kt) * scale;
                                }
                            }
                            for j in 0..group {
                                let sj = &mut scores[j * n_pos..(j + 1) * n_pos];
                                let max = sj.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                                let mut total = 0f32;
                                for s in sj.iter_mut() {
                                    *s = (*s - max).exp();
                                    total += *s;
                                }
                                let inv = 1.0 / total;
                                for s in sj.iter_mut() {
                                    *s *= inv;
                                }
                            }
                            for t in 0..n_pos {
                                let vt = &values[t * kv_dim + g * hd..t * kv_dim + (g + 1) * hd];
                                for j in 0..group {
                                    let head = g * group + j;
                                    let w = scores[j * n_pos + t];
                                    for (o, v) in out[head * hd..(head + 1) * hd].iter_mut().zip(vt) {
                                        *o += w * v;
                                    }
                                }
                            }
                        }
                        if let Ok(mut slot) = outs[r].lock() {
                            slot.copy_from_slice(&out);
                        }
                    }
                });
            }
            let o = block.wo.forward(&attn, m, &self.device, self.kernels)?;
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += oi;
            }
            for r in 0..m {
                rms_norm(&x[r * d..(r + 1) * d], &block.ffn_norm, c.rms_eps, &mut h[r * d..(r + 1) * d]);
            }
            let gu = block.gate_up.forward(&h, m, &self.device, self.kernels)?;
            let ff = c.n_ff;
            let mut act = vec![0f32; m * ff];
            for r in 0..m {
                let (g, u) = gu[r * 2 * ff..(r + 1) * 2 * ff].split_at(ff);
                for ((a, gi), ui) in act[r * ff..(r + 1) * ff].iter_mut().zip(g).zip(u) {
                    *a = silu(*gi) * ui;
                }
            }
            let down = block.down.forward(&act, m, &self.device, self.kernels)?;
            for (xi, di) in x.iter_mut().zip(&down) {
                *xi += di;
            }
        }
        for (cache, n) in caches.iter_mut().zip(&next) {
            cache.len = *n;
        }
        // Only the rows that need logits pay for the (large) output projection.
        let wanted: Vec<usize> = (0..m).filter(|&r| rows[r].logits).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut hn = vec![0f32; wanted.len() * d];
        for (i, &r) in wanted.iter().enumerate() {
            rms_norm(&x[r * d..(r + 1) * d], &self.out_norm, c.rms_eps, &mut hn[i * d..(i + 1) * d]);
        }
        let logits = self.output.forward(&hn, wanted.len(), &self.device, self.kernels)?;
        let v = self.output.n;
        Ok(logits.chunks(v).map(|c| c.to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::{LocalModel, ModelOptions};

    fn model_path() -> std::path::PathBuf {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(path.exists(), "{} is missing: run scripts/install-model.sh before the tests", path.display());
        path
    }

    /// Our decoder on the Q4_1 weights as shipped against llama.cpp on the same file
    /// (`tests/fixtures/reference_logits.json`, made by `scripts/make_tokenizer_fixture.py`):
    /// the same greedy token and the same 32 highest logits up to quantization noise
    /// (llama.cpp keeps its KV cache in F16; measured gap ≤ 0.2 on logits of 15-30).
    #[test]
    fn decoder_matches_llama_cpp() {
        let ours = LocalModel::load(
            &model_path(),
            &ModelOptions { format: WeightFormat::AsShipped, ..ModelOptions::default() },
        )
        .expect("loads");
        let fx_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference_logits.json");
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&fx_path).expect("fixture")).expect("json");
        for p in fx["prompts"].as_array().expect("prompts") {
            let ids: Vec<u32> =
                p["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect();
            let mut cache = vec![KvCache::new(ours.weights().config.n_layer)];
            let rows: Vec<Row> =
                ids.iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 1 == ids.len() }).collect();
            let got = ours.weights().forward(&rows, &mut cache).expect("forward").remove(0);
            let top = p["top"].as_array().expect("top");
            let best = top[0][0].as_u64().expect("id") as u32;
            assert_eq!(crate::lm::sampling::argmax(&got), best, "greedy token after {:?}", p["prompt"]);
            let max_diff = top
                .iter()
                .map(|t| (got[t[0].as_u64().expect("id") as usize] - t[1].as_f64().expect("logit") as f32).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 0.5, "logits differ from llama.cpp's by up to {max_diff} after {:?}", p["prompt"]);
        }
    }

    /// Every kernel family this CPU can run (AVX-512 VNNI, AVX2, scalar: the AVX2 path is
    /// tested on AVX-512 machines too), on both of this crate's weight formats, against the
    /// F32 reference (no quantization at all): llama.cpp's greedy token, the 32 highest
    /// reference logits within 0.5 (8-bit activations; measured ≤ 0.3), and the same bits
    /// from every family.
    #[test]
    fn every_kernel_family_matches_the_f32_reference() {
        let reference =
            LocalModel::load(&model_path(), &ModelOptions { format: WeightFormat::F32, ..ModelOptions::default() })
                .expect("loads");
        let fx_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference_logits.json");
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&fx_path).expect("fixture")).expect("json");
        let logits = |m: &LocalModel, ids: &[u32]| {
            let mut cache = vec![KvCache::new(m.weights().config.n_layer)];
            let rows: Vec<Row> =
                ids.iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 1 == ids.len() }).collect();
            m.weights().forward(&rows, &mut cache).expect("forward").remove(0)
        };
        let prompts: Vec<(Vec<u32>, u32)> = fx["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .map(|p| {
                let ids = p["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect();
                (ids, p["top"][0][0].as_u64().expect("id") as u32)
            })
            .collect();
        let want: Vec<Vec<f32>> = prompts.iter().map(|(ids, _)| logits(&reference, ids)).collect();
        for format in [WeightFormat::Auto, WeightFormat::Q8_0] {
            let mut first: Option<Vec<Vec<f32>>> = None;
            for kernels in quant::Kernels::available_all() {
                let m = LocalModel::load(
                    &model_path(),
                    &ModelOptions { format, kernels: Some(kernels), ..ModelOptions::default() },
                )
                .expect("loads");
                assert_eq!(m.weights().kernels(), kernels);
                let got: Vec<Vec<f32>> = prompts.iter().map(|(ids, _)| logits(&m, ids)).collect();
                for (((_, best), g), w) in prompts.iter().zip(&got).zip(&want) {
                    assert_eq!(crate::lm::sampling::argmax(g), *best, "{format:?} on {kernels:?}: greedy token");
                    let mut top: Vec<usize> = (0..w.len()).collect();
                    top.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
                    let diff = top[..32].iter().map(|&i| (g[i] - w[i]).abs()).fold(0f32, f32::max);
                    eprintln!("{format:?} on {kernels:?}: top-32 logits within {diff:.3} of F32");
                    assert!(diff < 0.5, "{format:?} on {kernels:?}: logits differ from F32's by up to {diff}");
                }
                match &first {
                    None => first = Some(got),
                    Some(f) => assert!(f == &got, "{format:?}: {kernels:?} differs from another family"),
                }
            }
        }
    }

    /// A prompt fed in one chunk, token by token, or beside another sequence gives
    /// bit-identical logits, on every kernel family: the property batch invariance rests on.
    #[test]
    fn rows_do_not_influence_each_other() {
        for kernels in quant::Kernels::available_all() {
            rows_do_not_influence_each_other_on(kernels);
        }
    }

    fn rows_do_not_influence_each_other_on(kernels: quant::Kernels) {
        let m = LocalModel::load(&model_path(), &ModelOptions { kernels: Some(kernels), ..ModelOptions::default() })
            .expect("loads");
        let w = m.weights();
        let ids = m.tokenizer().encode("The quick brown fox jumps over the lazy dog again and again").expect("encodes");
        let other = m.tokenizer().encode("Numbers: 1 2 3 4 5").expect("encodes");
        let n = w.config.n_layer;
        // One chunk.
        let mut c1 = vec![KvCache::new(n)];
        let rows: Vec<Row> =
            ids.iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 1 == ids.len() }).collect();
        let a = w.forward(&rows, &mut c1).expect("forward");
        // Token by token.
        let mut c2 = vec![KvCache::new(n)];
        let mut b = Vec::new();
        for (i, &t) in ids.iter().enumerate() {
            b = w.forward(&[Row { seq: 0, token: t, logits: i + 1 == ids.len() }], &mut c2).expect("forward");
        }
        // Interleaved with another sequence, in two uneven chunks.
        let mut c3 = vec![KvCache::new(n), KvCache::new(n)];
        let mut rows: Vec<Row> = other.iter().map(|&t| Row { seq: 1, token: t, logits: false }).collect();
        rows.extend(ids[..3].iter().map(|&t| Row { seq: 0, token: t, logits: false }));
        w.forward(&rows, &mut c3).expect("forward");
        let rows: Vec<Row> =
            ids[3..].iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 4 == ids.len() }).collect();
        let mut rows2 = vec![Row { seq: 1, token: 5, logits: true }];
        rows2.extend(rows);
        let c = w.forward(&rows2, &mut c3).expect("forward");
        assert_eq!(a[0], b[0], "one chunk vs token by token");
        assert_eq!(a[0], c[1], "alone vs beside another sequence");
        assert_eq!(c3[0].len(), ids.len());
    }
}
