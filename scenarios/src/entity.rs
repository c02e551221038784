//! "Hidden entity with attributes" scenarios: 20 Questions, scenario files, and their kin.
//!
//! The persona thinks of one entity from a table (entities × yes/no attributes, and
//! optionally × *open* attributes: categorical questions answered with a word, "What
//! continent is it on?" → "Europe."). The agent asks the table's questions and names
//! entities; the scenario is the table, a question bank, a guess template, the answer words
//! and the reward.
//!
//! Reward (LMRL-Gym's 20 Questions): every agent utterance costs `question_cost`, except the
//! one that names the hidden entity, which earns `success_reward` and ends the episode. The
//! episode also ends after `max_turns` agent utterances. Return ∈ [−max_turns·cost, reward].

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use dialogym_engine::seed::Rng;
use dialogym_engine::{Judgement, Message, Role, Scenario};
use rand::Rng as _;
use serde::Serialize;

/// A persona's answer to an attribute question, as the table states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum Answer {
    /// True of the typical entity.
    Yes = 0,
    /// False of the typical entity.
    No = 1,
    /// Genuinely true of some and false of others.
    Sometimes = 2,
}

impl Answer {
    /// All answers, in index order.
    pub const ALL: [Answer; 3] = [Answer::Yes, Answer::No, Answer::Sometimes];

    /// From its index (0, 1, 2).
    pub fn from_index(i: usize) -> Answer {
        Answer::ALL[i.min(2)]
    }
}

/// One hypothesis: names (the first is canonical, the rest accepted variants) and a category.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// Canonical name first, then accepted variants.
    pub names: Vec<String>,
    /// Category (for grouping and reporting).
    pub category: String,
}

/// One attribute: an id and the yes/no question that asks it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// snake_case id.
    pub id: String,
    /// The question, as the agent says it.
    pub question: String,
}

/// One open attribute: a question answered with one word of a closed vocabulary
/// ("What continent is it on?" → "Europe."). Every entity has exactly one value.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAttribute {
    /// snake_case id.
    pub id: String,
    /// The question, as the agent says it.
    pub question: String,
    /// The values, in declaration order (their index is the value's code).
    pub values: Vec<String>,
    /// How the persona says a value; `{value}` is filled in ("{value}.").
    pub reply: String,
}

impl OpenAttribute {
    /// The persona's words for value `v`.
    pub fn reply_text(&self, v: usize) -> String {
        self.reply.replace("{value}", &self.values[v])
    }
}

/// The words the persona answers with.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerWords {
    /// Reply for `Answer::Yes`.
    pub yes: String,
    /// Reply for `Answer::No`.
    pub no: String,
    /// Reply for `Answer::Sometimes`.
    pub sometimes: String,
    /// Reply to anything that is neither a bank question nor a guess.
    pub unknown: String,
    /// Reply to a correct guess.
    pub correct: String,
    /// Reply to a wrong guess.
    pub wrong: String,
}

impl Default for AnswerWords {
    fn default() -> Self {
        AnswerWords {
            yes: "Yes.".into(),
            no: "No.".into(),
            sometimes: "Sometimes.".into(),
            unknown: "I can't answer that.".into(),
            correct: "Yes! You got it.".into(),
            wrong: "No.".into(),
        }
    }
}

impl AnswerWords {
    /// The reply for an attribute answer.
    pub fn of(&self, a: Answer) -> &str {
        match a {
            Answer::Yes => &self.yes,
            Answer::No => &self.no,
            Answer::Sometimes => &self.sometimes,
        }
    }

    /// Reads a reply back into an answer (None for anything else).
    pub fn parse(&self, text: &str) -> Option<Answer> {
        // The first answer whose word normalizes like the text; compared without allocating
        // (this runs on every reply), and a verbatim word needs no normalization.
        Answer::ALL.into_iter().find(|&a| self.of(a) == text || normalized_chars(self.of(a)).eq(normalized_chars(text)))
    }
}

