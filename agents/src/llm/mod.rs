//! Speakers driven by a language model, for entity scenarios (20 Questions and kin):
//!
//! - [`LlmPersona`]: the scenario's persona card as system prompt, the transcript as chat
//!   turns; replies are mapped onto the protocol (`Yes.` / `No.` / `Sometimes.`), anything
//!   else is kept and counted off-protocol. Its grounding check compares every answer to a
//!   bank question with the knowledge table ([`PersonaStats`]: persona consistency).
//! - [`LlmAgent`]: the prompted zero-shot questioner of the papers.
//! - [`MatchingOracle`]: the scripted oracle for free-text questions: a
//!   [`QuestionMatcher`] maps the question onto the bank, else "I can't answer that.".
//! - [`imagine_personas`]: the model writes persona cards as JSON, validated against the
//!   scenario's hidden state (a known entity); invalid cards are retried and counted.
//!
//! The model is any [`LanguageModel`]: every call hands it all conversations of the tick at
//! once, and every request carries a seed drawn from the turn's own generator, so episodes
//! do not depend on how they were batched.

use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use dialogym_engine::context::Report;
use dialogym_engine::lm::{ChatMessage, ChatRequest, LanguageModel, Sampling};
use dialogym_engine::seed::{Rng, mix64};
use dialogym_engine::{Agent, AgentTurn, Message, Persona, PersonaTurn, Role, Scenario, Spec};
use dialogym_scenarios::entity::{Answer, EntityScenario, Secret, Utterance, normalize};
use rand::seq::SliceRandom;
use rand::{Rng as _, RngCore, SeedableRng};

use crate::oracle::scripted_reply;

pub mod fewshot;
pub mod matcher;
pub mod speakers;

/// Maps a free-text question onto a scenario's question bank.
pub trait QuestionMatcher: Send {
    /// The canonical spec of the matcher (`minilm(threshold=0.8)`), recorded in speaker ids.
    fn id(&self) -> String;

    /// The attribute whose bank question `text` asks, or None when no bank question is
    /// close enough.
    fn match_question(&mut self, scenario: &EntityScenario, text: &str) -> Result<Option<usize>>;
}

/// Openings of a guess that [`EntityScenario::interpret`] does not know; each is rewritten to
/// "is it ..." before reading the name.
const GUESS_OPENINGS: &[&str] = &[
    "could it be ",
    "can it be ",
    "might it be ",
    "would it be ",
    "are you thinking of ",
    "are you thinking about ",
    "i think it is ",
    "i think it's ",
    "is your object ",
    "is the thing ",
    "it's ",
    "is it maybe ",
];

/// What a free-text utterance means: exact bank question or guess first, then a guess with
/// a looser opening ("Could it be a dog?"), then the matcher (if any).
pub fn interpret_free(
    scenario: &EntityScenario,
    matcher: Option<&mut (dyn QuestionMatcher + '_)>,
    text: &str,
) -> Result<Utterance> {
    let exact = scenario.interpret(text);
    if exact != Utterance::Other {
        return Ok(exact);
    }
    let t = normalize(text);
    for opening in GUESS_OPENINGS {
        if let Some(rest) = t.strip_prefix(opening)
            && let Utterance::Guess(e) = scenario.interpret(&format!("is it {rest}"))
        {
            return Ok(Utterance::Guess(e));
        }
    }
    match matcher {
        Some(m) => Ok(m.match_question(scenario, text)?.map_or(Utterance::Other, Utterance::Ask)),
        None => Ok(Utterance::Other),
    }
}

/// Sampling settings from a spec's parameters (`temperature`, `top_p`, `top_k`,
/// `max_tokens`), over the speaker's defaults.
pub fn sampling_from_spec(spec: &Spec, defaults: &Sampling) -> Result<Sampling> {
    let s = Sampling {
        temperature: spec.get("temperature", defaults.temperature)?,
        top_p: spec.get("top_p", defaults.top_p)?,
        top_k: spec.get("top_k", defaults.top_k)?,
        max_tokens: spec.get("max_tokens", defaults.max_tokens)?,
        stop: defaults.stop.clone(),
        seed: 0,
    };
    if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
        bail!("`{spec}`: temperature must be ≥ 0");
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        bail!("`{spec}`: top_p must lie in (0, 1]");
    }
    if s.max_tokens == 0 || s.max_tokens > 4096 {
        bail!("`{spec}`: max_tokens must lie in 1..=4096");
    }
    Ok(s)
}

