//! Preference elicitation: a travel agent learns a customer's tastes and recommends
//! activities for a city break.
//!
//! The persona is a traveller with a weight in {−1, −½, 0, ½, 1} on each of seven taste
//! attributes (outdoors, culture, food, nightlife, adventure, relaxation, family), a price
//! sensitivity β ∈ [0, 1], and hard constraints: a price cap per activity, children along
//! (only family-friendly activities), no nightlife, nothing strenuous. The priors and the
//! question wording are data (`data/travel.json`); the catalogue is 143 activities with
//! attribute vectors and prices (`data/travel_activities.csv`).
//!
//! The utility of activity `i` is u(i) = Σ_a w_a·x_ia − β·price_i/price_scale. The agent
//! asks rating questions ("On a scale of 1 to 5, how much do you enjoy nightlife?",
//! answered round(3 + 2w + ε), ε ~ N(0, noise²), clamped to 1..5), the price question
//! (1 + 4β + ε), constraint questions (answered truthfully), and pairwise choices between
//! two activities (the traveller picks A with probability σ((u_A − u_B)/temperature),
//! ignoring constraints). It recommends with "I recommend: A; B; C." (one utterance naming
//! k activities, or several naming fewer; the episode ends once k distinct catalogue
//! activities have been recommended). [`rating_probabilities`] and
//! [`choice_probability`] are the exact answer model, shared by the scripted traveller and
//! by agents that reason over it.
//!
//! Reward: when the list is complete (or at `max_turns`), the normalized utility of the
//! list: with U(S) = Σ_{i∈S} v(i), v = u for a feasible activity and the worst feasible
//! utility for an infeasible or missing one, B the best feasible k-set and R = k × the mean
//! feasible utility (a random feasible pick), 1 − regret = clamp((U(S) − R)/(B − R), 0, 1).
//! Every utterance that recommends nothing new costs `cost`. Return ∈ [−cost·max_turns,
//! 1]; success: normalized utility ≥ `threshold`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use dialogym_engine::seed::Rng;
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Judgement, Message, Role, Scenario, Spec};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::entity::normalize;

/// Priors, wording and rules.
pub const TRAVEL_JSON: &str = include_str!("../data/travel.json");
/// The activity catalogue.
pub const ACTIVITIES_CSV: &str = include_str!("../data/travel_activities.csv");

/// How a recommendation starts (after [`normalize`]).
pub const RECOMMEND_PREFIX: &str = "I recommend:";

/// The traveller's reply to a recommendation that completes the list.
pub const THANKS_REPLY: &str = "Thank you, that sounds like a great trip!";
/// The traveller's reply to a partial recommendation.
pub const MORE_REPLY: &str = "Noted. What else would you suggest?";
/// The traveller's reply to anything else.
pub const CONFUSED_REPLY: &str = "Sorry, could you put that differently?";

/// Episode rules.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TravelRules {
    /// Activities to recommend.
    pub k: usize,
    /// At most this many agent utterances.
    pub max_turns: usize,
    /// Cost of an utterance that recommends nothing new.
    pub question_cost: f64,
    /// Normalized utility that counts as success.
    pub success_threshold: f64,
    /// Standard deviation of the noise on rating answers (scale points).
    pub rating_noise: f64,
    /// Temperature of pairwise choices (utility units).
    pub choice_temperature: f64,
    /// Euros per unit of price disutility at β = 1.
    pub price_scale: f64,
}

/// A taste attribute.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AttributeDef {
    /// Column name in the catalogue.
    pub id: String,
    /// How questions name it ("nightlife").
    pub phrase: String,
    /// Prior over the weight grid.
    pub prior: Vec<f64>,
}

/// The price sensitivity's grid and prior.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BudgetDef {
    /// Values of β.
    pub grid: Vec<f64>,
    /// Their prior probabilities.
    pub prior: Vec<f64>,
}

/// The price cap's levels and prior.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MaxPriceDef {
    /// Caps in euros, ascending.
    pub levels: Vec<f64>,
    /// Prior of each cap, then of "no cap".
    pub prior: Vec<f64>,
}

/// Hard constraints: priors and what they exclude.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ConstraintDefs {
    /// Price cap.
    pub max_price: MaxPriceDef,
    /// P(travelling with children).
    pub with_kids: f64,
    /// P(no nightlife).
    pub no_nightlife: f64,
    /// P(nothing strenuous).
    pub low_effort: f64,
    /// With children, only activities with family ≥ this.
    pub kids_min_family: f64,
    /// Without nightlife, only activities with nightlife < this.
    pub nightlife_limit: f64,
    /// Nothing strenuous: only activities with effort < this.
    pub effort_limit: f64,
}

