//! dialogym's speakers: scripted personas and baseline agents, and the roster that builds
//! them from specs.

pub mod belief;
pub mod critique;
pub mod llm;
pub mod oracle;
pub mod polling;
pub mod preference;
pub mod questioner;
pub mod server;
pub mod tutoring;
pub mod uniform;

use anyhow::{Result, bail};
use dialogym_engine::{Agent, Persona, Spec};
use dialogym_scenarios::entity::EntityScenario;

pub use preference::{PREFERENCE_AGENTS, PREFERENCE_PERSONAS, preference_agent, preference_persona};
pub use tutoring::{TUTORING_AGENTS, TUTORING_PERSONAS, tutoring_agent, tutoring_persona};

/// Agents every entity scenario offers, with a line each (for `--help` and errors).
pub const ENTITY_AGENTS: &[(&str, &str)] = &[
    ("greedy-eig", "asks the most informative question, names the most likely entity when that beats asking"),
    ("eps-greedy(eps=0.3)", "greedy EIG, but a random unasked question with probability eps"),
    ("early-guesser(threshold=0.05)", "greedy EIG, but names the top entity once its probability reaches threshold"),
    ("redundant(p=0.5)", "greedy EIG, but repeats an earlier question with probability p"),
    ("random(guess=0.1)", "random unasked questions, a random guess with probability guess"),
];

/// Personas every entity scenario offers.
pub const ENTITY_PERSONAS: &[(&str, &str)] =
    &[("oracle(slip=0)", "answers from the knowledge table; wrong with probability slip")];

/// Builds a scripted agent for an entity scenario.
pub fn entity_agent(spec: &Spec) -> Result<Box<dyn Agent<EntityScenario>>> {
    match questioner::Questioner::from_spec(spec)? {
        Some(q) => Ok(Box::new(q)),
        None => bail!("unknown agent `{}`; valid agents: {}", spec.name, names(ENTITY_AGENTS)),
    }
}

/// Builds a scripted persona for an entity scenario.
pub fn entity_persona(spec: &Spec, scenario: &EntityScenario) -> Result<Box<dyn Persona<EntityScenario>>> {
    match oracle::Oracle::from_spec(spec, scenario)? {
        Some(o) => Ok(Box::new(o)),
        None => bail!("unknown persona `{}`; valid personas: {}", spec.name, names(ENTITY_PERSONAS)),
    }
}

/// "a, b, c" of the names in a roster.
pub fn names(roster: &[(&str, &str)]) -> String {
    roster.iter().map(|(n, _)| n.split('(').next().unwrap_or(n)).collect::<Vec<_>>().join(", ")
}
