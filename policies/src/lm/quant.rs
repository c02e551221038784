//! Quantized matrix products of the local decoder, on this crate's own kernels.
//!
//! Weights are blocks of 32 (`Q4_1`: 4-bit codes with a scale and a minimum, kept as the
//! GGUF file ships them; `Q8_0`: 8-bit codes with a scale); activations are quantized per
//! block of 32 to 8 bits (llama.cpp's `Q8_0`/`Q8_1` activation format). One product is a
//! sum over blocks of exact integer dot products times the two scales.
//!
//! **The arithmetic is the same on every kernel family** (scalar, AVX2 + FMA, AVX-512 VNNI),
//! to the bit: the integer part of a block is exact, and the floating-point part follows one
//! canonical order that the scalar code spells out (see [`dot_scalar`]): 16 lanes, lane
//! `8·(b mod 2) + j` gathers the four products `4j..4j+3` of block `b`, each block adds
//! `fma(d_w·d_x, lane, acc)`, and the lanes are summed in a fixed tree. The SIMD kernels are
//! that order in registers (AVX2: two 8-lane accumulators, even and odd blocks; AVX-512: one
//! 16-lane accumulator over block pairs). So a model gives the same tokens whichever family
//! the CPU selects, and a row's result never depends on the other rows of its step.
//!
//! A step's rows are tiled by 4: each weight block is loaded (and its 4-bit codes unpacked)
//! once for 4 rows, and a chunk of 16 output rows stays in L1 while every row tile of the
//! step passes over it. Work items are chunks of output rows on candle's persistent pool
//! (the same threads as attention).
//!
//! The family is chosen at load time ([`Kernels::from_env`]): the best the CPU has, or the one
//! `DIALOGYM_KERNELS=avx512|avx2|scalar` forces (tests and benchmarks run every path on one
//! machine that way).

// Kernels index several arrays by the same row/lane counter; iterators would hide that.
#![allow(clippy::needless_range_loop)]
#![allow(unsafe_code)]

use anyhow::{Result, bail, ensure};

/// Values per block.
pub const QK: usize = 32;

/// A family of matmul kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// Plain Rust: any CPU; the definition of the arithmetic.
    Scalar,
    /// x86-64 AVX2 + FMA: `vpmaddubsw`/`vpmaddwd` integer dot products, 8 lanes.
    Avx2,
    /// x86-64 AVX-512 F/BW + VNNI: `vpdpbusd` over block pairs, 16 lanes.
    Avx512,
}

impl Kernels {
    /// Every family, fastest first.
    pub const ALL: [Kernels; 3] = [Kernels::Avx512, Kernels::Avx2, Kernels::Scalar];

    /// The name `DIALOGYM_KERNELS` and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Scalar => "scalar",
            Kernels::Avx2 => "avx2",
            Kernels::Avx512 => "avx512",
        }
    }

    /// The family a name means.
    pub fn from_name(name: &str) -> Option<Kernels> {
        Kernels::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU can run the family.
    pub fn available(self) -> bool {
        match self {
            Kernels::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => {
                Kernels::Avx2.available()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The families this CPU can run, fastest first.
    pub fn available_all() -> Vec<Kernels> {
        Kernels::ALL.into_iter().filter(|k| k.available()).collect()
    }

    /// The fastest family this CPU can run.
    pub fn best() -> Kernels {
        Kernels::ALL.into_iter().find(|k| k.available()).unwrap_or(Kernels::Scalar)
    }

    /// `DIALOGYM_KERNELS` (`avx512`, `avx2`, `scalar`; unset, empty or `auto`: the best
    /// available). An unknown name or a family this CPU lacks is an error.
    pub fn from_env() -> Result<Kernels> {
        match std::env::var("DIALOGYM_KERNELS") {
            Ok(v) if !v.is_empty() && v != "auto" => Kernels::parse(&v),
            _ => Ok(Kernels::best()),
        }
    }

    /// A family by name, checked against this CPU.
    pub fn parse(name: &str) -> Result<Kernels> {
        let Some(k) = Kernels::from_name(name) else {
            bail!("DIALOGYM_KERNELS={name}: must be one of auto, avx512, avx2, scalar");
        };
        if !k.available() {
            bail!("DIALOGYM_KERNELS={name}: this CPU lacks the instructions ({})", cpu_description());
        }
        Ok(k)
    }
}

/// The CPU's model name and the SIMD features the kernels look for, e.g.
/// `Intel(R) Xeon(R) Processor [AVX2 FMA AVX-512F AVX-512BW AVX-512VNNI]`.
pub fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[allow(unused_mut)]
    let mut feats: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("AVX2", std::is_x86_feature_detected!("avx2")),
            ("FMA", std::is_x86_feature_detected!("fma")),
            ("AVX-512F", std::is_x86_feature_detected!("avx512f")),
            ("AVX-512BW", std::is_x86_feature_detected!("avx512bw")),
            ("AVX-512VNNI", std::is_x86_feature_detected!("avx512vnni")),
        ] {
            if on {
                feats.push(name);
            }
        }
    }
    format!("{model} [{}]", feats.join(" "))
}

