//! Scripted speakers for [`Preference`]: the traveller persona and the travel agents
//! (Bayesian elicitation, the popular list, random), with the posterior the Bayesian
//! agent keeps.
//!
//! The posterior ([`TravelBelief`]) is factored: one distribution per taste weight over
//! its grid, one over the price sensitivity, one over the price cap and one probability
//! per yes/no constraint. Rating and constraint answers update their factor exactly (the
//! scenario's own answer model); a pairwise choice couples every weight, so it is folded
//! in by assumed-density filtering: each factor is multiplied by the probit approximation
//! E[σ(z)] ≈ σ(μ/√(1 + πs²/8)) of the choice probability given that factor's value, with
//! the other factors at their current means and variances.
//!
//! The agent values an activity by its expected utility if feasible, and by a penalty (the
//! expected utility of the worst feasible activity) if not; it recommends the top k. It
//! asks the question of highest expected value of information (the expected rise of the
//! top-k value after hearing the answer) while that value, in normalized-utility units,
//! exceeds the question's cost.

use anyhow::{Result, bail};
use dialogym_engine::seed::{Stream, turn_rng};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{
    Agent, AgentRow, AgentTurn, Context, Message, NonNegative, Persona, PersonaRow, PersonaTurn, Probability, Role,
    Scenario, SpeakerRow, Spec,
};
use dialogym_scenarios::preference::{Move, Preference, Question, Traveller, normal_cdf, rating_probabilities};
use rand::Rng as _;

fn travel_agent(spec: &Spec, scenario: &Preference, _: &Context) -> Result<Box<dyn Agent<Preference>>> {
    match TravelAgent::from_spec(spec, scenario)? {
        Some(a) => Ok(Box::new(a)),
        None => bail!("`{spec}` is not a travel agent"),
    }
}

fn traveller(spec: &Spec, scenario: &Preference, _: &Context) -> Result<Box<dyn Persona<Preference>>> {
    let p: AnswerModel = spec.params()?;
    let (noise, temperature) = p.resolve(scenario);
    Ok(Box::new(ScriptedTraveller { noise, temperature }))
}

/// The traveller's answer model as spec parameters (`noise`, `temperature`; the scenario's
/// defaults when absent): the traveller's own, and what the Bayesian agent assumes.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct AnswerModel {
    noise: Option<NonNegative>,
    temperature: Option<NonNegative>,
}

impl AnswerModel {
    fn resolve(&self, scenario: &Preference) -> (f64, f64) {
        (
            self.noise.map_or(scenario.rules.rating_noise, |n| n.0),
            self.temperature.map_or(scenario.rules.choice_temperature, |t| t.0),
        )
    }
}

/// Agents the preference-elicitation scenario offers.
pub const PREFERENCE_AGENTS: &[AgentRow<Preference>] = &[
    SpeakerRow {
        name: "bayesian",
        aliases: &[],
        usage: "bayesian(one_by_one=false,eps=0)",
        help: "factored posterior over the traveller; asks the question of highest value of information while it \
               beats the question's cost, then recommends the top k (one_by_one: one activity per utterance; \
               eps: random questions); noise and temperature: the answer model it assumes",
        build: travel_agent,
    },
    SpeakerRow {
        name: "popular",
        aliases: &[],
        usage: "popular(one_by_one=false)",
        help: "recommends the k activities the average traveller likes best, without asking",
        build: travel_agent,
    },
    SpeakerRow {
        name: "random",
        aliases: &[],
        usage: "random(ask=0.7)",
        help: "random questions; recommends a random activity with probability 1 − ask",
        build: travel_agent,
    },
];

/// Personas the preference-elicitation scenario offers.
pub const PREFERENCE_PERSONAS: &[PersonaRow<Preference>] = &[SpeakerRow {
    name: "traveller",
    aliases: &["oracle"],
    usage: "traveller(noise=0.5,temperature=0.25)",
    help: "answers ratings with Gaussian noise, pairwise choices by a logit on utility, constraints truthfully \
           (alias: oracle)",
    build: traveller,
}];

