//! Tutoring: a teacher probes a student's comprehension of fractions, then teaches.
//!
//! The persona is a student over a small curriculum (`data/fractions.json`): eight skills
//! with prerequisites, each with Bayesian Knowledge Tracing parameters (prior, learn, slip,
//! guess), two diagnostic items and a worked example. The student's hidden state is an
//! ability level (basic, standard, advanced), which skills it has mastered, its own BKT
//! parameters, one or two misconceptions, and a seed for its learning draws.
//!
//! The agent speaks from fixed templates (the candidates): a diagnostic question on a
//! skill, an explanation of a skill at a level, a worked example of a skill, or the end of
//! the session. The student answers a diagnostic correctly with probability 1 − slip when
//! it has mastered the skill and `guess` otherwise; a misconception makes it give one
//! specific wrong answer on that skill's items until an explanation or a worked example of
//! the skill clears it. An explanation teaches (mastery with probability `learn`) only when
//! the student has mastered the skill's prerequisites and the level is not above its own;
//! below its level it teaches at `below_level_factor` of the rate, and a worked example at
//! `example_factor` of it, whatever the level.
//!
//! Purity: whether an explanation "took" is decided by a uniform number drawn from
//! `turn_rng(hidden.learning_seed, message index, Hidden)`, so [`Tutoring::replay`] (a
//! function of the hidden state and the transcript) recomputes the student's true state at
//! any point. The judge and the scripted student both call it, so the student's answers
//! always follow the state the judge scores.
//!
//! Reward: the expected post-test score (one item per skill, scored from true mastery:
//! 1 − slip if mastered, `guess` if not, 0 while a misconception on the skill stands)
//! rises by each utterance's effect, and every utterance except ending the session costs
//! `cost`. An utterance's reward is the score it added minus its cost, so the return is
//! post-test − pre-test − cost·(turns taught or asked) ∈ [−cost·max_turns, 1]. Success:
//! post-test ≥ `threshold` when the episode ends (the agent ends the session, or
//! `max_turns` utterances).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use dialogym_engine::seed::{Rng, Stream, turn_rng};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Judgement, Message, Role, Scenario, Spec};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::entity::normalize;

/// The curriculum shipped with dialogym.
pub const FRACTIONS_JSON: &str = include_str!("../data/fractions.json");

/// What the agent says to close the session.
pub const END_TEXT: &str = "That's all for today. Let's end the session.";

/// The student's reply to an explanation above its level.
pub const LOST_REPLY: &str = "Sorry, that went over my head.";
/// The student's reply to an explanation it could follow.
pub const FOLLOWED_REPLY: &str = "Okay, I think I follow.";
/// The student's reply to a worked example (when it cleared no misconception).
pub const EXAMPLE_REPLY: &str = "Okay, that makes sense.";
/// The student's reply when an explanation or example cleared its misconception.
pub const AHA_REPLY: &str = "Oh! I see where I was going wrong.";
/// The student's reply to anything that is not one of the templates.
pub const CONFUSED_REPLY: &str = "Sorry, I don't understand.";
/// What a student says when it does not know an answer.
pub const DONT_KNOW_REPLY: &str = "I don't know.";

/// The session's rules (the `rules` table of the curriculum file).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TutoringRules {
    /// At most this many agent utterances.
    pub max_turns: usize,
    /// Cost of every utterance except ending the session.
    pub turn_cost: f64,
    /// Post-test score that counts as success.
    pub success_threshold: f64,
    /// Learning rate of an explanation below the student's level, as a fraction of `learn`.
    pub below_level_factor: f64,
    /// Learning rate of a worked example, as a fraction of `learn`.
    pub example_factor: f64,
    /// Cap on the probability that a skill starts mastered.
    pub mastery_cap: f64,
}

/// A student ability level.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Level {
    /// "basic", "standard", "advanced".
    pub name: String,
    /// Share of students at this level.
    pub weight: f64,
    /// Multiplies the skills' mastery priors.
    pub prior_scale: f64,
}

/// Bayesian Knowledge Tracing parameters of one skill.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
pub struct Bkt {
    /// P(mastered) at the start (for a standard student whose prerequisites are mastered).
    pub prior: f64,
    /// P(learning) from one explanation at the student's level.
    pub learn: f64,
    /// P(wrong answer | mastered).
    pub slip: f64,
    /// P(right answer | not mastered).
    pub guess: f64,
}