/// How a [`QMat`] stores its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QFormat {
    /// `w = d·q + m`, `q` in 0..=15 (GGUF Q4_1, Q4_0 with `m = -8d`).
    Q4_1,
    /// `w = d·q`, `q` in -127..=127 (GGUF Q8_0; -128 also works).
    Q8_0,
}

/// A quantized `n × k` weight matrix (`y = x Wᵀ`), rows padded to an even number of blocks
/// (zero scales, zero codes).
#[derive(Clone, Debug)]
pub struct QMat {
    format: QFormat,
    n: usize,
    k: usize,
    /// Blocks per row, padded to even.
    nbp: usize,
    /// Q4_1 minimums per row, padded to a multiple of 8.
    nb8: usize,
    /// `n × nbp` block scales.
    scales: Vec<f32>,
    /// `n × nb8` block minimums (Q4_1).
    mins: Vec<f32>,
    /// Q4_1: `n × nbp/2 × 32` bytes, byte `i` of pair `p` holds code `i` of block `2p` in
    /// its low nibble and of block `2p+1` in its high nibble. Q8_0: `n × nbp × 32` codes.
    quants: Vec<u8>,
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalize.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

impl QMat {
    fn blank(format: QFormat, n: usize, k: usize) -> Result<QMat> {
        ensure!(k > 0 && k.is_multiple_of(QK), "a quantized matrix needs a width that is a multiple of {QK}, not {k}");
        let nb = k / QK;
        let nbp = nb.next_multiple_of(2);
        let nb8 = if format == QFormat::Q4_1 { nb.next_multiple_of(8) } else { 0 };
        let qbytes = match format {
            QFormat::Q4_1 => n * nbp / 2 * QK,
            QFormat::Q8_0 => n * nbp * QK,
        };
        Ok(QMat {
            format,
            n,
            k,
            nbp,
            nb8,
            scales: vec![0.0; n * nbp],
            mins: vec![0.0; n * nb8],
            quants: vec![0; qbytes],
        })
    }

    /// Output rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The block format.
    pub fn format(&self) -> QFormat {
        self.format
    }

    fn set_q4(&mut self, o: usize, b: usize, d: f32, m: f32, codes: &[u8; QK]) {
        self.scales[o * self.nbp + b] = d;
        self.mins[o * self.nb8 + b] = m;
        let base = (o * self.nbp / 2 + b / 2) * QK;
        let shift = if b.is_multiple_of(2) { 0 } else { 4 };
        for (i, &c) in codes.iter().enumerate() {
            self.quants[base + i] |= (c & 0x0f) << shift;
        }
    }

    fn set_q8(&mut self, o: usize, b: usize, d: f32, codes: &[i8; QK]) {
        self.scales[o * self.nbp + b] = d;
        let base = (o * self.nbp + b) * QK;
        for (i, &c) in codes.iter().enumerate() {
            self.quants[base + i] = c as u8;
        }
    }

    /// The 4-bit code of element `i` of block `b` of row `o` (Q4_1), or the 8-bit one (Q8_0).
    fn code(&self, o: usize, b: usize, i: usize) -> i32 {
        match self.format {
            QFormat::Q4_1 => {
                let byte = self.quants[(o * self.nbp / 2 + b / 2) * QK + i];
                (if b.is_multiple_of(2) { byte & 0x0f } else { byte >> 4 }) as i32
            }
            QFormat::Q8_0 => self.quants[(o * self.nbp + b) * QK + i] as i8 as i32,
        }
    }