/// The sampling parameter names [`sampling_from_spec`] reads.
pub const SAMPLING_KEYS: &[&str] = &["temperature", "top_p", "top_k", "max_tokens"];

/// The chat a model sees from one side of a transcript: `system` first, then `opening` as
/// the first user turn (when given), then the transcript with this side's messages as the
/// assistant's.
fn chat(system: String, opening: Option<&str>, transcript: &[Message], me: Role) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage { role: "system".into(), content: system }];
    if let Some(o) = opening {
        m.push(ChatMessage { role: "user".into(), content: o.into() });
    }
    for msg in transcript {
        let role = if msg.role == me { "assistant" } else { "user" };
        m.push(ChatMessage { role: role.into(), content: msg.content.clone() });
    }
    m
}

/// The protocol answer a reply starts with ("yes", "No!", "Sometimes, when ..."), if any.
pub fn protocol_answer(text: &str) -> Option<Answer> {
    let first = text.trim_start().split(|c: char| !c.is_alphabetic()).next().unwrap_or("").to_lowercase();
    match first.as_str() {
        "yes" => Some(Answer::Yes),
        "no" => Some(Answer::No),
        "sometimes" => Some(Answer::Sometimes),
        _ => None,
    }
}

/// What the grounding step does with an answer to a checkable question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grounding {
    /// Only count disagreements with the table (persona consistency).
    Check,
    /// Count them and replace the model's answer by the table's (a consistent persona with
    /// a language model's voice elsewhere).
    Correct,
}

/// Persona consistency, accumulated over every reply of an [`LlmPersona`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PersonaStats {
    /// Replies written.
    pub replies: u64,
    /// Replies that were not Yes / No / Sometimes (kept verbatim).
    pub off_protocol: u64,
    /// Answers to bank questions compared with the table.
    pub checked: u64,
    /// Of which the model's answer disagreed with the table (off-protocol counts as a
    /// disagreement: the table always has an answer).
    pub disagreements: u64,
    /// Answers replaced by the table's (grounding = correct).
    pub corrected: u64,
}

impl PersonaStats {
    /// Disagreements / checked (0 when nothing was checked).
    pub fn disagreement_rate(&self) -> f64 {
        if self.checked == 0 { 0.0 } else { self.disagreements as f64 / self.checked as f64 }
    }
}

/// The counters of the LLM personas that share one label, as a report of the run.
#[derive(Default, Debug)]
pub struct PersonaCounters(pub Mutex<PersonaStats>);

impl std::ops::Deref for PersonaCounters {
    type Target = Mutex<PersonaStats>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Report for PersonaCounters {
    fn line(&self) -> String {
        let s = self.lock().map(|s| *s).unwrap_or_default();
        format!(
            "persona consistency: {}/{} checked answers disagree with the table ({:.0}%), {}/{} replies off-protocol",
            s.disagreements,
            s.checked,
            100.0 * s.disagreement_rate(),
            s.off_protocol,
            s.replies
        )
    }
}

/// The counters of the matching oracles that share one label.
#[derive(Default, Debug)]
pub struct MatchCounters(pub Mutex<MatchStats>);

impl std::ops::Deref for MatchCounters {
    type Target = Mutex<MatchStats>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Report for MatchCounters {
    fn line(&self) -> String {
        let s = self.lock().map(|s| *s).unwrap_or_default();
        format!(
            "question matching: {} questions, {} exact, {} matched to the bank, {} unanswerable",
            s.questions, s.exact, s.matched, s.unmatched
        )
    }
}

/// A persona played by a language model from the scenario's persona card.
pub struct LlmPersona {
    model: Box<dyn LanguageModel>,
    sampling: Sampling,
    grounding: Grounding,
    matcher: Option<Box<dyn QuestionMatcher>>,
    stats: Arc<PersonaCounters>,
    spec: String,
}

impl LlmPersona {
    /// Default sampling: short, one-line replies.
    pub fn default_sampling() -> Sampling {
        Sampling { temperature: 0.7, top_p: 0.9, top_k: 0, max_tokens: 8, stop: vec!["\n".into()], seed: 0 }
    }