/// One diagnostic question with its answer key.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Item {
    /// The question as the agent asks it (after the skill prefix).
    pub question: String,
    /// The correct answer, a fraction `a/b`.
    pub answer: String,
    /// Plausible wrong answers a student who does not know gives.
    pub wrong: Vec<String>,
    /// The answer a student with this skill's misconception gives.
    #[serde(default)]
    pub bug: Option<String>,
}

/// One skill of the curriculum.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Skill {
    /// snake_case id.
    pub id: String,
    /// Name used in utterances ("adding fractions with like denominators").
    pub name: String,
    /// Ids of the skills that must be mastered before this one can be learned.
    pub prerequisites: Vec<String>,
    /// Curriculum-wide BKT parameters (a student's own are near these).
    pub bkt: Bkt,
    /// The worked example.
    pub example: String,
    /// Diagnostic items.
    pub items: Vec<Item>,
}

/// A wrong belief that makes a student answer one skill's items wrongly.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Misconception {
    /// kebab-case id.
    pub id: String,
    /// The skill it spoils.
    pub skill: String,
    /// What the student believes (for persona cards).
    pub belief: String,
}

/// The curriculum file.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Curriculum {
    /// Name ("fractions").
    pub name: String,
    /// One paragraph.
    pub description: String,
    /// Session rules.
    pub rules: TutoringRules,
    /// Ability levels, lowest first.
    pub levels: Vec<Level>,
    /// Per-student multipliers of the learning rates, drawn uniformly.
    pub learning_rates: Vec<f64>,
    /// P(1 misconception), P(2 misconceptions), ...
    pub misconception_counts: Vec<f64>,
    /// Skills, prerequisites first.
    pub skills: Vec<Skill>,
    /// Misconceptions a student may hold.
    pub misconceptions: Vec<Misconception>,
}

/// One skill as a particular student has it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudentSkill {
    /// Skill id.
    pub id: String,
    /// Mastered at the start of the session.
    pub mastered: bool,
    /// The student's own BKT parameters for it.
    pub bkt: Bkt,
}

/// The persona's secret: a student.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Student {
    /// Index of its level in the curriculum's levels.
    pub level: usize,
    /// The level's name.
    pub level_name: String,
    /// Its skills, in curriculum order.
    pub skills: Vec<StudentSkill>,
    /// Indices of the misconceptions it holds at the start.
    pub misconceptions: Vec<usize>,
    /// Seed of the draws that decide whether an explanation is learned.
    pub learning_seed: u64,
}

/// What an agent utterance means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TutorAction {
    /// A diagnostic question: (skill, item index within the skill).
    Diagnose(usize, usize),
    /// Explain a skill at a level.
    Explain(usize, usize),
    /// A worked example of a skill.
    Example(usize),
    /// End the session.
    End,
    /// Anything else.
    Other,
}

/// What an utterance did to the student.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A diagnostic question was asked (nothing changes).
    Asked(usize, usize),
    /// The explanation was above the student's level.
    Lost,
    /// The explanation was followed (learned or not).
    Followed,
    /// The worked example was followed (learned or not).
    Understood,
    /// An explanation or example cleared a misconception.
    Cleared,
    /// The session ended.
    Ended,
    /// Not an utterance the student understands.
    Confused,
}

/// The student's true state at some point of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct StudentState {
    /// Mastery per skill.
    pub mastered: Vec<bool>,
    /// Whether each misconception of the curriculum is held now.
    pub misconceptions: Vec<bool>,
}

/// How a diagnostic reply reads against the item's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The correct answer.
    Correct,
    /// The misconception's answer.
    Bug,
    /// Anything else (including "I don't know").
    Wrong,
}

/// The tutoring scenario.
#[derive(Clone, Debug)]
pub struct Tutoring {
    /// The curriculum (public: agents reason over it).
    pub curriculum: Curriculum,
    /// Session rules after the spec's overrides.
    pub rules: TutoringRules,
    /// Prerequisites of each skill, as indices.
    pub prerequisites: Vec<Vec<usize>>,
    /// The misconception on each skill, if any.
    pub misconception_of: Vec<Option<usize>>,
    spec: String,
    lexicon: HashMap<String, TutorAction>,
    candidates: Vec<String>,
}

/// Reads the last `a/b` in a text.
pub fn parse_fraction(text: &str) -> Option<(u64, u64)> {
    let bytes = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < bytes.len() && bytes[i] == b'/' && bytes[i + 1].is_ascii_digit() {
                let mid = i;
                i += 1;
                let dstart = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if let (Ok(n), Ok(d)) = (text[start..mid].parse(), text[dstart..i].parse()) {
                    found = Some((n, d));
                }
            }
        } else {
            i += 1;
        }
    }
    found
}

