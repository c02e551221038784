//! Builds the cast of a run from specs: the scenario's scripted speakers, and the speakers
//! that work with any scenario (learned value heads, language models).

use anyhow::Result;
use dialogym_engine::world::Pool;
use dialogym_engine::{Agent, MixSpec, Persona};
use dialogym_scenarios::entity::EntityScenario;

/// Agents with their weights, from `greedy-eig` or `mix:a@w,b@w`.
pub fn agents(scenario: &EntityScenario, spec: &MixSpec) -> Result<Pool<dyn Agent<EntityScenario>>> {
    spec.components
        .iter()
        .map(|(s, w)| {
            let agent: Box<dyn Agent<EntityScenario>> = match s.name.as_str() {
                "learned" => Box::new(dialogym_policies::agent::LearnedAgent::from_spec(s)?),
                _ => match crate::llm::agent(s, scenario)? {
                    Some(a) => a,
                    None => dialogym_agents::entity_agent(s)?,
                },
            };
            Ok((agent, *w))
        })
        .collect()
}

/// Personas with their weights.
pub fn personas(scenario: &EntityScenario, spec: &MixSpec) -> Result<Pool<dyn Persona<EntityScenario>>> {
    spec.components
        .iter()
        .map(|(s, w)| {
            let persona = match crate::llm::persona(s, scenario)? {
                Some(p) => p,
                None => dialogym_agents::entity_persona(s, scenario)?,
            };
            Ok((persona, *w))
        })
        .collect()
}
