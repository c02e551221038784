//! Scripted speakers for [`Tutoring`]: the student persona and the tutors (lecture,
//! adaptive, random), with a Bayesian Knowledge Tracing belief the adaptive tutor keeps.
//!
//! The belief ([`TutorBelief`]) is exact BKT with prerequisites: a distribution over the
//! joint (level, set of mastered skills) of the student, started from the curriculum's
//! generative model and updated by every diagnostic answer (correct with 1 − slip if
//! mastered, `guess` if not), every reply to an explanation ("went over my head" says the
//! level is lower) and the learning transitions of explanations and worked examples. The
//! misconceptions are tracked beside it, one probability each (a misconception's answer
//! or an "aha" reveals one; a plain answer or reply rules it out). The tutor uses the
//! curriculum's mean parameters; the student's own differ a little (its learning rate
//! is scaled per student), which the belief does not know.

use anyhow::{Result, bail};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{
    Agent, AgentRow, AgentTurn, Context, Message, Persona, PersonaRow, PersonaTurn, Probability, Role, SpeakerRow, Spec,
};
use dialogym_scenarios::tutoring::{
    AHA_REPLY, EXAMPLE_REPLY, FOLLOWED_REPLY, LOST_REPLY, Outcome, Student, TutorAction, Tutoring,
};
use rand::Rng as _;

fn tutor(spec: &Spec, scenario: &Tutoring, _: &Context) -> Result<Box<dyn Agent<Tutoring>>> {
    match Tutor::from_spec(spec, scenario)? {
        Some(t) => Ok(Box::new(t)),
        None => bail!("`{spec}` is not a tutor"),
    }
}

fn student(spec: &Spec, _: &Tutoring, _: &Context) -> Result<Box<dyn Persona<Tutoring>>> {
    spec.no_params()?;
    Ok(Box::new(ScriptedStudent))
}

/// Agents the tutoring scenario offers.
pub const TUTORING_AGENTS: &[AgentRow<Tutoring>] = &[
    SpeakerRow {
        name: "adaptive",
        aliases: &[],
        usage: "adaptive(eps=0,horizon=6)",
        help: "BKT belief from the transcript; weighs each diagnostic and teaching move by its gain plus an \
               open-loop plan of `horizon` moves after its reply, so it diagnoses when the answer pays and teaches \
               the weakest skill whose prerequisites are mastered; ends when no move pays; eps: random moves",
        build: tutor,
    },
    SpeakerRow {
        name: "lecture",
        aliases: &[],
        usage: "lecture(level=standard,passes=2)",
        help: "explains every skill in curriculum order at one level, passes times, then ends",
        build: tutor,
    },
    SpeakerRow {
        name: "random",
        aliases: &[],
        usage: "random(end=0.05)",
        help: "random utterances; ends the session with probability end",
        build: tutor,
    },
];

/// Personas the tutoring scenario offers.
pub const TUTORING_PERSONAS: &[PersonaRow<Tutoring>] = &[SpeakerRow {
    name: "student",
    aliases: &["oracle"],
    usage: "student",
    help: "answers by its true mastery (BKT slip and guess), learns as the scenario rules say (alias: oracle)",
    build: student,
}];

/// The scripted student: replays the session to its true state and answers from it.
pub struct ScriptedStudent;

impl Persona<Tutoring> for ScriptedStudent {
    fn id(&self) -> String {
        "student".into()
    }