impl Tutoring {
    /// Builds `tutoring(max_turns=20,cost=0.01,threshold=0.8)` over the fractions curriculum.
    pub fn from_spec(spec: &Spec) -> Result<Tutoring> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Params {
            max_turns: Option<usize>,
            cost: Option<dialogym_engine::NonNegative>,
            threshold: Option<dialogym_engine::Probability>,
        }
        let p: Params = spec.params()?;
        let curriculum: Curriculum = serde_json::from_str(FRACTIONS_JSON).context("embedded fractions curriculum")?;
        let mut rules = curriculum.rules.clone();
        rules.max_turns = p.max_turns.unwrap_or(rules.max_turns);
        rules.turn_cost = p.cost.map_or(rules.turn_cost, |c| c.0);
        rules.success_threshold = p.threshold.map_or(rules.success_threshold, |t| t.0);
        if rules.max_turns == 0 {
            bail!("`{spec}`: max_turns must be at least 1");
        }
        if !(rules.turn_cost >= 0.0 && rules.turn_cost.is_finite()) {
            bail!("`{spec}`: cost must be a non-negative number");
        }
        Tutoring::new(curriculum, rules, spec.to_string())
    }

    /// Builds the scenario from a curriculum, checking it.
    pub fn new(curriculum: Curriculum, rules: TutoringRules, spec: String) -> Result<Tutoring> {
        let c = &curriculum;
        if c.skills.is_empty() || c.skills.len() > 16 {
            bail!("curriculum `{}`: needs 1 to 16 skills", c.name);
        }
        if c.levels.is_empty() || c.learning_rates.is_empty() || c.misconception_counts.is_empty() {
            bail!("curriculum `{}`: levels, learning_rates and misconception_counts must not be empty", c.name);
        }
        let index: HashMap<&str, usize> = c.skills.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let mut prerequisites = Vec::new();
        for (i, s) in c.skills.iter().enumerate() {
            let mut pre = Vec::new();
            for p in &s.prerequisites {
                match index.get(p.as_str()) {
                    Some(&j) if j < i => pre.push(j),
                    Some(_) => bail!("skill `{}`: prerequisite `{p}` must come earlier in the list", s.id),
                    None => bail!("skill `{}`: unknown prerequisite `{p}`", s.id),
                }
            }
            if s.items.is_empty() {
                bail!("skill `{}` has no diagnostic items", s.id);
            }
            for item in &s.items {
                for a in std::iter::once(&item.answer).chain(&item.wrong).chain(&item.bug) {
                    if parse_fraction(a).is_none() {
                        bail!("skill `{}`: answer `{a}` is not a fraction a/b", s.id);
                    }
                }
                if item.wrong.is_empty() || item.wrong.contains(&item.answer) {
                    bail!("skill `{}`: item `{}` needs wrong answers other than its key", s.id, item.question);
                }
                if let Some(b) = &item.bug
                    && (item.wrong.contains(b) || *b == item.answer)
                {
                    bail!("skill `{}`: the misconception's answer to `{}` must be distinct", s.id, item.question);
                }
            }
            prerequisites.push(pre);
        }
        let mut misconception_of = vec![None; c.skills.len()];
        for (m, mis) in c.misconceptions.iter().enumerate() {
            let Some(&s) = index.get(mis.skill.as_str()) else {
                bail!("misconception `{}`: unknown skill `{}`", mis.id, mis.skill)
            };
            if misconception_of[s].replace(m).is_some() {
                bail!("skill `{}` has two misconceptions", mis.skill);
            }
            if c.skills[s].items.iter().any(|i| i.bug.is_none()) {
                bail!("misconception `{}`: every item of `{}` needs a `bug` answer", mis.id, mis.skill);
            }
        }
        for (s, skill) in c.skills.iter().enumerate() {
            if misconception_of[s].is_none() && skill.items.iter().any(|i| i.bug.is_some()) {
                bail!("skill `{}` has `bug` answers but no misconception", skill.id);
            }
        }
        if c.misconception_counts.len() > c.misconceptions.len() {
            bail!("misconception_counts allows more misconceptions than the curriculum has");
        }
        let mut this = Tutoring {
            prerequisites,
            misconception_of,
            spec,
            lexicon: HashMap::new(),
            candidates: Vec::new(),
            rules,
            curriculum,
        };
        let mut actions = Vec::new();
        for s in 0..this.curriculum.skills.len() {
            for i in 0..this.curriculum.skills[s].items.len() {
                actions.push(TutorAction::Diagnose(s, i));
            }
        }
        for s in 0..this.curriculum.skills.len() {
            for l in 0..this.curriculum.levels.len() {
                actions.push(TutorAction::Explain(s, l));
            }
            actions.push(TutorAction::Example(s));
        }
        actions.push(TutorAction::End);
        for a in actions {
            let text = this.text(a);
            if this.lexicon.insert(normalize(&text), a).is_some() {
                bail!("two tutoring utterances read the same: `{text}`");
            }
            this.candidates.push(text);
        }
        Ok(this)
    }

    /// Number of skills.
    pub fn n_skills(&self) -> usize {
        self.curriculum.skills.len()
    }

    /// The canonical words of an action (empty for `Other`).
    pub fn text(&self, action: TutorAction) -> String {
        let skills = &self.curriculum.skills;
        match action {
            TutorAction::Diagnose(s, i) => format!("Question on {}: {}", skills[s].name, skills[s].items[i].question),
            TutorAction::Explain(s, l) => {
                format!("Let me explain {} at the {} level.", skills[s].name, self.curriculum.levels[l].name)
            }
            TutorAction::Example(s) => format!("Here is a worked example of {}: {}", skills[s].name, skills[s].example),
            TutorAction::End => END_TEXT.to_string(),
            TutorAction::Other => String::new(),
        }
    }

    /// What an agent utterance means (templates are matched after [`normalize`]).
    pub fn interpret(&self, text: &str) -> TutorAction {
        self.lexicon.get(&normalize(text)).copied().unwrap_or(TutorAction::Other)
    }

    /// Reads a reply to diagnostic item `i` of skill `s`.
    pub fn classify(&self, s: usize, i: usize, reply: &str) -> Outcome {
        let item = &self.curriculum.skills[s].items[i];
        let Some(said) = parse_fraction(reply) else { return Outcome::Wrong };
        if Some(said) == parse_fraction(&item.answer) {
            Outcome::Correct
        } else if item.bug.as_deref().and_then(parse_fraction) == Some(said) {
            Outcome::Bug
        } else {
            Outcome::Wrong
        }
    }

    /// The student's state at the start of the session.
    pub fn initial_state(&self, student: &Student) -> StudentState {
        let mut misconceptions = vec![false; self.curriculum.misconceptions.len()];
        for &m in &student.misconceptions {
            if let Some(slot) = misconceptions.get_mut(m) {
                *slot = true;
            }
        }
        StudentState { mastered: student.skills.iter().map(|s| s.mastered).collect(), misconceptions }
    }

    /// Whether every prerequisite of skill `s` is mastered in `mastered`.
    pub fn prerequisites_met(&self, s: usize, mastered: &[bool]) -> bool {
        self.prerequisites[s].iter().all(|&p| mastered[p])
    }

    /// Applies the agent utterance at message index `t` to `state`.
    fn step(&self, student: &Student, state: &mut StudentState, action: TutorAction, t: usize) -> Effect {
        let teach = |state: &mut StudentState, s: usize, factor: f64| -> bool {
            let cleared = match self.misconception_of[s] {
                Some(m) if state.misconceptions[m] => {
                    state.misconceptions[m] = false;
                    true
                }
                _ => false,
            };
            if !state.mastered[s] && self.prerequisites_met(s, &state.mastered) {
                let u: f64 = turn_rng(student.learning_seed, t as u32, Stream::Hidden).random();
                if u < (student.skills[s].bkt.learn * factor).min(1.0) {
                    state.mastered[s] = true;
                }
            }
            cleared
        };
        match action {
            TutorAction::Diagnose(s, i) => Effect::Asked(s, i),
            TutorAction::Explain(_, l) if l > student.level => Effect::Lost,
            TutorAction::Explain(s, l) => {
                let factor = if l == student.level { 1.0 } else { self.rules.below_level_factor };
                if teach(state, s, factor) { Effect::Cleared } else { Effect::Followed }
            }
            TutorAction::Example(s) => {
                if teach(state, s, self.rules.example_factor) {
                    Effect::Cleared
                } else {
                    Effect::Understood
                }
            }
            TutorAction::End => Effect::Ended,
            TutorAction::Other => Effect::Confused,
        }
    }

    /// The student's true state after `transcript`, and the effect of its last agent
    /// utterance (None when there is none). Pure: the judge and the scripted student share it.
    pub fn replay(&self, student: &Student, transcript: &[Message]) -> (StudentState, Option<Effect>) {
        let mut state = self.initial_state(student);
        let mut last = None;
        for (t, m) in transcript.iter().enumerate() {
            if m.role == Role::Agent {
                last = Some(self.step(student, &mut state, self.interpret(&m.content), t));
            }
        }
        (state, last)
    }

    /// The expected score of one post-test item on skill `s`.
    pub fn item_score(&self, student: &Student, state: &StudentState, s: usize) -> f64 {
        if self.misconception_of[s].is_some_and(|m| state.misconceptions[m]) {
            return 0.0;
        }
        let b = &student.skills[s].bkt;
        if state.mastered[s] { 1.0 - b.slip } else { b.guess }
    }

    /// The expected post-test score (one item per skill, mean over skills) in `state`.
    pub fn score(&self, student: &Student, state: &StudentState) -> f64 {
        (0..self.n_skills()).map(|s| self.item_score(student, state, s)).sum::<f64>() / self.n_skills() as f64
    }

    /// The student's reply to the last agent utterance of `transcript` (scripted persona).
    pub fn student_reply(&self, student: &Student, transcript: &[Message], rng: &mut Rng) -> String {
        let (state, effect) = self.replay(student, transcript);
        match effect {
            Some(Effect::Asked(s, i)) => {
                let item = &self.curriculum.skills[s].items[i];
                let answer = match self.misconception_of[s] {
                    Some(m) if state.misconceptions[m] => item.bug.clone().unwrap_or_default(),
                    _ => {
                        let b = &student.skills[s].bkt;
                        let p = if state.mastered[s] { 1.0 - b.slip } else { b.guess };
                        if rng.random_bool(p.clamp(0.0, 1.0)) {
                            item.answer.clone()
                        } else if !state.mastered[s] && rng.random_bool(0.2) {
                            return DONT_KNOW_REPLY.to_string();
                        } else {
                            item.wrong[rng.random_range(0..item.wrong.len())].clone()
                        }
                    }
                };
                match rng.random_range(0..3) {
                    0 => answer,
                    1 => format!("I think it's {answer}."),
                    _ => format!("Is it {answer}?"),
                }
            }
            Some(Effect::Lost) => LOST_REPLY.to_string(),
            Some(Effect::Followed) => FOLLOWED_REPLY.to_string(),
            Some(Effect::Understood) => EXAMPLE_REPLY.to_string(),
            Some(Effect::Cleared) => AHA_REPLY.to_string(),
            Some(Effect::Ended) => "Thank you, goodbye!".to_string(),
            Some(Effect::Confused) | None => CONFUSED_REPLY.to_string(),
        }
    }
}

