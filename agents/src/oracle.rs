//! The scripted oracle: answers an entity scenario's bank questions from its table, with a
//! seeded slip model for human-like errors (see `belief.rs` for the exact probabilities).

use anyhow::Result;
use dialogym_engine::{Persona, PersonaTurn, Probability, Spec};
use dialogym_scenarios::entity::{Answer, EntityScenario, Secret, Utterance};

/// Answers "Yes." / "No." / "Sometimes." from the table, open questions with the value's
/// words ("Europe."); guesses by name; anything else "I can't answer that.". With
/// probability `slip` an attribute answer is wrong.
pub struct Oracle {
    slip: f64,
    spec: String,
}

impl Oracle {
    /// `oracle` or `oracle(slip=0.05)`; without `slip`, the scenario's default.
    pub fn from_spec(spec: &Spec, scenario: &EntityScenario) -> Result<Option<Oracle>> {
        if spec.name != "oracle" {
            return Ok(None);
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Params {
            #[serde(default)]
            slip: Option<Probability>,
        }
        let slip = spec.params::<Params>()?.slip.map_or(scenario.rules.slip, |p| p.0);
        let mut canonical = spec.clone();
        canonical.params.insert("slip".into(), slip.to_string());
        Ok(Some(Oracle { slip, spec: canonical.to_string() }))
    }
}

/// The answer after a possible slip: Yes↔No; Sometimes becomes Yes or No at random.
pub fn slip_answer(truth: Answer, slip: f64, rng: &mut impl rand::Rng) -> Answer {
    if slip <= 0.0 || !rng.random_bool(slip) {
        return truth;
    }
    match truth {
        Answer::Yes => Answer::No,
        Answer::No => Answer::Yes,
        Answer::Sometimes => {
            if rng.random_bool(0.5) {
                Answer::Yes
            } else {
                Answer::No
            }
        }
    }
}

/// The value said after a possible slip: with probability `slip`, a uniformly random other
/// value of the `k`. Draws nothing when `slip` is 0 (as [`slip_answer`]).
pub fn slip_value(truth: usize, k: usize, slip: f64, rng: &mut impl rand::Rng) -> usize {
    if slip <= 0.0 || k <= 1 || !rng.random_bool(slip) {
        return truth;
    }
    let other = rng.random_range(0..k - 1);
    if other >= truth { other + 1 } else { other }
}

/// The scripted reply to one utterance: the table's answer (after a possible slip), the
/// verdict on a guess, or the "unknown" words.
pub fn scripted_reply(
    scenario: &EntityScenario,
    secret: &Secret,
    utterance: Utterance,
    slip: f64,
    rng: &mut impl rand::Rng,
) -> String {
    let words = &scenario.rules.answers;
    match utterance {
        Utterance::Ask(a) => {
            let truth = scenario.table.answer(secret.index, a);
            words.of(slip_answer(truth, slip, rng)).to_string()
        }
        Utterance::AskOpen(o) => {
            let attr = &scenario.table.open[o];
            let truth = scenario.table.value(secret.index, o);
            attr.reply_text(slip_value(truth, attr.values.len(), slip, rng))
        }
        Utterance::Guess(e) if e == secret.index => words.correct.clone(),
        Utterance::Guess(_) => words.wrong.clone(),
        Utterance::Other => words.unknown.clone(),
    }
}

impl Persona<EntityScenario> for Oracle {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn reply(&mut self, scenario: &EntityScenario, turns: &mut [PersonaTurn<'_, Secret>]) -> Result<Vec<String>> {
        Ok(turns
            .iter_mut()
            .map(|t| {
                let question = t.transcript.last().map(|m| m.content.as_str()).unwrap_or("");
                scripted_reply(scenario, t.hidden, scenario.interpret(question), self.slip, &mut t.rng)
            })
            .collect())
    }
}
