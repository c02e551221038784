//! The few-shot prompt of the demo's LLM questioner (`agents/src/llm/fewshot.rs`): built from the
//! quickest won games of a corpus, deterministically, listing bank questions and one game.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dialogym::agents::llm::fewshot::{EXAMPLE_QUESTIONS, few_shot_brief};
use dialogym::engine::Spec;
use dialogym::engine::corpus::EpisodeRecord;
use dialogym::engine::world::play_episodes;
use dialogym::scenarios::entity::{EntityScenario, Utterance};

fn corpus(scenario: &Arc<EntityScenario>, n: u64) -> Vec<EpisodeRecord> {
    let ctx = dialogym::engine::Context::new();
    let agent = dialogym::session::agent(&Spec::parse("eps-greedy(eps=0.5)").unwrap(), &**scenario, &ctx).unwrap();
    let persona = dialogym::session::persona(&Spec::parse("oracle").unwrap(), &**scenario, &ctx).unwrap();
    play_episodes(scenario.clone(), agent, persona, n, 7, 64, &AtomicBool::new(false)).unwrap()
}

#[test]
fn the_prompt_lists_bank_questions_from_quick_wins_and_one_game() {
    let s = dialogym::session::entity("twenty-questions").unwrap();
    let rows = corpus(&s, 200);
    let brief = few_shot_brief(&s, &rows);
    assert_eq!(brief, few_shot_brief(&s, &rows), "deterministic");
    let listed: Vec<&str> = brief.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    assert_eq!(listed.len(), EXAMPLE_QUESTIONS, "{brief}");
    for q in &listed {
        assert!(matches!(s.interpret(q), Utterance::Ask(_)), "`{q}` is not a bank question");
    }
    let game: Vec<&str> = brief.lines().skip_while(|l| !l.starts_with("An example")).skip(1).collect();
    assert!(game.len() >= 5 && game[0].starts_with("You: "), "{brief}");
    let last_you = game.iter().rev().find(|l| l.starts_with("You: ")).unwrap();
    assert!(matches!(s.interpret(&last_you[5..]), Utterance::Guess(_)), "the example game ends with a guess");
    assert!(brief.contains("\"Is it a NAME?\""), "{brief}");
}
