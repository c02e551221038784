//! Scenarios as the CLI sees them: loaded by name, with their cast, behind one object-safe
//! trait so that `generate`, `eval` and `train` are written once for every scenario type.
//!
//! Adding a scenario type: its module in `scenarios/`, its scripted speakers in `agents/`,
//! one `impl Roster` below, and one line in [`SCENARIOS`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use crossbeam_channel::Sender;
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::world::{PlayConfig, Pool, Tally, play};
use dialogym_engine::{Agent, Judgement, Message, MixSpec, Persona, Scenario, Spec};
use dialogym_scenarios::entity::EntityScenario;
use dialogym_scenarios::polling::Poll;
use dialogym_scenarios::preference::Preference;
use dialogym_scenarios::tutoring::Tutoring;

/// What a scenario type offers: its scripted speakers, by spec.
pub trait Roster: Scenario + Sized {
    /// A scripted (or scenario-specific) agent, or `None` if the name is not this
    /// scenario's (learned agents are handled for every scenario by [`Session`]).
    fn agent(&self, spec: &Spec) -> Result<Box<dyn Agent<Self>>>;
    /// A persona.
    fn persona(&self, spec: &Spec) -> Result<Box<dyn Persona<Self>>>;
    /// Agents and personas with one line each, for `scenarios describe` and errors.
    fn roster(&self) -> (Vec<(&'static str, &'static str)>, Vec<(&'static str, &'static str)>);
    /// The rules in a few lines.
    fn rules(&self) -> String;
    /// The documented range of an episode's return (`tests/properties.rs` holds every
    /// registered scenario to it); None until a scenario documents one.
    fn return_range(&self) -> Option<(f64, f64)> {
        None
    }
}

impl Roster for EntityScenario {
    fn agent(&self, spec: &Spec) -> Result<Box<dyn Agent<Self>>> {
        match crate::llm::agent(spec, self)? {
            Some(a) => Ok(a),
            None => dialogym_agents::entity_agent(spec),
        }
    }

    fn persona(&self, spec: &Spec) -> Result<Box<dyn Persona<Self>>> {
        match crate::llm::persona(spec, self)? {
            Some(p) => Ok(p),
            None => dialogym_agents::entity_persona(spec, self),
        }
    }