/// `data/travel.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TravelModel {
    /// Name.
    pub name: String,
    /// One paragraph.
    pub description: String,
    /// Rules.
    pub rules: TravelRules,
    /// Values a taste weight can take.
    pub weight_grid: Vec<f64>,
    /// Taste attributes, in catalogue column order.
    pub attributes: Vec<AttributeDef>,
    /// Price sensitivity.
    pub budget: BudgetDef,
    /// Hard constraints.
    pub constraints: ConstraintDefs,
}

/// One catalogue entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// Its name (no commas or semicolons).
    pub name: String,
    /// Price per person in euros.
    pub price: f64,
    /// Taste attributes in [0, 1], in the model's attribute order.
    pub attrs: Vec<f64>,
    /// Physical effort in [0, 1].
    pub effort: f64,
}

/// The persona's secret: a traveller.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Traveller {
    /// Taste weight per attribute, in attribute order.
    pub weights: Vec<(String, f64)>,
    /// β: disutility per `price_scale` euros.
    pub price_sensitivity: f64,
    /// Price cap per activity (None: no cap).
    pub max_price: Option<f64>,
    /// Travelling with children.
    pub with_kids: bool,
    /// Wants no nightlife.
    pub no_nightlife: bool,
    /// Wants nothing strenuous.
    pub low_effort: bool,
}

/// A question the agent may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Question {
    /// How much the traveller enjoys attribute `a` (1..5).
    Rating(usize),
    /// How much price matters (1..5).
    Budget,
    /// The price cap.
    MaxPrice,
    /// Children along?
    Kids,
    /// Leave out nightlife?
    NoNightlife,
    /// Avoid strenuous activities?
    LowEffort,
    /// Which of two activities the traveller would rather do.
    Pair(usize, usize),
}

/// What an agent utterance means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Question `q` of [`Preference::questions`].
    Ask(usize),
    /// Recommends these catalogue activities (names that match no activity are dropped).
    Recommend(Vec<usize>),
    /// Anything else.
    Other,
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 { 0.5 * (1.0 + erf) } else { 0.5 * (1.0 - erf) }
}

/// P(answer r) for r = 1..5 when the answer is round(mean + ε), ε ~ N(0, noise²), clamped to
/// 1..5. With noise 0 the answer is round(mean).
pub fn rating_probabilities(mean: f64, noise: f64) -> [f64; 5] {
    let mut p = [0.0; 5];
    if noise <= 0.0 {
        p[((mean.round() as i64).clamp(1, 5) - 1) as usize] = 1.0;
        return p;
    }
    let cdf = |edge: f64| normal_cdf((edge - mean) / noise);
    for (r, slot) in p.iter_mut().enumerate() {
        let lo = if r == 0 { 0.0 } else { cdf(r as f64 + 0.5) };
        let hi = if r == 4 { 1.0 } else { cdf(r as f64 + 1.5) };
        *slot = (hi - lo).max(0.0);
    }
    p
}

/// P(the traveller picks A over B) from their utilities.
pub fn choice_probability(u_a: f64, u_b: f64, temperature: f64) -> f64 {
    if temperature <= 0.0 {
        return if u_a > u_b {
            1.0
        } else if u_a < u_b {
            0.0
        } else {
            0.5
        };
    }
    1.0 / (1.0 + (-(u_a - u_b) / temperature).exp())
}

/// Index drawn from probabilities `p` by one uniform number.
pub fn draw(p: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, x) in p.iter().enumerate() {
        u -= x;
        if u < 0.0 {
            return i;
        }
    }
    p.iter().rposition(|&x| x > 0.0).unwrap_or(0)
}

