//! The ECS world that plays many conversations at once, one message per tick.
//!
//! Each live episode is an entity. One tick of the chained schedule reads like a turn of
//! every conversation:
//!
//! ```text
//! spawn ─► dispatch ─► collect ─► judge ─► record ─► progress
//! ```
//!
//! `dispatch` hands each speaker all the conversations waiting on it as ONE batch; replies
//! come back through a crossbeam channel (so a backend may answer from another thread);
//! `judge` asks the scenario for the reward; `record` sends finished episodes to the corpus
//! writer thread. Every draw comes from [`turn_rng`], keyed by the episode, never by the
//! order of play: the same seed gives the same episodes whatever the concurrency.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{LogLevel, ScheduleBuildSettings, SingleThreadedExecutor};
use crossbeam_channel::{Receiver, Sender};
use rand::Rng as _;

use crate::corpus::{EpisodeRecord, SCHEMA_VERSION};
use crate::scenario::Scenario;
use crate::seed::{Stream, episode_seed, turn_rng};
use crate::speaker::{Agent, AgentTurn, Persona, PersonaTurn};
use crate::transcript::{Message, Role, agent_turns};

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
    /// A speaker has the request; the reply arrives through the inbox.
    InFlight,
    /// A new message arrived; the scenario must judge it.
    Judging,
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

/// The scenario and the speaker pools, shared by every episode.
#[derive(Resource)]
struct Cast<S: Scenario> {
    scenario: Arc<S>,
    agents: Mutex<Vec<Box<dyn Agent<S>>>>,
    agent_ids: Vec<String>,
    agent_weights: Vec<f64>,
    personas: Mutex<Vec<Box<dyn Persona<S>>>>,
    persona_ids: Vec<String>,
    persona_weights: Vec<f64>,
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

/// Replies from speakers, keyed by the entity that asked (a backend may answer from
/// another thread).
#[derive(Resource)]
struct Inbox {
    tx: Sender<(Entity, String)>,
    rx: Receiver<(Entity, String)>,
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
        let hidden = cast.scenario.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden));
        let mut pick = turn_rng(seed, 0, Stream::Participants);
        let agent = pick_index(&cast.agent_weights, pick.random::<f64>());
        let persona = pick_index(&cast.persona_weights, pick.random::<f64>());
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

fn pick_index(weights: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len() - 1
}

type TurnQuery<'w, 's, H> = Query<
    'w,
    's,
    (Entity, &'static Episode, &'static Transcript, &'static HiddenState<H>, &'static Participants, &'static mut Phase),
>;

/// Gathers every conversation waiting on a speaker and hands each speaker its batch.
fn dispatch_turns<S: Scenario>(
    mut query: TurnQuery<S::Hidden>,
    cast: Res<Cast<S>>,
    inbox: Res<Inbox>,
    mut failure: ResMut<Failure>,
) {
    if failure.0.is_some() {
        return;
    }
    let mut agent_batches: Vec<Vec<Entity>> = vec![Vec::new(); cast.agent_weights.len()];
    let mut persona_batches: Vec<Vec<Entity>> = vec![Vec::new(); cast.persona_weights.len()];
    for (entity, _, _, _, who, phase) in query.iter() {
        match phase {
            Phase::AgentToSpeak => agent_batches[who.agent].push(entity),
            Phase::PersonaToSpeak => persona_batches[who.persona].push(entity),
            _ => {}
        }
    }
    let scenario = &*cast.scenario;
    let mut agents = cast.agents.lock().unwrap_or_else(|p| p.into_inner());
    for (i, batch) in agent_batches.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        let mut turns: Vec<AgentTurn<'_>> = batch
            .iter()
            .filter_map(|&e| query.get(e).ok())
            .map(|(_, ep, tr, _, _, _)| AgentTurn {
                episode: ep.index,
                transcript: &tr.0,
                rng: turn_rng(ep.seed, tr.0.len() as u32, Stream::Agent),
            })
            .collect();
        match agents[i].act(scenario, &mut turns) {
            Ok(replies) if replies.len() == batch.len() => {
                for (&e, text) in batch.iter().zip(replies) {
                    let _ = inbox.tx.send((e, text));
                }
            }
            Ok(replies) => {
                failure.0 = Some(anyhow!(
                    "agent {} returned {} replies for {} conversations",
                    cast.agent_ids[i],
                    replies.len(),
                    batch.len()
                ));
                return;
            }
            Err(e) => {
                failure.0 = Some(e.context(format!("agent {}", cast.agent_ids[i])));
                return;
            }
        }
    }
    drop(agents);
    let mut personas = cast.personas.lock().unwrap_or_else(|p| p.into_inner());
    for (i, batch) in persona_batches.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        let mut turns: Vec<PersonaTurn<'_, S::Hidden>> = batch
            .iter()
            .filter_map(|&e| query.get(e).ok())
            .map(|(_, ep, tr, hidden, _, _)| PersonaTurn {
                episode: ep.index,
                hidden: &hidden.0,
                transcript: &tr.0,
                rng: turn_rng(ep.seed, tr.0.len() as u32, Stream::Persona),
            })
            .collect();
        match personas[i].reply(scenario, &mut turns) {
            Ok(replies) if replies.len() == batch.len() => {
                for (&e, text) in batch.iter().zip(replies) {
                    let _ = inbox.tx.send((e, text));
                }
            }
            Ok(replies) => {
                failure.0 = Some(anyhow!(
                    "persona {} returned {} replies for {} conversations",
                    cast.persona_ids[i],
                    replies.len(),
                    batch.len()
                ));
                return;
            }
            Err(e) => {
                failure.0 = Some(e.context(format!("persona {}", cast.persona_ids[i])));
                return;
            }
        }
    }
    drop(personas);
    for batch in agent_batches.iter().chain(&persona_batches) {
        for &e in batch {
            if let Ok((.., mut phase)) = query.get_mut(e) {
                *phase = Phase::InFlight;
            }
        }
    }
}

