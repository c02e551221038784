//! The language-model interface the engine drives: batched, so one tick of the world is one
//! call, whatever the backend (local candle model, OpenAI-compatible server).

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One chat message as a model sees it (`system`, `user`, `assistant`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Sampling settings for one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling mass (1.0 = off).
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// At most this many new tokens.
    pub max_tokens: usize,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
    /// Seed of this request's sampler (derived from the episode's turn generator).
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.7, top_p: 0.9, top_k: 0, max_tokens: 48, stop: Vec::new(), seed: 0 }
    }
}

/// One prompt of a batch.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The conversation so far, system card first.
    pub messages: Vec<ChatMessage>,
    /// How to sample the reply.
    pub sampling: Sampling,
}

/// A batched chat model: many conversations in, one completion each out, in order.
pub trait LanguageModel: Send {
    /// A name for the corpus (`smollm2-135m-instruct-q8_0`, `server:http://...`).
    fn id(&self) -> String;

    /// Completes every request; the i-th completion answers the i-th request.
    fn complete(&mut self, batch: &[ChatRequest]) -> Result<Vec<String>>;
}