/// The table: entities × attributes → answer.
#[derive(Clone, Debug)]
pub struct EntityTable {
    /// The hypotheses.
    pub entities: Vec<Entity>,
    /// The attribute questions.
    pub attributes: Vec<Attribute>,
    /// Attribute-major answers: `answers[a * entities.len() + e]`.
    answers: Vec<Answer>,
    /// Attribute-major 0/1 indicators of `Yes` and of `Sometimes`, so that the posterior mass
    /// of each answer is a dot product (vectorizes; a scatter by answer does not).
    yes: Vec<f64>,
    sometimes: Vec<f64>,
    /// The open (categorical) attributes; empty for a yes/no-only table like 20 Questions.
    pub open: Vec<OpenAttribute>,
    /// Open-attribute-major value codes: `values[o * entities.len() + e]`.
    values: Vec<u32>,
}

impl EntityTable {
    /// Builds a table; `answers[a][e]` for attribute `a`, entity `e`.
    pub fn new(entities: Vec<Entity>, attributes: Vec<Attribute>, answers: Vec<Vec<Answer>>) -> Result<Self> {
        if answers.len() != attributes.len() || answers.iter().any(|r| r.len() != entities.len()) {
            bail!("answer table shape does not match {} attributes × {} entities", attributes.len(), entities.len());
        }
        let answers: Vec<Answer> = answers.into_iter().flatten().collect();
        let ind = |which: Answer| answers.iter().map(|&a| (a == which) as u8 as f64).collect();
        Ok(EntityTable {
            yes: ind(Answer::Yes),
            sometimes: ind(Answer::Sometimes),
            entities,
            attributes,
            answers,
            open: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Adds open attributes; `values[o][e]` is the code of entity `e`'s value of open
    /// attribute `o` (an index into `open[o].values`).
    pub fn with_open(mut self, open: Vec<OpenAttribute>, values: Vec<Vec<usize>>) -> Result<Self> {
        let n = self.entities.len();
        if values.len() != open.len() || values.iter().any(|r| r.len() != n) {
            bail!("open value table shape does not match {} open attributes × {n} entities", open.len());
        }
        for (o, row) in values.iter().enumerate() {
            if open[o].values.is_empty() || row.iter().any(|&v| v >= open[o].values.len()) {
                bail!("open attribute `{}`: a value code is out of range", open[o].id);
            }
        }
        self.values = values.into_iter().flatten().map(|v| v as u32).collect();
        self.open = open;
        Ok(self)
    }

    /// How many questions the bank holds: yes/no attributes, then open attributes. A
    /// question index `q` below `attributes.len()` is a yes/no attribute; the rest are open
    /// attribute `q - attributes.len()`.
    pub fn questions(&self) -> usize {
        self.attributes.len() + self.open.len()
    }

    /// The code of entity `e`'s value of open attribute `o`.
    #[inline]
    pub fn value(&self, e: usize, o: usize) -> usize {
        self.values[o * self.entities.len() + e] as usize
    }

    /// All entities' value codes of open attribute `o`.
    #[inline]
    pub fn open_column(&self, o: usize) -> &[u32] {
        let n = self.entities.len();
        &self.values[o * n..(o + 1) * n]
    }

    /// Σ_e w[e]·1[value(e, o) = v] for every value `v` of open attribute `o`.
    pub fn value_masses(&self, o: usize, w: &[f64]) -> Vec<f64> {
        let mut m = vec![0.0; self.open[o].values.len()];
        for (&v, &x) in self.open_column(o).iter().zip(w) {
            m[v as usize] += x;
        }
        m
    }

    /// Σ_e w[e]·1[answer(e, a) = Yes] and the same for `Sometimes`.
    pub fn masses(&self, a: usize, w: &[f64]) -> (f64, f64) {
        let n = self.entities.len();
        (dot(&self.yes[a * n..(a + 1) * n], w), dot(&self.sometimes[a * n..(a + 1) * n], w))
    }

    /// The table's answer for entity `e` and attribute `a`.
    #[inline]
    pub fn answer(&self, e: usize, a: usize) -> Answer {
        self.answers[a * self.entities.len() + e]
    }

    /// All entities' answers to attribute `a`.
    #[inline]
    pub fn column(&self, a: usize) -> &[Answer] {
        let n = self.entities.len();
        &self.answers[a * n..(a + 1) * n]
    }

    /// Pairs of entities with identical answers on every attribute (must be empty for a
    /// table where every entity can be told apart).
    pub fn indistinguishable_pairs(&self) -> Vec<(usize, usize)> {
        let n = self.entities.len();
        let row = |e: usize| {
            let yes_no = (0..self.attributes.len()).map(|a| self.answer(e, a) as u32);
            yes_no.chain((0..self.open.len()).map(|o| 3 + self.value(e, o) as u32)).collect::<Vec<u32>>()
        };
        let mut seen: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut pairs = Vec::new();
        for e in 0..n {
            if let Some(&first) = seen.get(&row(e)) {
                pairs.push((first, e));
            } else {
                seen.insert(row(e), e);
            }
        }
        pairs
    }
}

/// A dot product with four independent accumulators (lets the compiler use SIMD lanes).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for k in 0..4 {
            acc[k] += a[k] * b[k];
        }
    }
    let tail: f64 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// What an agent utterance means to an entity scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utterance {
    /// A bank question about yes/no attribute `a`.
    Ask(usize),
    /// A bank question about open attribute `o`.
    AskOpen(usize),
    /// Names entity `e`.
    Guess(usize),
    /// Anything else.
    Other,
}

