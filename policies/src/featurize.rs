//! Text featurizers: how a transcript and a candidate utterance become model inputs.
//!
//! The default is a hashed n-gram featurizer (no model, microseconds per state): every
//! feature is a string hashed into a fixed number of buckets and the model sums one learned
//! embedding per bucket (`nn::EmbeddingBag`). A language model's pooled hidden states can
//! plug in behind the same trait later (see the candle LM work).

use dialogym_engine::{Message, Role};
use serde::{Deserialize, Serialize};

/// Turns text into bags of feature ids.
pub trait Featurizer: Send + Sync {
    /// Buckets of state features.
    fn state_buckets(&self) -> usize;
    /// Buckets of action features.
    fn action_buckets(&self) -> usize;
    /// Features of the conversation so far (the state before an agent turn).
    fn state(&self, transcript: &[Message]) -> Vec<u32>;
    /// Features of a candidate utterance.
    fn action(&self, text: &str) -> Vec<u32>;

    /// Number of "already said" classes (see [`said_before`]); class 0 means "not said".
    fn said_classes(&self) -> usize {
        SAID_CLASSES
    }
}

/// Classes of the "already said" pair feature: 0 = the candidate was not said before in
/// this conversation; 1.. = it was, and the persona's reply to it fell in this hash bucket
/// of its first word (so "said, and the answer was No" is one class).
pub const SAID_CLASSES: usize = 9;

/// For a transcript and a candidate vocabulary (`index`: text → candidate), the candidates
/// the agent already said, each with its class. An agent reads its own words: a value head
/// that cannot see that it already asked a question (or named an object) happily repeats it.
pub fn said_before(transcript: &[Message], index: &std::collections::HashMap<String, u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (i, m) in transcript.iter().enumerate() {
        if m.role != Role::Agent {
            continue;
        }
        let Some(&c) = index.get(&m.content) else { continue };
        let reply = transcript.get(i + 1).filter(|r| r.role == Role::Persona).map_or("", |r| r.content.as_str());
        let first = words(reply).into_iter().next().unwrap_or_default();
        let class = 1 + (fnv(&["said", &first]) % (SAID_CLASSES as u64 - 1)) as u32;
        match out.iter_mut().find(|(x, _)| *x == c) {
            Some(slot) => slot.1 = class,
            None => out.push((c, class)),
        }
    }
    out
}

/// Hashed n-grams.
///
/// State features, per exchange (an agent utterance and the persona's reply):
/// - the whole exchange, normalized (`is it alive → no`): one feature per (question,
///   answer), the sufficient statistic of a yes/no game;
/// - each word of the agent utterance conjoined with the first word of the reply
///   (`alive → no`), which carries over to paraphrases.
///
/// Plus one feature for the number of agent turns so far (the remaining budget matters).
///
/// Action features: the whole normalized utterance, its words and its word bigrams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedNgrams {
    /// log2 of the state buckets.
    pub state_bits: u32,
    /// log2 of the action buckets.
    pub action_bits: u32,
}

impl Default for HashedNgrams {
    fn default() -> Self {
        HashedNgrams { state_bits: 14, action_bits: 12 }
    }
}

fn fnv(parts: &[&str]) -> u64 {
    use dialogym_engine::util::{FNV_OFFSET, fnv1a_extend};
    let mut h: u64 = FNV_OFFSET;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h = fnv1a_extend(h, &[0x1f]);
        }
        h = fnv1a_extend(h, p.as_bytes());
    }
    // Final avalanche so that the low bits (the bucket) depend on every byte.
    dialogym_engine::seed::mix64(h)
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '$')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

impl HashedNgrams {
    fn bucket(&self, bits: u32, parts: &[&str]) -> u32 {
        (fnv(parts) & ((1u64 << bits) - 1)) as u32
    }
}

impl Featurizer for HashedNgrams {
    fn state_buckets(&self) -> usize {
        1 << self.state_bits
    }

    fn action_buckets(&self) -> usize {
        1 << self.action_bits
    }

    fn state(&self, transcript: &[Message]) -> Vec<u32> {
        let b = self.state_bits;
        let mut out = Vec::with_capacity(transcript.len() * 4 + 1);
        let mut turns = 0usize;
        let mut i = 0;
        while i < transcript.len() {
            let m = &transcript[i];
            if m.role != Role::Agent {
                i += 1;
                continue;
            }
            turns += 1;
            let reply = transcript.get(i + 1).filter(|r| r.role == Role::Persona).map_or("", |r| r.content.as_str());
            let (q, a) = (words(&m.content).join(" "), words(reply));
            let a_all = a.join(" ");
            let a0 = a.first().map_or("", String::as_str);
            out.push(self.bucket(b, &["x", &q, &a_all]));
            for w in words(&m.content) {
                out.push(self.bucket(b, &["w", &w, a0]));
            }
            i += 2;
        }
        out.push(self.bucket(b, &["turns", &turns.to_string()]));
        out
    }

    fn action(&self, text: &str) -> Vec<u32> {
        let b = self.action_bits;
        let ws = words(text);
        let mut out = vec![self.bucket(b, &["u", &ws.join(" ")])];
        for w in &ws {
            out.push(self.bucket(b, &["w", w]));
        }
        for pair in ws.windows(2) {
            out.push(self.bucket(b, &["b", &pair[0], &pair[1]]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_depend_on_the_answer_and_are_stable() {
        let f = HashedNgrams::default();
        let yes = [Message::agent("Is it alive?"), Message::persona("Yes.")];
        let no = [Message::agent("Is it alive?"), Message::persona("No.")];
        assert_eq!(f.state(&yes), f.state(&yes));
        assert_ne!(f.state(&yes)[0], f.state(&no)[0]);
        // Punctuation and case do not matter.
        let loud = [Message::agent("IS IT ALIVE"), Message::persona("yes")];
        assert_eq!(f.state(&yes), f.state(&loud));
        assert!(f.state(&yes).iter().all(|&x| (x as usize) < f.state_buckets()));
        assert_eq!(f.action("Is it a cat?").len(), 1 + 4 + 3);
        assert_ne!(f.action("Is it a cat?")[0], f.action("Is it a dog?")[0]);
        // The turn count is a feature: an empty transcript still has one.
        assert_eq!(f.state(&[]).len(), 1);
    }
}
