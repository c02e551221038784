//! Scenarios as the command line sees them: the one registry of scenario names
//! ([`SCENARIOS`]), each scenario type's speakers as rows ([`Cast`]), and the type-erased
//! [`Session`] that `generate`, `eval`, `train` and the experiments are written against.
//!
//! Adding a scenario: its module in `scenarios/` (implementing `Scenario`, with `ABOUT` and
//! `from_spec`) and one row in [`SCENARIOS`]; a new scenario *type* also names its speaker
//! rows in one `impl Cast` (`agents/src/cast.rs`; its speakers live in `agents/`, one row each).
//! Adding a speaker: its row in its scenario type's table (see `docs/architecture.md`).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, anyhow, bail};
use crossbeam_channel::Sender;
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::world::{PlayConfig, Pool, Tally, play};
use dialogym_engine::{Agent, Context, Judgement, Message, MixSpec, Persona, Scenario, Spec};
use dialogym_scenarios::entity::EntityScenario;
use dialogym_scenarios::polling::Poll;
use dialogym_scenarios::preference::Preference;
use dialogym_scenarios::tutoring::Tutoring;

pub use dialogym_agents::cast::{Cast, agent, agent_rows, generic_agents, persona};

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
    /// Builds the cast of a run (its speakers share this session's loaded models).
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
    /// Judges `transcript` as the world did (`engine::judge::replay`): the hidden state
    /// (as the corpus records it) and the verdict after every message.
    fn rejudge(&self, episode_seed: u64, transcript: &[Message]) -> Result<(serde_json::Value, Vec<Judgement>)>;
    /// What the speakers built by this session report about themselves (one line per
    /// label, however many runs a speaker played).
    fn report_lines(&self) -> Vec<(String, String)>;
    /// The scenario itself, for callers that need its type (`session::entity`).
    fn as_any(&self) -> &dyn Any;
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

struct Players<S: Scenario> {
    scenario: Arc<S>,
    agents: Pool<dyn Agent<S>>,
    personas: Pool<dyn Persona<S>>,
}

impl<S: Scenario> Prepared for Players<S> {
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

/// A scenario and the context its speakers share.
struct Loaded<S> {
    scenario: Arc<S>,
    context: Arc<Context>,
}

impl<S: Cast> Session for Loaded<S> {
    fn id(&self) -> String {
        self.scenario.id()
    }

    fn agent_brief(&self) -> String {
        self.scenario.agent_brief()
    }

    fn describe(&self) -> String {
        let mut out = self.scenario.rules();
        out.push_str("\n\nagents:\n");
        for r in agent_rows::<S>() {
            out.push_str(&format!("  {:<36} {}\n", r.usage, r.help));
        }
        out.push_str("personas:\n");
        for r in S::personas() {
            out.push_str(&format!("  {:<36} {}\n", r.usage, r.help));
        }
        out
    }

    fn candidates(&self) -> Vec<String> {
        self.scenario.candidates(&[])
    }

    fn prepare(&self, agent: &MixSpec, persona: &MixSpec) -> Result<Box<dyn Prepared>> {
        let (s, ctx) = (&*self.scenario, &*self.context);
        let agents =
            agent.components.iter().map(|(spec, w)| Ok((self::agent(spec, s, ctx)?, *w))).collect::<Result<_>>()?;
        let personas =
            persona.components.iter().map(|(spec, w)| Ok((self::persona(spec, s, ctx)?, *w))).collect::<Result<_>>()?;
        Ok(Box::new(Players { scenario: self.scenario.clone(), agents, personas }))
    }

    fn candidates_after(&self, transcript: &[Message]) -> Vec<String> {
        self.scenario.candidates(transcript)
    }

    fn max_agent_turns(&self) -> usize {
        self.scenario.max_agent_turns()
    }

    fn return_range(&self) -> Option<(f64, f64)> {
        self.scenario.return_range()
    }

    fn cast_names(&self) -> (Vec<String>, Vec<String>) {
        (
            S::agents().iter().map(|r| r.usage.to_string()).collect(),
            S::personas().iter().map(|r| r.usage.to_string()).collect(),
        )
    }

    fn rejudge(&self, episode_seed: u64, transcript: &[Message]) -> Result<(serde_json::Value, Vec<Judgement>)> {
        let (hidden, verdicts) = dialogym_engine::judge::replay(&*self.scenario, episode_seed, transcript);
        Ok((serde_json::to_value(&hidden)?, verdicts))
    }

    fn report_lines(&self) -> Vec<(String, String)> {
        self.context.report_lines()
    }

