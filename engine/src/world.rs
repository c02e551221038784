//! The ECS world that plays many conversations at once.
//!
//! Each live episode is an entity. One tick of the chained schedule reads like a round of
//! every conversation:
//!
//! ```text
//! spawn ─► agents speak ─► personas speak ─► record ─► progress
//! ```
//!
//! `agents_speak` hands each agent all the conversations waiting on it as ONE batch (a
//! local model decodes them together, a server backend sends them at once), appends each
//! reply to its transcript and judges it at once ([`judge::verdict`]); `personas_speak`
//! does the same for the conversations that now wait on their persona; `record` sends
//! finished episodes to the sink (the corpus writer thread). Every draw comes from
//! [`turn_rng`], keyed by the episode, never by the order of play: the same seed gives
//! the same episodes whatever the concurrency.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{LogLevel, ScheduleBuildSettings, SingleThreadedExecutor};
use crossbeam_channel::Sender;

use crate::corpus::{EpisodeRecord, SCHEMA_VERSION};
use crate::judge;
use crate::scenario::Scenario;
use crate::seed::{Stream, episode_seed, turn_rng};
use crate::speaker::{Agent, AgentTurn, Persona, PersonaTurn};
use crate::transcript::{Message, agent_turns};

/// Identity of a live episode: its index in the run and its derived seed.
#[derive(Component)]
pub struct Episode {
    /// Index in the run (rows of the corpus are keyed by it).
    pub index: u64,
    /// `episode_seed(master, index)`: the root of every draw in this episode.
    pub seed: u64,
}

/// What has been said so far.
#[derive(Component, Default)]
pub struct Transcript(pub Vec<Message>);

/// Rewards and done flags, one per message, as the judge gave them.
#[derive(Component, Default)]
pub struct Ledger {
    rewards: Vec<f64>,
    dones: Vec<bool>,
    success: bool,
}

/// Where a conversation stands within the tick.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the agent's next utterance.
    AgentToSpeak,
    /// Waiting for the persona's reply.
    PersonaToSpeak,
    /// The episode ended and waits to be recorded.
    Done,
}

/// The persona's secret for this episode.
#[derive(Component)]
pub struct HiddenState<H: Send + Sync + 'static>(pub H);

/// Which agent and persona (indices into the pools) play this episode.
#[derive(Component, Clone, Copy)]
pub struct Participants {
    /// Index into the agent pool.
    pub agent: usize,
    /// Index into the persona pool.
    pub persona: usize,
}

/// The scenario and who plays, shared by every episode.
#[derive(Resource)]
struct Cast<S: Scenario> {
    scenario: Arc<S>,
    scenario_id: String,
    agent_ids: Vec<String>,
    agent_weights: Vec<f64>,
    persona_ids: Vec<String>,
    persona_weights: Vec<f64>,
}

/// The speakers themselves. Speakers are `Send` but need not be `Sync`, so they live in a
/// non-send resource: the schedule is single-threaded and calls them with no lock.
struct Speakers<S: Scenario> {
    agents: Vec<Box<dyn Agent<S>>>,
    personas: Vec<Box<dyn Persona<S>>>,
    /// Per speaker, the entities of this tick's batch (kept between ticks: no allocation).
    batches: Vec<Vec<Entity>>,
}

/// Which episodes remain to be played and how many may be live at once.
#[derive(Resource)]
struct Plan {
    master_seed: u64,
    run_id: String,
    pending: VecDeque<u64>,
    live: usize,
    concurrency: usize,
}

/// The channel to the corpus writer thread.
#[derive(Resource)]
struct Outbox(Sender<EpisodeRecord>);

/// The first error a speaker or the writer raised; the driver stops the run on it.
#[derive(Resource, Default)]
struct Failure(Option<anyhow::Error>);

/// Running totals shown by progress bars.
#[derive(Resource, Default, Clone, Copy, Debug)]
pub struct Tally {
    /// Episodes finished this run.
    pub finished: u64,
    /// Of which successful.
    pub successes: u64,
    /// Sum of returns.
    pub return_sum: f64,
    /// Messages appended this run.
    pub messages: u64,
}