/// Appends the replies that arrived to their transcripts.
fn collect_replies(inbox: Res<Inbox>, mut query: Query<(&mut Transcript, &mut Phase)>, mut tally: ResMut<Tally>) {
    for (entity, text) in inbox.rx.try_iter() {
        let Ok((mut transcript, mut phase)) = query.get_mut(entity) else { continue };
        let role = if transcript.0.len() % 2 == 0 { Role::Agent } else { Role::Persona };
        transcript.0.push(match role {
            Role::Agent => Message::agent(text),
            Role::Persona => Message::persona(text),
        });
        *phase = Phase::Judging;
        tally.messages += 1;
    }
}

/// Asks the scenario for the reward of each new message and decides who speaks next.
fn judge_messages<S: Scenario>(
    cast: Res<Cast<S>>,
    mut query: Query<(&Transcript, &HiddenState<S::Hidden>, &mut Ledger, &mut Phase)>,
) {
    let scenario = &*cast.scenario;
    for (transcript, hidden, mut ledger, mut phase) in query.iter_mut() {
        if *phase != Phase::Judging {
            continue;
        }
        let verdict = scenario.judge(&hidden.0, &transcript.0);
        let last_role = transcript.0.last().map(|m| m.role);
        // The turn limit is the scenario's to enforce; the engine backs it up so a buggy
        // judge can never loop forever.
        let out_of_turns = last_role == Some(Role::Agent) && agent_turns(&transcript.0) >= scenario.max_agent_turns();
        let done = verdict.done || out_of_turns;
        ledger.rewards.push(verdict.reward);
        ledger.dones.push(done);
        ledger.success = verdict.success;
        *phase = match (done, last_role) {
            (true, _) => Phase::Done,
            (false, Some(Role::Agent)) => Phase::PersonaToSpeak,
            (false, _) => Phase::AgentToSpeak,
        };
    }
}

/// Sends finished episodes to the corpus writer and frees their entities.
fn record_episodes<S: Scenario>(
    mut commands: Commands,
    cast: Res<Cast<S>>,
    mut plan: ResMut<Plan>,
    outbox: Res<Outbox>,
    mut failure: ResMut<Failure>,
    mut tally: ResMut<Tally>,
    mut query: Query<(Entity, &Episode, &mut Transcript, &HiddenState<S::Hidden>, &Participants, &mut Ledger, &Phase)>,
) {
    for (entity, episode, mut transcript, hidden, who, mut ledger, phase) in query.iter_mut() {
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
            scenario: cast.scenario.id(),
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
        commands.entity(entity).despawn();
        plan.live -= 1;
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
    let (tx, rx) = crossbeam_channel::unbounded();
    let (agent_ids, agent_weights): (Vec<_>, Vec<_>) = agents.iter().map(|(a, w)| (a.id(), *w)).unzip();
    let (persona_ids, persona_weights): (Vec<_>, Vec<_>) = personas.iter().map(|(p, w)| (p.id(), *w)).unzip();
    world.insert_resource(Cast::<S> {
        scenario,
        agents: Mutex::new(agents.into_iter().map(|a| a.0).collect()),
        agent_ids,
        agent_weights: normalized(agent_weights),
        personas: Mutex::new(personas.into_iter().map(|p| p.0).collect()),
        persona_ids,
        persona_weights: normalized(persona_weights),
    });
    world.insert_resource(Plan {
        master_seed: config.seed,
        run_id: config.run_id.clone(),
        pending: config.episodes.iter().copied().collect(),
        live: 0,
        concurrency: config.concurrency,
    });
    world.insert_resource(Inbox { tx, rx });
    world.insert_resource(Outbox(sink));
    world.insert_resource(Failure::default());
    world.insert_resource(Tally::default());

    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::default());
    schedule.set_build_settings(ScheduleBuildSettings { ambiguity_detection: LogLevel::Error, ..Default::default() });
    schedule.add_systems(
        (spawn_episodes::<S>, dispatch_turns::<S>, collect_replies, judge_messages::<S>, record_episodes::<S>).chain(),
    );
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