    /// A persona on `model`; `spec` is its canonical spec for the corpus.
    pub fn new(
        model: Box<dyn LanguageModel>,
        sampling: Sampling,
        grounding: Grounding,
        matcher: Option<Box<dyn QuestionMatcher>>,
        spec: String,
    ) -> LlmPersona {
        LlmPersona { model, sampling, grounding, matcher, stats: Arc::default(), spec }
    }

    /// Counts into `stats` (shared with other personas of the same label) instead of its own.
    pub fn counting_into(mut self, stats: Arc<PersonaCounters>) -> LlmPersona {
        self.stats = stats;
        self
    }

    /// A handle on the consistency counters that stays valid after the persona moves into
    /// a run.
    pub fn stats(&self) -> Arc<PersonaCounters> {
        self.stats.clone()
    }
}

impl Persona<EntityScenario> for LlmPersona {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn reply(&mut self, scenario: &EntityScenario, turns: &mut [PersonaTurn<'_, Secret>]) -> Result<Vec<String>> {
        let requests: Vec<ChatRequest> = turns
            .iter_mut()
            .map(|t| ChatRequest {
                messages: chat(scenario.persona_card(t.hidden), None, t.transcript, Role::Persona),
                sampling: Sampling { seed: t.rng.next_u64(), ..self.sampling.clone() },
            })
            .collect();
        let texts = self.model.complete(&requests)?;
        if texts.len() != turns.len() {
            bail!("language model {} returned {} replies for {} requests", self.model.id(), texts.len(), turns.len());
        }
        let words = &scenario.rules.answers;
        let mut stats = PersonaStats::default();
        let mut out = Vec::with_capacity(texts.len());
        for (t, text) in turns.iter().zip(texts) {
            stats.replies += 1;
            let question = t.transcript.last().map(|m| m.content.as_str()).unwrap_or("");
            let utterance = interpret_free(scenario, self.matcher.as_deref_mut(), question)?;
            // An open question is answered with one of its values ("Europe."), not yes/no.
            if let Utterance::AskOpen(o) = utterance {
                let truth = scenario.table.value(t.hidden.index, o);
                let said = scenario.parse_open(o, &text);
                stats.checked += 1;
                let mut reply = match said {
                    Some(v) => scenario.table.open[o].reply_text(v),
                    None => {
                        stats.off_protocol += 1;
                        let line = text.trim();
                        if line.is_empty() { "...".to_string() } else { line.to_string() }
                    }
                };
                if said != Some(truth) {
                    stats.disagreements += 1;
                    if self.grounding == Grounding::Correct {
                        stats.corrected += 1;
                        reply = scenario.table.open[o].reply_text(truth);
                    }
                }
                out.push(reply);
                continue;
            }
            let said = protocol_answer(&text);
            let mut reply = match said {
                Some(a) => words.of(a).to_string(),
                None => {
                    stats.off_protocol += 1;
                    let line = text.trim();
                    if line.is_empty() { "...".to_string() } else { line.to_string() }
                }
            };
            match utterance {
                Utterance::Ask(a) => {
                    let truth = scenario.table.answer(t.hidden.index, a);
                    stats.checked += 1;
                    if said != Some(truth) {
                        stats.disagreements += 1;
                        if self.grounding == Grounding::Correct {
                            stats.corrected += 1;
                            reply = words.of(truth).to_string();
                        }
                    }
                }
                Utterance::Guess(e) if self.grounding == Grounding::Correct => {
                    let truth = if e == t.hidden.index { &words.correct } else { &words.wrong };
                    if &reply != truth {
                        stats.corrected += 1;
                        reply = truth.clone();
                    }
                }
                _ => {}
            }
            out.push(reply);
        }
        if let Ok(mut s) = self.stats.lock() {
            s.replies += stats.replies;
            s.off_protocol += stats.off_protocol;
            s.checked += stats.checked;
            s.disagreements += stats.disagreements;
            s.corrected += stats.corrected;
        }
        Ok(out)
    }
}

/// The first user turn an LLM agent sees: the conversation starts with the agent's
/// question, and chat models expect a user turn before theirs.
///
/// Worded as a question to the agent: with "I am thinking of something. Ask your first
/// yes/no question." SmolLM2-135M mostly echoed "I'm thinking of something." (4/4 replies
/// in a probe of 4 seeds) instead of asking.
pub const AGENT_OPENING: &str = "I have picked an object. What is your first yes/no question?";

/// What an LLM agent says when its reply holds no text at all (the oracle answers it with
/// "I can't answer that."; the episode goes on).
pub const EMPTY_QUESTION: &str = "Can you give me a hint?";

/// The question in a model's reply: in its first non-empty line (without a "Question:"
/// label or numbering), the sentence that ends with the first `?` ("I'll ask: \"Is it
/// red?\"" gives "Is it red?"); the whole line when it has no `?`.
pub fn first_question(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut line =
        line.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')' || c == '-' || c == '*').trim();
    for label in ["Question:", "question:", "Q:", "Me:", "Assistant:"] {
        if let Some(rest) = line.strip_prefix(label) {
            line = rest.trim();
        }
    }
    let q = match line.find('?') {
        Some(end) => {
            let start = line[..end]
                .rfind(['.', '!', '"', ':', ';', '\u{201c}'])
                .map_or(0, |i| i + line[i..].chars().next().map_or(1, char::len_utf8));
            &line[start..=end]
        }
        None => line,
    };
    let q = q.trim().trim_matches('"').trim();
    if q.is_empty() { EMPTY_QUESTION.to_string() } else { q.to_string() }
}

/// The prompted zero-shot questioner: the scenario's agent brief as system prompt, the
/// persona's replies as user turns, one short question per turn.
pub struct LlmAgent {
    model: Box<dyn LanguageModel>,
    sampling: Sampling,
    spec: String,
    /// The system prompt instead of the scenario's agent brief (the few-shot prompt).
    system: Option<String>,
}

impl LlmAgent {
    /// Default sampling: one short line.
    pub fn default_sampling() -> Sampling {
        Sampling { temperature: 0.7, top_p: 0.9, top_k: 0, max_tokens: 32, stop: vec!["\n".into()], seed: 0 }
    }