/// Everything that defines an entity scenario besides its table.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Registry or file name (`twenty-questions`).
    pub name: String,
    /// One paragraph for `scenarios describe`.
    pub description: String,
    /// The word for an entity in prompts ("object", "city", "animal").
    pub noun: String,
    /// At most this many agent utterances.
    pub max_turns: usize,
    /// Cost of every utterance but the correct guess (reward −cost).
    pub question_cost: f64,
    /// Reward of the utterance that names the hidden entity.
    pub success_reward: f64,
    /// The scripted persona's slip probability unless its spec says otherwise.
    pub slip: f64,
    /// How a guess is phrased; `{article}` (a/an), `{name}` (lowercased) and `{Name}` (as
    /// written) are filled in.
    pub guess_template: String,
    /// Persona's answer words.
    pub answers: AnswerWords,
    /// System prompt for an LLM persona; `{name}`, `{category}` and `{ID}` for every open
    /// attribute id are filled in.
    pub persona_card: String,
    /// Instructions for an LLM agent.
    pub agent_brief: String,
}

/// The persona's secret: which entity it thinks of.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Secret {
    /// Index of the entity in the table.
    pub index: usize,
    /// Its canonical name.
    pub name: String,
    /// Its category.
    pub category: String,
}

/// An entity scenario ready to play.
#[derive(Clone, Debug)]
pub struct EntityScenario {
    /// The rules.
    pub rules: Rules,
    /// The table, shared with agents that reason over it.
    pub table: Arc<EntityTable>,
    /// The spec that rebuilds this scenario (name plus parameters).
    spec: String,
    /// Entities that may be chosen as the secret (all, or a train/test split).
    secrets: Vec<usize>,
    /// Normalized utterance → meaning (questions and every accepted guess phrasing).
    lexicon: HashMap<String, Utterance>,
    /// Normalized name variant → entity, for free-form guesses.
    names: HashMap<String, usize>,
    /// Per open attribute: normalized reply (and bare value) → value code, to read answers back.
    open_replies: Vec<HashMap<String, usize>>,
    /// The normalized guess template's opening ("is the problem "), accepted before a name
    /// like the built-in "is it ".
    guess_prefix: Option<String>,
    /// The canonical question texts, then the canonical guesses: the candidate actions.
    candidates: Vec<String>,
    /// Each candidate as written → its meaning: scripted speakers say candidates verbatim,
    /// so most utterances are read with one lookup and no normalization (the same meaning
    /// [`EntityScenario::interpret`] finds the long way; built from it).
    exact: HashMap<String, Utterance>,
}