    fn reply(&mut self, scenario: &Tutoring, turns: &mut [PersonaTurn<'_, Student>]) -> Result<Vec<String>> {
        Ok(turns.iter_mut().map(|t| scenario.student_reply(t.hidden, t.transcript, &mut t.rng)).collect())
    }
}

/// What the tutor believes about the student.
#[derive(Clone, Debug, PartialEq)]
pub struct TutorBelief {
    /// P(level, mastered-skill bitmask), summing to 1.
    pub states: Vec<(usize, u32, f64)>,
    /// P(misconception held now), per curriculum misconception.
    pub misconceptions: Vec<f64>,
}

fn mask_has(mask: u32, s: usize) -> bool {
    mask & (1 << s) != 0
}

impl TutorBelief {
    /// The curriculum's prior: levels by weight, then each skill mastered with its scaled
    /// prior if its prerequisites are, and each misconception with its marginal probability.
    pub fn prior(scenario: &Tutoring) -> TutorBelief {
        let c = &scenario.curriculum;
        let total: f64 = c.levels.iter().map(|l| l.weight).sum();
        let mut states = Vec::new();
        for (lv, level) in c.levels.iter().enumerate() {
            let mut partial: Vec<(u32, f64)> = vec![(0, level.weight / total)];
            for (s, skill) in c.skills.iter().enumerate() {
                let p = (skill.bkt.prior * level.prior_scale).min(scenario.rules.mastery_cap).clamp(0.0, 1.0);
                let mut next = Vec::with_capacity(partial.len() * 2);
                for (mask, w) in partial {
                    if scenario.prerequisites[s].iter().all(|&q| mask_has(mask, q)) {
                        next.push((mask | 1 << s, w * p));
                        next.push((mask, w * (1.0 - p)));
                    } else {
                        next.push((mask, w));
                    }
                }
                partial = next;
            }
            states.extend(partial.into_iter().filter(|x| x.1 > 0.0).map(|(m, w)| (lv, m, w)));
        }
        let counts: f64 = c.misconception_counts.iter().sum();
        let expected: f64 = c.misconception_counts.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p / counts).sum();
        let q = (expected / c.misconceptions.len().max(1) as f64).min(1.0);
        TutorBelief { states, misconceptions: vec![q; c.misconceptions.len()] }
    }

    /// The belief after a whole transcript.
    pub fn from_transcript(scenario: &Tutoring, transcript: &[Message]) -> TutorBelief {
        let mut b = TutorBelief::prior(scenario);
        for (i, m) in transcript.iter().enumerate() {
            if m.role != Role::Agent {
                continue;
            }
            let reply = transcript.get(i + 1).filter(|r| r.role == Role::Persona).map(|r| r.content.as_str());
            b.observe(scenario, scenario.interpret(&m.content), reply);
        }
        b
    }

    fn normalize(&mut self) {
        let total: f64 = self.states.iter().map(|s| s.2).sum();
        if total > 0.0 {
            self.states.iter_mut().for_each(|s| s.2 /= total);
        }
    }

    /// Multiplies by a likelihood; an impossible observation (a persona off the model) is
    /// ignored rather than emptying the belief.
    fn condition(&mut self, likelihood: impl Fn(usize, u32) -> f64) {
        let before = self.states.clone();
        for s in &mut self.states {
            s.2 *= likelihood(s.0, s.1);
        }
        if self.states.iter().map(|s| s.2).sum::<f64>() <= 1e-300 {
            self.states = before;
        }
        self.states.retain(|s| s.2 > 0.0);
        self.normalize();
    }

    /// Learning transition of an explanation at `level` (None: a worked example) of skill `s`.
    fn transition(&mut self, scenario: &Tutoring, s: usize, level: Option<usize>) {
        let learn = scenario.curriculum.skills[s].bkt.learn;
        let mut next: Vec<(usize, u32, f64)> = Vec::with_capacity(self.states.len() * 2);
        for &(lv, mask, p) in &self.states {
            let factor = match level {
                None => scenario.rules.example_factor,
                Some(l) if l > lv => 0.0,
                Some(l) if l == lv => 1.0,
                Some(_) => scenario.rules.below_level_factor,
            };
            let ready = !mask_has(mask, s) && scenario.prerequisites[s].iter().all(|&q| mask_has(mask, q));
            let pl = if ready { (learn * factor).min(1.0) } else { 0.0 };
            if pl > 0.0 {
                next.push((lv, mask | 1 << s, p * pl));
            }
            if pl < 1.0 {
                next.push((lv, mask, p * (1.0 - pl)));
            }
        }
        // Merge equal states; sorted, so sums never depend on the order of arrival.
        next.sort_by_key(|x| (x.0, x.1));
        let mut states: Vec<(usize, u32, f64)> = Vec::with_capacity(next.len());
        for x in next {
            match states.last_mut() {
                Some(last) if last.0 == x.0 && last.1 == x.1 => last.2 += x.2,
                _ => states.push(x),
            }
        }
        self.states = states;
    }

