//! The rules of play that hold for every scenario, in one place: how an episode's hidden
//! state is drawn, and the verdict after each message (the scenario's judge, backed by the
//! engine's turn limit). The world calls these while it plays; [`replay`] calls the same
//! functions on a recorded transcript, which is why re-judging a corpus row gives back its
//! recorded rewards and dones exactly.

use rand::Rng as _;

use crate::scenario::{Judgement, Scenario};
use crate::seed::{Stream, turn_rng};
use crate::transcript::{Message, Role, agent_turns};
use crate::util::weighted_index;

/// The hidden state of the episode whose seed is `episode_seed`.
pub fn hidden_for<S: Scenario>(scenario: &S, episode_seed: u64) -> S::Hidden {
    scenario.sample_hidden(&mut turn_rng(episode_seed, 0, Stream::Hidden))
}

/// Which agent and persona of two pools (by weights summing to 1) play the episode.
pub fn participants_for(episode_seed: u64, agent_weights: &[f64], persona_weights: &[f64]) -> (usize, usize) {
    let mut pick = turn_rng(episode_seed, 0, Stream::Participants);
    let agent = weighted_index(agent_weights.iter().copied(), pick.random::<f64>());
    let persona = weighted_index(persona_weights.iter().copied(), pick.random::<f64>());
    (agent, persona)
}

/// The verdict after the last message of `transcript`: the scenario's judge, and the
/// episode also ends when the agent has used up its turns (the limit is the scenario's to
/// enforce; the engine backs it up so a buggy judge can never loop forever).
pub fn verdict<S: Scenario>(scenario: &S, hidden: &S::Hidden, transcript: &[Message]) -> Judgement {
    let v = scenario.judge(hidden, transcript);
    let out_of_turns = transcript.last().is_some_and(|m| m.role == Role::Agent)
        && agent_turns(transcript) >= scenario.max_agent_turns();
    Judgement { done: v.done || out_of_turns, ..v }
}

/// Judges a recorded transcript as the world did: the hidden state drawn again from the
/// episode's seed, then the verdict after every message.
pub fn replay<S: Scenario>(scenario: &S, episode_seed: u64, transcript: &[Message]) -> (S::Hidden, Vec<Judgement>) {
    let hidden = hidden_for(scenario, episode_seed);
    let verdicts = (1..=transcript.len()).map(|n| verdict(scenario, &hidden, &transcript[..n])).collect();
    (hidden, verdicts)
}
