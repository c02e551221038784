//! Scripted agents for entity scenarios: greedy expected information gain (the strong
//! classical baseline) and the suboptimal, human-like variants corpora are made from.

use std::collections::HashMap;

use anyhow::Result;
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Agent, AgentTurn, Probability, Spec};
use dialogym_scenarios::entity::{EntityScenario, History};
use rand::Rng as _;

use crate::belief::Belief;

/// How a questioner departs from greedy information gain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// Greedy EIG: ask the most informative question; name the most likely entity when the
    /// expected cost of naming it beats asking.
    Greedy,
    /// With probability `eps` ask a random question it has not asked yet.
    EpsGreedy {
        /// Exploration probability.
        eps: f64,
    },
    /// Names the most likely entity as soon as its probability reaches `threshold`.
    EarlyGuesser {
        /// Posterior mass that triggers a guess.
        threshold: f64,
    },
    /// With probability `p` repeats a question it already asked.
    Redundant {
        /// Repeat probability.
        p: f64,
    },
    /// Random questions; names a random entity with probability `guess`.
    Random {
        /// Guess probability per turn.
        guess: f64,
    },
}

/// What greedy EIG would do in a state (cached per history: it is deterministic).
#[derive(Clone, Copy, Debug)]
struct Decision {
    /// The most informative bank question (yes/no attributes first, then open ones; see
    /// `EntityTable::questions`).
    best_question: usize,
    /// The most likely entity and its probability.
    top: (usize, f64),
    /// Whether naming `top` beats asking.
    guess_now: bool,
}

/// The parameters of each questioner spec (`slip`: the noise it assumes of the persona).
macro_rules! questioner_params {
    ($($name:ident { $($field:ident: $default:expr),* }),* $(,)?) => {$(
        #[derive(serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct $name {
            slip: Probability,
            $($field: Probability,)*
        }
        impl Default for $name {
            fn default() -> Self {
                $name { slip: Probability(0.0), $($field: Probability($default),)* }
            }
        }
    )*};
}

questioner_params! {
    GreedyParams {},
    EpsParams { eps: 0.3 },
    EarlyParams { threshold: 0.05 },
    RedundantParams { p: 0.5 },
    RandomParams { guess: 0.1 },
}

/// A scripted agent for [`EntityScenario`].
pub struct Questioner {
    style: Style,
    /// The slip probability the agent assumes of the persona.
    slip: f64,
    spec: String,
    cache: HashMap<(Vec<u32>, bool), Decision>,
}

impl Questioner {
    /// Builds one from its spec: `greedy-eig`, `eps-greedy(eps=0.3)`,
    /// `early-guesser(threshold=0.05)`, `redundant(p=0.5)`, `random(guess=0.1)`; each takes
    /// `slip` (the noise it assumes, default 0).
    pub fn from_spec(spec: &Spec) -> Result<Option<Questioner>> {
        let (style, slip) = match spec.name.as_str() {
            "greedy-eig" => {
                let p: GreedyParams = spec.params()?;
                (Style::Greedy, p.slip)
            }
            "eps-greedy" => {
                let p: EpsParams = spec.params()?;
                (Style::EpsGreedy { eps: p.eps.0 }, p.slip)
            }
            "early-guesser" => {
                let p: EarlyParams = spec.params()?;
                (Style::EarlyGuesser { threshold: p.threshold.0 }, p.slip)
            }
            "redundant" => {
                let p: RedundantParams = spec.params()?;
                (Style::Redundant { p: p.p.0 }, p.slip)
            }
            "random" => {
                let p: RandomParams = spec.params()?;
                (Style::Random { guess: p.guess.0 }, p.slip)
            }
            _ => return Ok(None),
        };
        let slip = slip.0;
        Ok(Some(Questioner { style, slip, spec: spec.to_string(), cache: HashMap::new() }))
    }

    fn decide(&mut self, scenario: &EntityScenario, history: &History, last_turn: bool) -> Decision {
        let key: Vec<u32> = history
            .answers
            .iter()
            .map(|&(a, ans)| (a as u32) << 2 | ans as u32)
            .chain(history.guessed.iter().map(|&e| 1 << 31 | e as u32))
            .chain(history.open_answers.iter().flat_map(|&(o, v)| [1 << 30 | o as u32, v as u32]))
            .collect();
        if self.cache.len() > 1 << 20 {
            self.cache.clear();
        }
        let slip = self.slip;
        *self.cache.entry((key, last_turn)).or_insert_with(|| greedy_decision(scenario, history, slip, last_turn))
    }
}