    /// Updates on one agent utterance and the student's reply to it (None: no reply yet).
    pub fn observe(&mut self, scenario: &Tutoring, action: TutorAction, reply: Option<&str>) {
        let misc_of = |s: usize| scenario.misconception_of[s];
        match action {
            TutorAction::Diagnose(s, i) => {
                let Some(reply) = reply else { return };
                let bkt = scenario.curriculum.skills[s].bkt;
                match scenario.classify(s, i, reply) {
                    Outcome::Bug => {
                        if let Some(m) = misc_of(s) {
                            self.misconceptions[m] = 1.0;
                        }
                    }
                    outcome => {
                        if let Some(m) = misc_of(s) {
                            self.misconceptions[m] = 0.0;
                        }
                        let right = outcome == Outcome::Correct;
                        self.condition(|_, mask| match (mask_has(mask, s), right) {
                            (true, true) => 1.0 - bkt.slip,
                            (true, false) => bkt.slip,
                            (false, true) => bkt.guess,
                            (false, false) => 1.0 - bkt.guess,
                        });
                    }
                }
            }
            TutorAction::Explain(s, l) => {
                match reply {
                    Some(r) if r == LOST_REPLY => {
                        self.condition(|lv, _| (lv < l) as u8 as f64);
                        return;
                    }
                    Some(r) if r == FOLLOWED_REPLY || r == AHA_REPLY => {
                        self.condition(|lv, _| (lv >= l) as u8 as f64);
                        if let Some(m) = misc_of(s) {
                            self.misconceptions[m] = 0.0;
                        }
                    }
                    _ => {
                        // No readable reply: the misconception is cleared if the level was right.
                        if let Some(m) = misc_of(s) {
                            let below: f64 = self.states.iter().filter(|x| x.0 < l).map(|x| x.2).sum();
                            self.misconceptions[m] *= below;
                        }
                    }
                }
                self.transition(scenario, s, Some(l));
            }
            TutorAction::Example(s) => {
                if let Some(m) = misc_of(s)
                    && reply.is_none_or(|r| r == AHA_REPLY || r == EXAMPLE_REPLY)
                {
                    self.misconceptions[m] = 0.0;
                }
                self.transition(scenario, s, None);
            }
            TutorAction::End | TutorAction::Other => {}
        }
    }

    /// P(skill `s` mastered).
    pub fn mastery(&self, s: usize) -> f64 {
        self.states.iter().filter(|x| mask_has(x.1, s)).map(|x| x.2).sum()
    }

    /// P(level = l) for each level.
    pub fn levels(&self, n: usize) -> Vec<f64> {
        let mut p = vec![0.0; n];
        for &(l, _, w) in &self.states {
            p[l] += w;
        }
        p
    }

    /// Expected rise of the post-test score from a teaching action (explanation or example).
    pub fn expected_gain(&self, scenario: &Tutoring, action: TutorAction) -> f64 {
        let (s, level) = match action {
            TutorAction::Explain(s, l) => (s, Some(l)),
            TutorAction::Example(s) => (s, None),
            _ => return 0.0,
        };
        let bkt = scenario.curriculum.skills[s].bkt;
        let q = scenario.misconception_of[s].map_or(0.0, |m| self.misconceptions[m]);
        let mut gain = 0.0;
        for &(lv, mask, p) in &self.states {
            let factor = match level {
                None => scenario.rules.example_factor,
                Some(l) if l > lv => continue,
                Some(l) if l == lv => 1.0,
                Some(_) => scenario.rules.below_level_factor,
            };
            gain += p * if mask_has(mask, s) {
                q * (1.0 - bkt.slip)
            } else {
                let ready = scenario.prerequisites[s].iter().all(|&r| mask_has(mask, r));
                let pl = if ready { (bkt.learn * factor).min(1.0) } else { 0.0 };
                q * (pl * (1.0 - bkt.slip) + (1.0 - pl) * bkt.guess) + (1.0 - q) * pl * (1.0 - bkt.slip - bkt.guess)
            };
        }
        gain / scenario.n_skills() as f64
    }