/// One line for `scenarios list`.
pub const ABOUT: &str = "a tutor diagnoses and teaches 8 skills of fractions to a BKT student with misconceptions";

impl Scenario for Tutoring {
    type Hidden = Student;

    fn id(&self) -> String {
        self.spec.clone()
    }

    fn max_agent_turns(&self) -> usize {
        self.rules.max_turns
    }

    fn sample_hidden(&self, rng: &mut Rng) -> Student {
        let c = &self.curriculum;
        let mut u: f64 = rng.random();
        let mut level = c.levels.len() - 1;
        let total: f64 = c.levels.iter().map(|l| l.weight).sum();
        for (i, l) in c.levels.iter().enumerate() {
            u -= l.weight / total;
            if u < 0.0 {
                level = i;
                break;
            }
        }
        let rate = c.learning_rates[rng.random_range(0..c.learning_rates.len())];
        let mut mastered = vec![false; c.skills.len()];
        let mut skills = Vec::with_capacity(c.skills.len());
        for (s, skill) in c.skills.iter().enumerate() {
            let prior = (skill.bkt.prior * c.levels[level].prior_scale).min(self.rules.mastery_cap);
            // Draw even when the prerequisites are missing, so that every student uses the
            // same number of draws (students stay comparable across curricula edits).
            let draw = rng.random_bool(prior.clamp(0.0, 1.0));
            mastered[s] = draw && self.prerequisites_met(s, &mastered);
            let bkt = Bkt { prior, learn: (skill.bkt.learn * rate).min(0.95), ..skill.bkt };
            skills.push(StudentSkill { id: skill.id.clone(), mastered: mastered[s], bkt });
        }
        let mut u: f64 = rng.random();
        let total: f64 = c.misconception_counts.iter().sum();
        let mut count = c.misconception_counts.len();
        for (i, p) in c.misconception_counts.iter().enumerate() {
            u -= p / total;
            if u < 0.0 {
                count = i + 1;
                break;
            }
        }
        let mut pool: Vec<usize> = (0..c.misconceptions.len()).collect();
        let mut misconceptions = Vec::new();
        for _ in 0..count.min(pool.len()) {
            misconceptions.push(pool.swap_remove(rng.random_range(0..pool.len())));
        }
        misconceptions.sort_unstable();
        Student { level, level_name: c.levels[level].name.clone(), skills, misconceptions, learning_seed: rng.random() }
    }

