//! Speakers: the agents and personas that fill a transcript, called in batches.
//!
//! The world hands a speaker every conversation waiting on it in one tick, so a language
//! model can run them as one batch and a server backend can send them concurrently.

use anyhow::Result;

use crate::context::Context;
use crate::scenario::Scenario;
use crate::seed::Rng;
use crate::spec::Spec;
use crate::transcript::Message;

/// One conversation waiting for the agent's next utterance. The agent never sees the
/// hidden state.
pub struct AgentTurn<'a> {
    /// The episode's index in the run.
    pub episode: u64,
    /// Everything said so far.
    pub transcript: &'a [Message],
    /// This turn's generator (derived from the seed, episode and message index).
    pub rng: Rng,
}

/// One conversation waiting for the persona's reply.
pub struct PersonaTurn<'a, H> {
    /// The episode's index in the run.
    pub episode: u64,
    /// The persona's secret.
    pub hidden: &'a H,
    /// Everything said so far (the last message is the agent's).
    pub transcript: &'a [Message],
    /// This turn's generator.
    pub rng: Rng,
}

/// The side that asks. Implementations: scripted baselines, learned value heads, LLMs.
pub trait Agent<S: Scenario>: Send {
    /// The canonical spec of this agent, recorded in the corpus.
    fn id(&self) -> String;

    /// One utterance per turn, in order.
    fn act(&mut self, scenario: &S, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>>;
}

/// The side that knows. Implementations: scripted oracles, LLM personas.
pub trait Persona<S: Scenario>: Send {
    /// The canonical spec of this persona, recorded in the corpus.
    fn id(&self) -> String;

    /// One reply per turn, in order.
    fn reply(&mut self, scenario: &S, turns: &mut [PersonaTurn<'_, S::Hidden>]) -> Result<Vec<String>>;
}

/// One speaker as a registry row: the name a spec uses, its usage and help for `--help`
/// and `scenarios describe`, and its builder. Every speaker is one row; a spec is matched
/// against the rows' names and aliases only, so a name is written in one place.
pub struct SpeakerRow<T: ?Sized + 'static, S: 'static> {
    /// The spec name (`greedy-eig`).
    pub name: &'static str,
    /// Other names the same speaker answers to (`oracle` for the tutoring `student`).
    pub aliases: &'static [&'static str],
    /// The spec with its parameters at their defaults, as help shows it.
    pub usage: &'static str,
    /// One line on what it does.
    pub help: &'static str,
    /// Builds it from a spec of this name (the builder rejects parameters it does not know).
    pub build: fn(&Spec, &S, &Context) -> Result<Box<T>>,
}

/// An agent row.
pub type AgentRow<S> = SpeakerRow<dyn Agent<S>, S>;
/// A persona row.
pub type PersonaRow<S> = SpeakerRow<dyn Persona<S>, S>;

impl<T: ?Sized, S> SpeakerRow<T, S> {
    /// Whether a spec named `name` means this row.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// Builds the speaker a spec names from `rows`; an unknown name is an error that lists the
/// rows (`kind` is "agent" or "persona").
pub fn build_from<T: ?Sized, S>(
    rows: &[SpeakerRow<T, S>],
    kind: &str,
    spec: &Spec,
    scenario: &S,
    context: &Context,
) -> Result<Box<T>> {
    match rows.iter().find(|r| r.answers_to(&spec.name)) {
        Some(row) => (row.build)(spec, scenario, context),
        None => {
            let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
            anyhow::bail!("unknown {kind} `{}`; valid {kind}s: {}", spec.name, names.join(", "))
        }
    }
}