    /// The expected gain of every teaching action (explanations at each level, then the
    /// worked example, skill by skill), from one pass over the states.
    pub fn teaching_gains(&self, scenario: &Tutoring) -> Vec<(TutorAction, f64)> {
        let n = scenario.n_skills();
        let n_levels = scenario.curriculum.levels.len();
        // Per skill and level: P(mastered), P(not mastered but ready), P(neither).
        let mut mass = vec![[0.0f64; 3]; n * n_levels];
        for &(lv, mask, p) in &self.states {
            for s in 0..n {
                let k = if mask_has(mask, s) {
                    0
                } else if scenario.prerequisites[s].iter().all(|&r| mask_has(mask, r)) {
                    1
                } else {
                    2
                };
                mass[s * n_levels + lv][k] += p;
            }
        }
        let mut out = Vec::with_capacity(n * (n_levels + 1));
        for s in 0..n {
            let bkt = scenario.curriculum.skills[s].bkt;
            let q = scenario.misconception_of[s].map_or(0.0, |m| self.misconceptions[m]);
            let gain = |factor: &dyn Fn(usize) -> f64| -> f64 {
                let mut g = 0.0;
                for lv in 0..n_levels {
                    let f = factor(lv);
                    if f < 0.0 {
                        continue;
                    }
                    let [m, ready, blocked] = mass[s * n_levels + lv];
                    let pl = (bkt.learn * f).min(1.0);
                    g += m * q * (1.0 - bkt.slip)
                        + ready
                            * (q * (pl * (1.0 - bkt.slip) + (1.0 - pl) * bkt.guess)
                                + (1.0 - q) * pl * (1.0 - bkt.slip - bkt.guess))
                        + blocked * q * bkt.guess;
                }
                g / n as f64
            };
            for l in 0..n_levels {
                // A negative factor marks levels the explanation does not reach.
                let factor = |lv: usize| match l.cmp(&lv) {
                    std::cmp::Ordering::Greater => -1.0,
                    std::cmp::Ordering::Equal => 1.0,
                    std::cmp::Ordering::Less => scenario.rules.below_level_factor,
                };
                out.push((TutorAction::Explain(s, l), gain(&factor)));
            }
            out.push((TutorAction::Example(s), gain(&|_| scenario.rules.example_factor)));
        }
        out
    }

    /// The teaching action of highest expected gain and its gain (the first on ties).
    pub fn best_teaching(&self, scenario: &Tutoring) -> (TutorAction, f64) {
        let mut best = (TutorAction::End, 0.0);
        for (a, g) in self.teaching_gains(scenario) {
            if g > best.1 + 1e-12 {
                best = (a, g);
            }
        }
        best
    }

    /// The student's possible replies to `action`, each with its probability and the belief
    /// after it (teaching actions include their learning transition).
    pub fn outcomes(&self, scenario: &Tutoring, action: TutorAction) -> Vec<(f64, TutorBelief)> {
        let q = |s: usize| scenario.misconception_of[s].map_or(0.0, |m| self.misconceptions[m]);
        let replies: Vec<(f64, String)> = match action {
            TutorAction::Diagnose(s, i) => {
                let bkt = scenario.curriculum.skills[s].bkt;
                let item = &scenario.curriculum.skills[s].items[i];
                let pm = self.mastery(s);
                let right = (1.0 - q(s)) * (pm * (1.0 - bkt.slip) + (1.0 - pm) * bkt.guess);
                vec![
                    (right, item.answer.clone()),
                    ((1.0 - q(s)) - right, item.wrong[0].clone()),
                    (q(s), item.bug.clone().unwrap_or_default()),
                ]
            }
            TutorAction::Explain(s, l) => {
                let lost: f64 = self.states.iter().filter(|x| x.0 < l).map(|x| x.2).sum();
                vec![
                    (lost, LOST_REPLY.to_string()),
                    ((1.0 - lost) * (1.0 - q(s)), FOLLOWED_REPLY.to_string()),
                    ((1.0 - lost) * q(s), AHA_REPLY.to_string()),
                ]
            }
            TutorAction::Example(s) => vec![(1.0 - q(s), EXAMPLE_REPLY.to_string()), (q(s), AHA_REPLY.to_string())],
            TutorAction::End | TutorAction::Other => vec![(1.0, String::new())],
        };
        replies
            .into_iter()
            .filter(|(p, _)| *p > 1e-9)
            .map(|(p, reply)| {
                let mut post = self.clone();
                post.observe(scenario, action, Some(&reply));
                (p, post)
            })
            .collect()
    }