/// Keeps `concurrency` episodes alive, taking indices in order from the plan.
fn spawn_episodes<S: Scenario>(mut commands: Commands, mut plan: ResMut<Plan>, cast: Res<Cast<S>>) {
    while plan.live < plan.concurrency {
        let Some(index) = plan.pending.pop_front() else { break };
        let seed = episode_seed(plan.master_seed, index);
        let hidden = judge::hidden_for(&*cast.scenario, seed);
        let (agent, persona) = judge::participants_for(seed, &cast.agent_weights, &cast.persona_weights);
        commands.spawn((
            Episode { index, seed },
            Transcript::default(),
            Ledger::default(),
            Phase::AgentToSpeak,
            HiddenState(hidden),
            Participants { agent, persona },
        ));
        plan.live += 1;
    }
}

type TurnQuery<'w, 's, H> = Query<
    'w,
    's,
    (
        Entity,
        &'static Episode,
        &'static mut Transcript,
        &'static HiddenState<H>,
        &'static Participants,
        &'static mut Ledger,
        &'static mut Phase,
    ),
>;

/// Which side speaks in a pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Agent,
    Persona,
}

/// One pass of one side: every conversation waiting on that side, batched per speaker;
/// each reply is appended to its transcript and judged at once.
fn speak<S: Scenario>(
    side: Side,
    query: &mut TurnQuery<S::Hidden>,
    cast: &Cast<S>,
    speakers: &mut Speakers<S>,
    failure: &mut Failure,
    tally: &mut Tally,
) {
    if failure.0.is_some() {
        return;
    }
    let Cast { scenario, agent_ids, persona_ids, .. } = cast;
    let Speakers { agents, personas, batches } = speakers;
    let scenario = &**scenario;
    let (waiting, speakers) = match side {
        Side::Agent => (Phase::AgentToSpeak, agents.len()),
        Side::Persona => (Phase::PersonaToSpeak, personas.len()),
    };
    if batches.len() < speakers {
        batches.resize_with(speakers, Vec::new);
    }
    for b in batches.iter_mut() {
        b.clear();
    }
    for (e, _, _, _, who, _, phase) in query.iter() {
        if *phase == waiting {
            batches[if side == Side::Agent { who.agent } else { who.persona }].push(e);
        }
    }
    for (i, batch) in batches.iter().enumerate().take(speakers) {
        if batch.is_empty() {
            continue;
        }
        let replies = match side {
            Side::Agent => {
                let mut turns: Vec<AgentTurn<'_>> = Vec::with_capacity(batch.len());
                for &e in batch {
                    if let Ok((_, ep, tr, ..)) = query.get(e) {
                        let rng = turn_rng(ep.seed, tr.0.len() as u32, Stream::Agent);
                        turns.push(AgentTurn { episode: ep.index, transcript: &tr.0, rng });
                    }
                }
                agents[i].act(scenario, &mut turns).map_err(|e| e.context(format!("agent {}", agent_ids[i])))
            }
            Side::Persona => {
                let mut turns: Vec<PersonaTurn<'_, S::Hidden>> = Vec::with_capacity(batch.len());
                for &e in batch {
                    if let Ok((_, ep, tr, hidden, ..)) = query.get(e) {
                        let rng = turn_rng(ep.seed, tr.0.len() as u32, Stream::Persona);
                        turns.push(PersonaTurn { episode: ep.index, hidden: &hidden.0, transcript: &tr.0, rng });
                    }
                }
                personas[i].reply(scenario, &mut turns).map_err(|e| e.context(format!("persona {}", persona_ids[i])))
            }
        };
        let replies = match replies {
            Ok(r) if r.len() == batch.len() => r,
            Ok(r) => {
                let (kind, who) =
                    if side == Side::Agent { ("agent", &agent_ids[i]) } else { ("persona", &persona_ids[i]) };
                failure.0 =
                    Some(anyhow!("{kind} {who} returned {} replies for {} conversations", r.len(), batch.len()));
                return;
            }
            Err(e) => {
                failure.0 = Some(e);
                return;
            }
        };
        for (&e, text) in batch.iter().zip(replies) {
            let Ok((_, _, mut transcript, hidden, _, mut ledger, mut phase)) = query.get_mut(e) else { continue };
            transcript.0.push(match side {
                Side::Agent => Message::agent(text),
                Side::Persona => Message::persona(text),
            });
            tally.messages += 1;
            let v = judge::verdict(scenario, &hidden.0, &transcript.0);
            ledger.rewards.push(v.reward);
            ledger.dones.push(v.done);
            ledger.success = v.success;
            *phase = match (v.done, side) {
                (true, _) => Phase::Done,
                (false, Side::Agent) => Phase::PersonaToSpeak,
                (false, Side::Persona) => Phase::AgentToSpeak,
            };
        }
    }
}