    /// An agent on `model`; `spec` is its canonical spec for the corpus.
    pub fn new(model: Box<dyn LanguageModel>, sampling: Sampling, spec: String) -> LlmAgent {
        LlmAgent { model, sampling, spec, system: None }
    }

    /// The same agent with `system` as its system prompt instead of the scenario's brief
    /// (e.g. [`fewshot::few_shot_brief`]).
    pub fn with_system(mut self, system: String) -> LlmAgent {
        self.system = Some(system);
        self
    }
}

impl Agent<EntityScenario> for LlmAgent {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, scenario: &EntityScenario, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        let requests: Vec<ChatRequest> = turns
            .iter_mut()
            .map(|t| ChatRequest {
                messages: chat(
                    self.system.clone().unwrap_or_else(|| scenario.agent_brief()),
                    Some(AGENT_OPENING),
                    t.transcript,
                    Role::Agent,
                ),
                sampling: Sampling { seed: t.rng.next_u64(), ..self.sampling.clone() },
            })
            .collect();
        let texts = self.model.complete(&requests)?;
        if texts.len() != turns.len() {
            bail!("language model {} returned {} replies for {} requests", self.model.id(), texts.len(), turns.len());
        }
        Ok(texts.iter().map(|t| first_question(t)).collect())
    }
}

/// How often a [`MatchingOracle`] understood the questions it got.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct MatchStats {
    /// Questions answered.
    pub questions: u64,
    /// Exact bank questions or guesses (no matcher needed).
    pub exact: u64,
    /// Mapped onto the bank by the matcher.
    pub matched: u64,
    /// Neither: answered "I can't answer that.".
    pub unmatched: u64,
}

/// The scripted oracle for free-text questions: exact bank questions and guesses as the
/// plain oracle, other questions through a [`QuestionMatcher`].
pub struct MatchingOracle {
    matcher: Box<dyn QuestionMatcher>,
    slip: f64,
    spec: String,
    stats: Arc<MatchCounters>,
}