    /// The belief after `action` before its reply is heard (the mixture over replies).
    pub fn predict(&self, scenario: &Tutoring, action: TutorAction) -> TutorBelief {
        let mut b = self.clone();
        match action {
            TutorAction::Explain(s, l) => {
                if let Some(m) = scenario.misconception_of[s] {
                    // Cleared unless the explanation was above the student's level.
                    b.misconceptions[m] *= self.states.iter().filter(|x| x.0 < l).map(|x| x.2).sum::<f64>();
                }
                b.transition(scenario, s, Some(l));
            }
            TutorAction::Example(s) => {
                if let Some(m) = scenario.misconception_of[s] {
                    b.misconceptions[m] = 0.0;
                }
                b.transition(scenario, s, None);
            }
            _ => {}
        }
        b
    }

    /// Net expected gain of up to `steps` greedy teaching moves made without hearing any
    /// reply (an open-loop plan), each while its gain beats the turn cost.
    pub fn rollout(&self, scenario: &Tutoring, steps: usize) -> f64 {
        let cost = scenario.rules.turn_cost;
        let mut b = self.clone();
        let mut total = 0.0;
        for _ in 0..steps {
            let (a, g) = b.best_teaching(scenario);
            if g <= cost {
                break;
            }
            total += g - cost;
            b = b.predict(scenario, a);
        }
        total
    }

    /// The value of `action` now: its expected gain minus its cost, plus the expected value
    /// of an open-loop teaching plan of `horizon` moves after hearing its reply. A
    /// diagnostic gains nothing itself; its value is the better plan its answer allows.
    pub fn value(&self, scenario: &Tutoring, action: TutorAction, horizon: usize) -> f64 {
        let now = self.expected_gain(scenario, action) - scenario.rules.turn_cost;
        if horizon == 0 {
            return now;
        }
        now + self.outcomes(scenario, action).iter().map(|(p, post)| p * post.rollout(scenario, horizon)).sum::<f64>()
    }
}

/// How a tutor behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TutorStyle {
    /// Explain every skill in order at `level`, `passes` times, then end.
    Lecture {
        /// Level index.
        level: usize,
        /// Passes over the curriculum.
        passes: usize,
    },
    /// Diagnose and teach from the BKT belief.
    Adaptive {
        /// Probability of a random (non-ending) utterance.
        eps: f64,
        /// Moves of the open-loop teaching plan that values each move.
        horizon: usize,
    },
    /// Random utterances.
    Random {
        /// Probability of ending the session.
        end: f64,
    },
}

/// A scripted tutor.
pub struct Tutor {
    style: TutorStyle,
    spec: String,
}

