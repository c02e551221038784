//! [`MiniLmMatcher`]: maps free-text questions onto a scenario's question bank with
//! all-MiniLM-L6-v2 (the bank question of highest cosine similarity, when it reaches the
//! threshold). Used by `oracle(matcher=minilm)` and `llm(matcher=minilm)` personas.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use dialogym_engine::{Context, Scenario};
use dialogym_policies::lm::backend::load_embedder;
use dialogym_policies::lm::embed::{Embedder, NearestText};
use dialogym_scenarios::entity::EntityScenario;

use super::QuestionMatcher;

/// The cosine similarity above which the MiniLM matcher takes a free-text question for
/// the nearest bank question. Chosen on `tests/fixtures/matcher_questions.json` (hand-
/// written paraphrases of 20 Questions bank questions and questions the bank cannot
/// answer); see `docs/llm.md` for the method and the numbers.
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.77;

/// Maps free-text questions onto a scenario's bank with all-MiniLM-L6-v2: the bank
/// question of highest cosine similarity, when it reaches `threshold`.
pub struct MiniLmMatcher {
    embedder: Arc<Mutex<Embedder>>,
    threshold: f32,
    /// Bank embeddings per scenario id.
    banks: HashMap<String, NearestText>,
}

impl MiniLmMatcher {
    /// A matcher on the embedder in `dir` (loaded once per context).
    pub fn new(context: &Context, dir: &Path, threshold: f32) -> Result<MiniLmMatcher> {
        Ok(MiniLmMatcher { embedder: load_embedder(context, dir)?, threshold, banks: HashMap::new() })
    }

    /// The nearest bank question and its similarity, whatever the threshold.
    pub fn nearest(&mut self, scenario: &EntityScenario, text: &str) -> Result<Option<(usize, f32)>> {
        let mut emb = self.embedder.lock().map_err(|_| anyhow!("embedder poisoned"))?;
        let id = scenario.id();
        if !self.banks.contains_key(&id) {
            let questions: Vec<String> = scenario.table.attributes.iter().map(|a| a.question.clone()).collect();
            self.banks.insert(id.clone(), NearestText::new(&mut emb, &questions)?);
        }
        let bank = self.banks.get(&id).ok_or_else(|| anyhow!("bank embeddings missing"))?;
        bank.nearest(&mut emb, text)
    }
}

impl QuestionMatcher for MiniLmMatcher {
    fn id(&self) -> String {
        format!("minilm(threshold={})", self.threshold)
    }

    fn match_question(&mut self, scenario: &EntityScenario, text: &str) -> Result<Option<usize>> {
        Ok(self.nearest(scenario, text)?.filter(|&(_, s)| s >= self.threshold).map(|(a, _)| a))
    }
}