impl MatchingOracle {
    /// An oracle with slip probability `slip`; `spec` is its canonical spec.
    pub fn new(matcher: Box<dyn QuestionMatcher>, slip: f64, spec: String) -> MatchingOracle {
        MatchingOracle { matcher, slip, spec, stats: Arc::default() }
    }

    /// Counts into `stats` (shared with other oracles of the same label).
    pub fn counting_into(mut self, stats: Arc<MatchCounters>) -> MatchingOracle {
        self.stats = stats;
        self
    }

    /// A handle on the counters.
    pub fn stats(&self) -> Arc<MatchCounters> {
        self.stats.clone()
    }
}

impl Persona<EntityScenario> for MatchingOracle {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn reply(&mut self, scenario: &EntityScenario, turns: &mut [PersonaTurn<'_, Secret>]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(turns.len());
        let mut stats = MatchStats::default();
        for t in turns.iter_mut() {
            let question = t.transcript.last().map(|m| m.content.as_str()).unwrap_or("");
            stats.questions += 1;
            let exact = scenario.interpret(question) != Utterance::Other;
            let u = interpret_free(scenario, Some(self.matcher.as_mut()), question)?;
            match (exact, u) {
                (true, _) => stats.exact += 1,
                (false, Utterance::Other) => stats.unmatched += 1,
                (false, _) => stats.matched += 1,
            }
            out.push(scripted_reply(scenario, t.hidden, u, self.slip, &mut t.rng));
        }
        if let Ok(mut s) = self.stats.lock() {
            s.questions += stats.questions;
            s.exact += stats.exact;
            s.matched += stats.matched;
            s.unmatched += stats.unmatched;
        }
        Ok(out)
    }
}

/// Counts of an imagination run.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ImagineStats {
    /// Cards that validated.
    pub valid: u64,
    /// Model outputs that did not validate and were retried.
    pub invalid_retried: u64,
    /// Cards still missing after the last round (0 unless the model keeps failing).
    pub missing: u64,
    /// Requests sent to the model.
    pub requests: u64,
}

/// How many rounds of retries [`imagine_personas`] makes before giving up on a card.
pub const IMAGINE_ROUNDS: usize = 6;

/// Entities shown to the model in each request, as a menu to choose from: a 135M model
/// rarely names one of 158 table objects unprompted, and a seeded menu per card makes the
/// cards diverse.
const MENU: usize = 8;

/// The first `{...}` object in a text (models wrap JSON in prose or code fences).
fn first_json_object(text: &str) -> Option<serde_json::Value> {
    let start = text.find('{')?;
    let mut depth = 0i32;
    let (mut in_str, mut escaped) = (false, false);
    for (i, c) in text[start..].char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return serde_json::from_str(&text[start..start + i + 1]).ok();
                }
            }
            _ => {}
        }
    }
    None
}

/// A persona card checked against the scenario: the JSON must be an object whose
/// `<noun>` (`object` for 20 Questions), `object` or `name` field names one of the scenario's entities (by any accepted name, "a"/"the" allowed). Returns
/// the card with the canonical hidden state filled in.
pub fn validate_card(scenario: &EntityScenario, text: &str) -> Option<serde_json::Value> {
    let v = first_json_object(text)?;
    let name =
        [scenario.rules.noun.as_str(), "object", "name"].iter().find_map(|k| v.get(*k).and_then(|n| n.as_str()))?;
    let Utterance::Guess(index) = scenario.interpret(&format!("is it {name}")) else { return None };
    let ent = &scenario.table.entities[index];
    let hidden = Secret { index, name: ent.names[0].clone(), category: ent.category.clone() };
    let persona = v.get("persona").and_then(|p| p.as_str()).unwrap_or("").to_string();
    Some(serde_json::json!({
        "hidden": hidden,
        "persona": persona,
        "card": scenario.persona_card(&hidden),
        "raw": v,
    }))
}

