//! A few-shot prompt for a small language model as the questioner of an entity scenario:
//! the scenario's brief, the bank questions that opened the corpus's quickest won games,
//! and one such game in full. A 135M-parameter model copies the form of what it is shown
//! far better than it follows instructions, so the examples carry the protocol: one short
//! yes/no question per turn, and "Is it a NAME?" to guess.
//!
//! The `llm` agent uses it when given `examples=CORPUS_DIR` ([`super::LlmAgent::with_system`]).

use std::collections::BTreeMap;

use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::{Role, Scenario};
use dialogym_scenarios::entity::{EntityScenario, Utterance};

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
