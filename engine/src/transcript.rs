//! The words of a conversation: who said what, and which utterances were the agent's actions.

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The side that must find the hidden truth out (questioner, tutor, travel agent).
    Agent,
    /// The side that holds the hidden truth (oracle, student, traveller).
    Persona,
}

impl Role {
    /// The name used in corpora and prompts.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Persona => "persona",
        }
    }
}

/// One utterance. `is_action` marks the agent's utterances: the actions offline RL learns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said, verbatim.
    pub content: String,
    /// True for agent utterances (LMRL-Gym's `Text.is_action`).
    pub is_action: bool,
}

impl Message {
    /// An agent utterance (an action).
    pub fn agent(content: impl Into<String>) -> Self {
        Message { role: Role::Agent, content: content.into(), is_action: true }
    }

    /// A persona utterance (an observation for the agent).
    pub fn persona(content: impl Into<String>) -> Self {
        Message { role: Role::Persona, content: content.into(), is_action: false }
    }
}

/// How many agent utterances a transcript holds.
pub fn agent_turns(messages: &[Message]) -> usize {
    messages.iter().filter(|m| m.role == Role::Agent).count()
}
