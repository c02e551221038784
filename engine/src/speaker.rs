//! Speakers: the agents and personas that fill a transcript, called in batches.
//!
//! The world hands a speaker every conversation waiting on it in one tick, so a language
//! model can run them as one batch and a server backend can send them concurrently.

use anyhow::Result;

use crate::scenario::Scenario;
use crate::seed::Rng;
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
