//! The scripted oracle: answers an entity scenario's bank questions from its table, with a
//! seeded slip model for human-like errors (see `belief.rs` for the exact probabilities).

use anyhow::Result;
use dialogym_engine::{Persona, PersonaTurn, Spec};
use dialogym_scenarios::entity::{Answer, EntityScenario, Utterance};

/// Answers "Yes." / "No." / "Sometimes." from the table; guesses by name; anything else
/// "I can't answer that.". With probability `slip` an attribute answer is wrong.
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
        spec.expect_only(&["slip"])?;
        let slip = spec.probability("slip", scenario.rules.slip)?;
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

impl Persona<EntityScenario> for Oracle {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn reply(
        &mut self,
        scenario: &EntityScenario,
        turns: &mut [PersonaTurn<'_, dialogym_scenarios::entity::Secret>],
    ) -> Result<Vec<String>> {
        let words = &scenario.rules.answers;
        Ok(turns
            .iter_mut()
            .map(|t| {
                let question = t.transcript.last().map(|m| m.content.as_str()).unwrap_or("");
                match scenario.interpret(question) {
                    Utterance::Ask(a) => {
                        let truth = scenario.table.answer(t.hidden.index, a);
                        words.of(slip_answer(truth, self.slip, &mut t.rng)).to_string()
                    }
                    Utterance::Guess(e) if e == t.hidden.index => words.correct.clone(),
                    Utterance::Guess(_) => words.wrong.clone(),
                    Utterance::Other => words.unknown.clone(),
                }
            })
            .collect())
    }
}
