//! 20 Questions on the LMRL-Gym protocol: 158 objects in 17 categories (with LMRL-Gym's
//! accepted name variants), at most 20 agent utterances, reward −1 per utterance and 0 for
//! the one that names the object, so returns compare with LMRL-Gym's tables.
//!
//! The knowledge table (`data/twenty_questions.toml`) answers 80+ yes/no questions for
//! every object; a test checks that it tells every pair of objects apart.

use anyhow::{Context, Result, anyhow};
use dialogym_engine::Spec;
use serde::Deserialize;

use crate::entity::{Entity, EntityScenario};
use crate::file;

/// LMRL-Gym's object list (first name canonical, the rest accepted variants).
pub const OBJECTS_JSON: &str = include_str!("../data/twenty_questions_objects.json");
/// The scenario header and the knowledge table, in the scenario-file format.
pub const KNOWLEDGE_TOML: &str = include_str!("../data/twenty_questions.toml");

#[derive(Deserialize)]
struct ObjectList {
    objects: Vec<ObjectDoc>,
}

#[derive(Deserialize)]
struct ObjectDoc {
    category: String,
    names: Vec<String>,
}

/// The 158 objects.
pub fn objects() -> Result<Vec<Entity>> {
    let list: ObjectList = serde_json::from_str(OBJECTS_JSON).context("embedded object list")?;
    Ok(list.objects.into_iter().map(|o| Entity { names: o.names, category: o.category }).collect())
}

/// Builds `twenty-questions(holdout=F,split=all|train|test,holdout_seed=S)`.
/// One line for `scenarios list`.
pub const ABOUT: &str =
    "LMRL-Gym's 20 Questions: 158 objects, ≤ 20 yes/no questions, −1 per question, 0 for naming the object";

/// Builds it from its spec (`holdout`, `split`, `holdout_seed`: see [`crate::with_split`]).
pub fn from_spec(spec: &Spec) -> Result<EntityScenario> {
    let parsed = file::parse("twenty_questions.toml (embedded)", KNOWLEDGE_TOML, Some(objects()?))
        .map_err(|e| anyhow!("{e}"))?;
    crate::with_split(spec, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{Utterance, normalize};
    use dialogym_engine::seed::{Stream, turn_rng};
    use dialogym_engine::{Message, Scenario};
    use std::collections::BTreeSet;

    fn scenario() -> EntityScenario {
        from_spec(&Spec::parse("twenty-questions").unwrap()).unwrap()
    }

    #[test]
    fn lmrl_gym_objects_and_a_rich_table() {
        let s = scenario();
        assert_eq!(s.table.entities.len(), 158);
        let cats: BTreeSet<&str> = s.table.entities.iter().map(|e| e.category.as_str()).collect();
        assert_eq!(cats.len(), 17);
        assert!(s.table.attributes.len() >= 60, "{} attributes", s.table.attributes.len());
        assert_eq!(s.rules.max_turns, 20);
    }

    #[test]
    fn the_table_tells_every_pair_of_objects_apart() {
        let s = scenario();
        let pairs: Vec<(String, String)> = s
            .table
            .indistinguishable_pairs()
            .into_iter()
            .map(|(a, b)| (s.table.entities[a].names[0].clone(), s.table.entities[b].names[0].clone()))
            .collect();
        assert!(pairs.is_empty(), "identical answer rows: {pairs:?}");
    }

    #[test]
    fn every_accepted_name_variant_is_a_guess_in_any_case() {
        let s = scenario();
        for (e, ent) in s.table.entities.iter().enumerate() {
            for n in &ent.names {
                for text in
                    [format!("Is it a {n}?"), format!("is it an {}?", n.to_uppercase()), n.to_string(), s.guess_text(e)]
                {
                    assert_eq!(s.interpret(&text), Utterance::Guess(e), "{text}");
                }
            }
        }
        assert_eq!(s.interpret("Is it a pair of pants?"), s.interpret("Is it pants?"));
        assert_eq!(s.interpret("Is it alive"), Utterance::Ask(0));
        assert_eq!(s.interpret("What colour is it?"), Utterance::Other);
        assert_eq!(normalize("  Is  it ALIVE?? "), "is it alive");
    }

    #[test]
    fn reward_protocol_matches_lmrl_gym() {
        let s = scenario();
        let secret = s.sample_hidden(&mut turn_rng(1, 0, Stream::Hidden));
        let mut t = vec![Message::agent("Is it alive?")];
        let j = s.judge(&secret, &t);
        assert_eq!((j.reward, j.done, j.success), (-1.0, false, false));
        t.push(Message::persona("No."));
        assert_eq!(s.judge(&secret, &t).reward, 0.0);
        t.push(Message::agent(format!("Is it a {}?", secret.name)));
        let j = s.judge(&secret, &t);
        assert_eq!((j.reward, j.done, j.success), (0.0, true, true));
        // Twenty wrong utterances end the episode at return -20.
        let mut t = Vec::new();
        for i in 0..20 {
            t.push(Message::agent("Is it alive?"));
            let j = s.judge(&secret, &t);
            assert_eq!(j.done, i == 19);
            t.push(Message::persona("No."));
        }
    }

    #[test]
    fn holdout_splits_partition_the_objects() {
        let train = from_spec(&Spec::parse("twenty-questions(holdout=0.2,split=train)").unwrap()).unwrap();
        let test = from_spec(&Spec::parse("twenty-questions(holdout=0.2,split=test)").unwrap()).unwrap();
        assert_eq!(test.secrets().len(), 32);
        assert_eq!(train.secrets().len() + test.secrets().len(), 158);
        assert!(train.secrets().iter().all(|e| !test.secrets().contains(e)));
        let other =
            from_spec(&Spec::parse("twenty-questions(holdout=0.2,holdout_seed=1,split=test)").unwrap()).unwrap();
        assert_ne!(other.secrets(), test.secrets());
        assert!(from_spec(&Spec::parse("twenty-questions(split=test)").unwrap()).is_err());
        assert!(from_spec(&Spec::parse("twenty-questions(holdot=0.2)").unwrap()).is_err());
    }
}