/// Every conversation waiting on its agent gets its utterance (and its verdict).
fn agents_speak<S: Scenario>(
    mut query: TurnQuery<S::Hidden>,
    cast: Res<Cast<S>>,
    mut speakers: NonSendMut<Speakers<S>>,
    mut failure: ResMut<Failure>,
    mut tally: ResMut<Tally>,
) {
    speak(Side::Agent, &mut query, &cast, &mut speakers, &mut failure, &mut tally);
}

/// Every conversation waiting on its persona (those whose agent just spoke, too) gets
/// its reply (and its verdict).
fn personas_speak<S: Scenario>(
    mut query: TurnQuery<S::Hidden>,
    cast: Res<Cast<S>>,
    mut speakers: NonSendMut<Speakers<S>>,
    mut failure: ResMut<Failure>,
    mut tally: ResMut<Tally>,
) {
    speak(Side::Persona, &mut query, &cast, &mut speakers, &mut failure, &mut tally);
}

/// Sends finished episodes to the corpus writer and frees their entities.
fn record_episodes<S: Scenario>(
    mut commands: Commands,
    cast: Res<Cast<S>>,
    mut plan: ResMut<Plan>,
    outbox: Res<Outbox>,
    mut failure: ResMut<Failure>,
    mut tally: ResMut<Tally>,
    mut query: Query<(
        Entity,
        &mut Episode,
        &mut Transcript,
        &mut HiddenState<S::Hidden>,
        &mut Participants,
        &mut Ledger,
        &mut Phase,
    )>,
) {
    for (entity, mut episode, mut transcript, mut hidden, mut who, mut ledger, mut phase) in query.iter_mut() {
        if *phase != Phase::Done {
            continue;
        }
        let messages = std::mem::take(&mut transcript.0);
        let metrics = cast.scenario.metrics(&hidden.0, &messages).into_iter().collect();
        let hidden_json = match serde_json::to_value(&hidden.0) {
            Ok(v) => v,
            Err(e) => {
                failure.0 = Some(anyhow!("episode {}: hidden state is not serializable: {e}", episode.index));
                return;
            }
        };
        let rewards = std::mem::take(&mut ledger.rewards);
        let ret: f64 = rewards.iter().sum();
        let record = EpisodeRecord {
            schema_version: SCHEMA_VERSION,
            run_id: plan.run_id.clone(),
            episode: episode.index,
            seed: episode.seed,
            scenario: cast.scenario_id.clone(),
            agent: cast.agent_ids[who.agent].clone(),
            persona: cast.persona_ids[who.persona].clone(),
            hidden: hidden_json,
            turns: agent_turns(&messages) as u32,
            messages,
            rewards,
            dones: std::mem::take(&mut ledger.dones),
            ret,
            success: ledger.success,
            metrics,
        };
        tally.finished += 1;
        tally.successes += record.success as u64;
        tally.return_sum += ret;
        if outbox.0.send(record).is_err() {
            failure.0.get_or_insert_with(|| anyhow!("the corpus writer stopped"));
            return;
        }
        // The entity plays the next pending episode, if any, in place (no despawn and
        // spawn, no archetype moves); else it is freed.
        match plan.pending.pop_front() {
            Some(index) => {
                let seed = episode_seed(plan.master_seed, index);
                hidden.0 = judge::hidden_for(&*cast.scenario, seed);
                let (agent, persona) = judge::participants_for(seed, &cast.agent_weights, &cast.persona_weights);
                *who = Participants { agent, persona };
                *episode = Episode { index, seed };
                *ledger = Ledger::default();
                *phase = Phase::AgentToSpeak;
            }
            None => {
                commands.entity(entity).despawn();
                plan.live -= 1;
            }
        }
    }
}