/// The scripted traveller.
pub struct ScriptedTraveller {
    noise: f64,
    temperature: f64,
}

impl Persona<Preference> for ScriptedTraveller {
    fn id(&self) -> String {
        format!("traveller(noise={},temperature={})", self.noise, self.temperature)
    }

    fn reply(&mut self, scenario: &Preference, turns: &mut [PersonaTurn<'_, Traveller>]) -> Result<Vec<String>> {
        Ok(turns
            .iter_mut()
            .map(|t| scenario.traveller_reply(t.hidden, t.transcript, self.noise, self.temperature, &mut t.rng))
            .collect())
    }
}

/// The Bayesian agent's factored posterior over the traveller.
#[derive(Clone, Debug, PartialEq)]
pub struct TravelBelief {
    /// Per taste attribute, P(weight = grid value).
    pub tastes: Vec<Vec<f64>>,
    /// P(price sensitivity = grid value).
    pub budget: Vec<f64>,
    /// P(price cap = level), then P(no cap).
    pub max_price: Vec<f64>,
    /// P(travelling with children).
    pub kids: f64,
    /// P(no nightlife).
    pub no_nightlife: f64,
    /// P(nothing strenuous).
    pub low_effort: f64,
}

/// A factor of the posterior (for leaving one out of a sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Factor {
    None,
    Taste(usize),
    Budget,
}

fn normalized(mut p: Vec<f64>, fallback: &[f64]) -> Vec<f64> {
    let total: f64 = p.iter().sum();
    if total > 1e-300 {
        p.iter_mut().for_each(|x| *x /= total);
        p
    } else {
        fallback.to_vec()
    }
}

fn moments(grid: &[f64], p: &[f64]) -> (f64, f64) {
    let mean: f64 = grid.iter().zip(p).map(|(g, w)| g * w).sum();
    let var: f64 = grid.iter().zip(p).map(|(g, w)| w * (g - mean).powi(2)).sum();
    (mean, var)
}

fn probit(mean: f64, var: f64) -> f64 {
    1.0 / (1.0 + (-mean / (1.0 + std::f64::consts::PI * var / 8.0).sqrt()).exp())
}

impl TravelBelief {
    /// The scenario's prior.
    pub fn prior(s: &Preference) -> TravelBelief {
        let c = &s.model.constraints;
        TravelBelief {
            tastes: s.model.attributes.iter().map(|a| normalized(a.prior.clone(), &a.prior)).collect(),
            budget: normalized(s.model.budget.prior.clone(), &s.model.budget.prior),
            max_price: normalized(c.max_price.prior.clone(), &c.max_price.prior),
            kids: c.with_kids,
            no_nightlife: c.no_nightlife,
            low_effort: c.low_effort,
        }
    }

    /// The posterior after a transcript.
    pub fn from_transcript(s: &Preference, transcript: &[Message], noise: f64, temperature: f64) -> TravelBelief {
        let mut b = TravelBelief::prior(s);
        for (i, m) in transcript.iter().enumerate() {
            if m.role != Role::Agent {
                continue;
            }
            let Move::Ask(q) = s.interpret(&m.content) else { continue };
            let Some(reply) = transcript.get(i + 1).filter(|r| r.role == Role::Persona) else { continue };
            let question = s.questions[q];
            if let Some(a) = s.answer_index(question, &reply.content) {
                b.observe(s, question, a, noise, temperature);
            }
        }
        b
    }

    /// Mean and variance of the choice logit u_i − u_j (before dividing by temperature),
    /// leaving out the factor `skip`.
    fn choice_moments(&self, s: &Preference, i: usize, j: usize, skip: Factor) -> (f64, f64) {
        let (ai, aj) = (&s.activities[i], &s.activities[j]);
        let mut mean = 0.0;
        let mut var = 0.0;
        for (a, p) in self.tastes.iter().enumerate() {
            if skip == Factor::Taste(a) {
                continue;
            }
            let d = ai.attrs[a] - aj.attrs[a];
            let (m, v) = moments(&s.model.weight_grid, p);
            mean += m * d;
            var += v * d * d;
        }
        if skip != Factor::Budget {
            let dp = -(ai.price - aj.price) / s.rules.price_scale;
            let (m, v) = moments(&s.model.budget.grid, &self.budget);
            mean += m * dp;
            var += v * dp * dp;
        }
        (mean, var)
    }

