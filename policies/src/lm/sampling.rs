//! Choosing the next token from logits: greedy, or temperature / top-k / top-p with a
//! seeded generator. One sampler per request, seeded by the request alone, so a reply does
//! not depend on which other requests shared its batch.

use anyhow::{Result, bail};
use dialogym_engine::lm::Sampling;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Probabilities below this (after temperature) are left out of the sort that top-p needs;
/// when the kept tokens hold less than `top_p` of the mass, the full vocabulary is sorted.
const NEGLIGIBLE: f32 = 1e-7;

/// A request's sampler: its settings and its own generator.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    rng: ChaCha8Rng,
}

/// Checks settings a user wrote (spec parameters, server requests).
pub fn validate(s: &Sampling) -> Result<()> {
    if !(s.temperature.is_finite() && s.temperature >= 0.0) {
        bail!("temperature must be ≥ 0 (got {})", s.temperature);
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        bail!("top_p must lie in (0, 1] (got {})", s.top_p);
    }
    if s.max_tokens == 0 {
        bail!("max_tokens must be at least 1");
    }
    Ok(())
}

impl Sampler {
    /// A sampler for one request.
    pub fn new(s: &Sampling) -> Sampler {
        Sampler {
            temperature: s.temperature as f32,
            top_p: s.top_p as f32,
            top_k: s.top_k,
            rng: ChaCha8Rng::seed_from_u64(s.seed),
        }
    }

    /// The next token. Greedy (temperature 0) takes the highest logit, the lowest id on ties.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 || self.top_k == 1 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let t = self.temperature;
        let mut probs: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
        let total: f32 = probs.iter().sum();
        for p in probs.iter_mut() {
            *p /= total;
        }
        let mut cand: Vec<(u32, f32)> =
            probs.iter().enumerate().filter(|(_, p)| **p >= NEGLIGIBLE).map(|(i, p)| (i as u32, *p)).collect();
        let kept: f32 = cand.iter().map(|c| c.1).sum();
        if kept < self.top_p || (self.top_k > 0 && cand.len() < self.top_k) {
            cand = probs.iter().enumerate().map(|(i, p)| (i as u32, *p)).collect();
        }
        // Descending probability, ascending id on ties: a total order, so the cut below is
        // the same on every machine.
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.top_k > 0 {
            cand.truncate(self.top_k);
        }
        if self.top_p < 1.0 {
            let mut acc = 0f32;
            let mut keep = cand.len();
            for (i, c) in cand.iter().enumerate() {
                acc += c.1;
                if acc >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        let mass: f32 = cand.iter().map(|c| c.1).sum();
        let mut u = self.rng.random::<f32>() * mass;
        for &(id, p) in &cand {
            if u < p {
                return id;
            }
            u -= p;
        }
        cand.last().map(|c| c.0).unwrap_or_else(|| argmax(logits))
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_p: f64, top_k: usize, seed: u64) -> Sampling {
        Sampling { temperature, top_p, top_k, max_tokens: 1, stop: vec![], seed }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(&sampling(0.0, 1.0, 0, 0));
        assert_eq!(s.next(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(&sampling(1.0, 1.0, 3, seed));
            (0..50).map(|_| s.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let mut top3: Vec<u32> = (0..100).collect();
        top3.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        top3.truncate(3);
        assert!(draw(7).iter().all(|t| top3.contains(t)), "top_k=3 drew outside the top 3");
        assert!(draw(7).iter().collect::<std::collections::HashSet<_>>().len() > 1, "temperature 1 never varied");
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // One token holds ~98% of the mass: top_p = 0.9 must always pick it.
        let mut logits = vec![0.0f32; 50];
        logits[9] = 10.0;
        let mut s = Sampler::new(&sampling(1.0, 0.9, 0, 3));
        assert!((0..200).all(|_| s.next(&logits) == 9));
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(validate(&sampling(-1.0, 1.0, 0, 0)).is_err());
        assert!(validate(&sampling(1.0, 0.0, 0, 0)).is_err());
        assert!(validate(&sampling(1.0, 1.0, 0, 0)).is_ok());
    }
}