/// Parses the catalogue CSV (lines starting with `#` are comments).
pub fn parse_catalogue(csv: &str, attributes: &[AttributeDef]) -> Result<Vec<Activity>> {
    let mut lines = csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else { bail!("the catalogue is empty") };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col =
        |name: &str| cols.iter().position(|c| *c == name).with_context(|| format!("catalogue lacks column `{name}`"));
    let (name_c, price_c, effort_c) = (col("name")?, col("price")?, col("effort")?);
    let attr_c: Vec<usize> = attributes.iter().map(|a| col(&a.id)).collect::<Result<_>>()?;
    let mut out: Vec<Activity> = Vec::new();
    for (n, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != cols.len() {
            bail!("catalogue line {}: {} fields, expected {}", n + 1, f.len(), cols.len());
        }
        let num = |c: usize| -> Result<f64> {
            let v: f64 =
                f[c].parse().with_context(|| format!("catalogue line {}: `{}` is not a number", n + 1, f[c]))?;
            if !v.is_finite() || v < 0.0 {
                bail!("catalogue line {}: `{}` must be a non-negative number", n + 1, f[c]);
            }
            Ok(v)
        };
        let name = f[name_c].to_string();
        if name.is_empty() || name.contains(';') {
            bail!("catalogue line {}: names must be non-empty and have no `;`", n + 1);
        }
        if out.iter().any(|a| normalize(&a.name) == normalize(&name)) {
            bail!("catalogue line {}: `{name}` appears twice", n + 1);
        }
        let attrs = attr_c.iter().map(|&c| num(c)).collect::<Result<Vec<f64>>>()?;
        if attrs.iter().any(|&x| x > 1.0) {
            bail!("catalogue line {}: attributes must lie in [0, 1]", n + 1);
        }
        out.push(Activity { name, price: num(price_c)?, attrs, effort: num(effort_c)? });
    }
    Ok(out)
}

/// The preference-elicitation scenario.
#[derive(Clone, Debug)]
pub struct Preference {
    /// Priors, wording and the constraint rules (public: agents reason over them).
    pub model: TravelModel,
    /// Rules after the spec's overrides.
    pub rules: TravelRules,
    /// The catalogue.
    pub activities: Vec<Activity>,
    /// The question bank, in candidate order.
    pub questions: Vec<Question>,
    spec: String,
    lexicon: HashMap<String, usize>,
    names: HashMap<String, usize>,
    candidates: Vec<String>,
}