    fn judge(&self, hidden: &Student, transcript: &[Message]) -> Judgement {
        let Some(last) = transcript.last() else {
            return Judgement { reward: 0.0, done: false, success: false };
        };
        let (after, effect) = self.replay(hidden, transcript);
        let post = self.score(hidden, &after);
        let success = post >= self.rules.success_threshold;
        if last.role != Role::Agent {
            return Judgement { reward: 0.0, done: false, success };
        }
        let (before, _) = self.replay(hidden, &transcript[..transcript.len() - 1]);
        let gain = post - self.score(hidden, &before);
        let ended = effect == Some(Effect::Ended);
        let cost = if ended { 0.0 } else { self.rules.turn_cost };
        let done = ended || agent_turns(transcript) >= self.rules.max_turns;
        Judgement { reward: gain - cost, done, success }
    }

    fn candidates(&self, _transcript: &[Message]) -> Vec<String> {
        self.candidates.clone()
    }

    fn metrics(&self, hidden: &Student, transcript: &[Message]) -> Vec<(String, f64)> {
        let start = self.initial_state(hidden);
        let (end, _) = self.replay(hidden, transcript);
        let count = |s: &StudentState| s.mastered.iter().filter(|&&m| m).count() as f64;
        vec![
            ("pre_score".into(), self.score(hidden, &start)),
            ("post_score".into(), self.score(hidden, &end)),
            ("skills_mastered_before".into(), count(&start)),
            ("skills_mastered".into(), count(&end)),
            ("misconceptions_left".into(), end.misconceptions.iter().filter(|&&m| m).count() as f64),
        ]
    }

