//! Summary statistics for evaluation tables: means with 95% intervals.

use serde::Serialize;

/// Mean of a sample with its 95% confidence half-width (normal approximation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Sample mean.
    pub mean: f64,
    /// Half-width of the 95% interval: 1.96 · s / √n (0 for n < 2).
    pub ci95: f64,
    /// Sample size.
    pub n: usize,
}

impl Estimate {
    /// Mean and 95% interval of `xs`.
    pub fn of(xs: impl IntoIterator<Item = f64>) -> Estimate {
        let xs: Vec<f64> = xs.into_iter().collect();
        let n = xs.len();
        if n == 0 {
            return Estimate { mean: f64::NAN, ci95: f64::NAN, n };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let ci95 = if n < 2 {
            0.0
        } else {
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            1.96 * (var / n as f64).sqrt()
        };
        Estimate { mean, ci95, n }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ± {:.2}", self.mean, self.ci95)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_matches_hand_computation() {
        let e = Estimate::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(e.mean, 2.5);
        // s = sqrt(5/3); 1.96 * s / 2
        assert!((e.ci95 - 1.96 * (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(Estimate::of([7.0]).ci95, 0.0);
        assert!(Estimate::of(Vec::<f64>::new()).mean.is_nan());
    }
}
