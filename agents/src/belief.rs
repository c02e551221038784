//! A posterior over an entity table's hypotheses, and expected information gain.
//!
//! Noise model (shared with the scripted oracle, see `oracle.rs`): with probability `slip`
//! the persona gives a wrong answer: Yes↔No, and Sometimes becomes Yes or No at random.
//! P(answer | table truth):
//!
//! | truth \ answer | Yes   | No    | Sometimes |
//! |----------------|-------|-------|-----------|
//! | Yes            | 1−p   | p     | 0         |
//! | No             | p     | 1−p   | 0         |
//! | Sometimes      | p/2   | p/2   | 1−p       |
//!
//! Zeros are floored at [`FLOOR`] so that an answer no hypothesis explains (a persona that
//! slips more than the agent assumes) never empties the posterior.

use dialogym_scenarios::entity::{Answer, EntityTable, History};

/// Smallest likelihood used, so the posterior never collapses to all zeros.
pub const FLOOR: f64 = 1e-6;

/// P(answer | truth) under slip probability `p`, indexed `[truth][answer]`.
pub fn likelihoods(p: f64) -> [[f64; 3]; 3] {
    let f = |x: f64| x.max(FLOOR);
    [[f(1.0 - p), f(p), FLOOR], [f(p), f(1.0 - p), FLOOR], [f(p / 2.0), f(p / 2.0), f(1.0 - p)]]
}

/// Normalized weights over the table's entities.
#[derive(Clone, Debug, PartialEq)]
pub struct Belief {
    /// P(entity | history), summing to 1.
    pub weights: Vec<f64>,
}

fn entropy(ps: impl IntoIterator<Item = f64>) -> f64 {
    ps.into_iter().filter(|&p| p > 0.0).map(|p| -p * p.log2()).sum()
}

impl Belief {
    /// The posterior after `history`, from a uniform prior over all entities.
    pub fn from_history(table: &EntityTable, history: &History, slip: f64) -> Belief {
        let n = table.entities.len();
        let lik = likelihoods(slip);
        let mut w = vec![1.0; n];
        for &(a, ans) in &history.answers {
            for (e, t) in table.column(a).iter().enumerate() {
                w[e] *= lik[*t as usize][ans as usize];
            }
            // Keep the numbers in range over long histories.
            let max = w.iter().cloned().fold(0.0, f64::max);
            if max > 0.0 {
                w.iter_mut().for_each(|x| *x /= max);
            }
        }
        for &g in &history.guessed {
            w[g] = 0.0;
        }
        let mut b = Belief { weights: w };
        b.normalize();
        b
    }

    fn normalize(&mut self) {
        let total: f64 = self.weights.iter().sum();
        if total > 0.0 {
            self.weights.iter_mut().for_each(|x| *x /= total);
        }
    }

    /// The most likely entity and its probability (lowest index on ties).
    pub fn top(&self) -> (usize, f64) {
        let mut best = (0, f64::NEG_INFINITY);
        for (i, &p) in self.weights.iter().enumerate() {
            if p > best.1 {
                best = (i, p);
            }
        }
        best
    }

    /// Entropy of the posterior in bits.
    pub fn entropy(&self) -> f64 {
        entropy(self.weights.iter().copied())
    }

    /// Probability of each answer to attribute `a`, and the expected information gain of
    /// asking it: EIG(a) = H(Answer) − H(Answer | Entity).
    pub fn answer_distribution(&self, table: &EntityTable, a: usize, slip: f64) -> ([f64; 3], f64) {
        let lik = likelihoods(slip);
        let (yes, sometimes) = table.masses(a, &self.weights);
        let mass = [yes, (1.0 - yes - sometimes).max(0.0), sometimes];
        let mut p = [0.0; 3];
        let mut h_cond = 0.0;
        for (truth, m) in mass.iter().enumerate() {
            for (ans, pa) in p.iter_mut().enumerate() {
                *pa += m * lik[truth][ans];
            }
            h_cond += m * entropy(lik[truth]);
        }
        (p, entropy(p) - h_cond)
    }

    /// The posterior after hearing `answer` to attribute `a`.
    pub fn update(&self, table: &EntityTable, a: usize, answer: Answer, slip: f64) -> Belief {
        let lik = likelihoods(slip);
        let mut b = Belief {
            weights: self
                .weights
                .iter()
                .zip(table.column(a))
                .map(|(w, t)| w * lik[*t as usize][answer as usize])
                .collect(),
        };
        b.normalize();
        b
    }

    /// The posterior after a wrong guess of `e`.
    pub fn without(&self, e: usize) -> Belief {
        let mut b = self.clone();
        b.weights[e] = 0.0;
        b.normalize();
        b
    }

    /// A cheap estimate of the utterances still needed to name the secret: the fewer of
    /// naming candidates in order of probability (expected wrong guesses) and one question
    /// per bit of entropy.
    pub fn cost_to_go(&self) -> f64 {
        let mut ps: Vec<f64> = self.weights.iter().copied().filter(|&p| p > 0.0).collect();
        ps.sort_by(|a, b| b.total_cmp(a));
        let sequential: f64 = ps.iter().enumerate().map(|(i, p)| i as f64 * p).sum();
        sequential.min(self.entropy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialogym_scenarios::entity::{Attribute, Entity};

    fn table() -> EntityTable {
        let ents = (0..4).map(|i| Entity { names: vec![format!("e{i}")], category: "c".into() }).collect();
        let attrs = vec![
            Attribute { id: "half".into(), question: "Half?".into() },
            Attribute { id: "one".into(), question: "One?".into() },
        ];
        use Answer::*;
        EntityTable::new(ents, attrs, vec![vec![Yes, Yes, No, No], vec![Yes, No, No, No]]).unwrap()
    }

    #[test]
    fn eig_of_a_noise_free_even_split_is_one_bit() {
        let t = table();
        let b = Belief::from_history(&t, &History::default(), 0.0);
        let (p, eig) = b.answer_distribution(&t, 0, 0.0);
        assert!((eig - 1.0).abs() < 1e-4, "{eig}");
        assert!((p[0] - 0.5).abs() < 1e-4);
        let (_, eig1) = b.answer_distribution(&t, 1, 0.0);
        // H(1/4, 3/4) = 0.811 bits
        assert!((eig1 - 0.8113).abs() < 1e-3, "{eig1}");
    }

    #[test]
    fn posterior_follows_answers_and_noise() {
        let t = table();
        let h = History { answers: vec![(0, Answer::Yes), (1, Answer::No)], guessed: vec![] };
        let hard = Belief::from_history(&t, &h, 0.0);
        assert_eq!(hard.top().0, 1);
        assert!(hard.top().1 > 0.999);
        let soft = Belief::from_history(&t, &h, 0.1);
        // e1: 0.9·0.9, e0: 0.9·0.1, e2,e3: 0.1·0.9 each -> e1 = 0.81/1.08
        assert!((soft.weights[1] - 0.81 / 1.08).abs() < 1e-4, "{:?}", soft.weights);
        let g = History { answers: vec![], guessed: vec![0, 1] };
        let b = Belief::from_history(&t, &g, 0.0);
        assert_eq!(b.weights[0], 0.0);
        assert!((b.weights[2] - 0.5).abs() < 1e-12);
    }
}