    fn persona_card(&self, hidden: &Student) -> String {
        let c = &self.curriculum;
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (s, sk) in hidden.skills.iter().enumerate() {
            if sk.mastered { known.push(c.skills[s].name.as_str()) } else { unknown.push(c.skills[s].name.as_str()) }
        }
        let list = |v: &[&str]| if v.is_empty() { "nothing yet".to_string() } else { v.join("; ") };
        let beliefs: Vec<String> =
            hidden.misconceptions.iter().map(|&m| format!("- You believe {}.", c.misconceptions[m].belief)).collect();
        let levels: Vec<&str> = c.levels.iter().map(|l| l.name.as_str()).collect();
        format!(
            "You are a pupil in a one-to-one tutoring session on {name}. Stay in character and answer briefly.\n\
             Your level is {level} (levels from lowest: {levels}).\n\
             You have mastered: {known}.\n\
             You have not mastered: {unknown}.\n\
             Misconceptions you hold until the tutor explains the skill or works an example of it:\n{beliefs}\n\
             When the tutor asks a question, answer with just a fraction like 3/4 or \"I think it's 5/8.\": \
             get it right if you have mastered the skill (you slip now and then), otherwise guess or say \
             \"{dont_know}\"; a misconception makes you give its wrong answer.\n\
             If an explanation is at a level above yours, say \"{lost}\". Otherwise say \"{followed}\", or \
             \"{aha}\" when it clears up one of your misconceptions. After a worked example say \"{example}\".",
            name = c.name,
            level = hidden.level_name,
            levels = levels.join(", "),
            known = list(&known),
            unknown = list(&unknown),
            beliefs = if beliefs.is_empty() { "- none".to_string() } else { beliefs.join("\n") },
            dont_know = DONT_KNOW_REPLY,
            lost = LOST_REPLY,
            followed = FOLLOWED_REPLY,
            aha = AHA_REPLY,
            example = EXAMPLE_REPLY,
        )
    }