    /// The matrix as `f32`, `n × k` (tests, and the reference the kernels approximate).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        for o in 0..self.n {
            for b in 0..self.k / QK {
                let d = self.scales[o * self.nbp + b];
                let m = if self.format == QFormat::Q4_1 { self.mins[o * self.nb8 + b] } else { 0.0 };
                for i in 0..QK {
                    out[o * self.k + b * QK + i] = d * self.code(o, b, i) as f32 + m;
                }
            }
        }
        out
    }

    /// Reads GGUF blocks (`Q4_1`, `Q4_0` or `Q8_0`, as candle's `QTensor::data` gives them)
    /// of an `n × k` matrix; `None` for another block type.
    pub fn from_gguf_blocks(
        dtype: candle_core::quantized::GgmlDType,
        data: &[u8],
        n: usize,
        k: usize,
    ) -> Result<Option<QMat>> {
        use candle_core::quantized::GgmlDType;
        let nb = k / QK;
        let (format, size) = match dtype {
            GgmlDType::Q4_1 => (QFormat::Q4_1, 20),
            GgmlDType::Q4_0 => (QFormat::Q4_1, 18),
            GgmlDType::Q8_0 => (QFormat::Q8_0, 34),
            _ => return Ok(None),
        };
        let mut w = QMat::blank(format, n, k)?;
        ensure!(
            data.len() == n * nb * size,
            "{dtype:?} tensor of {n}×{k} has {} bytes, expected {}",
            data.len(),
            n * nb * size
        );
        let h = |b: &[u8], at: usize| f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]));
        for o in 0..n {
            for b in 0..nb {
                let blk = &data[(o * nb + b) * size..(o * nb + b + 1) * size];
                match dtype {
                    GgmlDType::Q8_0 => {
                        let mut codes = [0i8; QK];
                        for (c, &byte) in codes.iter_mut().zip(&blk[2..]) {
                            *c = byte as i8;
                        }
                        w.set_q8(o, b, h(blk, 0), &codes);
                    }
                    _ => {
                        let (d, m, qs) = if dtype == GgmlDType::Q4_1 {
                            (h(blk, 0), h(blk, 2), &blk[4..])
                        } else {
                            let d = h(blk, 0);
                            (d, -8.0 * d, &blk[2..])
                        };
                        let mut codes = [0u8; QK];
                        for i in 0..QK / 2 {
                            codes[i] = qs[i] & 0x0f;
                            codes[i + QK / 2] = qs[i] >> 4;
                        }
                        w.set_q4(o, b, d, m, &codes);
                    }
                }
            }
        }
        Ok(Some(w))
    }

    /// Quantizes an `n × k` matrix of `f32` to Q8_0 (scale = max |w| / 127 per block, codes
    /// rounded half away from zero).
    pub fn quantize_q8_0(x: &[f32], n: usize, k: usize) -> Result<QMat> {
        ensure!(x.len() == n * k, "{} values for a {n}×{k} matrix", x.len());
        let mut w = QMat::blank(QFormat::Q8_0, n, k)?;
        for o in 0..n {
            for b in 0..k / QK {
                let (d, codes) = quantize_block(&x[o * k + b * QK..o * k + (b + 1) * QK]);
                w.set_q8(o, b, d, &codes);
            }
        }
        Ok(w)
    }

    /// Stacks matrices of one format and width along the output rows (fused q|k|v, gate|up).
    pub fn concat(parts: Vec<QMat>) -> Result<QMat> {
        let mut it = parts.into_iter();
        let Some(mut first) = it.next() else { bail!("nothing to concatenate") };
        for p in it {
            ensure!(p.format == first.format && p.k == first.k, "fused weights differ in format or width");
            first.n += p.n;
            first.scales.extend(p.scales);
            first.mins.extend(p.mins);
            first.quants.extend(p.quants);
        }
        Ok(first)
    }

    /// Bytes the kernels read per product of one row.
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * (self.scales.len() + self.mins.len())
    }
}

fn quantize_block(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (v * id).round().clamp(-127.0, 127.0) as i8;
    }
    (d, q)
}

/// `m` rows of activations quantized per block of 32 to 8 bits, with what each kernel needs
/// precomputed (one pass, the same for every family).
#[derive(Clone, Debug, Default)]
pub struct QActs {
    m: usize,
    k: usize,
    nbp: usize,
    nb8: usize,
    /// `m × nbp × 32` codes.
    q: Vec<i8>,
    /// `m × nbp` scales.
    d: Vec<f32>,
    /// `m × nb8`: scale × sum of codes, per block (the Q4_1 minimum's term).
    s: Vec<f32>,
    /// `m × nbp × 8`: −128 × the sum of each lane's four codes (the AVX-512 Q8_0 kernel
    /// feeds `w + 128` to `vpdpbusd`, which wants unsigned weights).
    corr: Vec<i32>,
    /// `m × nbp/2 × 16`: the scales of each block pair spread over 8 lanes each (the
    /// AVX-512 kernels' operand layout).
    dpair: Vec<f32>,
}