impl Preference {
    /// Builds `preference-elicitation(k=3,cost=0.02,max_turns=15,threshold=0.9)`.
    pub fn from_spec(spec: &Spec) -> Result<Preference> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Params {
            k: Option<usize>,
            cost: Option<dialogym_engine::NonNegative>,
            max_turns: Option<usize>,
            threshold: Option<dialogym_engine::Probability>,
        }
        let p: Params = spec.params()?;
        let model: TravelModel = serde_json::from_str(TRAVEL_JSON).context("embedded travel model")?;
        let mut rules = model.rules.clone();
        rules.k = p.k.unwrap_or(rules.k);
        rules.question_cost = p.cost.map_or(rules.question_cost, |c| c.0);
        rules.max_turns = p.max_turns.unwrap_or(rules.max_turns);
        rules.success_threshold = p.threshold.map_or(rules.success_threshold, |t| t.0);
        if rules.k == 0 || rules.k > 10 {
            bail!("`{spec}`: k must lie in 1..=10");
        }
        if rules.max_turns == 0 {
            bail!("`{spec}`: max_turns must be at least 1");
        }
        if !(rules.question_cost >= 0.0 && rules.question_cost.is_finite()) {
            bail!("`{spec}`: cost must be a non-negative number");
        }
        let activities = parse_catalogue(ACTIVITIES_CSV, &model.attributes)?;
        Preference::new(model, rules, activities, spec.to_string())
    }

    /// Builds the scenario, checking the model against the catalogue.
    pub fn new(model: TravelModel, rules: TravelRules, activities: Vec<Activity>, spec: String) -> Result<Preference> {
        let g = model.weight_grid.len();
        if g == 0 || model.attributes.iter().any(|a| a.prior.len() != g) {
            bail!("every attribute prior needs one probability per weight grid value ({g})");
        }
        if model.budget.grid.len() != model.budget.prior.len() || model.budget.grid.is_empty() {
            bail!("the budget grid and prior must have the same, non-zero length");
        }
        let mp = &model.constraints.max_price;
        if mp.prior.len() != mp.levels.len() + 1 {
            bail!("max_price.prior needs one probability per level plus one for no cap");
        }
        if activities.len() < rules.k * 2 {
            bail!("the catalogue needs at least {} activities", rules.k * 2);
        }
        let n_attr = model.attributes.len();
        let mut questions: Vec<Question> = (0..n_attr).map(Question::Rating).collect();
        questions.extend([
            Question::Budget,
            Question::MaxPrice,
            Question::Kids,
            Question::NoNightlife,
            Question::LowEffort,
        ]);
        // One pairwise question per pair of attributes: the affordable activity that has most
        // of the first and least of the second against its mirror image.
        let cheap: Vec<usize> = (0..activities.len()).filter(|&i| activities[i].price <= 50.0).collect();
        let contrast = |a: usize, b: usize| {
            cheap.iter().copied().fold(None, |best: Option<usize>, i| {
                let d = activities[i].attrs[a] - activities[i].attrs[b];
                match best {
                    Some(j) if activities[j].attrs[a] - activities[j].attrs[b] >= d => Some(j),
                    _ => Some(i),
                }
            })
        };
        for a in 0..n_attr {
            for b in a + 1..n_attr {
                if let (Some(i), Some(j)) = (contrast(a, b), contrast(b, a))
                    && i != j
                    && !questions.contains(&Question::Pair(i, j))
                {
                    questions.push(Question::Pair(i, j));
                }
            }
        }
        let mut this = Preference {
            model,
            rules,
            activities,
            questions,
            spec,
            lexicon: HashMap::new(),
            names: HashMap::new(),
            candidates: Vec::new(),
        };
        for (q, &question) in this.questions.iter().enumerate() {
            let text = this.question_text(question);
            if this.lexicon.insert(normalize(&text), q).is_some() {
                bail!("two questions read the same: `{text}`");
            }
            this.candidates.push(text);
        }
        for (i, a) in this.activities.iter().enumerate() {
            this.names.insert(normalize(&a.name), i);
            this.candidates.push(this.recommend_text(&[i]));
        }
        Ok(this)
    }

    /// The words of a question.
    pub fn question_text(&self, q: Question) -> String {
        match q {
            Question::Rating(a) => {
                format!("On a scale of 1 to 5, how much do you enjoy {}?", self.model.attributes[a].phrase)
            }
            Question::Budget => "On a scale of 1 to 5, how much does price matter to you?".into(),
            Question::MaxPrice => "What is the most you would pay for a single activity?".into(),
            Question::Kids => "Are you travelling with children?".into(),
            Question::NoNightlife => "Should I leave out nightlife?".into(),
            Question::LowEffort => "Should I avoid physically demanding activities?".into(),
            Question::Pair(i, j) => {
                format!("Which would you rather do: {} or {}?", self.activities[i].name, self.activities[j].name)
            }
        }
    }

    /// The replies a question admits, in answer-index order.
    pub fn answers(&self, q: Question) -> Vec<String> {
        match q {
            Question::Rating(_) => ["not for me", "not really", "it's fine", "I like it", "I love it"]
                .iter()
                .enumerate()
                .map(|(r, w)| format!("{} out of 5: {w}.", r + 1))
                .collect(),
            Question::Budget => {
                ["price doesn't matter", "a little", "somewhat", "quite a lot", "I'm on a tight budget"]
                    .iter()
                    .enumerate()
                    .map(|(r, w)| format!("{} out of 5: {w}.", r + 1))
                    .collect()
            }
            Question::MaxPrice => {
                let mut v: Vec<String> = self
                    .model
                    .constraints
                    .max_price
                    .levels
                    .iter()
                    .map(|l| format!("Up to €{l} per activity."))
                    .collect();
                v.push("Price is no object.".into());
                v
            }
            Question::Kids => vec!["Yes, with children.".into(), "No, no children.".into()],
            Question::NoNightlife => vec!["Yes, please leave it out.".into(), "No, nightlife is fine.".into()],
            Question::LowEffort => {
                vec!["Yes, nothing strenuous please.".into(), "No, I'm happy to exert myself.".into()]
            }
            Question::Pair(i, j) => {
                vec![
                    format!("I'd rather do {}.", self.activities[i].name),
                    format!("I'd rather do {}.", self.activities[j].name),
                ]
            }
        }
    }

    /// Reads a reply back into an answer index (ratings also from a leading digit).
    pub fn answer_index(&self, q: Question, reply: &str) -> Option<usize> {
        let t = normalize(reply);
        if let Some(i) = self.answers(q).iter().position(|a| normalize(a) == t) {
            return Some(i);
        }
        if matches!(q, Question::Rating(_) | Question::Budget) {
            let d = t.chars().next()?.to_digit(10)? as usize;
            let next = t.chars().nth(1);
            if (1..=5).contains(&d) && !next.is_some_and(|c| c.is_ascii_digit()) {
                return Some(d - 1);
            }
        }
        None
    }

    /// A recommendation of `items` in the canonical template.
    pub fn recommend_text(&self, items: &[usize]) -> String {
        let names: Vec<&str> = items.iter().map(|&i| self.activities[i].name.as_str()).collect();
        format!("{RECOMMEND_PREFIX} {}.", names.join("; "))
    }

    /// What an agent utterance means.
    pub fn interpret(&self, text: &str) -> Move {
        let t = normalize(text);
        if let Some(&q) = self.lexicon.get(&t) {
            return Move::Ask(q);
        }
        let Some(rest) = t.strip_prefix("i recommend") else { return Move::Other };
        let rest = rest.trim_start_matches([':', ' ']);
        Move::Recommend(rest.split([';', ',']).filter_map(|n| self.names.get(&normalize(n)).copied()).collect())
    }

    /// Distinct activities recommended in `transcript`, in order, at most k.
    pub fn recommended(&self, transcript: &[Message]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for m in transcript.iter().filter(|m| m.role == Role::Agent) {
            if let Move::Recommend(items) = self.interpret(&m.content) {
                for i in items {
                    if out.len() < self.rules.k && !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }

    /// u(i) for traveller `t`.
    pub fn utility(&self, t: &Traveller, i: usize) -> f64 {
        let a = &self.activities[i];
        let taste: f64 = t.weights.iter().zip(&a.attrs).map(|((_, w), x)| w * x).sum();
        taste - t.price_sensitivity * a.price / self.rules.price_scale
    }

    /// Whether activity `i` breaks none of `t`'s constraints.
    pub fn feasible(&self, t: &Traveller, i: usize) -> bool {
        let (a, c) = (&self.activities[i], &self.model.constraints);
        let family = self.attribute("family").map_or(1.0, |f| a.attrs[f]);
        let nightlife = self.attribute("nightlife").map_or(0.0, |f| a.attrs[f]);
        t.max_price.is_none_or(|m| a.price <= m)
            && (!t.with_kids || family >= c.kids_min_family)
            && (!t.no_nightlife || nightlife < c.nightlife_limit)
            && (!t.low_effort || a.effort < c.effort_limit)
    }

    /// Index of the attribute named `id`.
    pub fn attribute(&self, id: &str) -> Option<usize> {
        self.model.attributes.iter().position(|a| a.id == id)
    }

    /// Normalized utility of recommending `items` (see the module docs), in [0, 1].
    pub fn normalized_utility(&self, t: &Traveller, items: &[usize]) -> f64 {
        let k = self.rules.k;
        let mut feasible: Vec<f64> =
            (0..self.activities.len()).filter(|&i| self.feasible(t, i)).map(|i| self.utility(t, i)).collect();
        if feasible.is_empty() {
            return 1.0;
        }
        feasible.sort_by(|a, b| b.total_cmp(a));
        let worst = feasible[feasible.len() - 1];
        let best: f64 = (0..k).map(|r| feasible.get(r).copied().unwrap_or(worst)).sum();
        let random = k as f64 * feasible.iter().sum::<f64>() / feasible.len() as f64;
        let mut chosen: Vec<usize> = Vec::new();
        for &i in items {
            if chosen.len() < k && !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        let value: f64 =
            chosen.iter().map(|&i| if self.feasible(t, i) { self.utility(t, i) } else { worst }).sum::<f64>()
                + (k - chosen.len()) as f64 * worst;
        if best - random <= 1e-12 { 1.0 } else { ((value - random) / (best - random)).clamp(0.0, 1.0) }
    }

    /// The traveller's probabilities of each answer to `q` under noise `noise` and choice
    /// temperature `temperature`.
    pub fn answer_probabilities(&self, t: &Traveller, q: Question, noise: f64, temperature: f64) -> Vec<f64> {
        let yes_no = |b: bool| if b { vec![1.0, 0.0] } else { vec![0.0, 1.0] };
        match q {
            Question::Rating(a) => rating_probabilities(3.0 + 2.0 * t.weights[a].1, noise).to_vec(),
            Question::Budget => rating_probabilities(1.0 + 4.0 * t.price_sensitivity, noise).to_vec(),
            Question::MaxPrice => {
                let levels = &self.model.constraints.max_price.levels;
                let idx = t.max_price.and_then(|m| levels.iter().position(|&l| l == m)).unwrap_or(levels.len());
                (0..=levels.len()).map(|i| (i == idx) as u8 as f64).collect()
            }
            Question::Kids => yes_no(t.with_kids),
            Question::NoNightlife => yes_no(t.no_nightlife),
            Question::LowEffort => yes_no(t.low_effort),
            Question::Pair(i, j) => {
                let p = choice_probability(self.utility(t, i), self.utility(t, j), temperature);
                vec![p, 1.0 - p]
            }
        }
    }

    /// The scripted traveller's reply to the last agent utterance.
    pub fn traveller_reply(
        &self,
        t: &Traveller,
        transcript: &[Message],
        noise: f64,
        temperature: f64,
        rng: &mut Rng,
    ) -> String {
        let Some(last) = transcript.last() else { return CONFUSED_REPLY.to_string() };
        match self.interpret(&last.content) {
            Move::Ask(q) => {
                let question = self.questions[q];
                let p = self.answer_probabilities(t, question, noise, temperature);
                let mut answers = self.answers(question);
                answers.swap_remove(draw(&p, rng).min(answers.len() - 1))
            }
            Move::Recommend(_) if self.recommended(transcript).len() >= self.rules.k => THANKS_REPLY.to_string(),
            Move::Recommend(_) => MORE_REPLY.to_string(),
            Move::Other => CONFUSED_REPLY.to_string(),
        }
    }
}

/// One line for `scenarios list`.
pub const ABOUT: &str = "a travel agent elicits a traveller's tastes and limits, then recommends 3 of 143 activities";

impl Scenario for Preference {
    type Hidden = Traveller;

    fn id(&self) -> String {
        self.spec.clone()
    }

    fn max_agent_turns(&self) -> usize {
        self.rules.max_turns
    }

    fn sample_hidden(&self, rng: &mut Rng) -> Traveller {
        let m = &self.model;
        let weights =
            m.attributes.iter().map(|a| (a.id.clone(), m.weight_grid[draw(&a.prior, rng)])).collect::<Vec<_>>();
        let price_sensitivity = m.budget.grid[draw(&m.budget.prior, rng)];
        let cap = draw(&m.constraints.max_price.prior, rng);
        let c = &m.constraints;
        Traveller {
            weights,
            price_sensitivity,
            max_price: c.max_price.levels.get(cap).copied(),
            with_kids: rng.random_bool(c.with_kids.clamp(0.0, 1.0)),
            no_nightlife: rng.random_bool(c.no_nightlife.clamp(0.0, 1.0)),
            low_effort: rng.random_bool(c.low_effort.clamp(0.0, 1.0)),
        }
    }

    fn judge(&self, hidden: &Traveller, transcript: &[Message]) -> Judgement {
        let Some(last) = transcript.last() else {
            return Judgement { reward: 0.0, done: false, success: false };
        };
        if last.role != Role::Agent {
            return Judgement { reward: 0.0, done: false, success: false };
        }
        let before = self.recommended(&transcript[..transcript.len() - 1]).len();
        let now = self.recommended(transcript);
        let base = if now.len() > before { 0.0 } else { -self.rules.question_cost };
        if now.len() >= self.rules.k || agent_turns(transcript) >= self.rules.max_turns {
            let u = self.normalized_utility(hidden, &now);
            return Judgement { reward: base + u, done: true, success: u >= self.rules.success_threshold };
        }
        Judgement { reward: base, done: false, success: false }
    }

    fn candidates(&self, _transcript: &[Message]) -> Vec<String> {
        self.candidates.clone()
    }

    fn metrics(&self, hidden: &Traveller, transcript: &[Message]) -> Vec<(String, f64)> {
        let now = self.recommended(transcript);
        let questions =
            transcript.iter().filter(|m| m.role == Role::Agent && matches!(self.interpret(&m.content), Move::Ask(_)));
        vec![
            ("normalized_utility".into(), self.normalized_utility(hidden, &now)),
            ("questions".into(), questions.count() as f64),
            ("infeasible_picks".into(), now.iter().filter(|&&i| !self.feasible(hidden, i)).count() as f64),
        ]
    }

    fn persona_card(&self, hidden: &Traveller) -> String {
        let tastes: Vec<String> = hidden
            .weights
            .iter()
            .zip(&self.model.attributes)
            .map(|((_, w), a)| format!("- {}: {} out of 5", a.phrase, (3.0 + 2.0 * w).round()))
            .collect();
        let mut rules = Vec::new();
        match hidden.max_price {
            Some(m) => rules.push(format!("- You will not pay more than €{m} for one activity.")),
            None => rules.push("- Price is no object for a single activity.".to_string()),
        }
        rules.push(if hidden.with_kids {
            "- You travel with young children: only family-friendly activities.".to_string()
        } else {
            "- You travel without children.".to_string()
        });
        if hidden.no_nightlife {
            rules.push("- You want no nightlife at all.".into());
        }
        if hidden.low_effort {
            rules.push("- You cannot do anything physically strenuous.".into());
        }
        format!(
            "You are a traveller planning a few days in a coastal city, talking to a travel agent. Answer their \
             questions briefly and honestly; never list activities yourself.\n\
             How much you enjoy things (1 to 5):\n{tastes}\n\
             How much price matters to you: {budget} out of 5.\n\
             Your hard limits:\n{rules}\n\
             Answer 1-to-5 questions as \"N out of 5: ...\". When asked to choose between two activities, say \
             \"I'd rather do NAME.\" When the agent recommends activities, say \"{more}\" until they have named \
             {k}, then \"{thanks}\"",
            tastes = tastes.join("\n"),
            budget = (1.0 + 4.0 * hidden.price_sensitivity).round(),
            rules = rules.join("\n"),
            more = MORE_REPLY,
            thanks = THANKS_REPLY,
            k = self.rules.k,
        )
    }

    fn agent_brief(&self) -> String {
        let catalogue: Vec<String> = self.activities.iter().map(|a| format!("- {} (€{})", a.name, a.price)).collect();
        let bank: Vec<String> =
            self.questions.iter().take(12).map(|&q| format!("- {}", self.question_text(q))).collect();
        format!(
            "You are a travel agent. Learn what your customer enjoys and what they cannot do, then recommend \
             exactly {k} activities from the catalogue in one line: \"{prefix} NAME; NAME; NAME.\" Every question \
             costs {cost} (at most {turns} turns); the recommendation is scored by how close it comes to the best \
             {k} activities for this customer that respect their limits.\nQuestions you can ask include:\n{bank}\n\
             - Which would you rather do: ACTIVITY or ACTIVITY?\nCatalogue:\n{catalogue}",
            k = self.rules.k,
            prefix = RECOMMEND_PREFIX,
            cost = self.rules.question_cost,
            turns = self.rules.max_turns,
            bank = bank.join("\n"),
            catalogue = catalogue.join("\n"),
        )
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        // 1 − regret of the list (≤ 1) minus the cost of utterances that recommend nothing new.
        Some((-self.rules.question_cost * self.rules.max_turns as f64, 1.0))
    }

    fn rules(&self) -> String {
        let r = &self.rules;
        format!(
            "preference-elicitation\n\n{}\n\nactivities: {}; questions in the bank: {}; recommend k = {}\nmax agent \
             turns: {}; reward: normalized utility of the list (1 - regret) at the end, -{} per utterance that \
             recommends nothing new; success: normalized utility >= {}",
            self.model.description,
            self.activities.len(),
            self.questions.len(),
            r.k,
            r.max_turns,
            r.question_cost,
            r.success_threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialogym_engine::seed::{Stream, turn_rng};

    fn scenario() -> Preference {
        Preference::from_spec(&Spec::parse("preference-elicitation").unwrap()).unwrap()
    }

    fn traveller(s: &Preference, seed: u64) -> Traveller {
        s.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden))
    }

    #[test]
    fn catalogue_and_question_bank() {
        let s = scenario();
        assert!(s.activities.len() >= 100, "{}", s.activities.len());
        let pairs = s.questions.iter().filter(|q| matches!(q, Question::Pair(..))).count();
        assert!(pairs >= 15, "{pairs} pairwise questions");
        let c = s.candidates(&[]);
        assert!(c.len() < 300, "{}", c.len());
        for (q, question) in s.questions.iter().enumerate() {
            assert_eq!(s.interpret(&c[q]), Move::Ask(q));
            for (i, a) in s.answers(*question).iter().enumerate() {
                assert_eq!(s.answer_index(*question, a), Some(i), "{a}");
            }
        }
        assert_eq!(s.answer_index(Question::Rating(0), "4"), Some(3));
        assert_eq!(s.answer_index(Question::Rating(0), "42 out of 5"), None);
        let id = |n: &str| s.activities.iter().position(|a| a.name == n).unwrap();
        assert_eq!(
            s.interpret("I recommend: Tapas crawl; spa day, Nowhere; Aquarium."),
            Move::Recommend(vec![id("Tapas crawl"), id("Spa day"), id("Aquarium")])
        );
        assert_eq!(s.interpret("Go to the beach."), Move::Other);
        assert!(Preference::from_spec(&Spec::parse("preference-elicitation(k=0)").unwrap()).is_err());
    }

    #[test]
    fn answer_model_is_a_distribution_and_sharpens_without_noise() {
        for mean in [1.0, 2.4, 3.0, 4.6, 5.0] {
            let p = rating_probabilities(mean, 0.5);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p:?}");
        }
        assert_eq!(rating_probabilities(4.0, 0.0), [0.0, 0.0, 0.0, 1.0, 0.0]);
        let p = rating_probabilities(3.0, 0.5);
        assert!((p[2] - 0.6827).abs() < 1e-3, "{p:?}");
        assert!((normal_cdf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((choice_probability(1.0, 0.0, 0.25) - 0.982).abs() < 1e-3);
    }

    #[test]
    fn every_traveller_has_enough_feasible_activities() {
        let s = scenario();
        let mut t = traveller(&s, 0);
        for cap in [Some(25.0), None] {
            for bits in 0..8u8 {
                t.max_price = cap;
                t.with_kids = bits & 1 != 0;
                t.no_nightlife = bits & 2 != 0;
                t.low_effort = bits & 4 != 0;
                let n = (0..s.activities.len()).filter(|&i| s.feasible(&t, i)).count();
                assert!(n >= 10, "{n} feasible for {t:?}");
            }
        }
    }

    #[test]
    fn normalized_utility_is_one_for_the_best_set_and_zero_for_infeasible_picks() {
        let s = scenario();
        for seed in 0..100 {
            let t = traveller(&s, seed);
            let mut order: Vec<usize> = (0..s.activities.len()).filter(|&i| s.feasible(&t, i)).collect();
            order.sort_by(|&a, &b| s.utility(&t, b).total_cmp(&s.utility(&t, a)));
            assert!((s.normalized_utility(&t, &order[..3]) - 1.0).abs() < 1e-12);
            assert_eq!(s.normalized_utility(&t, &[]), 0.0);
            let worst: Vec<usize> = order.iter().rev().take(3).copied().collect();
            assert_eq!(s.normalized_utility(&t, &worst), 0.0);
            let u = s.normalized_utility(&t, &[order[0], order[order.len() / 2], order[1]]);
            assert!((0.0..=1.0).contains(&u));
        }
    }

    #[test]
    fn judging_is_pure_and_the_list_ends_the_episode() {
        let s = scenario();
        let t = traveller(&s, 7);
        let mut tr = vec![Message::agent(s.question_text(Question::Kids))];
        let j = s.judge(&t, &tr);
        assert_eq!((j.reward, j.done), (-s.rules.question_cost, false));
        let mut rng = turn_rng(7, 1, Stream::Persona);
        tr.push(Message::persona(s.traveller_reply(&t, &tr, 0.5, 0.25, &mut rng)));
        assert!(s.answer_index(Question::Kids, &tr[1].content).is_some());
        tr.push(Message::agent(s.recommend_text(&[0])));
        let j = s.judge(&t, &tr);
        assert_eq!((j.reward, j.done), (0.0, false));
        tr.push(Message::persona(s.traveller_reply(&t, &tr, 0.5, 0.25, &mut rng)));
        assert_eq!(tr[3].content, MORE_REPLY);
        // Repeating an activity recommends nothing new: it costs like a question.
        tr.push(Message::agent(s.recommend_text(&[0])));
        assert_eq!(s.judge(&t, &tr).reward, -s.rules.question_cost);
        tr.push(Message::persona(MORE_REPLY));
        tr.push(Message::agent(s.recommend_text(&[0, 5, 9])));
        let j = s.judge(&t, &tr);
        assert!(j.done);
        assert_eq!(j, s.judge(&t, &tr));
        let u = s.normalized_utility(&t, &[0, 5, 9]);
        assert!((j.reward - u).abs() < 1e-12);
        assert_eq!(j.success, u >= s.rules.success_threshold);
    }

    #[test]
    fn episodes_end_by_max_turns() {
        let s = scenario();
        let t = traveller(&s, 3);
        let mut tr = Vec::new();
        let mut total = 0.0;
        for turn in 1..=s.rules.max_turns {
            tr.push(Message::agent(s.question_text(Question::Rating(turn % 7))));
            let j = s.judge(&t, &tr);
            total += j.reward;
            assert_eq!(j.done, turn == s.rules.max_turns);
            tr.push(Message::persona("3 out of 5: it's fine."));
        }
        assert!((total + s.rules.question_cost * s.rules.max_turns as f64).abs() < 1e-12);
    }

    #[test]
    fn the_traveller_answers_by_its_tastes() {
        let s = scenario();
        let mut t = traveller(&s, 11);
        let night = s.attribute("nightlife").unwrap();
        t.weights[night].1 = 1.0;
        let q = s.questions.iter().position(|&q| q == Question::Rating(night)).unwrap();
        let tr = vec![Message::agent(s.candidates(&[])[q].clone())];
        let mut high = 0;
        for e in 0..200 {
            let reply = s.traveller_reply(&t, &tr, 0.5, 0.25, &mut turn_rng(e, 1, Stream::Persona));
            high += (s.answer_index(Question::Rating(night), &reply) == Some(4)) as usize;
        }
        // P(5 | mean 5, noise 0.5) = P(ε > −0.5) ≈ 0.84.
        assert!((140..=190).contains(&high), "{high}");
        assert!(s.persona_card(&t).contains("nightlife: 5 out of 5"));
    }
}