fn greedy_decision(scenario: &EntityScenario, history: &History, slip: f64, last_turn: bool) -> Decision {
    let table = &*scenario.table;
    let belief = Belief::from_history(table, history, slip);
    let top = belief.top();
    let mut best = (0, f64::NEG_INFINITY, vec![0.0; 3]);
    for a in 0..table.attributes.len() {
        let (p, eig) = belief.answer_distribution(table, a, slip);
        if eig > best.1 + 1e-12 {
            best = (a, eig, p.to_vec());
        }
    }
    // Open questions after the yes/no ones, so a yes/no-only table decides as before.
    for o in 0..table.open.len() {
        let (p, eig) = belief.open_distribution(table, o, slip);
        if eig > best.1 + 1e-12 {
            best = (table.attributes.len() + o, eig, p);
        }
    }
    let guess_now = last_turn || {
        // Expected utterances still needed: naming `top` now (wrong with 1 − p1, then carry
        // on) against asking the best question and carrying on from each answer.
        let guess_cost = (1.0 - top.1) * (1.0 + belief.without(top.0).cost_to_go());
        let after = |i: usize| match best.0.checked_sub(table.attributes.len()) {
            None => belief.update(table, best.0, dialogym_scenarios::entity::Answer::from_index(i), slip),
            Some(o) => belief.update_open(table, o, i, slip),
        };
        let ask_cost = 1.0
            + (0..best.2.len()).filter(|&i| best.2[i] > 0.0).map(|i| best.2[i] * after(i).cost_to_go()).sum::<f64>();
        guess_cost <= ask_cost
    };
    Decision { best_question: best.0, top, guess_now }
}

impl Agent<EntityScenario> for Questioner {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, scenario: &EntityScenario, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        // Bank questions: yes/no attributes, then open attributes (`EntityTable::questions`).
        let n_attr = scenario.table.questions();
        let n_yes_no = scenario.table.attributes.len();
        let n_ent = scenario.table.entities.len();
        let mut out = Vec::with_capacity(turns.len());
        for turn in turns.iter_mut() {
            let history = scenario.history(turn.transcript);
            let last_turn = agent_turns(turn.transcript) + 1 >= scenario.rules.max_turns;
            // Questions answered so far, in bank numbering (yes/no, then open).
            let answered: Vec<usize> = history
                .answers
                .iter()
                .map(|&(a, _)| a)
                .chain(history.open_answers.iter().map(|&(o, _)| n_yes_no + o))
                .collect();
            let asked = |a: usize| answered.contains(&a);
            let random_unasked = |rng: &mut dialogym_engine::seed::Rng| {
                let fresh: Vec<usize> = (0..n_attr).filter(|&a| !asked(a)).collect();
                if fresh.is_empty() { rng.random_range(0..n_attr) } else { fresh[rng.random_range(0..fresh.len())] }
            };
            let ask = |a: usize| scenario.bank_question(a).to_string();
            let name = |e: usize| scenario.guess_text(e);
            let text = match self.style {
                Style::Random { guess } => {
                    if last_turn || turn.rng.random_bool(guess) {
                        let fresh: Vec<usize> = (0..n_ent).filter(|e| !history.guessed.contains(e)).collect();
                        name(fresh.get(turn.rng.random_range(0..fresh.len().max(1))).copied().unwrap_or(0))
                    } else {
                        ask(random_unasked(&mut turn.rng))
                    }
                }
                style => {
                    let d = self.decide(scenario, &history, last_turn);
                    let greedy = if d.guess_now { name(d.top.0) } else { ask(d.best_question) };
                    match style {
                        Style::EpsGreedy { eps } if !d.guess_now && turn.rng.random_bool(eps) => {
                            ask(random_unasked(&mut turn.rng))
                        }
                        Style::EarlyGuesser { threshold } if d.top.1 >= threshold => name(d.top.0),
                        Style::Redundant { p } if !d.guess_now && !answered.is_empty() && turn.rng.random_bool(p) => {
                            let i = turn.rng.random_range(0..answered.len());
                            ask(answered[i])
                        }
                        _ => greedy,
                    }
                }
            };
            out.push(text);
        }
        Ok(out)
    }
}