/// Lowercases, trims, collapses spaces and strips trailing punctuation.
pub fn normalize(text: &str) -> String {
    let t = text.trim().trim_end_matches(['?', '.', '!', ' ']);
    // One pass, one allocation: lowercase, and runs of whitespace become one space (this is
    // on the hot path of every judge, oracle and belief update).
    let mut out = String::with_capacity(t.len());
    let mut space = false;
    for c in t.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The characters of [`normalize`]`(text)`, without building the string.
pub fn normalized_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    let t = text.trim().trim_end_matches(['?', '.', '!', ' ']);
    t.split_whitespace()
        .enumerate()
        .flat_map(|(i, w)| (i > 0).then_some(' ').into_iter().chain(w.chars()))
        .flat_map(char::to_lowercase)
}

fn article(name: &str) -> &'static str {
    match name.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

impl EntityScenario {
    /// Builds the scenario; `spec` is its canonical name with parameters, `secrets` the
    /// entities that may be drawn (None: all).
    pub fn new(rules: Rules, table: EntityTable, spec: String, secrets: Option<Vec<usize>>) -> Result<Self> {
        if table.entities.is_empty() || table.questions() == 0 {
            bail!("scenario `{}` needs at least one entity and one attribute", rules.name);
        }
        if rules.max_turns == 0 {
            bail!("scenario `{}`: max_turns must be at least 1", rules.name);
        }
        let secrets = secrets.unwrap_or_else(|| (0..table.entities.len()).collect());
        if secrets.is_empty() {
            bail!("scenario `{}`: no entity can be the secret", rules.name);
        }
        let mut lexicon = HashMap::new();
        let mut candidates = Vec::with_capacity(table.attributes.len() + table.entities.len());
        for (a, attr) in table.attributes.iter().enumerate() {
            if lexicon.insert(normalize(&attr.question), Utterance::Ask(a)).is_some() {
                bail!("scenario `{}`: question `{}` appears twice", rules.name, attr.question);
            }
            candidates.push(attr.question.clone());
        }
        let mut open_replies = Vec::with_capacity(table.open.len());
        for (o, attr) in table.open.iter().enumerate() {
            if lexicon.insert(normalize(&attr.question), Utterance::AskOpen(o)).is_some() {
                bail!("scenario `{}`: question `{}` appears twice", rules.name, attr.question);
            }
            candidates.push(attr.question.clone());
            let mut replies = HashMap::new();
            for (v, value) in attr.values.iter().enumerate() {
                for text in [attr.reply_text(v), value.clone()] {
                    if let Some(prev) = replies.insert(normalize(&text), v)
                        && prev != v
                    {
                        bail!(
                            "scenario `{}`: open attribute `{}` has two values that read `{text}`",
                            rules.name,
                            attr.id
                        );
                    }
                }
            }
            open_replies.push(replies);
        }
        let mut names = HashMap::new();
        for (e, ent) in table.entities.iter().enumerate() {
            for n in &ent.names {
                if let Some(prev) = names.insert(normalize(n), e)
                    && prev != e
                {
                    bail!("scenario `{}`: name `{n}` is used by two entities", rules.name);
                }
            }
        }
        // The template's words before the name ("is the problem ") open a guess too, so that a
        // file's own phrasing reads back as a guess; built-in openings are tried first.
        let opening = rules.guess_template.split('{').next().unwrap_or("").to_lowercase();
        let opening = opening.split_whitespace().collect::<Vec<_>>().join(" ");
        let guess_prefix = (!opening.is_empty()).then(|| opening + " ");
        let mut this = EntityScenario {
            rules,
            table: Arc::new(table),
            spec,
            secrets,
            lexicon,
            names,
            open_replies,
            guess_prefix,
            candidates,
            exact: HashMap::new(),
        };
        for e in 0..this.table.entities.len() {
            let g = this.guess_text(e);
            // A canonical guess always reads back as a guess of its entity, whatever the
            // template (a question with the same words keeps its meaning).
            this.lexicon.entry(normalize(&g)).or_insert(Utterance::Guess(e));
            this.candidates.push(g);
        }
        let exact = this.candidates.iter().map(|c| (c.clone(), this.interpret(c))).collect();
        this.exact = exact;
        Ok(this)
    }

