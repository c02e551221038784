//! dialogym's speakers, scripted and language-model-driven, each one row of its scenario
//! type's table (`ENTITY_AGENTS`, `polling::POLL_AGENTS`, ...; the language-model speakers
//! one row per model backend, `llm::speakers`): name, usage, help, builder. [`cast`] gathers
//! every scenario type's rows and builds speakers from specs. Imagination (persona cards)
//! and critique live beside the language-model speakers.

pub mod belief;
pub mod cast;
pub mod critique;
pub mod llm;
pub mod oracle;
pub mod polling;
pub mod preference;
pub mod questioner;
pub mod tutoring;
pub mod uniform;

use anyhow::{Result, bail};
use dialogym_engine::{Agent, AgentRow, Context, PersonaRow, SpeakerRow, Spec};
use dialogym_scenarios::entity::EntityScenario;

pub use cast::{Cast, agent, persona};
pub use preference::{PREFERENCE_AGENTS, PREFERENCE_PERSONAS};
pub use tutoring::{TUTORING_AGENTS, TUTORING_PERSONAS};

/// The builder of every scripted questioner row (`Questioner::from_spec` reads the style
/// from the spec's name).
fn questioner(spec: &Spec, _: &EntityScenario, _: &Context) -> Result<Box<dyn Agent<EntityScenario>>> {
    match questioner::Questioner::from_spec(spec)? {
        Some(q) => Ok(Box::new(q)),
        None => bail!("`{spec}` is not a questioner"),
    }
}

const fn questioner_row(name: &'static str, usage: &'static str, help: &'static str) -> AgentRow<EntityScenario> {
    SpeakerRow { name, aliases: &[], usage, help, build: questioner }
}

/// The scripted agents of every entity scenario (20 Questions, Guess My City, files).
pub const ENTITY_AGENTS: &[AgentRow<EntityScenario>] = &[
    questioner_row(
        "greedy-eig",
        "greedy-eig",
        "asks the most informative question, names the most likely entity when that beats asking",
    ),
    questioner_row(
        "eps-greedy",
        "eps-greedy(eps=0.3)",
        "greedy EIG, but a random unasked question with probability eps",
    ),
    questioner_row(
        "early-guesser",
        "early-guesser(threshold=0.05)",
        "greedy EIG, but names the top entity once its probability reaches threshold",
    ),
    questioner_row("redundant", "redundant(p=0.5)", "greedy EIG, but repeats an earlier question with probability p"),
    questioner_row("random", "random(guess=0.1)", "random unasked questions, a random guess with probability guess"),
];

/// The scripted personas of every entity scenario (the language-model ones are added per
/// backend by `cast`).
pub const ENTITY_PERSONAS: &[PersonaRow<EntityScenario>] = &[SpeakerRow {
    name: "oracle",
    aliases: &[],
    usage: "oracle(slip=0)",
    help: "answers from the knowledge table; wrong with probability slip; matcher=minilm: free-text questions \
           mapped onto the bank with all-MiniLM-L6-v2",
    build: llm::speakers::build_oracle,
}];