/// Has `model` imagine `n` persona cards for `scenario` (Hong et al.'s imagination step):
/// each request shows a seeded menu of entities, one worked example, and asks for one card
/// as JSON. Cards are
/// validated ([`validate_card`]); invalid outputs are retried with a fresh seed, up to
/// [`IMAGINE_ROUNDS`] rounds, and counted. All `n` cards of a round go to the model as one
/// batch.
pub fn imagine_personas(
    model: &mut dyn LanguageModel,
    scenario: &EntityScenario,
    n: usize,
    seed: u64,
) -> Result<(Vec<serde_json::Value>, ImagineStats)> {
    let mut stats = ImagineStats::default();
    let mut cards: Vec<Option<serde_json::Value>> = vec![None; n];
    let noun = &scenario.rules.noun;
    let pool: Vec<usize> = scenario.secrets().to_vec();
    for round in 0..IMAGINE_ROUNDS {
        let missing: Vec<usize> = (0..n).filter(|&i| cards[i].is_none()).collect();
        if missing.is_empty() {
            break;
        }
        let requests: Vec<ChatRequest> = missing
            .iter()
            .map(|&i| {
                let key = mix64(seed ^ mix64(i as u64 ^ ((round as u64) << 32)));
                let mut rng = Rng::seed_from_u64(key);
                let mut menu = pool.clone();
                menu.shuffle(&mut rng);
                menu.truncate(MENU);
                let names: Vec<String> =
                    menu.iter().map(|&e| scenario.table.entities[e].names[0].to_lowercase()).collect();
                // One worked example (on the last four entities of the pool) before the real
                // request: a 135M model answers the bare instruction with prose or people's
                // names, and imitates an example (measured: 0/12 valid cards without, most
                // valid with).
                let example: Vec<String> =
                    pool.iter().rev().take(4).map(|&e| scenario.table.entities[e].names[0].to_lowercase()).collect();
                let ask = |names: &[String]| {
                    format!(
                        "Pick one {noun} for a 20 Questions player from: {}. Write the player as JSON.",
                        names.join(", ")
                    )
                };
                let shown = format!(
                    "{{\"{noun}\": \"{}\", \"persona\": \"A patient player who answers slowly.\"}}",
                    example[example.len() - 1]
                );
                ChatRequest {
                    messages: vec![
                        ChatMessage { role: "system".into(), content: "You write game data as JSON.".into() },
                        ChatMessage { role: "user".into(), content: ask(&example) },
                        ChatMessage { role: "assistant".into(), content: shown },
                        ChatMessage { role: "user".into(), content: ask(&names) },
                    ],
                    sampling: Sampling {
                        temperature: 0.8,
                        top_p: 0.95,
                        top_k: 0,
                        max_tokens: 48,
                        stop: vec![],
                        seed: rng.random(),
                    },
                }
            })
            .collect();
        stats.requests += requests.len() as u64;
        let texts = model.complete(&requests)?;
        for (&i, text) in missing.iter().zip(&texts) {
            match validate_card(scenario, text) {
                Some(card) => {
                    cards[i] = Some(card);
                    stats.valid += 1;
                }
                None => stats.invalid_retried += 1,
            }
        }
    }
    stats.missing = cards.iter().filter(|c| c.is_none()).count() as u64;
    Ok((cards.into_iter().flatten().collect(), stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> EntityScenario {
        dialogym_scenarios::twenty_questions::from_spec(&Spec::parse("twenty-questions").unwrap())
            .expect("built-in scenario")
    }

    #[test]
    fn protocol_answers_are_read_from_the_first_word() {
        assert_eq!(protocol_answer(" Yes, it is."), Some(Answer::Yes));
        assert_eq!(protocol_answer("no!"), Some(Answer::No));
        assert_eq!(protocol_answer("Sometimes."), Some(Answer::Sometimes));
        assert_eq!(protocol_answer("Nope"), None);
        assert_eq!(protocol_answer("It is a dog"), None);
    }

    #[test]
    fn questions_are_cut_to_one() {
        assert_eq!(first_question("1. Is it alive? Is it big?\nMore"), "Is it alive?");
        assert_eq!(first_question("\n  Question: Does it fly?"), "Does it fly?");
        assert_eq!(first_question("I'm asking you, \"Is it a glass of water?\""), "Is it a glass of water?");
        assert_eq!(first_question("Hmm. Is it red? Or blue?"), "Is it red?");
        assert_eq!(first_question("It's an animal."), "It's an animal.");
        assert_eq!(first_question("Ask \u{201c}Is it a cat?\u{201d}"), "Is it a cat?");
        assert_eq!(first_question("   "), EMPTY_QUESTION);
    }

    #[test]
    fn loose_guesses_are_understood() {
        let s = scenario();
        let Utterance::Guess(e) = interpret_free(&s, None, "Could it be a dog?").expect("no matcher") else {
            panic!("`Could it be a dog?` was not read as a guess")
        };
        assert_eq!(s.table.entities[e].names[0].to_lowercase(), "dog");
        assert_eq!(interpret_free(&s, None, "Does it like jazz?").expect("no matcher"), Utterance::Other);
    }

    #[test]
    fn cards_validate_against_the_table() {
        let s = scenario();
        let card = validate_card(&s, "Sure! ```json\n{\"name\": \"a Dog\", \"persona\": \"curt\"}\n```")
            .expect("a valid card");
        assert_eq!(card["hidden"]["name"], "Dog");
        assert!(validate_card(&s, "{\"name\": \"unicorn\"}").is_none());
        assert!(validate_card(&s, "{\"name\": 3}").is_none());
        assert!(validate_card(&s, "no json here").is_none());
        assert!(validate_card(&s, "{\"name\": \"dog\"").is_none());
    }

    /// A fake model that answers from a script, to test the speakers without weights.
    struct Scripted(Vec<String>);

    impl LanguageModel for Scripted {
        fn id(&self) -> String {
            "scripted".into()
        }
        fn complete(&mut self, batch: &[ChatRequest]) -> Result<Vec<String>> {
            Ok(batch.iter().enumerate().map(|(i, _)| self.0[i % self.0.len()].clone()).collect())
        }
    }

    #[test]
    fn imagination_retries_and_counts_invalid_cards() {
        let s = scenario();
        let mut m = Scripted(vec!["{\"name\": \"dog\"}".into(), "garbage".into()]);
        let (cards, stats) = imagine_personas(&mut m, &s, 4, 1).expect("never fails on bad output");
        // Round 1: cards 0 and 2 valid, 1 and 3 invalid; round 2 retries two, first valid...
        assert_eq!(cards.len(), 4);
        assert_eq!(stats.valid, 4);
        assert!(stats.invalid_retried >= 2);
        let mut bad = Scripted(vec!["garbage".into()]);
        let (none, st) = imagine_personas(&mut bad, &s, 2, 1).expect("never fails on bad output");
        assert!(none.is_empty());
        assert_eq!(st.missing, 2);
        assert_eq!(st.invalid_retried, 2 * IMAGINE_ROUNDS as u64);
    }

    #[test]
    fn persona_counts_disagreements_and_can_correct_them() {
        use dialogym_engine::seed::{Stream, turn_rng};
        let s = scenario();
        let Utterance::Guess(e) = s.interpret("dog") else { panic!("dog is in the table") };
        let hidden = Secret { index: e, name: "Dog".into(), category: s.table.entities[e].category.clone() };
        assert!(matches!(s.interpret("Is it alive?"), Utterance::Ask(_)));
        let transcript = vec![Message::agent("Is it alive?")];
        for grounding in [Grounding::Check, Grounding::Correct] {
            let model = Box::new(Scripted(vec!["Nope, never".into()]));
            let mut p = LlmPersona::new(model, LlmPersona::default_sampling(), grounding, None, "llm".into());
            let stats = p.stats();
            for ep in 0..2 {
                let mut turns = vec![PersonaTurn {
                    episode: ep,
                    hidden: &hidden,
                    transcript: &transcript,
                    rng: turn_rng(ep, 1, Stream::Persona),
                }];
                let reply = p.reply(&s, &mut turns).expect("reply");
                let want = if grounding == Grounding::Correct { "Yes." } else { "Nope, never" };
                assert_eq!(reply, vec![want.to_string()]);
            }
            let st = *stats.lock().expect("stats");
            assert_eq!(
                (st.replies, st.off_protocol, st.checked, st.disagreements),
                (2, 2, 2, 2),
                "a dog is alive: {st:?}"
            );
            assert_eq!(st.corrected, if grounding == Grounding::Correct { 2 } else { 0 });
            assert!((st.disagreement_rate() - 1.0).abs() < 1e-12);
        }
    }
}
