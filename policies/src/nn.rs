//! The few layers the value heads need, with parameters the trainer owns by name.
//!
//! Parameters live in a [`Params`] store (a `BTreeMap`, so iteration and checkpoints have a
//! fixed order) and are initialized from dialogym's seeded generator, never from a global
//! RNG: the same seed gives the same weights, bit for bit.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, Var};
use dialogym_engine::seed::Rng;
use rand::Rng as _;

/// Named trainable tensors.
#[derive(Clone)]
pub struct Params {
    vars: BTreeMap<String, Var>,
    device: Device,
}

impl Params {
    /// An empty store on `device`.
    pub fn new(device: &Device) -> Self {
        Params { vars: BTreeMap::new(), device: device.clone() }
    }

    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Adds a parameter drawn uniformly from [−bound, bound].
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64, rng: &mut Rng) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound) as f32).collect();
        self.insert(name, Tensor::from_vec(data, shape, &self.device)?)
    }

    /// Adds a zero-initialized parameter.
    pub fn zeros(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.insert(name, Tensor::zeros(shape, DType::F32, &self.device)?)
    }

    fn insert(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        if self.vars.insert(name.to_string(), var).is_some() {
            bail!("parameter `{name}` defined twice");
        }
        Ok(out)
    }

    /// All parameters, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// One parameter.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// Number of scalars.
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Overwrites every parameter from `tensors` (a checkpoint); shapes must match.
    pub fn load(&self, tensors: &std::collections::HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for (name, var) in &self.vars {
            let key = format!("{prefix}{name}");
            let Some(t) = tensors.get(&key) else { bail!("checkpoint lacks tensor `{key}`") };
            if t.dims() != var.dims() {
                bail!("checkpoint tensor `{key}` has shape {:?}, the model expects {:?}", t.dims(), var.dims());
            }
            var.set(&t.to_device(&self.device)?.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

/// y = x·W + b, with W stored (in, out).
#[derive(Clone)]
pub struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    /// PyTorch's default initialization: U(±1/√in) for weights and biases.
    pub fn new(p: &mut Params, name: &str, d_in: usize, d_out: usize, rng: &mut Rng) -> Result<Self> {
        let bound = 1.0 / (d_in as f64).sqrt();
        Ok(Linear {
            w: p.uniform(&format!("{name}.weight"), &[d_in, d_out], bound, rng)?,
            b: p.uniform(&format!("{name}.bias"), &[d_out], bound, rng)?,
        })
    }

    /// Applies the layer to (B, in).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w)?.broadcast_add(&self.b)?)
    }
}

/// Sum of embedding rows for a bag of feature ids (fastText-style): the sparse equivalent
/// of multiplying a multi-hot vector by a matrix.
///
/// On the CPU the bag sum and its gradient (a scatter-add of each bag's gradient into the
/// rows it used) are one fused pass each ([`BagSum`]); the generic path (`index_select`
/// then `index_add`) materializes a (features × dim) intermediate and was ~15× slower on
/// the 20 Questions batches.
#[derive(Clone)]
pub struct EmbeddingBag {
    table: Tensor,
    /// Use the fused CPU op (on by default; off for the benchmark's baseline).
    pub fused: bool,
}

impl EmbeddingBag {
    /// A (buckets, dim) table, U(±1/√fan) like a linear layer over `fan` active features.
    pub fn new(p: &mut Params, name: &str, buckets: usize, dim: usize, fan: usize, rng: &mut Rng) -> Result<Self> {
        let bound = 1.0 / (fan.max(1) as f64).sqrt();
        Ok(EmbeddingBag { table: p.uniform(&format!("{name}.table"), &[buckets, dim], bound, rng)?, fused: true })
    }

    /// The bag sums → (B, dim).
    pub fn forward(&self, bags: &Bags) -> Result<Tensor> {
        if self.fused && self.table.device().is_cpu() {
            return Ok(self.table.apply_op3(&bags.ids, &bags.offsets, BagSum)?);
        }
        let dim = self.table.dim(1)?;
        let rows = self.table.index_select(&bags.ids, 0)?;
        let zeros = Tensor::zeros((bags.len, dim), rows.dtype(), rows.device())?;
        Ok(zeros.index_add(&bags.owner, &rows, 0)?)
    }
}

/// A batch of feature bags in CSR form: the ids of bag `b` are `ids[offsets[b]..offsets[b+1]]`.
#[derive(Clone, Debug)]
pub struct Bags {
    /// (N,) feature ids of all bags, concatenated.
    pub ids: Tensor,
    /// (B + 1,) start of each bag in `ids`.
    pub offsets: Tensor,
    /// (N,) the bag each id belongs to (for the non-CPU path).
    pub owner: Tensor,
    /// Number of bags.
    pub len: usize,
}

impl Bags {
    /// Packs `bags` and uploads them.
    pub fn new<'a>(bags: impl ExactSizeIterator<Item = &'a [u32]>, device: &Device) -> Result<Bags> {
        let len = bags.len();
        let (mut ids, mut offsets, mut owner) = (Vec::new(), Vec::with_capacity(len + 1), Vec::new());
        offsets.push(0u32);
        for (b, bag) in bags.enumerate() {
            ids.extend_from_slice(bag);
            owner.extend(std::iter::repeat_n(b as u32, bag.len()));
            offsets.push(ids.len() as u32);
        }
        let n = ids.len();
        Ok(Bags {
            ids: Tensor::from_vec(ids, n, device)?,
            offsets: Tensor::from_vec(offsets, len + 1, device)?,
            owner: Tensor::from_vec(owner, n, device)?,
            len,
        })
    }
}