    fn roster(&self) -> (Vec<(&'static str, &'static str)>, Vec<(&'static str, &'static str)>) {
        let agents = dialogym_agents::ENTITY_AGENTS.iter().chain(crate::llm::LLM_AGENTS).copied().collect();
        let personas = dialogym_agents::ENTITY_PERSONAS.iter().chain(crate::llm::LLM_PERSONAS).copied().collect();
        (agents, personas)
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

impl Roster for Poll {
    fn agent(&self, spec: &Spec) -> Result<Box<dyn Agent<Self>>> {
        dialogym_agents::polling::poll_agent(spec)
    }

    fn persona(&self, spec: &Spec) -> Result<Box<dyn Persona<Self>>> {
        dialogym_agents::polling::poll_persona(spec)
    }

    fn roster(&self) -> (Vec<(&'static str, &'static str)>, Vec<(&'static str, &'static str)>) {
        (dialogym_agents::polling::POLL_AGENTS.to_vec(), dialogym_agents::polling::POLL_PERSONAS.to_vec())
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

impl Roster for Tutoring {
    fn agent(&self, spec: &Spec) -> Result<Box<dyn Agent<Self>>> {
        dialogym_agents::tutoring_agent(spec, self)
    }

    fn persona(&self, spec: &Spec) -> Result<Box<dyn Persona<Self>>> {
        dialogym_agents::tutoring_persona(spec)
    }

    fn roster(&self) -> (Vec<(&'static str, &'static str)>, Vec<(&'static str, &'static str)>) {
        (dialogym_agents::TUTORING_AGENTS.to_vec(), dialogym_agents::TUTORING_PERSONAS.to_vec())
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

impl Roster for Preference {
    fn agent(&self, spec: &Spec) -> Result<Box<dyn Agent<Self>>> {
        dialogym_agents::preference_agent(spec, self)
    }

    fn persona(&self, spec: &Spec) -> Result<Box<dyn Persona<Self>>> {
        dialogym_agents::preference_persona(spec, self)
    }

    fn roster(&self) -> (Vec<(&'static str, &'static str)>, Vec<(&'static str, &'static str)>) {
        (dialogym_agents::PREFERENCE_AGENTS.to_vec(), dialogym_agents::PREFERENCE_PERSONAS.to_vec())
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

/// A loaded scenario, type-erased.
pub trait Session: Send + Sync {
    /// Canonical spec.
    fn id(&self) -> String;
    /// Rules and cast, for `scenarios describe`.
    fn describe(&self) -> String;
    /// What the agent is told of its task (the system prompt of LLM agents and critics).
    fn agent_brief(&self) -> String;
    /// The scenario's candidate utterances at the start of an episode (the learners'
    /// action vocabulary).
    fn candidates(&self) -> Vec<String>;
    /// Builds the cast of a run.
    fn prepare(&self, agent: &MixSpec, persona: &MixSpec) -> Result<Box<dyn Prepared>>;
    /// The candidate utterances after `transcript`.
    fn candidates_after(&self, transcript: &[Message]) -> Vec<String>;
    /// At most this many agent utterances per episode.
    fn max_agent_turns(&self) -> usize;
    /// The documented return range, if the scenario documents one.
    fn return_range(&self) -> Option<(f64, f64)>;
    /// The specs of the scenario's own agents and personas, in roster order (the first of
    /// each is its main scripted one).
    fn cast_names(&self) -> (Vec<String>, Vec<String>);
    /// Judges `transcript` as the world would have: the hidden state drawn again for
    /// `episode_seed` (returned as the corpus records it), then the verdict after every
    /// message, with the world's out-of-turns rule. Judging is pure, so a corpus row's
    /// `rewards` and `dones` come back exactly.
    fn rejudge(&self, episode_seed: u64, transcript: &[Message]) -> Result<(serde_json::Value, Vec<Judgement>)>;
}

/// A scenario with its speakers built, ready to play.
pub trait Prepared {
    /// Agent ids with weights (for the manifest).
    fn agent_ids(&self) -> Vec<(String, f64)>;
    /// Persona ids with weights.
    fn persona_ids(&self) -> Vec<(String, f64)>;
    /// Plays `config.episodes` into `sink` (see `world::play`).
    fn play(
        self: Box<Self>,
        config: &PlayConfig,
        sink: Sender<EpisodeRecord>,
        stop: &AtomicBool,
        on_tick: &mut dyn FnMut(&Tally),
    ) -> Result<Tally>;
}

struct Cast<S: Scenario> {
    scenario: Arc<S>,
    agents: Pool<dyn Agent<S>>,
    personas: Pool<dyn Persona<S>>,
}

impl<S: Scenario> Prepared for Cast<S> {
    fn agent_ids(&self) -> Vec<(String, f64)> {
        self.agents.iter().map(|(a, w)| (a.id(), *w)).collect()
    }

    fn persona_ids(&self) -> Vec<(String, f64)> {
        self.personas.iter().map(|(p, w)| (p.id(), *w)).collect()
    }

    fn play(
        self: Box<Self>,
        config: &PlayConfig,
        sink: Sender<EpisodeRecord>,
        stop: &AtomicBool,
        on_tick: &mut dyn FnMut(&Tally),
    ) -> Result<Tally> {
        let c = *self;
        play(c.scenario, c.agents, c.personas, config, sink, stop, on_tick)
    }
}

impl<S: Roster> Session for Arc<S> {
    fn id(&self) -> String {
        Scenario::id(&**self)
    }

    fn agent_brief(&self) -> String {
        Scenario::agent_brief(&**self)
    }

    fn describe(&self) -> String {
        let (agents, personas) = self.roster();
        let mut out = self.rules();
        out.push_str("\n\nagents:\n");
        for (n, about) in agents.iter().chain(&[("learned:DIR(temperature=0)", LEARNED), ("uniform", UNIFORM)]) {
            out.push_str(&format!("  {n:<36} {about}\n"));
        }
        out.push_str("personas:\n");
        for (n, about) in personas {
            out.push_str(&format!("  {n:<36} {about}\n"));
        }
        out
    }

    fn candidates(&self) -> Vec<String> {
        Scenario::candidates(&**self, &[])
    }

    fn prepare(&self, agent: &MixSpec, persona: &MixSpec) -> Result<Box<dyn Prepared>> {
        let agents = agent
            .components
            .iter()
            .map(|(s, w)| {
                let a: Box<dyn Agent<S>> = match s.name.as_str() {
                    "learned" => Box::new(dialogym_policies::agent::LearnedAgent::from_spec(s)?),
                    "uniform" => Box::new(dialogym_agents::uniform::Uniform),
                    _ => Roster::agent(&**self, s)?,
                };
                Ok((a, *w))
            })
            .collect::<Result<_>>()?;
        let personas =
            persona.components.iter().map(|(s, w)| Ok((Roster::persona(&**self, s)?, *w))).collect::<Result<_>>()?;
        Ok(Box::new(Cast { scenario: self.clone(), agents, personas }))
    }

    fn candidates_after(&self, transcript: &[Message]) -> Vec<String> {
        Scenario::candidates(&**self, transcript)
    }

    fn max_agent_turns(&self) -> usize {
        Scenario::max_agent_turns(&**self)
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        Roster::return_range(&**self)
    }

    fn cast_names(&self) -> (Vec<String>, Vec<String>) {
        let (agents, personas) = self.roster();
        let names = |r: Vec<(&str, &str)>| r.into_iter().map(|(n, _)| n.to_string()).collect();
        (names(agents), names(personas))
    }

    fn rejudge(&self, episode_seed: u64, transcript: &[Message]) -> Result<(serde_json::Value, Vec<Judgement>)> {
        let (hidden, verdicts) = dialogym_engine::judge::replay(&**self, episode_seed, transcript);
        Ok((serde_json::to_value(&hidden)?, verdicts))
    }
}

const LEARNED: &str =
    "a checkpoint from `dialogym train` (argmax of min Q, or sampling; repeat=false never says a candidate twice)";
const UNIFORM: &str = "one of the scenario's candidate utterances, uniformly at random";

fn entity(spec: &str) -> Result<Box<dyn Session>> {
    Ok(Box::new(Arc::new(dialogym_scenarios::load(spec)?)))
}

fn polling(spec: &str) -> Result<Box<dyn Session>> {
    Ok(Box::new(Arc::new(Poll::build(&Spec::parse(spec)?)?)))
}

fn tutoring(spec: &str) -> Result<Box<dyn Session>> {
    Ok(Box::new(Arc::new(Tutoring::from_spec(&Spec::parse(spec)?)?)))
}

fn preference(spec: &str) -> Result<Box<dyn Session>> {
    Ok(Box::new(Arc::new(Preference::from_spec(&Spec::parse(spec)?)?)))
}

/// The scenarios `--scenario` accepts by name: name, one line, loader.
pub const SCENARIOS: &[(&str, &str, fn(&str) -> Result<Box<dyn Session>>)] = &[
    (
        "twenty-questions",
        "LMRL-Gym's 20 Questions: 158 objects, ≤ 20 yes/no questions, −1 per question, 0 for naming the object",
        entity,
    ),
    ("guess-my-city", dialogym_scenarios::GUESS_MY_CITY, entity),
    ("opinion-polling", "adaptive polling: ask ≤ 5 of 18 opinion questions, predict 6 held-out answers", polling),
    ("tutoring", "a tutor diagnoses and teaches 8 skills of fractions to a BKT student with misconceptions", tutoring),
    (
        "preference-elicitation",
        "a travel agent elicits a traveller's tastes and limits, then recommends 3 of 143 activities",
        preference,
    ),
];

/// Loads `--scenario`: a registered name (with parameters) or a scenario file (.toml).
pub fn load(text: &str) -> Result<Box<dyn Session>> {
    let trimmed = text.trim();
    if trimmed.ends_with(".toml") || trimmed.starts_with("file:") {
        return entity(trimmed);
    }
    let name = Spec::parse(trimmed)?.name;
    for (n, _, loader) in SCENARIOS {
        if *n == name {
            return loader(trimmed);
        }
    }
    let names: Vec<&str> = SCENARIOS.iter().map(|s| s.0).collect();
    bail!("unknown scenario `{name}`; built-in scenarios: {} (or a .toml scenario file)", names.join(", "))
}