    fn agent_brief(&self) -> String {
        let c = &self.curriculum;
        let skills: Vec<String> = c
            .skills
            .iter()
            .map(|s| {
                if s.prerequisites.is_empty() {
                    format!("- {}", s.name)
                } else {
                    let pre: Vec<&str> = s
                        .prerequisites
                        .iter()
                        .filter_map(|p| c.skills.iter().find(|k| &k.id == p).map(|k| k.name.as_str()))
                        .collect();
                    format!("- {} (needs {})", s.name, pre.join(", "))
                }
            })
            .collect();
        let levels: Vec<&str> = c.levels.iter().map(|l| l.name.as_str()).collect();
        format!(
            "You are a tutor with a pupil for at most {turns} turns. Find out what the pupil knows about {name} \
             and teach what they are ready to learn: a skill can only be learned once its prerequisites are, \
             and an explanation above the pupil's level does not help. Every turn costs {cost}; the goal is a \
             post-test score of at least {threshold}.\nSkills:\n{skills}\n\
             Say one of: \"Question on SKILL: QUESTION\", \"Let me explain SKILL at the LEVEL level.\" \
             (levels: {levels}), \"Here is a worked example of SKILL: ...\", or \"{end}\"",
            turns = self.rules.max_turns,
            name = c.name,
            cost = self.rules.turn_cost,
            threshold = self.rules.success_threshold,
            skills = skills.join("\n"),
            levels = levels.join(", "),
            end = END_TEXT,
        )
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        // post − pre − cost·(utterances other than ending): mastery is never lost, a score is ≤ 1.
        Some((-self.rules.turn_cost * self.rules.max_turns as f64, 1.0))
    }

    fn rules(&self) -> String {
        let (c, r) = (&self.curriculum, &self.rules);
        let levels: Vec<&str> = c.levels.iter().map(|l| l.name.as_str()).collect();
        format!(
            "tutoring\n\n{}\n\nskills: {}; levels: {}; misconceptions: {}\ncandidate utterances: {}\nmax agent turns: \
             {}; reward: the rise of the expected post-test score, -{} per utterance except ending; success: post-test \
             >= {}",
            c.description,
            c.skills.len(),
            levels.join(", "),
            c.misconceptions.len(),
            Scenario::candidates(self, &[]).len(),
            r.max_turns,
            r.turn_cost,
            r.success_threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Tutoring {
        Tutoring::from_spec(&Spec::parse("tutoring").unwrap()).unwrap()
    }

    fn student(s: &Tutoring, seed: u64) -> Student {
        s.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden))
    }

    /// A student with a chosen level and mastery, no misconception, and sure learning.
    fn fixed(s: &Tutoring, level: usize, mastered: &[bool], learn: f64) -> Student {
        let mut st = student(s, 1);
        st.level = level;
        st.misconceptions.clear();
        for (k, m) in st.skills.iter_mut().zip(mastered) {
            k.mastered = *m;
            k.bkt.learn = learn;
        }
        st
    }

    #[test]
    fn curriculum_is_well_formed_and_candidates_are_few() {
        let s = scenario();
        assert_eq!(s.n_skills(), 8);
        assert_eq!(s.prerequisites[5], vec![1, 4]);
        let c = s.candidates(&[]);
        assert!(c.len() < 300 && c.len() == 16 + 8 * 4 + 1, "{}", c.len());
        for text in &c {
            assert_ne!(s.interpret(text), TutorAction::Other, "{text}");
        }
        assert_eq!(s.interpret("  let me EXPLAIN dividing fractions at the basic level "), TutorAction::Explain(7, 0));
        assert_eq!(s.interpret("Teach me"), TutorAction::Other);
        assert!(Tutoring::from_spec(&Spec::parse("tutoring(cost=-1)").unwrap()).is_err());
        assert!(Tutoring::from_spec(&Spec::parse("tutoring(turns=3)").unwrap()).is_err());
    }

    #[test]
    fn fractions_parse_and_replies_classify() {
        assert_eq!(parse_fraction("I think it's 5/8."), Some((5, 8)));
        assert_eq!(parse_fraction("Is it 12/7?"), Some((12, 7)));
        assert_eq!(parse_fraction("between 1/2 and 3/4"), Some((3, 4)));
        assert_eq!(parse_fraction("I don't know."), None);
        assert_eq!(parse_fraction("1/"), None);
        let s = scenario();
        assert_eq!(s.classify(5, 0, "I think it's 7/12."), Outcome::Correct);
        assert_eq!(s.classify(5, 0, "2/7"), Outcome::Bug);
        assert_eq!(s.classify(5, 0, "5/12"), Outcome::Wrong);
        assert_eq!(s.classify(5, 0, DONT_KNOW_REPLY), Outcome::Wrong);
    }

