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
//! Open attributes (K values) generalize the same model: with probability `slip` the persona
//! says a uniformly random *other* value, so P(answer | truth) = 1−p if they agree and
//! p/(K−1) otherwise.
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

/// P(answer | truth) for an open attribute with `k` values under slip probability `p`:
/// (same value, other value), unfloored.
pub fn open_likelihoods(p: f64, k: usize) -> (f64, f64) {
    if k <= 1 { (1.0, 0.0) } else { (1.0 - p, p / (k - 1) as f64) }
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
        for &(o, v) in &history.open_answers {
            let (same, other) = open_likelihoods(slip, table.open[o].values.len());
            let (same, other) = (same.max(FLOOR), other.max(FLOOR));
            for (e, t) in table.open_column(o).iter().enumerate() {
                w[e] *= if *t as usize == v { same } else { other };
            }
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

    /// Probability of each value said in reply to open attribute `o`, and the expected
    /// information gain of asking it: EIG(o) = H(Answer) − H(Answer | Entity), where the
    /// conditional entropy is the slip model's, the same for every entity.
    pub fn open_distribution(&self, table: &EntityTable, o: usize, slip: f64) -> (Vec<f64>, f64) {
        let (same, other) = open_likelihoods(slip, table.open[o].values.len());
        let mass = table.value_masses(o, &self.weights);
        let p: Vec<f64> = mass.iter().map(|m| m * same + (1.0 - m).max(0.0) * other).collect();
        let h_cond = entropy(std::iter::once(same).chain(std::iter::repeat_n(other, mass.len().saturating_sub(1))));
        let eig = entropy(p.iter().copied()) - h_cond;
        (p, eig)
    }

    /// The posterior after hearing value `v` in reply to open attribute `o`.
    pub fn update_open(&self, table: &EntityTable, o: usize, v: usize, slip: f64) -> Belief {
        let (same, other) = open_likelihoods(slip, table.open[o].values.len());
        let (same, other) = (same.max(FLOOR), other.max(FLOOR));
        let mut b = Belief {
            weights: self
                .weights
                .iter()
                .zip(table.open_column(o))
                .map(|(w, t)| w * if *t as usize == v { same } else { other })
                .collect(),
        };
        b.normalize();
        b
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
    use dialogym_scenarios::entity::{Attribute, Entity, OpenAttribute};

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

    fn open_table() -> EntityTable {
        let open = vec![OpenAttribute {
            id: "colour".into(),
            question: "What colour is it?".into(),
            values: vec!["Red".into(), "Green".into(), "Blue".into()],
            reply: "{value}.".into(),
        }];
        table().with_open(open, vec![vec![0, 1, 2, 2]]).unwrap()
    }

    #[test]
    fn open_attributes_carry_more_information_than_yes_no() {
        let t = open_table();
        let b = Belief::from_history(&t, &History::default(), 0.0);
        let (p, eig) = b.open_distribution(&t, 0, 0.0);
        // H(1/4, 1/4, 1/2) = 1.5 bits, more than the best yes/no question's 1 bit.
        assert!((eig - 1.5).abs() < 1e-9, "{eig}");
        assert!((p[2] - 0.5).abs() < 1e-12);
        // With slip p, K = 3: answer probabilities mix in p/2 of each other value.
        let (p, eig) = b.open_distribution(&t, 0, 0.1);
        assert!((p[0] - (0.25 * 0.9 + 0.75 * 0.05)).abs() < 1e-12, "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(eig < 1.5 && eig > 0.5, "{eig}");
    }

    #[test]
    fn open_answers_update_the_posterior_by_value_equality() {
        let t = open_table();
        let h = History { open_answers: vec![(0, 2)], ..History::default() };
        let hard = Belief::from_history(&t, &h, 0.0);
        assert!((hard.weights[2] - 0.5).abs() < 1e-5 && (hard.weights[3] - 0.5).abs() < 1e-5, "{:?}", hard.weights);
        let soft = Belief::from_history(&t, &h, 0.2);
        // e2, e3: 0.8 each; e0, e1: 0.1 each -> e2 = 0.8/1.8
        assert!((soft.weights[2] - 0.8 / 1.8).abs() < 1e-12, "{:?}", soft.weights);
        let stepwise = Belief::from_history(&t, &History::default(), 0.2).update_open(&t, 0, 2, 0.2);
        assert!(stepwise.weights.iter().zip(&soft.weights).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn posterior_follows_answers_and_noise() {
        let t = table();
        let h = History { answers: vec![(0, Answer::Yes), (1, Answer::No)], ..History::default() };
        let hard = Belief::from_history(&t, &h, 0.0);
        assert_eq!(hard.top().0, 1);
        assert!(hard.top().1 > 0.999);
        let soft = Belief::from_history(&t, &h, 0.1);
        // e1: 0.9·0.9, e0: 0.9·0.1, e2,e3: 0.1·0.9 each -> e1 = 0.81/1.08
        assert!((soft.weights[1] - 0.81 / 1.08).abs() < 1e-4, "{:?}", soft.weights);
        let g = History { guessed: vec![0, 1], ..History::default() };
        let b = Belief::from_history(&t, &g, 0.0);
        assert_eq!(b.weights[0], 0.0);
        assert!((b.weights[2] - 0.5).abs() < 1e-12);
    }
}
