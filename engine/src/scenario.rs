//! What a scenario is to the engine: hidden truth, a pure judge, and the words an agent may say.

use serde::Serialize;

use crate::seed::Rng;
use crate::transcript::Message;

/// The judge's verdict after one message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    /// Reward emitted right after this message (credited to the latest agent action).
    pub reward: f64,
    /// True when the episode has ended.
    pub done: bool,
    /// Whether the agent achieved the goal (meaningful once `done`).
    pub success: bool,
}

/// A task with a hidden truth on the persona's side, a reward and an end.
///
/// Scenarios are pure: no IO, no clocks, no global state. `judge` must give the same verdict
/// for the same hidden state and transcript, which is what makes rewards exact and corpora
/// reproducible.
pub trait Scenario: Send + Sync + 'static {
    /// The persona's latent state (the secret object, the student's mastery, ...).
    type Hidden: Clone + Send + Sync + Serialize + 'static;

    /// The canonical spec that rebuilds this scenario (`twenty-questions(split=train)`).
    fn id(&self) -> String;

    /// At most this many agent utterances per episode.
    fn max_agent_turns(&self) -> usize;

    /// Draws a hidden state for a new episode.
    fn sample_hidden(&self, rng: &mut Rng) -> Self::Hidden;

    /// Scores the transcript after its last message. Pure.
    fn judge(&self, hidden: &Self::Hidden, transcript: &[Message]) -> Judgement;

    /// The utterances an agent may choose from in this state (for learned and random
    /// agents). Free-text agents may say anything; the judge decides what it means.
    fn candidates(&self, transcript: &[Message]) -> Vec<String>;

    /// Extra per-episode measurements recorded in the corpus (e.g. information gained).
    fn metrics(&self, _hidden: &Self::Hidden, _transcript: &[Message]) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// The hidden state rendered as a system prompt for a language-model persona.
    fn persona_card(&self, hidden: &Self::Hidden) -> String;

    /// The instructions a language-model agent gets.
    fn agent_brief(&self) -> String;

    /// The rules in a few lines, for `scenarios describe`.
    fn rules(&self) -> String;

    /// The documented range of an episode's return (`tests/properties.rs` holds every
    /// registered scenario to it); None until a scenario documents one.
    fn return_range(&self) -> Option<(f64, f64)> {
        None
    }
}
