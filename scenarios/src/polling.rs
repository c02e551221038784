//! Opinion polling: adaptive elicitation over a latent-class model of respondents.
//!
//! The respondent belongs to one hidden class; given the class, its answers to the survey's
//! questions are independent draws over the options (agree / neutral / disagree) with the
//! class's probabilities (`data/opinion_polling.toml`, a model dialogym ships). Some
//! questions are *targets*: the respondent will not be asked them. The agent asks up to
//! `budget` of the others, one per turn, then predicts the target answers in one final
//! utterance:
//!
//! ```text
//! Predictions: tax_rich=0.70/0.20/0.10, religion=disagree, ...
//! ```
//!
//! one `id=` per target, with the probabilities of the options in order (normalized), or
//! one option for a sure prediction.
//!
//! Reward: 0 per question; the prediction earns the mean over targets of
//! ln max(p(true answer), floor) and ends the episode; an episode that runs out of turns
//! without predicting earns ln floor on its last utterance. Return ∈ [ln floor, 0]
//! (floor = 0.01: [−4.61, 0]). Success: a prediction whose argmax accuracy on the targets
//! reaches `success_accuracy`.
//!
//! Judging is pure: every answer of the respondent, targets included, is drawn into the
//! hidden state when the episode starts, so the judge reads the truth from there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use dialogym_engine::seed::Rng;
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Judgement, Message, Role, Scenario, Spec};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::entity::normalize;

/// The shipped model: 6 classes, 24 questions (6 of them targets).
pub const POLL_TOML: &str = include_str!("../data/opinion_polling.toml");

/// One survey question.
#[derive(Clone, Debug, PartialEq)]
pub struct PollQuestion {
    /// snake_case id (used in predictions).
    pub id: String,
    /// The question as the agent asks it.
    pub text: String,
    /// Held out: never asked, predicted at the end.
    pub target: bool,
}

/// One respondent class.
#[derive(Clone, Debug, PartialEq)]
pub struct RespondentClass {
    /// snake_case id.
    pub id: String,
    /// One line, for persona cards.
    pub description: String,
    /// Prior probability (normalized over classes).
    pub prior: f64,
    /// `probs[q][k]`: P(option k | class, question q).
    pub probs: Vec<Vec<f64>>,
}

/// The latent-class model: public knowledge, shared by the scenario and the agents.
#[derive(Clone, Debug, PartialEq)]
pub struct PollModel {
    /// Answer options, in order ("Agree", "Neutral", "Disagree").
    pub options: Vec<String>,
    /// The questions, targets included.
    pub questions: Vec<PollQuestion>,
    /// The classes.
    pub classes: Vec<RespondentClass>,
}

fn entropy(ps: impl IntoIterator<Item = f64>) -> f64 {
    ps.into_iter().filter(|&p| p > 0.0).map(|p| -p * p.log2()).sum()
}

impl PollModel {
    /// P(class | answers) from the prior; `answers` are (question, option) pairs.
    pub fn posterior(&self, answers: &[(usize, usize)]) -> Vec<f64> {
        let mut w: Vec<f64> =
            self.classes.iter().map(|c| answers.iter().fold(c.prior, |acc, &(q, k)| acc * c.probs[q][k])).collect();
        let total: f64 = w.iter().sum();
        if total > 0.0 {
            w.iter_mut().for_each(|x| *x /= total);
        }
        w
    }

    /// P(option | answers so far) for question `q`, given the class posterior.
    pub fn predictive(&self, posterior: &[f64], q: usize) -> Vec<f64> {
        let mut p = vec![0.0; self.options.len()];
        for (c, w) in self.classes.iter().zip(posterior) {
            for (k, pk) in p.iter_mut().enumerate() {
                *pk += w * c.probs[q][k];
            }
        }
        p
    }

    /// Expected information gain about the class of asking `q`: I(A_q; C) =
    /// H(A_q) − Σ_c P(c)·H(A_q | c), in bits.
    pub fn class_eig(&self, posterior: &[f64], q: usize) -> f64 {
        let h_cond: f64 =
            self.classes.iter().zip(posterior).map(|(c, w)| w * entropy(c.probs[q].iter().copied())).sum();
        entropy(self.predictive(posterior, q)) - h_cond
    }