/// How a run is played.
#[derive(Clone, Debug)]
pub struct PlayConfig {
    /// The master seed.
    pub seed: u64,
    /// Recorded in every row, to tell runs apart when corpora are merged.
    pub run_id: String,
    /// Episode indices to play, in order.
    pub episodes: Vec<u64>,
    /// At most this many live episodes (entities) at once.
    pub concurrency: usize,
}

/// A speaker pool: each entry with its weight (episodes draw one by weight).
pub type Pool<T> = Vec<(Box<T>, f64)>;

/// Plays `config.episodes` and sends each finished episode to `sink`.
///
/// `on_tick` runs after every tick with the running tally (progress bars). The run stops
/// early, with an error, when `stop` becomes true (Ctrl-C) or a speaker fails; episodes
/// already sent to `sink` are complete.
pub fn play<S: Scenario>(
    scenario: Arc<S>,
    agents: Pool<dyn Agent<S>>,
    personas: Pool<dyn Persona<S>>,
    config: &PlayConfig,
    sink: Sender<EpisodeRecord>,
    stop: &AtomicBool,
    mut on_tick: impl FnMut(&Tally),
) -> Result<Tally> {
    if agents.is_empty() || personas.is_empty() {
        return Err(anyhow!("a run needs at least one agent and one persona"));
    }
    if config.concurrency == 0 {
        return Err(anyhow!("concurrency must be at least 1"));
    }
    let mut world = World::new();
    let (agent_ids, agent_weights): (Vec<_>, Vec<_>) = agents.iter().map(|(a, w)| (a.id(), *w)).unzip();
    let (persona_ids, persona_weights): (Vec<_>, Vec<_>) = personas.iter().map(|(p, w)| (p.id(), *w)).unzip();
    world.insert_resource(Cast::<S> {
        scenario_id: scenario.id(),
        scenario,
        agent_ids,
        agent_weights: normalized(agent_weights),
        persona_ids,
        persona_weights: normalized(persona_weights),
    });
    world.insert_non_send(Speakers::<S> {
        agents: agents.into_iter().map(|a| a.0).collect(),
        personas: personas.into_iter().map(|p| p.0).collect(),
        batches: Vec::new(),
    });
    world.insert_resource(Plan {
        master_seed: config.seed,
        run_id: config.run_id.clone(),
        pending: config.episodes.iter().copied().collect(),
        live: 0,
        concurrency: config.concurrency,
    });
    world.insert_resource(Outbox(sink));
    world.insert_resource(Failure::default());
    world.insert_resource(Tally::default());

    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::default());
    schedule.set_build_settings(ScheduleBuildSettings { ambiguity_detection: LogLevel::Error, ..Default::default() });
    schedule.add_systems((spawn_episodes::<S>, agents_speak::<S>, personas_speak::<S>, record_episodes::<S>).chain());
    loop {
        schedule.run(&mut world);
        if let Some(err) = world.resource_mut::<Failure>().0.take() {
            return Err(err);
        }
        on_tick(world.resource::<Tally>());
        let plan = world.resource::<Plan>();
        if plan.pending.is_empty() && plan.live == 0 {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(anyhow!("interrupted"));
        }
    }
    Ok(*world.resource::<Tally>())
}

fn normalized(w: Vec<f64>) -> Vec<f64> {
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

/// Plays `episodes` episodes (indices `0..episodes`) of one agent against one persona and
/// returns them in episode order: for the demo, tests and benchmarks.
pub fn play_episodes<S: Scenario>(
    scenario: Arc<S>,
    agent: Box<dyn Agent<S>>,
    persona: Box<dyn Persona<S>>,
    episodes: u64,
    seed: u64,
    concurrency: usize,
    stop: &AtomicBool,
) -> Result<Vec<EpisodeRecord>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = PlayConfig { seed, run_id: format!("llm-{seed}"), episodes: (0..episodes).collect(), concurrency };
    play(scenario, vec![(agent, 1.0)], vec![(persona, 1.0)], &config, tx, stop, |_| {})?;
    let mut rows: Vec<EpisodeRecord> = rx.try_iter().collect();
    rows.sort_by_key(|r| r.episode);
    Ok(rows)
}