fn slices<'a>(
    table: (&'a CpuStorage, &Layout),
    ids: (&'a CpuStorage, &Layout),
    offsets: (&'a CpuStorage, &Layout),
) -> candle_core::Result<(&'a [f32], &'a [u32], &'a [u32])> {
    let (CpuStorage::F32(t), CpuStorage::U32(i), CpuStorage::U32(o)) = (table.0, ids.0, offsets.0) else {
        candle_core::bail!("embedding-bag: expects f32 table and u32 ids/offsets");
    };
    let (Some((t0, t1)), Some((i0, i1)), Some((o0, o1))) =
        (table.1.contiguous_offsets(), ids.1.contiguous_offsets(), offsets.1.contiguous_offsets())
    else {
        candle_core::bail!("embedding-bag: non-contiguous input");
    };
    Ok((&t[t0..t1], &i[i0..i1], &o[o0..o1]))
}

/// out[b] = Σ_{k ∈ bag b} table[ids[k]]; inputs (table (D, H), ids (N,), offsets (B+1,)).
struct BagSum;

impl CustomOp3 for BagSum {
    fn name(&self) -> &'static str {
        "embedding-bag-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (table, ids, offsets) = slices((s1, l1), (s2, l2), (s3, l3))?;
        let h = l1.dims()[1];
        let rows = l1.dims()[0];
        let b = offsets.len().saturating_sub(1);
        let mut out = vec![0f32; b * h];
        for (bag, dst) in out.chunks_exact_mut(h).enumerate() {
            for &id in &ids[offsets[bag] as usize..offsets[bag + 1] as usize] {
                let id = id as usize;
                if id >= rows {
                    candle_core::bail!("embedding-bag: feature id {id} ≥ {rows} buckets");
                }
                for (d, &x) in dst.iter_mut().zip(&table[id * h..(id + 1) * h]) {
                    *d += x;
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, h))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        offsets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op3_no_bwd(ids, offsets, &BagScatter { rows: table.dim(0)? })?;
        Ok((Some(g), None, None))
    }
}

/// grad_table[ids[k]] += grad_out[bag of k]; inputs (grad_out (B, H), ids, offsets).
struct BagScatter {
    rows: usize,
}

impl CustomOp3 for BagScatter {
    fn name(&self) -> &'static str {
        "embedding-bag-scatter"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (grad, ids, offsets) = slices((s1, l1), (s2, l2), (s3, l3))?;
        let h = l1.dims()[1];
        let mut out = vec![0f32; self.rows * h];
        for (bag, src) in grad.chunks_exact(h).enumerate() {
            for &id in &ids[offsets[bag] as usize..offsets[bag + 1] as usize] {
                let id = id as usize;
                for (d, &x) in out[id * h..(id + 1) * h].iter_mut().zip(src) {
                    *d += x;
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((self.rows, h))))
    }
}