    /// Expected reduction of the targets' predictive entropy from asking `q`:
    /// Σ_t [H(T_t) − Σ_a P(a)·H(T_t | a)], in bits.
    pub fn target_eig(&self, posterior: &[f64], q: usize, targets: &[usize]) -> f64 {
        let before: f64 = targets.iter().map(|&t| entropy(self.predictive(posterior, t))).sum();
        let p_answer = self.predictive(posterior, q);
        let mut after = 0.0;
        for (k, pa) in p_answer.iter().enumerate() {
            if *pa <= 0.0 {
                continue;
            }
            let mut post: Vec<f64> = self.classes.iter().zip(posterior).map(|(c, w)| w * c.probs[q][k]).collect();
            let total: f64 = post.iter().sum();
            post.iter_mut().for_each(|x| *x /= total);
            after += pa * targets.iter().map(|&t| entropy(self.predictive(&post, t))).sum::<f64>();
        }
        before - after
    }

    /// Parses and checks a model file.
    pub fn parse(text: &str) -> Result<(PollModel, PollHeader)> {
        let doc: PollDoc = toml::from_str(text).map_err(|e| anyhow::anyhow!("opinion polling model: {e}"))?;
        if doc.poll.options.len() < 2 {
            bail!("opinion polling model: at least two options are needed");
        }
        let mut index = HashMap::new();
        let mut texts = HashMap::new();
        for (q, d) in doc.question.iter().enumerate() {
            if index.insert(d.id.clone(), q).is_some() {
                bail!("opinion polling model: question id `{}` is used twice", d.id);
            }
            if texts.insert(normalize(&d.text), q).is_some() {
                bail!("opinion polling model: question `{}` is asked twice", d.text);
            }
        }
        let questions: Vec<PollQuestion> =
            doc.question.into_iter().map(|d| PollQuestion { id: d.id, text: d.text, target: d.target }).collect();
        if !questions.iter().any(|q| q.target) || questions.iter().all(|q| q.target) {
            bail!("opinion polling model: needs at least one target and one askable question");
        }
        let k = doc.poll.options.len();
        let total_weight: f64 = doc.class.iter().map(|c| c.weight).sum();
        if doc.class.is_empty() || !(total_weight > 0.0 && total_weight.is_finite()) {
            bail!("opinion polling model: needs classes with positive weights");
        }
        let mut classes = Vec::new();
        for c in doc.class {
            if !(c.weight > 0.0 && c.weight.is_finite()) {
                bail!("opinion polling model: class `{}` needs a positive weight", c.id);
            }
            let mut probs = vec![Vec::new(); questions.len()];
            for (qid, p) in &c.answers {
                let &q = index.get(qid).with_context(|| format!("class `{}`: unknown question `{qid}`", c.id))?;
                let sum: f64 = p.iter().sum();
                if p.len() != k || p.iter().any(|x| !(*x >= 0.0 && x.is_finite())) || (sum - 1.0).abs() > 0.011 {
                    bail!("class `{}`, question `{qid}`: {k} probabilities that sum to 1 are needed", c.id);
                }
                probs[q] = p.iter().map(|x| x / sum).collect();
            }
            if let Some(q) = probs.iter().position(Vec::is_empty) {
                bail!("class `{}` gives no probabilities for question `{}`", c.id, questions[q].id);
            }
            classes.push(RespondentClass {
                id: c.id,
                description: c.description,
                prior: c.weight / total_weight,
                probs,
            });
        }
        let header = PollHeader {
            name: doc.poll.name,
            description: doc.poll.description,
            budget: doc.poll.budget,
            floor: doc.poll.floor,
            success_accuracy: doc.poll.success_accuracy,
        };
        if !(header.floor > 0.0 && header.floor < 1.0) {
            bail!("opinion polling model: floor must lie in (0, 1)");
        }
        Ok((PollModel { options: doc.poll.options, questions, classes }, header))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollDoc {
    poll: PollHeaderDoc,
    question: Vec<QuestionDoc>,
    class: Vec<ClassDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollHeaderDoc {
    name: String,
    description: String,
    options: Vec<String>,
    budget: usize,
    floor: f64,
    success_accuracy: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionDoc {
    id: String,
    text: String,
    #[serde(default)]
    target: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassDoc {
    id: String,
    description: String,
    weight: f64,
    answers: BTreeMap<String, Vec<f64>>,
}

/// The rules a model file sets besides the model.
#[derive(Clone, Debug, PartialEq)]
pub struct PollHeader {
    /// Registry name.
    pub name: String,
    /// One paragraph.
    pub description: String,
    /// Questions before the prediction (default; the spec may override).
    pub budget: usize,
    /// Smallest probability credited to the true answer (bounds the reward below).
    pub floor: f64,
    /// Target accuracy that counts as success.
    pub success_accuracy: f64,
}

/// The respondent's secret: its class and every answer it would give, drawn up front so
/// that the persona and the judge agree and judging stays pure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Respondent {
    /// The class id.
    pub class: String,
    /// The answer to every question in model order (option words, lowercase).
    pub answers: Vec<String>,
    /// The class index.
    #[serde(skip)]
    pub class_index: usize,
    /// The option index of every answer.
    #[serde(skip)]
    pub codes: Vec<usize>,
}

/// What an agent utterance means to the poll.
#[derive(Clone, Debug, PartialEq)]
pub enum PollUtterance {
    /// An askable question.
    Ask(usize),
    /// The final predictions: per target (in target order), the normalized probabilities
    /// of the options, or None when the target was not (validly) predicted.
    Predict(Vec<Option<Vec<f64>>>),
    /// Anything else (target questions included: they are not asked).
    Other,
}

/// How a prediction did on the targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Mean over targets of ln max(p(truth), floor).
    pub log_likelihood: f64,
    /// Fraction of targets whose most probable option is the truth.
    pub accuracy: f64,
}

/// The opinion-polling scenario.
#[derive(Clone, Debug)]
pub struct Poll {
    /// The latent-class model.
    pub model: Arc<PollModel>,
    /// Rules from the model file (budget as built).
    pub header: PollHeader,
    /// Target questions, in model order.
    pub targets: Vec<usize>,
    /// Askable questions, in model order.
    pub askable: Vec<usize>,
    spec: String,
    /// Normalized askable question text → question.
    lexicon: HashMap<String, usize>,
    /// Normalized option word → option.
    options: HashMap<String, usize>,
}

impl Poll {
    /// Builds `opinion-polling(budget=K)`.
    pub fn from_spec(spec: &Spec) -> Result<Poll> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Params {
            budget: Option<usize>,
        }
        let p: Params = spec.params()?;
        let (model, mut header) = PollModel::parse(POLL_TOML)?;
        let askable: Vec<usize> = (0..model.questions.len()).filter(|&q| !model.questions[q].target).collect();
        let targets: Vec<usize> = (0..model.questions.len()).filter(|&q| model.questions[q].target).collect();
        header.budget = p.budget.unwrap_or(header.budget);
        if header.budget == 0 || header.budget > askable.len() {
            bail!("`{spec}`: budget must lie in 1..={}", askable.len());
        }
        let lexicon = askable.iter().map(|&q| (normalize(&model.questions[q].text), q)).collect();
        let options = model.options.iter().enumerate().map(|(k, o)| (normalize(o), k)).collect();
        Ok(Poll { model: Arc::new(model), header, targets, askable, spec: spec.to_string(), lexicon, options })
    }

    /// The respondent's words for option `k` ("Agree.").
    pub fn option_reply(&self, k: usize) -> String {
        format!("{}.", self.model.options[k])
    }

    /// Reads a reply back into an option.
    pub fn parse_option(&self, text: &str) -> Option<usize> {
        self.options.get(&normalize(text)).copied()
    }

    /// What an agent utterance means.
    pub fn interpret(&self, text: &str) -> PollUtterance {
        let t = text.trim();
        let lower = t.to_lowercase();
        for head in ["predictions:", "prediction:"] {
            if let Some(body) = lower.strip_prefix(head) {
                return PollUtterance::Predict(self.parse_predictions(body));
            }
        }
        match self.lexicon.get(&normalize(t)) {
            Some(&q) => PollUtterance::Ask(q),
            None => PollUtterance::Other,
        }
    }

    fn parse_predictions(&self, body: &str) -> Vec<Option<Vec<f64>>> {
        let mut out: Vec<Option<Vec<f64>>> = vec![None; self.targets.len()];
        let k = self.model.options.len();
        for item in body.split([',', ';']) {
            let Some((id, value)) = item.split_once('=') else { continue };
            let Some(t) = self.targets.iter().position(|&q| self.model.questions[q].id == id.trim()) else {
                continue;
            };
            if out[t].is_some() {
                continue; // the first prediction of a target counts
            }
            let value = value.trim().trim_end_matches('.');
            out[t] = if let Some(&o) = self.options.get(&normalize(value)) {
                let mut p = vec![0.0; k];
                p[o] = 1.0;
                Some(p)
            } else {
                let nums: Vec<f64> = value.split('/').map_while(|x| x.trim().parse::<f64>().ok()).collect();
                let sum: f64 = nums.iter().sum();
                let valid = nums.len() == k && nums.iter().all(|x| *x >= 0.0 && x.is_finite()) && sum > 0.0;
                valid.then(|| nums.iter().map(|x| x / sum).collect())
            };
        }
        out
    }

    /// The answered questions of a transcript, in order: (question, option).
    pub fn history(&self, transcript: &[Message]) -> Vec<(usize, usize)> {
        let mut answers = Vec::new();
        let mut pending = None;
        for m in transcript {
            match m.role {
                Role::Agent => pending = Some(self.interpret(&m.content)),
                Role::Persona => {
                    if let Some(PollUtterance::Ask(q)) = pending.take()
                        && let Some(k) = self.parse_option(&m.content)
                    {
                        answers.push((q, k));
                    }
                }
            }
        }
        answers
    }

    /// The canonical prediction utterance for a class posterior: the predictive
    /// probabilities of every target, two decimals.
    pub fn prediction_text(&self, posterior: &[f64]) -> String {
        let items: Vec<String> = self
            .targets
            .iter()
            .map(|&t| {
                let p = self.model.predictive(posterior, t);
                let nums: Vec<String> = p.iter().map(|x| format!("{x:.2}")).collect();
                format!("{}={}", self.model.questions[t].id, nums.join("/"))
            })
            .collect();
        format!("Predictions: {}", items.join(", "))
    }

    /// Scores predictions (per target, as [`PollUtterance::Predict`] holds them) against the
    /// respondent's true answers.
    pub fn score(&self, hidden: &Respondent, predictions: &[Option<Vec<f64>>]) -> Score {
        let floor = self.header.floor;
        let (mut ll, mut correct) = (0.0, 0usize);
        for (i, &t) in self.targets.iter().enumerate() {
            let truth = hidden.codes[t];
            match predictions.get(i).and_then(Option::as_ref) {
                Some(p) => {
                    ll += p[truth].max(floor).ln();
                    let best = (0..p.len()).fold(0, |b, k| if p[k] > p[b] { k } else { b });
                    correct += (best == truth) as usize;
                }
                None => ll += floor.ln(),
            }
        }
        let n = self.targets.len() as f64;
        Score { log_likelihood: ll / n, accuracy: correct as f64 / n }
    }

    /// The documented return range: [ln floor, 0].
    pub fn return_range(&self) -> (f64, f64) {
        (self.header.floor.ln(), 0.0)
    }
}

/// One line for `scenarios list`.
pub const ABOUT: &str = "adaptive polling: ask ≤ 5 of 18 opinion questions, predict 6 held-out answers";

impl Scenario for Poll {
    type Hidden = Respondent;

    fn id(&self) -> String {
        self.spec.clone()
    }

    fn max_agent_turns(&self) -> usize {
        self.header.budget + 1
    }

    fn sample_hidden(&self, rng: &mut Rng) -> Respondent {
        let draw = |rng: &mut Rng, ps: &mut dyn Iterator<Item = f64>| {
            let u: f64 = rng.random();
            dialogym_engine::util::weighted_index(ps, u)
        };
        let m = &self.model;
        let class_index = draw(rng, &mut m.classes.iter().map(|c| c.prior));
        let class = &m.classes[class_index];
        let codes: Vec<usize> = class.probs.iter().map(|p| draw(rng, &mut p.iter().copied())).collect();
        Respondent {
            class: class.id.clone(),
            answers: codes.iter().map(|&k| m.options[k].to_lowercase()).collect(),
            class_index,
            codes,
        }
    }

    fn judge(&self, hidden: &Respondent, transcript: &[Message]) -> Judgement {
        let nothing = Judgement { reward: 0.0, done: false, success: false };
        let Some(last) = transcript.last() else { return nothing };
        if last.role != Role::Agent {
            return nothing;
        }
        if let PollUtterance::Predict(p) = self.interpret(&last.content) {
            let s = self.score(hidden, &p);
            return Judgement {
                reward: s.log_likelihood,
                done: true,
                success: s.accuracy >= self.header.success_accuracy,
            };
        }
        if agent_turns(transcript) >= self.max_agent_turns() {
            // Out of turns without a prediction: every target scores the floor.
            return Judgement { reward: self.header.floor.ln(), done: true, success: false };
        }
        nothing
    }

    fn candidates(&self, transcript: &[Message]) -> Vec<String> {
        let posterior = self.model.posterior(&self.history(transcript));
        let mut c: Vec<String> = self.askable.iter().map(|&q| self.model.questions[q].text.clone()).collect();
        c.push(self.prediction_text(&posterior));
        c
    }

    fn metrics(&self, hidden: &Respondent, transcript: &[Message]) -> Vec<(String, f64)> {
        let answers = self.history(transcript);
        let mut out = Vec::new();
        // The Bayes predictor after the first i answers measures what the questions were
        // worth, whatever the agent then said.
        for i in 0..=self.header.budget {
            let post = self.model.posterior(&answers[..i.min(answers.len())]);
            let preds: Vec<Option<Vec<f64>>> =
                self.targets.iter().map(|&t| Some(self.model.predictive(&post, t))).collect();
            let s = self.score(hidden, &preds);
            out.push((format!("acc_after_{i}"), s.accuracy));
            out.push((format!("ll_after_{i}"), s.log_likelihood));
        }
        let said = transcript.iter().rev().find(|m| m.role == Role::Agent).map(|m| self.interpret(&m.content));
        let s = match said {
            Some(PollUtterance::Predict(p)) => self.score(hidden, &p),
            _ => Score { log_likelihood: self.header.floor.ln(), accuracy: 0.0 },
        };
        out.push(("accuracy".into(), s.accuracy));
        out.push(("log_likelihood".into(), s.log_likelihood));
        out.push(("questions".into(), answers.len() as f64));
        out
    }

    fn persona_card(&self, hidden: &Respondent) -> String {
        let class = &self.model.classes[hidden.class_index];
        let answers: Vec<String> = self
            .askable
            .iter()
            .map(|&q| format!("{} {}", self.model.questions[q].text, self.option_reply(hidden.codes[q])))
            .collect();
        format!(
            "You are answering an opinion survey. You are a {} Answer each question with exactly one of: {}. \
             Your answers: {}",
            class.description.to_lowercase(),
            self.model.options.iter().map(|o| format!("{o}.")).collect::<Vec<_>>().join(" "),
            answers.join(" ")
        )
    }

    fn agent_brief(&self) -> String {
        let ask: Vec<&str> = self.askable.iter().map(|&q| self.model.questions[q].text.as_str()).collect();
        let targets: Vec<&str> = self.targets.iter().map(|&t| self.model.questions[t].id.as_str()).collect();
        format!(
            "You are running a short opinion poll. Ask at most {} of these questions, one per turn, exactly as \
             written: {} Then, in your final turn, predict the respondent's answers to the questions {} as \
             `Predictions: id=P({})/..., ...` with one probability per option.",
            self.header.budget,
            ask.join(" "),
            targets.join(", "),
            self.model.options.join(")/P(")
        )
    }

    fn rules(&self) -> String {
        let h = &self.header;
        let (lo, hi) = self.return_range();
        format!(
            "{}\n\n{}\n\nclasses: {}; questions: {} askable, {} targets ({})\nbudget: {} questions, then one \
             prediction (max agent turns {}); reward: mean target log-likelihood, floor {}, in [{lo:.2}, {hi}]",
            h.name,
            h.description,
            self.model.classes.len(),
            self.askable.len(),
            self.targets.len(),
            self.targets.iter().map(|&t| self.model.questions[t].id.as_str()).collect::<Vec<_>>().join(", "),
            h.budget,
            self.max_agent_turns(),
            h.floor
        )
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        Some(Poll::return_range(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialogym_engine::seed::{Stream, turn_rng};

    fn poll() -> Poll {
        Poll::from_spec(&Spec::parse("opinion-polling").unwrap()).unwrap()
    }

    #[test]
    fn the_shipped_model_is_rich_enough() {
        let p = poll();
        assert!(p.model.questions.len() >= 20);
        assert!((5..=8).contains(&p.model.classes.len()));
        assert_eq!(p.targets.len(), 6);
        assert!((p.model.classes.iter().map(|c| c.prior).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(p.max_agent_turns(), 6);
        assert!(Poll::from_spec(&Spec::parse("opinion-polling(budget=0)").unwrap()).is_err());
        assert!(Poll::from_spec(&Spec::parse("opinion-polling(budget=19)").unwrap()).is_err());
        assert!(Poll::from_spec(&Spec::parse("opinion-polling(budgit=3)").unwrap()).is_err());
    }

    #[test]
    fn predictions_parse_and_score() {
        let p = poll();
        let mut r = p.sample_hidden(&mut turn_rng(3, 0, Stream::Hidden));
        r.codes = vec![0; p.model.questions.len()]; // everybody agrees
        let ids: Vec<&str> = p.targets.iter().map(|&t| p.model.questions[t].id.as_str()).collect();
        let sure = format!("Predictions: {}", ids.iter().map(|i| format!("{i}=agree")).collect::<Vec<_>>().join(", "));
        let PollUtterance::Predict(pr) = p.interpret(&sure) else { panic!("a prediction") };
        assert_eq!(p.score(&r, &pr), Score { log_likelihood: 0.0, accuracy: 1.0 });
        // Probabilities are normalized; a missing target scores the floor; junk is ignored.
        let text = format!("predictions: {}=2/1/1; nonsense; {}=x/y/z", ids[0], ids[1]);
        let PollUtterance::Predict(pr) = p.interpret(&text) else { panic!("a prediction") };
        let s = p.score(&r, &pr);
        let expect = (0.5f64.ln() + 5.0 * 0.01f64.ln()) / 6.0;
        assert!((s.log_likelihood - expect).abs() < 1e-12, "{s:?}");
        assert!((s.accuracy - 1.0 / 6.0).abs() < 1e-12);
        // Target questions cannot be asked; askable ones can, in any case.
        assert_eq!(p.interpret(&p.model.questions[p.targets[0]].text), PollUtterance::Other);
        let q = p.askable[0];
        assert_eq!(p.interpret(&p.model.questions[q].text.to_uppercase()), PollUtterance::Ask(q));
    }

    #[test]
    fn judge_rewards_only_the_prediction_and_ends_by_the_budget() {
        let p = poll();
        let r = p.sample_hidden(&mut turn_rng(4, 0, Stream::Hidden));
        let q = &p.model.questions[p.askable[0]].text;
        let mut t = Vec::new();
        for turn in 0..p.max_agent_turns() {
            t.push(Message::agent(q.clone()));
            let j = p.judge(&r, &t);
            let last = turn + 1 == p.max_agent_turns();
            assert_eq!(j.done, last);
            assert_eq!(j.reward, if last { 0.01f64.ln() } else { 0.0 });
            t.push(Message::persona("Agree."));
        }
        let prior = p.prediction_text(&p.model.posterior(&[]));
        let j = p.judge(&r, &[Message::agent(prior)]);
        assert!(j.done && j.reward < 0.0 && j.reward > 0.01f64.ln(), "{j:?}");
    }

    #[test]
    fn answers_move_the_posterior_and_eig_prefers_informative_questions() {
        let p = poll();
        let m = &p.model;
        let prior = m.posterior(&[]);
        let eigs: Vec<f64> = p.askable.iter().map(|&q| m.target_eig(&prior, q, &p.targets)).collect();
        assert!(eigs.iter().all(|&e| e >= -1e-12), "{eigs:?}");
        let best = p.askable[(0..eigs.len()).fold(0, |b, i| if eigs[i] > eigs[b] { i } else { b })];
        assert!(m.class_eig(&prior, best) > 0.3, "{}", m.class_eig(&prior, best));
        // Answering like a class makes that class the most likely.
        let c = 0;
        let answers: Vec<(usize, usize)> = p
            .askable
            .iter()
            .take(5)
            .map(|&q| {
                let pr = &m.classes[c].probs[q];
                (q, (0..pr.len()).fold(0, |b, k| if pr[k] > pr[b] { k } else { b }))
            })
            .collect();
        let post = m.posterior(&answers);
        assert!(post[c] > 0.5 && post.iter().all(|&x| x <= post[c]), "{post:?}");
    }
}
