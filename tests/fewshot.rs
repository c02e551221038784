//! The few-shot prompt of the demo's LLM questioner (`src/fewshot.rs`), and the small real
//! model (SmolLM2-135M-Instruct, installed by `scripts/install-model.sh`) playing with it
//! beside the zero-shot prompt on the same episodes. Fails, not skips, when the model is
//! missing.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dialogym::agents::llm::LlmAgent;
use dialogym::engine::Spec;
use dialogym::engine::corpus::EpisodeRecord;
use dialogym::engine::lm::Sampling;
use dialogym::fewshot::{EXAMPLE_QUESTIONS, FewShotAgent, few_shot_brief};
use dialogym::llm::{load_model, play_episodes};
use dialogym::policies::lm::model::WeightFormat;
use dialogym::scenarios::entity::{EntityScenario, Utterance};

fn corpus(scenario: &Arc<EntityScenario>, n: u64) -> Vec<EpisodeRecord> {
    let agent = dialogym::agents::entity_agent(&Spec::parse("eps-greedy(eps=0.5)").unwrap()).unwrap();
    let persona = dialogym::agents::entity_persona(&Spec::parse("oracle").unwrap(), scenario).unwrap();
    play_episodes(scenario.clone(), agent, persona, n, 7, 64, &AtomicBool::new(false)).unwrap()
}

#[test]
fn the_prompt_lists_bank_questions_from_quick_wins_and_one_game() {
    let s = Arc::new(dialogym::scenarios::load("twenty-questions").unwrap());
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

/// Share of agent utterances the scenario understood (bank questions and guesses).
fn understood(s: &EntityScenario, rows: &[EpisodeRecord]) -> (usize, usize) {
    let said: Vec<&str> =
        rows.iter().flat_map(|r| r.messages.iter().filter(|m| m.is_action).map(|m| m.content.as_str())).collect();
    (said.iter().filter(|t| s.interpret(t) != Utterance::Other).count(), said.len())
}

#[test]
fn the_small_model_asks_bank_questions_more_often_with_the_few_shot_prompt() {
    let path = PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/install-model.sh before the tests", path.display());
    let s = Arc::new(dialogym::scenarios::load("twenty-questions").unwrap());
    let rows = corpus(&s, 200);
    let sampling = Sampling { temperature: 0.3, max_tokens: 24, ..LlmAgent::default_sampling() };
    let oracle = || dialogym::agents::entity_persona(&Spec::parse("oracle").unwrap(), &s).unwrap();
    let stop = AtomicBool::new(false);
    let zero = LlmAgent::new(Box::new(load_model(&path, WeightFormat::Q8_0).unwrap()), sampling.clone(), "zero".into());
    let zero_rows = play_episodes(s.clone(), Box::new(zero), oracle(), 4, 3, 4, &stop).unwrap();
    let few = FewShotAgent::new(
        Box::new(load_model(&path, WeightFormat::Q8_0).unwrap()),
        few_shot_brief(&s, &rows),
        sampling,
        "few".into(),
    );
    let few_rows = play_episodes(s.clone(), Box::new(few), oracle(), 4, 3, 4, &stop).unwrap();
    let (z, zn) = understood(&s, &zero_rows);
    let (f, fn_) = understood(&s, &few_rows);
    eprintln!("understood utterances: zero-shot {z}/{zn}, few-shot {f}/{fn_}");
    for r in few_rows.iter().take(1) {
        eprintln!("{}", dialogym::llm::render_transcript(r));
    }
    assert!(f * zn > z * fn_, "few-shot {f}/{fn_} vs zero-shot {z}/{zn}");
}