impl Tutor {
    /// `adaptive(eps=0,horizon=6)`, `lecture(level=standard,passes=2)`, `random(end=0.05)`.
    pub fn from_spec(spec: &Spec, scenario: &Tutoring) -> Result<Option<Tutor>> {
        let style = match spec.name.as_str() {
            "adaptive" => {
                #[derive(serde::Deserialize)]
                #[serde(default, deny_unknown_fields)]
                struct Params {
                    eps: Probability,
                    horizon: usize,
                }
                impl Default for Params {
                    fn default() -> Self {
                        Params { eps: Probability(0.0), horizon: 6 }
                    }
                }
                let p: Params = spec.params()?;
                TutorStyle::Adaptive { eps: p.eps.0, horizon: p.horizon }
            }
            "lecture" => {
                #[derive(serde::Deserialize)]
                #[serde(default, deny_unknown_fields)]
                struct Params {
                    level: String,
                    passes: usize,
                }
                impl Default for Params {
                    fn default() -> Self {
                        Params { level: "standard".into(), passes: 2 }
                    }
                }
                let Params { level: name, passes } = spec.params()?;
                let levels = &scenario.curriculum.levels;
                let Some(level) = levels.iter().position(|l| l.name == name) else {
                    let all: Vec<&str> = levels.iter().map(|l| l.name.as_str()).collect();
                    bail!("`{spec}`: level must be one of {}", all.join(", "));
                };
                TutorStyle::Lecture { level, passes }
            }
            "random" => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Params {
                    #[serde(default = "default_end")]
                    end: Probability,
                }
                fn default_end() -> Probability {
                    Probability(0.05)
                }
                TutorStyle::Random { end: spec.params::<Params>()?.end.0 }
            }
            _ => return Ok(None),
        };
        Ok(Some(Tutor { style, spec: spec.to_string() }))
    }

    fn random_move(scenario: &Tutoring, rng: &mut dialogym_engine::seed::Rng) -> String {
        // The last candidate is the end of the session.
        let c = dialogym_engine::Scenario::candidates(scenario, &[]);
        c[rng.random_range(0..c.len().saturating_sub(1).max(1))].clone()
    }

    fn adaptive(scenario: &Tutoring, transcript: &[Message], horizon: usize) -> TutorAction {
        let belief = TutorBelief::from_transcript(scenario, transcript);
        let turns_left = scenario.rules.max_turns.saturating_sub(agent_turns(transcript));
        let horizon = horizon.min(turns_left.saturating_sub(1));
        // Moves worth weighing: the teaching moves of highest immediate gain, and (unless
        // nothing can follow) one diagnostic per skill, its least-asked item.
        let mut teach = belief.teaching_gains(scenario);
        // Stable: ties keep curriculum order.
        teach.sort_by(|x, y| y.1.total_cmp(&x.1));
        let mut moves: Vec<TutorAction> = teach.iter().take(TEACH_CANDIDATES).map(|x| x.0).collect();
        if horizon > 0 {
            for s in 0..scenario.n_skills() {
                let asked = |i: usize| {
                    let a = TutorAction::Diagnose(s, i);
                    transcript.iter().filter(|m| m.role == Role::Agent && scenario.interpret(&m.content) == a).count()
                };
                let items = scenario.curriculum.skills[s].items.len();
                moves.push(TutorAction::Diagnose(s, (0..items).min_by_key(|&i| asked(i)).unwrap_or(0)));
            }
        }
        let mut best = (TutorAction::End, 0.0);
        for a in moves {
            let v = belief.value(scenario, a, horizon);
            if v > best.1 + 1e-12 {
                best = (a, v);
            }
        }
        best.0
    }
}

/// Teaching moves the adaptive tutor weighs by lookahead (those of highest immediate gain).
const TEACH_CANDIDATES: usize = 8;