    /// Probabilities of each answer to `q`.
    pub fn answer_distribution(&self, s: &Preference, q: Question, noise: f64, temperature: f64) -> Vec<f64> {
        let mix = |grid: &[f64], p: &[f64], mean_of: &dyn Fn(f64) -> f64| {
            let mut out = vec![0.0; 5];
            for (g, w) in grid.iter().zip(p) {
                for (o, r) in out.iter_mut().zip(rating_probabilities(mean_of(*g), noise)) {
                    *o += w * r;
                }
            }
            out
        };
        match q {
            Question::Rating(a) => mix(&s.model.weight_grid, &self.tastes[a], &|w| 3.0 + 2.0 * w),
            Question::Budget => mix(&s.model.budget.grid, &self.budget, &|b| 1.0 + 4.0 * b),
            Question::MaxPrice => self.max_price.clone(),
            Question::Kids => vec![self.kids, 1.0 - self.kids],
            Question::NoNightlife => vec![self.no_nightlife, 1.0 - self.no_nightlife],
            Question::LowEffort => vec![self.low_effort, 1.0 - self.low_effort],
            Question::Pair(i, j) => {
                let (m, v) = self.choice_moments(s, i, j, Factor::None);
                let p = if temperature > 0.0 {
                    probit(m / temperature, v / (temperature * temperature))
                } else {
                    normal_cdf(m / v.sqrt().max(1e-9))
                };
                vec![p, 1.0 - p]
            }
        }
    }

    /// The posterior after answer `a` to `q`.
    pub fn observe(&mut self, s: &Preference, q: Question, a: usize, noise: f64, temperature: f64) {
        let yes = a == 0;
        match q {
            Question::Rating(k) => {
                let lik: Vec<f64> =
                    s.model.weight_grid.iter().map(|w| rating_probabilities(3.0 + 2.0 * w, noise)[a.min(4)]).collect();
                let post = self.tastes[k].iter().zip(&lik).map(|(p, l)| p * l).collect();
                self.tastes[k] = normalized(post, &self.tastes[k]);
            }
            Question::Budget => {
                let lik: Vec<f64> =
                    s.model.budget.grid.iter().map(|b| rating_probabilities(1.0 + 4.0 * b, noise)[a.min(4)]).collect();
                let post = self.budget.iter().zip(&lik).map(|(p, l)| p * l).collect();
                self.budget = normalized(post, &self.budget);
            }
            Question::MaxPrice => {
                let post = (0..self.max_price.len()).map(|i| (i == a) as u8 as f64).collect();
                self.max_price = normalized(post, &self.max_price);
            }
            Question::Kids => self.kids = yes as u8 as f64,
            Question::NoNightlife => self.no_nightlife = yes as u8 as f64,
            Question::LowEffort => self.low_effort = yes as u8 as f64,
            Question::Pair(i, j) => {
                let t = temperature.max(1e-3);
                let (ai, aj) = (&s.activities[i], &s.activities[j]);
                let lik = |mean: f64, var: f64| {
                    let p = probit(mean / t, var / (t * t));
                    if yes { p } else { 1.0 - p }
                };
                let mut tastes = self.tastes.clone();
                for (k, factor) in tastes.iter_mut().enumerate() {
                    let (m, v) = self.choice_moments(s, i, j, Factor::Taste(k));
                    let d = ai.attrs[k] - aj.attrs[k];
                    let post =
                        s.model.weight_grid.iter().zip(factor.iter()).map(|(w, p)| p * lik(m + w * d, v)).collect();
                    *factor = normalized(post, factor);
                }
                let (m, v) = self.choice_moments(s, i, j, Factor::Budget);
                let dp = -(ai.price - aj.price) / s.rules.price_scale;
                let post = s.model.budget.grid.iter().zip(&self.budget).map(|(b, p)| p * lik(m + b * dp, v)).collect();
                self.budget = normalized(post, &self.budget);
                self.tastes = tastes;
            }
        }
    }

