//! Every scenario type's speakers, as rows ([`Cast`]): its scripted agents and personas
//! (one row each in its module's table), its language-model speakers (one row per model
//! backend) and the agents every scenario offers ([`generic_agents`]: the learned agent and
//! the uniform baseline). [`agent`] and [`persona`] build a speaker from a spec by looking up
//! its row.

use anyhow::Result;
use dialogym_engine::speaker::build_from;
use dialogym_engine::{Agent, AgentRow, Context, Persona, PersonaRow, Scenario, SpeakerRow, Spec};
use dialogym_scenarios::entity::EntityScenario;
use dialogym_scenarios::polling::Poll;
use dialogym_scenarios::preference::Preference;
use dialogym_scenarios::tutoring::Tutoring;

/// A scenario type's speakers as rows. Every scenario also gets the generic agents of
/// [`generic_agents`].
pub trait Cast: Scenario + Sized {
    /// The scenario's own agents, in help order (the first is its main scripted one).
    fn agents() -> Vec<AgentRow<Self>>;
    /// Its personas (the first is its main scripted one).
    fn personas() -> Vec<PersonaRow<Self>>;
}

impl Cast for EntityScenario {
    fn agents() -> Vec<AgentRow<Self>> {
        let mut rows: Vec<_> = crate::ENTITY_AGENTS.iter().map(copy).collect();
        rows.extend(crate::llm::speakers::llm_agent_rows());
        rows
    }
    fn personas() -> Vec<PersonaRow<Self>> {
        let mut rows: Vec<_> = crate::ENTITY_PERSONAS.iter().map(copy).collect();
        rows.extend(crate::llm::speakers::llm_persona_rows());
        rows
    }
}

impl Cast for Poll {
    fn agents() -> Vec<AgentRow<Self>> {
        crate::polling::POLL_AGENTS.iter().map(copy).collect()
    }
    fn personas() -> Vec<PersonaRow<Self>> {
        crate::polling::POLL_PERSONAS.iter().map(copy).collect()
    }
}

impl Cast for Tutoring {
    fn agents() -> Vec<AgentRow<Self>> {
        crate::TUTORING_AGENTS.iter().map(copy).collect()
    }
    fn personas() -> Vec<PersonaRow<Self>> {
        crate::TUTORING_PERSONAS.iter().map(copy).collect()
    }
}

impl Cast for Preference {
    fn agents() -> Vec<AgentRow<Self>> {
        crate::PREFERENCE_AGENTS.iter().map(copy).collect()
    }
    fn personas() -> Vec<PersonaRow<Self>> {
        crate::PREFERENCE_PERSONAS.iter().map(copy).collect()
    }
}

/// A row by value (rows are plain data: names, texts and a builder).
fn copy<T: ?Sized, S>(r: &SpeakerRow<T, S>) -> SpeakerRow<T, S> {
    SpeakerRow { name: r.name, aliases: r.aliases, usage: r.usage, help: r.help, build: r.build }
}

/// Agents every scenario offers: the learned agent and the uniform baseline.
pub fn generic_agents<S: Scenario>() -> Vec<AgentRow<S>> {
    vec![
        SpeakerRow {
            name: "learned",
            aliases: &[],
            usage: "learned:DIR(temperature=0)",
            help: "a checkpoint from `dialogym train` (argmax of min Q, or sampling; repeat=false never says a \
                   candidate twice)",
            build: |spec, _, _| Ok(Box::new(dialogym_policies::agent::LearnedAgent::from_spec(spec)?)),
        },
        crate::uniform::row(),
    ]
}

/// Every agent row of scenario type `S`.
pub fn agent_rows<S: Cast>() -> Vec<AgentRow<S>> {
    let mut rows = S::agents();
    rows.extend(generic_agents());
    rows
}

/// The agent `spec` names for `scenario`.
pub fn agent<S: Cast>(spec: &Spec, scenario: &S, context: &Context) -> Result<Box<dyn Agent<S>>> {
    build_from(&agent_rows::<S>(), "agent", spec, scenario, context)
}

/// The persona `spec` names for `scenario`.
pub fn persona<S: Cast>(spec: &Spec, scenario: &S, context: &Context) -> Result<Box<dyn Persona<S>>> {
    build_from(&S::personas(), "persona", spec, scenario, context)
}