impl Agent<Tutoring> for Tutor {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, scenario: &Tutoring, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        Ok(turns
            .iter_mut()
            .map(|turn| match self.style {
                TutorStyle::Lecture { level, passes } => {
                    let k = agent_turns(turn.transcript);
                    let n = scenario.n_skills();
                    if k < passes * n {
                        scenario.text(TutorAction::Explain(k % n, level))
                    } else {
                        scenario.text(TutorAction::End)
                    }
                }
                TutorStyle::Random { end } => {
                    if turn.rng.random_bool(end) {
                        scenario.text(TutorAction::End)
                    } else {
                        Tutor::random_move(scenario, &mut turn.rng)
                    }
                }
                TutorStyle::Adaptive { eps, horizon } => {
                    if eps > 0.0 && turn.rng.random_bool(eps) {
                        Tutor::random_move(scenario, &mut turn.rng)
                    } else {
                        scenario.text(Tutor::adaptive(scenario, turn.transcript, horizon))
                    }
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialogym_engine::Scenario;

    fn scenario() -> Tutoring {
        Tutoring::from_spec(&Spec::parse("tutoring").unwrap()).unwrap()
    }

    #[test]
    fn the_prior_is_a_distribution_over_prerequisite_closed_states() {
        let s = scenario();
        let b = TutorBelief::prior(&s);
        assert!((b.states.iter().map(|x| x.2).sum::<f64>() - 1.0).abs() < 1e-9);
        for &(_, mask, _) in &b.states {
            for k in 0..s.n_skills() {
                assert!(!mask_has(mask, k) || s.prerequisites[k].iter().all(|&p| mask_has(mask, p)));
            }
        }
        // Dividing needs four skills below it: rarer than reading fractions.
        assert!(b.mastery(7) < b.mastery(0));
        assert!(b.misconceptions.iter().all(|&q| (q - 0.35).abs() < 1e-9), "{:?}", b.misconceptions);
    }

    #[test]
    fn answers_and_replies_move_the_belief() {
        let s = scenario();
        let prior = TutorBelief::prior(&s);
        let ask = |reply: &str| {
            let t = vec![Message::agent(s.text(TutorAction::Diagnose(2, 0))), Message::persona(reply)];
            TutorBelief::from_transcript(&s, &t)
        };
        assert!(ask("3/4").mastery(2) > prior.mastery(2));
        assert!(ask("I think it's 3/8.").mastery(2) < prior.mastery(2));
        // A misconception's answer reveals it.
        let t = vec![Message::agent(s.text(TutorAction::Diagnose(5, 0))), Message::persona("2/7")];
        assert_eq!(TutorBelief::from_transcript(&s, &t).misconceptions[2], 1.0);
        // "Went over my head" at the advanced level rules the advanced level out.
        let t = vec![Message::agent(s.text(TutorAction::Explain(0, 2))), Message::persona(LOST_REPLY)];
        let b = TutorBelief::from_transcript(&s, &t);
        assert_eq!(b.levels(3)[2], 0.0);
        // Teaching a ready skill raises its mastery; an unready one barely moves.
        let t = vec![Message::agent(s.text(TutorAction::Explain(0, 0))), Message::persona(FOLLOWED_REPLY)];
        assert!(TutorBelief::from_transcript(&s, &t).mastery(0) > prior.mastery(0));
    }

    #[test]
    fn aggregated_gains_match_the_per_state_sum_and_favour_ready_skills() {
        let s = scenario();
        let t = vec![
            Message::agent(s.text(TutorAction::Diagnose(1, 0))),
            Message::persona("8/12"),
            Message::agent(s.text(TutorAction::Explain(2, 2))),
            Message::persona(LOST_REPLY),
        ];
        let b = TutorBelief::from_transcript(&s, &t);
        for (a, g) in b.teaching_gains(&s) {
            assert!((g - b.expected_gain(&s, a)).abs() < 1e-12, "{a:?}");
        }
        // Equivalent fractions answered right: simplifying (which needs it) is worth more
        // than dividing (which needs three more skills).
        let g = |a| b.expected_gain(&s, a);
        assert!(g(TutorAction::Explain(2, 1)) > g(TutorAction::Explain(7, 1)));
        // The advanced level is ruled out, so explaining there gains nothing.
        assert_eq!(g(TutorAction::Explain(2, 2)), 0.0);
        // Predicting without the reply is the mixture of the replies' beliefs.
        let a = TutorAction::Explain(2, 1);
        let mix: f64 = b.outcomes(&s, a).iter().map(|(p, post)| p * post.mastery(2)).sum();
        assert!((mix - b.predict(&s, a).mastery(2)).abs() < 1e-9);
    }

    #[test]
    fn lecture_follows_the_curriculum_then_ends() {
        let s = scenario();
        let mut tutor = Tutor::from_spec(&Spec::parse("lecture(passes=1)").unwrap(), &s).unwrap().unwrap();
        let mut t = Vec::new();
        for k in 0..=s.n_skills() {
            let mut turns = [AgentTurn {
                episode: 0,
                transcript: &t,
                rng: dialogym_engine::seed::turn_rng(0, 0, dialogym_engine::seed::Stream::Agent),
            }];
            let said = tutor.act(&s, &mut turns).unwrap().remove(0);
            let want = if k < s.n_skills() { TutorAction::Explain(k, 1) } else { TutorAction::End };
            assert_eq!(s.interpret(&said), want);
            t.push(Message::agent(said));
            t.push(Message::persona(FOLLOWED_REPLY));
        }
        assert!(Tutor::from_spec(&Spec::parse("lecture(level=expert)").unwrap(), &s).is_err());
        assert!(Tutor::from_spec(&Spec::parse("genius").unwrap(), &s).unwrap().is_none());
        assert!(s.candidates(&[]).len() < 300);
    }
}