    /// P(activity `i` breaks none of the traveller's constraints).
    pub fn feasibility(&self, s: &Preference, i: usize) -> f64 {
        let (a, c) = (&s.activities[i], &s.model.constraints);
        let levels = &c.max_price.levels;
        let price_ok: f64 = self
            .max_price
            .iter()
            .enumerate()
            .filter(|(k, _)| levels.get(*k).is_none_or(|&cap| a.price <= cap))
            .map(|(_, p)| p)
            .sum();
        let family = s.attribute("family").map_or(1.0, |f| a.attrs[f]);
        let nightlife = s.attribute("nightlife").map_or(0.0, |f| a.attrs[f]);
        let kids_ok = if family >= c.kids_min_family { 1.0 } else { 1.0 - self.kids };
        let night_ok = if nightlife < c.nightlife_limit { 1.0 } else { 1.0 - self.no_nightlife };
        let effort_ok = if a.effort < c.effort_limit { 1.0 } else { 1.0 - self.low_effort };
        price_ok * kids_ok * night_ok * effort_ok
    }

    /// Expected value of every activity: E[u] if feasible, `penalty` if not.
    pub fn values(&self, s: &Preference, penalty: f64) -> Vec<f64> {
        let means: Vec<f64> = self.tastes.iter().map(|p| moments(&s.model.weight_grid, p).0).collect();
        let beta = moments(&s.model.budget.grid, &self.budget).0;
        s.activities
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let u: f64 =
                    means.iter().zip(&a.attrs).map(|(w, x)| w * x).sum::<f64>() - beta * a.price / s.rules.price_scale;
                let f = self.feasibility(s, i);
                f * u + (1.0 - f) * penalty
            })
            .collect()
    }
}

/// The k best entries of `values` (lowest index on ties) and their sum.
pub fn top_k(values: &[f64], k: usize, exclude: &[usize]) -> (Vec<usize>, f64) {
    let mut idx: Vec<usize> = (0..values.len()).filter(|i| !exclude.contains(i)).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    let sum = idx.iter().map(|&i| values[i]).sum();
    (idx, sum)
}

/// Constants of the prior the agent computes once: the penalty of an infeasible activity
/// and the utility scale that turns value of information into normalized-utility units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorScale {
    /// E[utility of the worst feasible activity].
    pub penalty: f64,
    /// E[B − R]: the gap between the best feasible k-set and a random feasible pick.
    pub scale: f64,
}

impl PriorScale {
    /// Monte Carlo over 2000 travellers drawn with a fixed seed (the same every run).
    pub fn estimate(s: &Preference) -> PriorScale {
        let n = 2000;
        let (mut penalty, mut scale) = (0.0, 0.0);
        for e in 0..n {
            let t = s.sample_hidden(&mut turn_rng(0x5CA1E, e, Stream::Hidden));
            let mut u: Vec<f64> =
                (0..s.activities.len()).filter(|&i| s.feasible(&t, i)).map(|i| s.utility(&t, i)).collect();
            if u.is_empty() {
                continue;
            }
            u.sort_by(|a, b| b.total_cmp(a));
            let k = s.rules.k.min(u.len());
            penalty += u[u.len() - 1];
            scale += u[..k].iter().sum::<f64>() - k as f64 * u.iter().sum::<f64>() / u.len() as f64;
        }
        PriorScale { penalty: penalty / n as f64, scale: (scale / n as f64).max(1e-6) }
    }
}

/// How a travel agent behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TravelStyle {
    /// Value-of-information elicitation.
    Bayesian {
        /// Probability of a random question instead.
        eps: f64,
        /// Asks while a question's value of information exceeds this (normalized utility).
        min_voi: f64,
    },
    /// The prior's top k, without asking.
    Popular,
    /// Random questions and recommendations.
    Random {
        /// Probability of asking.
        ask: f64,
    },
}