    #[test]
    fn learning_needs_prerequisites_and_the_right_level() {
        let s = scenario();
        let explain = |skill, level| Message::agent(s.text(TutorAction::Explain(skill, level)));
        // Knows nothing: explaining add_unlike (needs equivalent and add_like) teaches nothing.
        let st = fixed(&s, 1, &[false; 8], 1.0);
        let (state, effect) = s.replay(&st, &[explain(5, 1)]);
        assert_eq!(effect, Some(Effect::Followed));
        assert!(!state.mastered[5]);
        // With the prerequisites, the same explanation teaches (learn = 1).
        let ready = [true, true, false, false, true, false, false, false];
        let st = fixed(&s, 1, &ready, 1.0);
        assert!(s.replay(&st, &[explain(5, 1)]).0.mastered[5]);
        // Above the level: nothing, and the student says so.
        let (state, effect) = s.replay(&st, &[explain(5, 2)]);
        assert_eq!(effect, Some(Effect::Lost));
        assert!(!state.mastered[5]);
        // Learn = 0: never.
        let st = fixed(&s, 1, &ready, 0.0);
        assert!(!s.replay(&st, &[explain(5, 1)]).0.mastered[5]);
    }

    #[test]
    fn misconceptions_spoil_answers_until_explained() {
        let s = scenario();
        let mut st = fixed(&s, 2, &[true; 8], 1.0);
        st.misconceptions = vec![2]; // add-across on add_unlike
        let ask = Message::agent(s.text(TutorAction::Diagnose(5, 0)));
        let mut rng = turn_rng(3, 1, Stream::Persona);
        for _ in 0..20 {
            let reply = s.student_reply(&st, std::slice::from_ref(&ask), &mut rng);
            assert_eq!(s.classify(5, 0, &reply), Outcome::Bug, "{reply}");
        }
        let start = s.initial_state(&st);
        assert_eq!(s.item_score(&st, &start, 5), 0.0);
        let t = vec![Message::agent(s.text(TutorAction::Example(5)))];
        let (state, effect) = s.replay(&st, &t);
        assert_eq!(effect, Some(Effect::Cleared));
        assert!(!state.misconceptions[2]);
        let j = s.judge(&st, &t);
        let expected = (1.0 - st.skills[5].bkt.slip) / 8.0 - s.rules.turn_cost;
        assert!((j.reward - expected).abs() < 1e-12, "{j:?}");
    }

    #[test]
    fn judging_is_pure_and_returns_add_up() {
        let s = scenario();
        let cands = s.candidates(&[]);
        for seed in 0..50u64 {
            let st = student(&s, seed);
            let mut t = Vec::new();
            let mut total = 0.0;
            let mut rng = turn_rng(seed, 9, Stream::Agent);
            loop {
                t.push(Message::agent(cands[rng.random_range(0..cands.len() - 1)].clone()));
                let j = s.judge(&st, &t);
                assert_eq!(j, s.judge(&st, &t), "judge must be pure");
                total += j.reward;
                if j.done {
                    break;
                }
                let reply = s.student_reply(&st, &t, &mut rng);
                t.push(Message::persona(reply));
                total += s.judge(&st, &t).reward;
            }
            assert_eq!(agent_turns(&t), s.rules.max_turns);
            let m: HashMap<String, f64> = s.metrics(&st, &t).into_iter().collect();
            let expected = m["post_score"] - m["pre_score"] - s.rules.turn_cost * s.rules.max_turns as f64;
            assert!((total - expected).abs() < 1e-9, "{total} vs {expected}");
            assert!(total >= -s.rules.turn_cost * s.rules.max_turns as f64 - 1e-12 && total <= 1.0);
            assert!(m["skills_mastered"] >= m["skills_mastered_before"]);
        }
    }

    #[test]
    fn ending_the_session_is_free_and_final() {
        let s = scenario();
        let st = student(&s, 4);
        let j = s.judge(&st, &[Message::agent(END_TEXT)]);
        assert!(j.done);
        assert_eq!(j.reward, 0.0);
        assert_eq!(j.success, s.score(&st, &s.initial_state(&st)) >= s.rules.success_threshold);
    }

    #[test]
    fn students_vary_and_respect_prerequisites() {
        let s = scenario();
        let mut levels = [0usize; 3];
        let mut masks = std::collections::HashSet::new();
        for seed in 0..500 {
            let st = student(&s, seed);
            levels[st.level] += 1;
            let m: Vec<bool> = st.skills.iter().map(|k| k.mastered).collect();
            for sk in 0..8 {
                assert!(!m[sk] || s.prerequisites_met(sk, &m));
            }
            assert!((1..=2).contains(&st.misconceptions.len()));
            masks.insert(m);
        }
        assert!(levels.iter().all(|&n| n > 50), "{levels:?}");
        assert!(masks.len() > 10);
        assert!(s.persona_card(&student(&s, 0)).contains("Your level is"));
    }
}
