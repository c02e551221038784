//! A few-shot prompt for a small language model as the questioner of an entity scenario:
//! the scenario's brief, the bank questions that opened the corpus's quickest won games,
//! and one such game in full. A 135M-parameter model copies the form of what it is shown
//! far better than it follows instructions, so the examples carry the protocol: one short
//! yes/no question per turn, and "Is it a NAME?" to guess.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use dialogym_agents::llm::{AGENT_OPENING, first_question};
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::lm::{ChatMessage, ChatRequest, LanguageModel, Sampling};
use dialogym_engine::{Agent, AgentTurn, Message, Role, Scenario};
use dialogym_scenarios::entity::{EntityScenario, Utterance};
use rand::RngCore;

/// How many example questions the prompt lists.
pub const EXAMPLE_QUESTIONS: usize = 12;

/// The system prompt: the brief, good questions from `rows`, and the quickest won game.
/// Deterministic in `rows` (ties broken by text and episode index).
pub fn few_shot_brief(scenario: &EntityScenario, rows: &[EpisodeRecord]) -> String {
    let mut won: Vec<&EpisodeRecord> = rows.iter().filter(|r| r.success && r.turns >= 3).collect();
    won.sort_by_key(|r| (r.turns, r.episode));
    // Bank questions of the quickest quarter of won games, by how often they were asked.
    let quick = &won[..won.len().div_ceil(4)];
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in quick {
        for m in r.messages.iter().filter(|m| m.role == Role::Agent) {
            if matches!(scenario.interpret(&m.content), Utterance::Ask(_)) {
                *counts.entry(m.content.clone()).or_default() += 1;
            }
        }
    }
    let mut questions: Vec<(String, usize)> = counts.into_iter().collect();
    questions.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut s = scenario.agent_brief().trim_end().to_string();
    s.push_str("\n\nAsk one short yes/no question per turn, like these good questions:\n");
    for (q, _) in questions.iter().take(EXAMPLE_QUESTIONS) {
        s.push_str(&format!("- {q}\n"));
    }
    let guess =
        scenario.rules.guess_template.replace("{article}", "a").replace("{name}", "NAME").replace("{Name}", "NAME");
    s.push_str(&format!(
        "When few {noun}s fit the answers, guess with \"{guess}\" and nothing else.\n",
        noun = scenario.rules.noun
    ));
    if let Some(r) = quick.first() {
        s.push_str("\nAn example of a game played well:\n");
        for m in &r.messages {
            let who = if m.role == Role::Agent { "You" } else { "Answer" };
            s.push_str(&format!("{who}: {}\n", m.content));
        }
    }
    s
}

/// The questioner with the few-shot prompt.
pub struct FewShotAgent {
    model: Box<dyn LanguageModel>,
    system: String,
    sampling: Sampling,
    id: String,
}

impl FewShotAgent {
    /// An agent on `model` with the prompt of [`few_shot_brief`]; `id` names it in corpora.
    pub fn new(model: Box<dyn LanguageModel>, system: String, sampling: Sampling, id: String) -> FewShotAgent {
        FewShotAgent { model, system, sampling, id }
    }
}

impl Agent<EntityScenario> for FewShotAgent {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn act(&mut self, _scenario: &EntityScenario, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        let requests: Vec<ChatRequest> = turns
            .iter_mut()
            .map(|t| ChatRequest {
                messages: chat(&self.system, t.transcript),
                sampling: Sampling { seed: t.rng.next_u64(), ..self.sampling.clone() },
            })
            .collect();
        let texts = self.model.complete(&requests)?;
        if texts.len() != turns.len() {
            bail!("language model returned {} replies for {} requests", texts.len(), turns.len());
        }
        Ok(texts.iter().map(|t| first_question(t)).collect())
    }
}

fn chat(system: &str, transcript: &[Message]) -> Vec<ChatMessage> {
    let mut m = vec![
        ChatMessage { role: "system".into(), content: system.into() },
        ChatMessage { role: "user".into(), content: AGENT_OPENING.into() },
    ];
    for msg in transcript {
        let role = if msg.role == Role::Agent { "assistant" } else { "user" };
        m.push(ChatMessage { role: role.into(), content: msg.content.clone() });
    }
    m
}