/// A scripted travel agent.
pub struct TravelAgent {
    style: TravelStyle,
    one_by_one: bool,
    noise: f64,
    temperature: f64,
    prior: PriorScale,
    spec: String,
}

impl TravelAgent {
    /// `bayesian(one_by_one=false,eps=0,noise=N,temperature=T)`, `popular(one_by_one=false)`,
    /// `random(ask=0.7)`.
    pub fn from_spec(spec: &Spec, scenario: &Preference) -> Result<Option<TravelAgent>> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Bayesian {
            one_by_one: bool,
            eps: Probability,
            min_voi: Option<NonNegative>,
            noise: Option<NonNegative>,
            temperature: Option<NonNegative>,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Popular {
            one_by_one: bool,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Random {
            #[serde(default = "default_ask")]
            ask: Probability,
        }
        fn default_ask() -> Probability {
            Probability(0.7)
        }
        let (style, one_by_one, model) = match spec.name.as_str() {
            "bayesian" => {
                let p: Bayesian = spec.params()?;
                let min_voi = p.min_voi.map_or(scenario.rules.question_cost, |m| m.0);
                let model = AnswerModel { noise: p.noise, temperature: p.temperature };
                (TravelStyle::Bayesian { eps: p.eps.0, min_voi }, p.one_by_one, model)
            }
            "popular" => (TravelStyle::Popular, spec.params::<Popular>()?.one_by_one, AnswerModel::default()),
            "random" => (TravelStyle::Random { ask: spec.params::<Random>()?.ask.0 }, false, AnswerModel::default()),
            _ => return Ok(None),
        };
        let (noise, temperature) = model.resolve(scenario);
        Ok(Some(TravelAgent {
            style,
            one_by_one,
            noise,
            temperature,
            prior: PriorScale::estimate(scenario),
            spec: spec.to_string(),
        }))
    }

    /// The recommendation to make now: the whole list, or the next activity of it.
    fn recommend(&self, s: &Preference, values: &[f64], transcript: &[Message]) -> String {
        let done = s.recommended(transcript);
        let (rest, _) = top_k(values, s.rules.k - done.len().min(s.rules.k), &done);
        if self.one_by_one { s.recommend_text(&rest[..rest.len().min(1)]) } else { s.recommend_text(&rest) }
    }

    /// The question of highest value of information (normalized-utility units), if any.
    pub fn best_question(&self, s: &Preference, belief: &TravelBelief, asked: &[usize]) -> Option<(usize, f64)> {
        let (_, now) = top_k(&belief.values(s, self.prior.penalty), s.rules.k, &[]);
        let mut best: Option<(usize, f64)> = None;
        for (q, &question) in s.questions.iter().enumerate() {
            if asked.contains(&q) {
                continue;
            }
            let dist = belief.answer_distribution(s, question, self.noise, self.temperature);
            let mut value = 0.0;
            for (a, &p) in dist.iter().enumerate() {
                if p <= 1e-9 {
                    continue;
                }
                let mut post = belief.clone();
                post.observe(s, question, a, self.noise, self.temperature);
                value += p * top_k(&post.values(s, self.prior.penalty), s.rules.k, &[]).1;
            }
            let voi = (value - now) / self.prior.scale;
            if best.is_none_or(|b| voi > b.1 + 1e-12) {
                best = Some((q, voi));
            }
        }
        best
    }

    fn act_one(&self, s: &Preference, transcript: &[Message], rng: &mut dialogym_engine::seed::Rng) -> String {
        let asked: Vec<usize> = transcript
            .iter()
            .filter(|m| m.role == Role::Agent)
            .filter_map(|m| match s.interpret(&m.content) {
                Move::Ask(q) => Some(q),
                _ => None,
            })
            .collect();
        let turns_left = s.rules.max_turns.saturating_sub(agent_turns(transcript));
        let recommending = !s.recommended(transcript).is_empty();
        // Turns the recommendation itself needs.
        let reserve = if self.one_by_one { s.rules.k - s.recommended(transcript).len().min(s.rules.k) } else { 1 };
        match self.style {
            TravelStyle::Random { ask } => {
                if rng.random_bool(ask) {
                    s.question_text(s.questions[rng.random_range(0..s.questions.len())])
                } else {
                    s.recommend_text(&[rng.random_range(0..s.activities.len())])
                }
            }
            TravelStyle::Popular => {
                self.recommend(s, &TravelBelief::prior(s).values(s, self.prior.penalty), transcript)
            }
            TravelStyle::Bayesian { eps, min_voi } => {
                let belief = TravelBelief::from_transcript(s, transcript, self.noise, self.temperature);
                if !recommending && turns_left > reserve {
                    if eps > 0.0 && rng.random_bool(eps) {
                        let fresh: Vec<usize> = (0..s.questions.len()).filter(|q| !asked.contains(q)).collect();
                        if !fresh.is_empty() {
                            return s.question_text(s.questions[fresh[rng.random_range(0..fresh.len())]]);
                        }
                    }
                    if let Some((q, voi)) = self.best_question(s, &belief, &asked)
                        && voi > min_voi
                    {
                        return s.question_text(s.questions[q]);
                    }
                }
                self.recommend(s, &belief.values(s, self.prior.penalty), transcript)
            }
        }
    }
}

impl Agent<Preference> for TravelAgent {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, scenario: &Preference, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        Ok(turns.iter_mut().map(|t| self.act_one(scenario, t.transcript, &mut t.rng)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Preference {
        Preference::from_spec(&Spec::parse("preference-elicitation").unwrap()).unwrap()
    }

    #[test]
    fn answers_move_the_belief_their_way() {
        let s = scenario();
        let night = s.attribute("nightlife").unwrap();
        let prior = TravelBelief::prior(&s);
        let mut b = prior.clone();
        b.observe(&s, Question::Rating(night), 4, 0.5, 0.25);
        let mean = |b: &TravelBelief| moments(&s.model.weight_grid, &b.tastes[night]).0;
        assert!(mean(&b) > mean(&prior) + 0.5);
        let d = prior.answer_distribution(&s, Question::Rating(night), 0.5, 0.25);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        // A pairwise choice of the nightlife-heavy activity raises the nightlife weight.
        let pair = s
            .questions
            .iter()
            .find_map(|&q| match q {
                Question::Pair(i, j) if s.activities[i].attrs[night] > s.activities[j].attrs[night] + 0.5 => Some(q),
                _ => None,
            })
            .unwrap();
        let mut b = prior.clone();
        b.observe(&s, pair, 0, 0.5, 0.25);
        assert!(mean(&b) > mean(&prior));
        // A child along rules out activities that are not family-friendly.
        let mut b = prior.clone();
        b.observe(&s, Question::Kids, 0, 0.5, 0.25);
        let club = s.activities.iter().position(|a| a.name == "Nightclub night").unwrap();
        assert_eq!(b.feasibility(&s, club), 0.0);
    }

    #[test]
    fn bayesian_asks_first_and_popular_does_not() {
        let s = scenario();
        let bayes = TravelAgent::from_spec(&Spec::parse("bayesian").unwrap(), &s).unwrap().unwrap();
        let popular = TravelAgent::from_spec(&Spec::parse("popular").unwrap(), &s).unwrap().unwrap();
        let mut rng = turn_rng(0, 0, Stream::Agent);
        assert!(matches!(s.interpret(&bayes.act_one(&s, &[], &mut rng)), Move::Ask(_)));
        match s.interpret(&popular.act_one(&s, &[], &mut rng)) {
            Move::Recommend(items) => assert_eq!(items.len(), s.rules.k),
            other => panic!("{other:?}"),
        }
        assert!(bayes.prior.scale > 0.5 && bayes.prior.penalty < 0.0, "{:?}", bayes.prior);
        assert!(TravelAgent::from_spec(&Spec::parse("bayesian(noise=-1)").unwrap(), &s).is_err());
    }
}