    fn as_any(&self) -> &dyn Any {
        &self.scenario
    }
}

/// A session over `scenario` whose speakers share `context`.
pub fn session<S: Cast>(scenario: S, context: Arc<Context>) -> Box<dyn Session> {
    Box::new(Loaded { scenario: Arc::new(scenario), context })
}

/// One registered scenario: the name `--scenario` takes, a line for `scenarios list`, and
/// how to build it from its spec.
pub struct ScenarioRow {
    /// The registry name.
    pub name: &'static str,
    /// One line for `scenarios list`.
    pub about: &'static str,
    /// Builds the session from the full spec (name and parameters).
    pub load: fn(&Spec, Arc<Context>) -> Result<Box<dyn Session>>,
}

/// The scenarios `--scenario` accepts by name (scenario files are accepted by path).
pub const SCENARIOS: &[ScenarioRow] = &[
    ScenarioRow {
        name: "twenty-questions",
        about: dialogym_scenarios::twenty_questions::ABOUT,
        load: |spec, c| Ok(session(dialogym_scenarios::twenty_questions::from_spec(spec)?, c)),
    },
    ScenarioRow {
        name: "guess-my-city",
        about: dialogym_scenarios::guess_my_city::ABOUT,
        load: |spec, c| Ok(session(dialogym_scenarios::guess_my_city::from_spec(spec)?, c)),
    },
    ScenarioRow {
        name: "opinion-polling",
        about: dialogym_scenarios::polling::ABOUT,
        load: |spec, c| Ok(session(Poll::from_spec(spec)?, c)),
    },
    ScenarioRow {
        name: "tutoring",
        about: dialogym_scenarios::tutoring::ABOUT,
        load: |spec, c| Ok(session(Tutoring::from_spec(spec)?, c)),
    },
    ScenarioRow {
        name: "preference-elicitation",
        about: dialogym_scenarios::preference::ABOUT,
        load: |spec, c| Ok(session(Preference::from_spec(spec)?, c)),
    },
];

/// Loads `--scenario`: a registered name (with parameters) or a scenario file (.toml), with
/// a context of its own.
pub fn load(text: &str) -> Result<Box<dyn Session>> {
    load_with(text, Arc::new(Context::new()))
}

/// Loads `--scenario` with speakers that share `context` (models loaded once for several
/// sessions).
pub fn load_with(text: &str, context: Arc<Context>) -> Result<Box<dyn Session>> {
    if dialogym_scenarios::is_file_spec(text) {
        return Ok(session(dialogym_scenarios::load_file(text)?, context));
    }
    let spec = Spec::parse(text)?;
    match SCENARIOS.iter().find(|r| r.name == spec.name) {
        Some(row) => (row.load)(&spec, context),
        None => {
            let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            bail!(
                "unknown scenario `{}`; built-in scenarios: {} (or a .toml scenario file)",
                spec.name,
                names.join(", ")
            )
        }
    }
}

/// An entity scenario (20 Questions, Guess My City, a scenario file) by spec, for the
/// commands and tools that need one.
pub fn entity(text: &str) -> Result<Arc<EntityScenario>> {
    let s = load(text)?;
    s.as_any()
        .downcast_ref::<Arc<EntityScenario>>()
        .cloned()
        .ok_or_else(|| anyhow!("`{text}` is not an entity scenario (20 Questions, Guess My City or a scenario file)"))
}

/// Work that needs a session's concrete scenario type (a server or a terminal that drives
/// speakers turn by turn itself): [`visit`] calls `run` with it.
pub trait WithScenario {
    /// What `run` gives back.
    type Output;
    /// Runs on the scenario of the session.
    fn run<S: Cast>(self, scenario: Arc<S>, context: Arc<Context>) -> Self::Output;
}

/// Calls `work.run` with the scenario `text` names (any registered scenario or file). A
/// new scenario *type* adds one line here.
pub fn visit<W: WithScenario>(text: &str, work: W) -> Result<W::Output> {
    let context = Arc::new(Context::new());
    let s = load_with(text, context.clone())?;
    let any = s.as_any();
    if let Some(s) = any.downcast_ref::<Arc<EntityScenario>>() {
        return Ok(work.run(s.clone(), context));
    }
    if let Some(s) = any.downcast_ref::<Arc<Poll>>() {
        return Ok(work.run(s.clone(), context));
    }
    if let Some(s) = any.downcast_ref::<Arc<Tutoring>>() {
        return Ok(work.run(s.clone(), context));
    }
    if let Some(s) = any.downcast_ref::<Arc<Preference>>() {
        return Ok(work.run(s.clone(), context));
    }
    bail!("scenario `{}` has a type `session::visit` does not know", s.id())
}