    /// The canonical text of a guess of entity `e` ("Is it an apple?").
    pub fn guess_text(&self, e: usize) -> String {
        let written = &self.table.entities[e].names[0];
        let name = written.to_lowercase();
        self.rules
            .guess_template
            .replace("{article}", article(&name))
            .replace("{name}", &name)
            .replace("{Name}", written)
    }

    /// The canonical text of the question on attribute `a`.
    pub fn question_text(&self, a: usize) -> &str {
        &self.table.attributes[a].question
    }

    /// The text of bank question `q` (yes/no attributes first, then open attributes; see
    /// [`EntityTable::questions`]).
    pub fn bank_question(&self, q: usize) -> &str {
        match q.checked_sub(self.table.attributes.len()) {
            None => &self.table.attributes[q].question,
            Some(o) => &self.table.open[o].question,
        }
    }

    /// Reads a persona reply to open attribute `o` back into a value code.
    pub fn parse_open(&self, o: usize, text: &str) -> Option<usize> {
        self.open_replies.get(o)?.get(&normalize(text)).copied()
    }

    /// What an agent utterance means: a bank question, a guess (by any accepted name,
    /// with or without "is it (a|an|the)"), or something else.
    pub fn interpret(&self, text: &str) -> Utterance {
        if let Some(&u) = self.exact.get(text) {
            return u;
        }
        let t = normalize(text);
        if let Some(&u) = self.lexicon.get(&t) {
            return u;
        }
        let mut rest = t.as_str();
        for prefix in [
            "is it ",
            "is the object ",
            "is this ",
            "is that ",
            "are they ",
            "are it ",
            "it is ",
            "my guess is ",
            "i guess ",
        ] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r;
                break;
            }
        }
        if rest.len() == t.len()
            && let Some(r) = self.guess_prefix.as_deref().and_then(|p| rest.strip_prefix(p))
        {
            rest = r;
        }
        for art in ["a ", "an ", "the ", "some "] {
            if let Some(r) = rest.strip_prefix(art)
                && let Some(&e) = self.names.get(r)
            {
                return Utterance::Guess(e);
            }
        }
        match self.names.get(rest) {
            Some(&e) => Utterance::Guess(e),
            None => Utterance::Other,
        }
    }

    /// Entities that may be the secret.
    pub fn secrets(&self) -> &[usize] {
        &self.secrets
    }

    /// The (attribute, answer) pairs and the guessed entities of a transcript, read back.
    pub fn history(&self, transcript: &[Message]) -> History {
        let mut h = History::default();
        let mut pending: Option<Utterance> = None;
        for m in transcript {
            match m.role {
                Role::Agent => {
                    let u = self.interpret(&m.content);
                    if let Utterance::Guess(e) = u {
                        h.guessed.push(e);
                    }
                    pending = Some(u);
                }
                Role::Persona => match pending.take() {
                    Some(Utterance::Ask(a)) => {
                        if let Some(ans) = self.rules.answers.parse(&m.content) {
                            h.answers.push((a, ans));
                        }
                    }
                    Some(Utterance::AskOpen(o)) => {
                        if let Some(v) = self.parse_open(o, &m.content) {
                            h.open_answers.push((o, v));
                        }
                    }
                    _ => {}
                },
            }
        }
        h
    }

    /// Bits of information the answers carry about the secret: log2 of the number of
    /// possible secrets, minus log2 of those consistent with every answer and wrong guess
    /// (all of them if none is, as after a persona's slip). A correct guess is full
    /// information.
    pub fn information_gain(&self, hidden: &Secret, transcript: &[Message]) -> f64 {
        let total = self.secrets.len() as f64;
        let h = self.history(transcript);
        if h.guessed.contains(&hidden.index) {
            return total.log2();
        }
        let consistent = self
            .secrets
            .iter()
            .filter(|&&e| {
                !h.guessed.contains(&e)
                    && h.answers.iter().all(|&(a, ans)| self.table.answer(e, a) == ans)
                    && h.open_answers.iter().all(|&(o, v)| self.table.value(e, o) == v)
            })
            .count();
        if consistent == 0 { 0.0 } else { total.log2() - (consistent as f64).log2() }
    }
}

