//! The uniform agent: says one of the scenario's candidate utterances, uniformly at random.
//! It works with every scenario, so property tests and sanity baselines need nothing
//! scenario-specific.

use anyhow::Result;
use dialogym_engine::{Agent, AgentTurn, Scenario, Spec};
use rand::Rng as _;

/// Picks uniformly among `Scenario::candidates` in each state.
pub struct Uniform;

impl Uniform {
    /// `uniform` (no parameters).
    pub fn from_spec(spec: &Spec) -> Result<Option<Uniform>> {
        if spec.name != "uniform" {
            return Ok(None);
        }
        spec.expect_only(&[])?;
        Ok(Some(Uniform))
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
