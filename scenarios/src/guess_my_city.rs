//! Guess My City (LMRL-Gym's second dialogue task): 100 world cities, questions that are
//! yes/no ("Is it a national capital?") or open ("What continent is it on?" → "Europe."),
//! at most 20 agent utterances, reward −1 per utterance and 0 for the one that names the
//! city. Written entirely in the scenario-file format (`data/guess_my_city.toml`), so it is
//! also the reference example of open attributes.

use anyhow::{Result, anyhow};
use dialogym_engine::Spec;

use crate::entity::EntityScenario;
use crate::file;

/// The scenario file: header, the 100 cities with their open values, the yes/no questions.
pub const CITIES_TOML: &str = include_str!("../data/guess_my_city.toml");

/// Builds `guess-my-city(holdout=F,split=all|train|test,holdout_seed=S)`.
/// One line for `scenarios list`.
pub const ABOUT: &str =
    "LMRL-Gym's Guess My City: 100 world cities, ≤ 20 yes/no or open questions, −1 per question, 0 for naming the city";

/// Builds it from its spec (`holdout`, `split`, `holdout_seed`: see [`crate::with_split`]).
pub fn from_spec(spec: &Spec) -> Result<EntityScenario> {
    let parsed = file::parse("guess_my_city.toml (embedded)", CITIES_TOML, None).map_err(|e| anyhow!("{e}"))?;
    crate::with_split(spec, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::Utterance;
    use dialogym_engine::seed::{Stream, turn_rng};
    use dialogym_engine::{Message, Scenario};
    use std::collections::BTreeMap;

    fn scenario() -> EntityScenario {
        from_spec(&Spec::parse("guess-my-city").unwrap()).unwrap()
    }

    #[test]
    fn all_100_cities_on_every_continent() {
        let s = scenario();
        assert_eq!(s.table.entities.len(), 100, "LMRL-Gym's loader drops one city; we keep all 100");
        let names: std::collections::BTreeSet<String> =
            s.table.entities.iter().flat_map(|e| e.names.iter().map(|n| n.to_lowercase())).collect();
        let accepted: usize = s.table.entities.iter().map(|e| e.names.len()).sum();
        assert_eq!(names.len(), accepted, "100 distinct cities: no name is accepted for two of them");
        let mut per_continent: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &s.table.entities {
            *per_continent.entry(e.category.as_str()).or_default() += 1;
        }
        assert_eq!(per_continent.len(), 6, "{per_continent:?}");
        assert!(per_continent.values().all(|&n| n >= 5), "{per_continent:?}");
        let open: Vec<&str> = s.table.open.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(open, ["continent", "country", "language", "climate", "population"]);
        assert!(s.table.attributes.len() >= 30);
        assert_eq!(s.rules.max_turns, 20);
    }

    #[test]
    fn the_table_tells_every_pair_of_cities_apart() {
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
    fn open_questions_selectors_and_guesses_read_back() {
        let s = scenario();
        let city = |n: &str| s.table.entities.iter().position(|e| e.names[0] == n).unwrap();
        let (paris, lima) = (city("Paris"), city("Lima"));
        let continent = s.table.open.iter().position(|o| o.id == "continent").unwrap();
        assert_eq!(s.interpret("What continent is it on?"), Utterance::AskOpen(continent));
        assert_eq!(s.table.open[continent].reply_text(s.table.value(paris, continent)), "Europe.");
        // A yes/no question defined by a selector (`continent=Europe`) agrees with the value.
        let Utterance::Ask(in_europe) = s.interpret("Is it in Europe?") else { panic!("a bank question") };
        assert_eq!(s.table.answer(paris, in_europe), crate::entity::Answer::Yes);
        assert_eq!(s.table.answer(lima, in_europe), crate::entity::Answer::No);
        // Guesses keep the city's capitals, and accept variants and no article.
        assert_eq!(s.guess_text(paris), "Is it Paris?");
        assert_eq!(s.interpret("is it paris"), Utterance::Guess(paris));
        assert_eq!(s.interpret("Is it Sao Paulo?"), s.interpret("Is it São Paulo?"));
        assert_eq!(s.interpret("Is it Bombay?"), Utterance::Guess(city("Mumbai")));
        // Open answers come back from the transcript, in any case.
        let t = [Message::agent("What continent is it on?"), Message::persona("europe")];
        assert_eq!(s.history(&t).open_answers, vec![(continent, 2)]);
        let card =
            s.persona_card(&crate::entity::Secret { index: paris, name: "Paris".into(), category: "Europe".into() });
        assert!(card.contains("Paris, a city in France (Europe)"), "{card}");
    }

    #[test]
    fn reward_protocol_matches_twenty_questions() {
        let s = scenario();
        let secret = s.sample_hidden(&mut turn_rng(5, 0, Stream::Hidden));
        let mut t = vec![Message::agent("What country is it in?")];
        assert_eq!(s.judge(&secret, &t).reward, -1.0);
        t.push(Message::persona("France."));
        t.push(Message::agent(s.guess_text(secret.index)));
        let j = s.judge(&secret, &t);
        assert_eq!((j.reward, j.done, j.success), (0.0, true, true));
    }
}