/// What a transcript has revealed so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Attribute questions with the answers the persona gave.
    pub answers: Vec<(usize, Answer)>,
    /// Entities named by the agent (all wrong unless the episode ended).
    pub guessed: Vec<usize>,
    /// Open attribute questions with the value codes the persona gave.
    pub open_answers: Vec<(usize, usize)>,
}

impl Scenario for EntityScenario {
    type Hidden = Secret;

    fn id(&self) -> String {
        self.spec.clone()
    }

    fn max_agent_turns(&self) -> usize {
        self.rules.max_turns
    }

    fn sample_hidden(&self, rng: &mut Rng) -> Secret {
        let index = self.secrets[rng.random_range(0..self.secrets.len())];
        let ent = &self.table.entities[index];
        Secret { index, name: ent.names[0].clone(), category: ent.category.clone() }
    }

    fn judge(&self, hidden: &Secret, transcript: &[Message]) -> Judgement {
        let Some(last) = transcript.last() else {
            return Judgement { reward: 0.0, done: false, success: false };
        };
        if last.role != Role::Agent {
            return Judgement { reward: 0.0, done: false, success: false };
        }
        if self.interpret(&last.content) == Utterance::Guess(hidden.index) {
            return Judgement { reward: self.rules.success_reward, done: true, success: true };
        }
        let turns = dialogym_engine::transcript::agent_turns(transcript);
        Judgement { reward: -self.rules.question_cost, done: turns >= self.rules.max_turns, success: false }
    }

    fn candidates(&self, _transcript: &[Message]) -> Vec<String> {
        self.candidates.clone()
    }

    fn metrics(&self, hidden: &Secret, transcript: &[Message]) -> Vec<(String, f64)> {
        vec![("info_gain_bits".into(), self.information_gain(hidden, transcript))]
    }

    fn persona_card(&self, hidden: &Secret) -> String {
        let mut card = self.rules.persona_card.replace("{name}", &hidden.name).replace("{category}", &hidden.category);
        for (o, attr) in self.table.open.iter().enumerate() {
            card = card.replace(&format!("{{{}}}", attr.id), &attr.values[self.table.value(hidden.index, o)]);
        }
        card
    }

    fn agent_brief(&self) -> String {
        self.rules.agent_brief.clone()
    }

    fn rules(&self) -> String {
        let r = &self.rules;
        format!(
            "{}\n\n{}\n\nentities: {} (possible secrets: {})\nquestions in the bank: {}{}\nmax agent turns: {}; \
             reward: -{} per utterance, {} for naming the secret",
            r.name,
            r.description,
            self.table.entities.len(),
            self.secrets().len(),
            self.table.questions(),
            match self.table.open.len() {
                0 => String::new(),
                n => format!(" ({n} of them open)"),
            },
            r.max_turns,
            r.question_cost,
            r.success_reward
        )
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        // −cost per utterance, success_reward for the one that names the secret (turn n),
        // or −cost·max_turns without success.
        let (c, s, t) = (self.rules.question_cost, self.rules.success_reward, self.rules.max_turns);
        let returns = (1..=t).map(|n| s - c * (n - 1) as f64).chain([-c * t as f64]);
        Some(returns.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| (lo.min(r), hi.max(r))))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalized_chars_are_the_characters_of_normalize() {
        for text in ["  Is it  a\tPenguin?? ", "Yes.", "yes \t?", "Ist es ein ÄPFEL!", "?", "  ", "A\n\nB.", "İstanbul"]
        {
            assert_eq!(super::normalized_chars(text).collect::<String>(), normalize(text), "{text:?}");
        }
    }

    #[test]
    fn normalize_lowercases_trims_and_collapses_whitespace() {
        for (text, want) in [
            ("  Is it  a\tPenguin?? ", "is it a penguin"),
            ("Is it alive?", "is it alive"),
            ("Ist es ein ÄPFEL!", "ist es ein äpfel"),
            ("?", ""),
            ("  ", ""),
            ("A\n\nB.", "a b"),
        ] {
            assert_eq!(normalize(text), want, "{text:?}");
            // The reference definition it replaces.
            let t = text.trim().trim_end_matches(['?', '.', '!', ' ']).to_lowercase();
            assert_eq!(normalize(text), t.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}
