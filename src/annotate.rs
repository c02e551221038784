//! What a transcript meant to its scenario, message by message: how each agent utterance
//! was read (a bank question, a guess, something else) and, for entity scenarios, how many
//! hypotheses the answers so far leave. The report's transcripts and `dialogym play` show it.

use dialogym_engine::{Message, Role};
use dialogym_scenarios::entity::{EntityScenario, Utterance};

/// The reading of one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Note {
    /// How the scenario read the message ("question: Is it alive?", "guess: apple",
    /// "answer: yes", "not understood").
    pub read_as: String,
    /// Possible secrets consistent with everything said up to this message (entity
    /// scenarios; None elsewhere).
    pub hypotheses: Option<usize>,
}

/// Reads transcripts of one scenario.
pub enum Reader {
    /// A hidden-entity scenario: questions, guesses and answers are read back exactly.
    Entity(Box<EntityScenario>),
    /// Any other scenario: an utterance is one of its candidates or free text.
    Other(Box<dyn crate::session::Session>),
    /// The scenario could not be loaded (a corpus of a scenario file that moved).
    Unknown,
}

impl Reader {
    /// The reader of the scenario `spec` (as a corpus row records it).
    pub fn new(spec: &str) -> Reader {
        if let Ok(s) = crate::session::entity(spec) {
            return Reader::Entity(Box::new((*s).clone()));
        }
        match crate::session::load(spec) {
            Ok(s) => Reader::Other(s),
            Err(_) => Reader::Unknown,
        }
    }

    /// The possible secrets left by `transcript` (entity scenarios only).
    pub fn hypotheses(&self, transcript: &[Message]) -> Option<usize> {
        let Reader::Entity(s) = self else { return None };
        let h = s.history(transcript);
        Some(
            s.secrets()
                .iter()
                .filter(|&&e| {
                    !h.guessed.contains(&e)
                        && h.answers.iter().all(|&(a, ans)| s.table.answer(e, a) == ans)
                        && h.open_answers.iter().all(|&(o, v)| s.table.value(e, o) == v)
                })
                .count(),
        )
    }

    /// How the last message of `transcript` was read.
    pub fn read_last(&self, transcript: &[Message]) -> String {
        let Some(last) = transcript.last() else { return String::new() };
        match (self, last.role) {
            (Reader::Entity(s), Role::Agent) => match s.interpret(&last.content) {
                Utterance::Ask(a) => format!("question: {}", s.question_text(a)),
                Utterance::AskOpen(o) => format!("open question: {}", s.table.open[o].question),
                Utterance::Guess(e) => format!("guess: {}", s.table.entities[e].names[0]),
                Utterance::Other => "not understood (neither a bank question nor a guess)".into(),
            },
            (Reader::Entity(s), Role::Persona) => {
                let asked = transcript.iter().rev().nth(1).map(|m| s.interpret(&m.content));
                match asked {
                    Some(Utterance::Ask(_)) => match s.rules.answers.parse(&last.content) {
                        Some(a) => format!("answer: {}", s.rules.answers.of(a)),
                        None => "answer not understood".into(),
                    },
                    Some(Utterance::AskOpen(o)) => match s.parse_open(o, &last.content) {
                        Some(v) => format!("answer: {}", s.table.open[o].values[v]),
                        None => "answer not understood".into(),
                    },
                    _ => "reply".into(),
                }
            }
            (Reader::Other(s), Role::Agent) => {
                let before = &transcript[..transcript.len() - 1];
                if s.candidates_after(before).iter().any(|c| c.trim().eq_ignore_ascii_case(last.content.trim())) {
                    "one of the scenario's utterances".into()
                } else {
                    "free text (not one of the scenario's utterances)".into()
                }
            }
            (_, Role::Persona) => "reply".into(),
            (Reader::Unknown, Role::Agent) => "utterance".into(),
        }
    }

    /// A note per message of `transcript`.
    pub fn notes(&self, transcript: &[Message]) -> Vec<Note> {
        (1..=transcript.len())
            .map(|n| Note { read_as: self.read_last(&transcript[..n]), hypotheses: self.hypotheses(&transcript[..n]) })
            .collect()
    }
}
