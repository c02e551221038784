//! The uniform agent: says one of the scenario's candidate utterances, uniformly at random.
//! It works with every scenario, so property tests and sanity baselines need nothing
//! scenario-specific.

use anyhow::Result;
use dialogym_engine::{Agent, AgentRow, AgentTurn, Scenario, SpeakerRow};
use rand::Rng as _;

/// Picks uniformly among `Scenario::candidates` in each state.
pub struct Uniform;

/// The `uniform` row, for any scenario.
pub fn row<S: Scenario>() -> AgentRow<S> {
    SpeakerRow {
        name: "uniform",
        aliases: &[],
        usage: "uniform",
        help: "one of the scenario's candidate utterances, uniformly at random",
        build: |spec, _, _| {
            spec.no_params()?;
            Ok(Box::new(Uniform))
        },
    }
}

impl<S: Scenario> Agent<S> for Uniform {
    fn id(&self) -> String {
        "uniform".into()
    }

    fn act(&mut self, scenario: &S, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        Ok(turns
            .iter_mut()
            .map(|t| {
                let c = scenario.candidates(t.transcript);
                if c.is_empty() { String::new() } else { c[t.rng.random_range(0..c.len())].clone() }
            })
            .collect())
    }
}