impl QActs {
    /// Quantizes `m` rows of width `k` (a multiple of 32).
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Result<QActs> {
        ensure!(k.is_multiple_of(QK) && x.len() == m * k, "activations of {} values are not {m} rows of {k}", x.len());
        let nb = k / QK;
        let nbp = nb.next_multiple_of(2);
        let nb8 = nb.next_multiple_of(8);
        let mut a = QActs {
            m,
            k,
            nbp,
            nb8,
            q: vec![0; m * nbp * QK],
            d: vec![0.0; m * nbp],
            s: vec![0.0; m * nb8],
            corr: vec![0; m * nbp * 8],
            dpair: vec![0.0; m * nbp * 8],
        };
        for r in 0..m {
            for b in 0..nb {
                let (d, codes) = quantize_block(&x[r * k + b * QK..r * k + (b + 1) * QK]);
                let at = r * nbp + b;
                a.q[at * QK..(at + 1) * QK].copy_from_slice(&codes);
                a.d[at] = d;
                let sum: i32 = codes.iter().map(|&c| c as i32).sum();
                a.s[r * nb8 + b] = d * sum as f32;
                a.dpair[at * 8..(at + 1) * 8].fill(d);
                for j in 0..8 {
                    a.corr[at * 8 + j] = -128 * codes[4 * j..4 * j + 4].iter().map(|&c| c as i32).sum::<i32>();
                }
            }
        }
        Ok(a)
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// The fixed summation tree of 8 lanes (what `hsum256` computes).
#[inline]
fn tree8(v: [f32; 8]) -> f32 {
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

/// One output of one row, in the canonical order every kernel family follows.
pub fn dot_scalar(w: &QMat, o: usize, a: &QActs, r: usize) -> f32 {
    let nbp = w.nbp;
    let mut acc = [0f32; 16];
    for b in 0..nbp {
        let dd = w.scales[o * nbp + b] * a.d[r * nbp + b];
        let xq = &a.q[(r * nbp + b) * QK..(r * nbp + b + 1) * QK];
        for j in 0..8 {
            let mut lane = 0i32;
            for i in 4 * j..4 * j + 4 {
                lane += w.code(o, b, i) * xq[i] as i32;
            }
            let slot = (b % 2) * 8 + j;
            acc[slot] = dd.mul_add(lane as f32, acc[slot]);
        }
    }
    let mut v = [0f32; 8];
    for j in 0..8 {
        v[j] = acc[j] + acc[8 + j];
    }
    let mut y = tree8(v);
    if w.format == QFormat::Q4_1 {
        let mut macc = [0f32; 8];
        for b in 0..w.nb8 {
            macc[b % 8] = w.mins[o * w.nb8 + b].mul_add(a.s[r * a.nb8 + b], macc[b % 8]);
        }
        y += tree8(macc);
    }
    y
}

/// Rows of a step that share each loaded weight block.
const TILE_ROWS: usize = 4;
/// Output rows per work item.
const GROUP: usize = 16;

struct OutPtr(*mut f32);
// SAFETY: work items write disjoint elements (their own output columns).
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}

/// `y = x Wᵀ` for the `m` rows of `a`: `out` is `m × n`, row-major. Runs on candle's thread
/// pool, split over output rows.
pub fn matmul(w: &QMat, a: &QActs, kernels: Kernels, out: &mut [f32]) -> Result<()> {
    ensure!(a.k == w.k && a.nbp == w.nbp, "activations of width {} for weights of width {}", a.k, w.k);
    ensure!(out.len() == a.m * w.n, "output of {} values for {}×{}", out.len(), a.m, w.n);
    // A family the CPU lacks (a value made by hand) runs as scalar: same numbers.
    let kernels = if kernels.available() { kernels } else { Kernels::Scalar };
    let (n, m) = (w.n, a.m);
    let ptr = OutPtr(out.as_mut_ptr());
    let groups = n.div_ceil(GROUP);
    let run = |range: std::ops::Range<usize>| {
        let ptr = &ptr;
        let (o0, o1) = (range.start * GROUP, (range.end * GROUP).min(n));
        let mut r0 = 0;
        while r0 < m {
            let tile = (m - r0).min(TILE_ROWS);
            for o in o0..o1 {
                let mut ys = [0f32; TILE_ROWS];
                tile_dot(w, o, a, r0, tile, kernels, &mut ys);
                for (t, y) in ys.iter().enumerate().take(tile) {
                    // SAFETY: (r0 + t, o) lies inside `out` (checked above) and only this
                    // work item writes column o.
                    unsafe { *ptr.0.add((r0 + t) * n + o) = *y };
                }
            }
            r0 += tile;
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(groups, run);
    Ok(())
}

/// Outputs `o` of rows `r0..r0 + tile` into `ys[..tile]`.
#[inline]
fn tile_dot(w: &QMat, o: usize, a: &QActs, r0: usize, tile: usize, kernels: Kernels, ys: &mut [f32; TILE_ROWS]) {
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 => {
            // SAFETY: `matmul` checked that the CPU has AVX2 and FMA; indices are in range
            // (o < n, r0 + tile <= m, widths equal).
            unsafe {
                match (w.format, tile) {
                    (QFormat::Q4_1, 4) => x86::q4_avx2::<4>(w, o, a, r0, ys),
                    (QFormat::Q4_1, 3) => x86::q4_avx2::<3>(w, o, a, r0, ys),
                    (QFormat::Q4_1, 2) => x86::q4_avx2::<2>(w, o, a, r0, ys),
                    (QFormat::Q4_1, _) => x86::q4_avx2::<1>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 4) => x86::q8_avx2::<4>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 3) => x86::q8_avx2::<3>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 2) => x86::q8_avx2::<2>(w, o, a, r0, ys),
                    (QFormat::Q8_0, _) => x86::q8_avx2::<1>(w, o, a, r0, ys),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => {
            // SAFETY: as above, with AVX-512 F/BW/VNNI checked.
            unsafe {
                match (w.format, tile) {
                    (QFormat::Q4_1, 4) => x86::q4_avx512::<4>(w, o, a, r0, ys),
                    (QFormat::Q4_1, 3) => x86::q4_avx512::<3>(w, o, a, r0, ys),
                    (QFormat::Q4_1, 2) => x86::q4_avx512::<2>(w, o, a, r0, ys),
                    (QFormat::Q4_1, _) => x86::q4_avx512::<1>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 4) => x86::q8_avx512::<4>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 3) => x86::q8_avx512::<3>(w, o, a, r0, ys),
                    (QFormat::Q8_0, 2) => x86::q8_avx512::<2>(w, o, a, r0, ys),
                    (QFormat::Q8_0, _) => x86::q8_avx512::<1>(w, o, a, r0, ys),
                }
            }
        }
        _ => {
            for (t, y) in ys.iter_mut().enumerate().take(tile) {
                *y = dot_scalar(w, o, a, r0 + t);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The SIMD kernels: the canonical order of [`super::dot_scalar`] in registers.
    use super::{QActs, QK, QMat};
    use std::arch::x86_64::*;

    /// Bytes ahead of the current block pair to prefetch (about two Q4_1 rows of 576): a
    /// prefetch past the end of the matrix is a hint, never a fault.
    const PREFETCH: usize = 1024;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
        _mm_cvtss_f32(s1)
    }

    /// The Q4_1 minimum's term of rows `r0..r0 + R`, 8 lanes over blocks (`b mod 8`).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_mins<const R: usize>(w: &QMat, o: usize, a: &QActs, r0: usize) -> [f32; R] {
        unsafe {
            let mut out = [0f32; R];
            let wm = w.mins.as_ptr().add(o * w.nb8);
            for (r, y) in out.iter_mut().enumerate() {
                let s = a.s.as_ptr().add((r0 + r) * a.nb8);
                let mut acc = _mm256_setzero_ps();
                for c in 0..w.nb8 / 8 {
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(wm.add(8 * c)), _mm256_loadu_ps(s.add(8 * c)), acc);
                }
                *y = hsum256(acc);
            }
            out
        }
    }

    /// Q4_1 weights, AVX2: per block pair, unpack the two blocks' codes once, then for each
    /// row `vpmaddubsw` (codes are unsigned) and `vpmaddwd` give the 8 exact lane sums.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q4_avx2<const R: usize>(w: &QMat, o: usize, a: &QActs, r0: usize, ys: &mut [f32; 4]) {
        unsafe {
            let nbp = w.nbp;
            let wq = w.quants.as_ptr().add(o * nbp / 2 * QK);
            let wd = w.scales.as_ptr().add(o * nbp);
            let mask = _mm256_set1_epi8(0x0f);
            let ones = _mm256_set1_epi16(1);
            let mut acc0 = [_mm256_setzero_ps(); R];
            let mut acc1 = [_mm256_setzero_ps(); R];
            for p in 0..nbp / 2 {
                _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add(p * QK + PREFETCH) as *const i8);
                let packed = _mm256_loadu_si256(wq.add(p * QK) as *const __m256i);
                let lo = _mm256_and_si256(packed, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
                let dwe = _mm256_broadcast_ss(&*wd.add(2 * p));
                let dwo = _mm256_broadcast_ss(&*wd.add(2 * p + 1));
                for r in 0..R {
                    let at = (r0 + r) * nbp + 2 * p;
                    let xp = a.q.as_ptr().add(at * QK);
                    let xe = _mm256_loadu_si256(xp as *const __m256i);
                    let xo = _mm256_loadu_si256(xp.add(QK) as *const __m256i);
                    let le = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xe), ones);
                    let lo_ = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xo), ones);
                    let de = _mm256_mul_ps(dwe, _mm256_broadcast_ss(&*a.d.as_ptr().add(at)));
                    let do_ = _mm256_mul_ps(dwo, _mm256_broadcast_ss(&*a.d.as_ptr().add(at + 1)));
                    acc0[r] = _mm256_fmadd_ps(de, _mm256_cvtepi32_ps(le), acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(do_, _mm256_cvtepi32_ps(lo_), acc1[r]);
                }
            }
            let mins = q4_mins::<R>(w, o, a, r0);
            for r in 0..R {
                ys[r] = hsum256(_mm256_add_ps(acc0[r], acc1[r])) + mins[r];
            }
        }
    }

    /// Q8_0 weights, AVX2: `vpmaddubsw(|w|, sign(x, w))`, llama.cpp's trick for signed
    /// codes (exact: |w| ≤ 128, |x| ≤ 127, pair sums fit in 16 bits).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn q8_avx2<const R: usize>(w: &QMat, o: usize, a: &QActs, r0: usize, ys: &mut [f32; 4]) {
        unsafe {
            let nbp = w.nbp;
            let wq = w.quants.as_ptr().add(o * nbp * QK);
            let wd = w.scales.as_ptr().add(o * nbp);
            let ones = _mm256_set1_epi16(1);
            let mut acc0 = [_mm256_setzero_ps(); R];
            let mut acc1 = [_mm256_setzero_ps(); R];
            for p in 0..nbp / 2 {
                _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add(2 * p * QK + 2 * PREFETCH) as *const i8);
                let we = _mm256_loadu_si256(wq.add(2 * p * QK) as *const __m256i);
                let wo = _mm256_loadu_si256(wq.add((2 * p + 1) * QK) as *const __m256i);
                let ae = _mm256_abs_epi8(we);
                let ao = _mm256_abs_epi8(wo);
                let dwe = _mm256_broadcast_ss(&*wd.add(2 * p));
                let dwo = _mm256_broadcast_ss(&*wd.add(2 * p + 1));
                for r in 0..R {
                    let at = (r0 + r) * nbp + 2 * p;
                    let xp = a.q.as_ptr().add(at * QK);
                    let xe = _mm256_sign_epi8(_mm256_loadu_si256(xp as *const __m256i), we);
                    let xo = _mm256_sign_epi8(_mm256_loadu_si256(xp.add(QK) as *const __m256i), wo);
                    let le = _mm256_madd_epi16(_mm256_maddubs_epi16(ae, xe), ones);
                    let lo_ = _mm256_madd_epi16(_mm256_maddubs_epi16(ao, xo), ones);
                    let de = _mm256_mul_ps(dwe, _mm256_broadcast_ss(&*a.d.as_ptr().add(at)));
                    let do_ = _mm256_mul_ps(dwo, _mm256_broadcast_ss(&*a.d.as_ptr().add(at + 1)));
                    acc0[r] = _mm256_fmadd_ps(de, _mm256_cvtepi32_ps(le), acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(do_, _mm256_cvtepi32_ps(lo_), acc1[r]);
                }
            }
            for r in 0..R {
                ys[r] = hsum256(_mm256_add_ps(acc0[r], acc1[r]));
            }
        }
    }

    /// Two scales `s[0]`, `s[1]` spread over the low and high 8 lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn pair_scales(s: *const f32) -> __m512 {
        unsafe {
            let two = _mm_castpd_ps(_mm_load_sd(s as *const f64));
            let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
            _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two))
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn hsum512(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
        unsafe { hsum256(_mm256_add_ps(lo, hi)) }
    }

    /// Q4_1 weights, AVX-512 VNNI: a block pair is one 64-byte register; `vpdpbusd` gives
    /// the 16 exact lane sums (8 per block) in one instruction.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub unsafe fn q4_avx512<const R: usize>(w: &QMat, o: usize, a: &QActs, r0: usize, ys: &mut [f32; 4]) {
        unsafe {
            let nbp = w.nbp;
            let wq = w.quants.as_ptr().add(o * nbp / 2 * QK);
            let wd = w.scales.as_ptr().add(o * nbp);
            let mask = _mm256_set1_epi8(0x0f);
            let mut acc = [_mm512_setzero_ps(); R];
            for p in 0..nbp / 2 {
                _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add(p * QK + PREFETCH) as *const i8);
                let packed = _mm256_loadu_si256(wq.add(p * QK) as *const __m256i);
                let lo = _mm256_and_si256(packed, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
                let wz = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                let dw = pair_scales(wd.add(2 * p));
                for r in 0..R {
                    let at = (r0 + r) * nbp + 2 * p;
                    let xz = _mm512_loadu_si512(a.q.as_ptr().add(at * QK) as *const __m512i);
                    let lanes = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wz, xz);
                    let d = _mm512_mul_ps(dw, _mm512_loadu_ps(a.dpair.as_ptr().add(at * 8)));
                    acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[r]);
                }
            }
            let mins = q4_mins::<R>(w, o, a, r0);
            for r in 0..R {
                ys[r] = hsum512(acc[r]) + mins[r];
            }
        }
    }

    /// Q8_0 weights, AVX-512 VNNI: `vpdpbusd(w + 128, x)` started from −128·Σx per lane
    /// (precomputed with the activations) is exactly Σ w·x per lane.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub unsafe fn q8_avx512<const R: usize>(w: &QMat, o: usize, a: &QActs, r0: usize, ys: &mut [f32; 4]) {
        unsafe {
            let nbp = w.nbp;
            let wq = w.quants.as_ptr().add(o * nbp * QK);
            let wd = w.scales.as_ptr().add(o * nbp);
            let flip = _mm512_set1_epi8(-128);
            let mut acc = [_mm512_setzero_ps(); R];
            for p in 0..nbp / 2 {
                _mm_prefetch::<_MM_HINT_T0>(wq.wrapping_add(2 * p * QK + 2 * PREFETCH) as *const i8);
                let wz = _mm512_xor_si512(_mm512_loadu_si512(wq.add(2 * p * QK) as *const __m512i), flip);
                let dw = pair_scales(wd.add(2 * p));
                for r in 0..R {
                    let at = (r0 + r) * nbp + 2 * p;
                    let xz = _mm512_loadu_si512(a.q.as_ptr().add(at * QK) as *const __m512i);
                    let corr = _mm512_loadu_si512(a.corr.as_ptr().add(at * 8) as *const __m512i);
                    let lanes = _mm512_dpbusd_epi32(corr, wz, xz);
                    let d = _mm512_mul_ps(dw, _mm512_loadu_ps(a.dpair.as_ptr().add(at * 8)));
                    acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[r]);
                }
            }
            for r in 0..R {
                ys[r] = hsum512(acc[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_q4(rng: &mut ChaCha8Rng, n: usize, k: usize) -> QMat {
        let mut w = QMat::blank(QFormat::Q4_1, n, k).expect("shape");
        for o in 0..n {
            for b in 0..k / QK {
                let mut codes = [0u8; QK];
                for c in codes.iter_mut() {
                    *c = rng.random_range(0..16);
                }
                w.set_q4(o, b, rng.random_range(0.001..0.05), rng.random_range(-0.4..0.0), &codes);
            }
        }
        w
    }

    fn random_f32(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-2.0f32..2.0) * if rng.random_bool(0.02) { 20.0 } else { 1.0 }).collect()
    }

    fn run(w: &QMat, a: &QActs, kernels: Kernels) -> Vec<f32> {
        let mut out = vec![0f32; a.rows() * w.n()];
        matmul(w, a, kernels, &mut out).expect("matmul");
        out
    }

    /// Every family this CPU has gives the scalar kernel's bits, for both formats, odd
    /// block counts (padding), every row-tile remainder and output counts off the group.
    #[test]
    fn every_kernel_family_matches_scalar_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let families = Kernels::available_all();
        assert!(families.contains(&Kernels::Scalar));
        for &(n, k) in &[(1usize, 32usize), (5, 96), (17, 576), (40, 1536)] {
            let q4 = random_q4(&mut rng, n, k);
            let q8 = QMat::quantize_q8_0(&random_f32(&mut rng, n * k), n, k).expect("q8");
            for m in [1usize, 2, 3, 4, 5, 7, 9] {
                let a = QActs::quantize(&random_f32(&mut rng, m * k), m, k).expect("acts");
                for w in [&q4, &q8] {
                    let want = run(w, &a, Kernels::Scalar);
                    for &f in &families {
                        let got = run(w, &a, f);
                        let same = got.iter().zip(&want).all(|(g, s)| g.to_bits() == s.to_bits());
                        assert!(
                            same,
                            "{f:?} vs scalar, {:?} {n}×{k}, {m} rows: {:?} vs {:?}",
                            w.format,
                            &got[..3.min(got.len())],
                            &want[..3.min(want.len())]
                        );
                    }
                }
            }
        }
    }

    /// The scalar kernel is the exact product of the dequantized weights and activations,
    /// up to float rounding (checked in f64).
    #[test]
    fn scalar_kernel_is_the_product_of_the_dequantized_operands() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (n, m, k) = (9, 3, 160);
        let x = random_f32(&mut rng, m * k);
        let a = QActs::quantize(&x, m, k).expect("acts");
        for w in [random_q4(&mut rng, n, k), QMat::quantize_q8_0(&random_f32(&mut rng, n * k), n, k).expect("q8")] {
            let wd = w.dequantize();
            let got = run(&w, &a, Kernels::Scalar);
            for r in 0..m {
                for o in 0..n {
                    let mut exact = 0f64;
                    for b in 0..k / QK {
                        let at = r * a.nbp + b;
                        for i in 0..QK {
                            exact += wd[o * k + b * QK + i] as f64 * (a.d[at] as f64 * a.q[at * QK + i] as f64);
                        }
                    }
                    let g = got[r * n + o] as f64;
                    assert!(
                        (g - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                        "{:?} ({r},{o}): {g} vs {exact}",
                        w.format
                    );
                    // And rounding the activations moves each by at most half its block's
                    // scale: the product stays within Σ |w| · d / 2 of the unquantized one.
                    let plain: f64 = (0..k).map(|i| wd[o * k + i] as f64 * x[r * k + i] as f64).sum();
                    let bound: f64 =
                        (0..k).map(|i| (wd[o * k + i] as f64).abs() * a.d[r * a.nbp + i / QK] as f64 / 2.0).sum();
                    assert!((g - plain).abs() <= bound + 1e-4, "({r},{o}): {g} vs unquantized {plain} (bound {bound})");
                }
            }
        }
    }

    /// GGUF blocks decode to what candle dequantizes them to.
    #[test]
    fn gguf_blocks_read_like_candle() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, k) = (6, 96);
        let x = Tensor::from_vec(random_f32(&mut rng, n * k), (n, k), &Device::Cpu).expect("tensor");
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q4_0, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&x, dtype).expect("quantize");
            let want: Vec<f32> =
                q.dequantize(&Device::Cpu).expect("deq").flatten_all().expect("flat").to_vec1().expect("vec");
            let data = q.data().expect("data");
            let ours = QMat::from_gguf_blocks(dtype, &data, n, k).expect("reads").expect("supported");
            assert_eq!(ours.dequantize(), want, "{dtype:?}");
        }
        assert!(QMat::from_gguf_blocks(GgmlDType::Q6K, &[], 1, 256).expect("no error").is_none());
    }

    #[test]
    fn f16_conversion_is_exact() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
            (0x03ff, 6.097_555e-5),
        ] {
            assert_eq!(f16_to_f32(bits), want, "{bits:#x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn unknown_or_missing_families_are_errors() {
        assert!(Kernels::parse("sse9").is_err());
        assert_eq!(Kernels::parse("scalar").expect("always there"), Kernels::Scalar);
        for k in Kernels::ALL {
            assert_eq!(Kernels::parse(k.name()).is_ok(), k.available());
        }
    }
}
