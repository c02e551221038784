//! `dialogym play`: a person at the table. Line-based: one message per line on standard
//! input, the conversation on standard output.
//!
//! - `--seat persona`: the person holds the secret (types one, or is shown a sampled one)
//!   and answers; the agent of `--agent` asks.
//! - `--seat agent`: the person asks; the persona of `--persona` (scripted or LLM) answers.
//!
//! After every message the screen shows the turn, the return so far and how the scenario
//! read the message (and, in entity scenarios, how many possible secrets are left). The
//! episode is appended to `--out` as one corpus row (the JSONL format of
//! `engine/src/corpus.rs`) when it ends, when input ends, and on Ctrl-C: an unfinished
//! episode is kept with every `dones` entry false.
//!
//! The turn loop is the world's, one episode at a time: the agent speaks first, the judge
//! scores every message, the scenario's turn limit ends the episode after an agent message,
//! and every scripted draw comes from `seed::turn_rng(episode seed, message index, stream)`,
//! so the same seed and the same typed lines replay the same episode.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use dialogym_engine::corpus::{EpisodeRecord, SCHEMA_VERSION};
use dialogym_engine::seed::{Stream, episode_seed, turn_rng};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Agent, AgentTurn, Message, MixSpec, Persona, PersonaTurn, Role, Spec};
use dialogym_scenarios::entity::{EntityScenario, Secret, Utterance};
use dialogym_scenarios::polling::Poll;
use dialogym_scenarios::preference::Preference;
use dialogym_scenarios::tutoring::Tutoring;

use crate::annotate::Reader;
use crate::session::Cast;

/// Which side the person plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Seat {
    /// The person knows the secret and answers; the program's agent asks.
    Persona,
    /// The person asks; the program's persona answers.
    Agent,
}

/// A game at the table.
#[derive(Clone, Debug)]
pub struct PlayArgs {
    /// Scenario name or file.
    pub scenario: String,
    /// The person's side.
    pub seat: Seat,
    /// The program's agent (with `--seat persona`).
    pub agent: String,
    /// The program's persona (with `--seat agent`).
    pub persona: String,
    /// Master seed.
    pub seed: u64,
    /// Episode index (with the seed, it fixes the sampled secret and every scripted draw).
    pub episode: u64,
    /// The transcript file (one corpus row per game, appended).
    pub out: PathBuf,
}

/// How a game ended.
#[derive(Clone, Debug)]
pub struct PlayOutcome {
    /// The transcript as a corpus row.
    pub record: EpisodeRecord,
    /// True when the episode reached its end (not cut by end of input or Ctrl-C).
    pub finished: bool,
}

/// What a scenario offers a person at the table beyond the engine's traits.
pub trait Table: Cast {
    /// The line asking a person to choose a secret, when the scenario lets them.
    fn secret_prompt(&self) -> Option<String> {
        None
    }
    /// The secret a person typed, or None when it is not one.
    fn secret_from(&self, _text: &str) -> Option<Self::Hidden> {
        None
    }
    /// How to answer, for a person in the persona's seat.
    fn answer_hint(&self) -> String {
        "reply in your own words".into()
    }
}

impl Table for EntityScenario {
    fn secret_prompt(&self) -> Option<String> {
        Some(format!(
            "Think of {} {} and type its name (the agent does not see it), or press Enter to be shown one:",
            if self.rules.noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" },
            self.rules.noun
        ))
    }

    fn secret_from(&self, text: &str) -> Option<Secret> {
        match self.interpret(&format!("is it {}", text.trim())) {
            Utterance::Guess(e) if self.secrets().contains(&e) => {
                let ent = &self.table.entities[e];
                Some(Secret { index: e, name: ent.names[0].clone(), category: ent.category.clone() })
            }
            _ => None,
        }
    }

    fn answer_hint(&self) -> String {
        let a = &self.rules.answers;
        format!(
            "answer `{}`, `{}` or `{}` (open questions: in a word); to a wrong guess, `{}`",
            a.yes, a.no, a.sometimes, a.wrong
        )
    }
}

impl Table for Poll {}
impl Table for Tutoring {}
impl Table for Preference {}

/// Plays one game reading the person's lines from `input` and writing the conversation to
/// `screen`; appends the transcript to `args.out`.
pub fn play(
    args: &PlayArgs,
    input: Box<dyn BufRead + Send>,
    screen: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<PlayOutcome> {
    let lines = spawn_reader(input);
    let spec = args.scenario.trim();
    let name = Spec::parse(spec).map(|s| s.name).unwrap_or_default();
    let outcome = match name.as_str() {
        "opinion-polling" => run(Arc::new(Poll::from_spec(&Spec::parse(spec)?)?), args, &lines, screen, stop),
        "tutoring" => run(Arc::new(Tutoring::from_spec(&Spec::parse(spec)?)?), args, &lines, screen, stop),
        "preference-elicitation" => {
            run(Arc::new(Preference::from_spec(&Spec::parse(spec)?)?), args, &lines, screen, stop)
        }
        _ => run(crate::session::entity(spec)?, args, &lines, screen, stop),
    }?;
    append_row(&args.out, &outcome.record)?;
    writeln!(screen, "transcript appended to {}", args.out.display())?;
    Ok(outcome)
}

/// Reads lines on a thread, so the turn loop can notice Ctrl-C while a person thinks.
fn spawn_reader(input: Box<dyn BufRead + Send>) -> Receiver<std::io::Result<String>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in input.lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Why no line came.
enum NoLine {
    /// End of input.
    Eof,
    /// Ctrl-C.
    Stopped,
}

fn next_line(
    lines: &Receiver<std::io::Result<String>>,
    stop: &AtomicBool,
) -> Result<std::result::Result<String, NoLine>> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Err(NoLine::Stopped));
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(line)) => return Ok(Ok(line.trim_end_matches(['\r', '\n']).to_string())),
            Ok(Err(e)) => return Err(e).context("cannot read standard input"),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(Err(NoLine::Eof)),
        }
    }
}

fn single(spec: &str, what: &str) -> Result<Spec> {
    let mix = MixSpec::parse(spec).with_context(|| format!("--{what} {spec}"))?;
    match mix.components.as_slice() {
        [(s, _)] => Ok(s.clone()),
        _ => bail!("--{what}: play takes one {what}, not a mixture (`{spec}`)"),
    }
}

fn build_agent<S: Table>(scenario: &S, spec: &Spec) -> Result<Box<dyn Agent<S>>> {
    crate::session::agent(spec, scenario, &dialogym_engine::Context::new())
}

fn run<S: Table>(
    scenario: Arc<S>,
    args: &PlayArgs,
    lines: &Receiver<std::io::Result<String>>,
    screen: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<PlayOutcome> {
    let s = &*scenario;
    let ep_seed = episode_seed(args.seed, args.episode);
    let (mut agent, mut persona): (Option<Box<dyn Agent<S>>>, Option<Box<dyn Persona<S>>>) = match args.seat {
        Seat::Persona => (Some(build_agent(s, &single(&args.agent, "agent")?)?), None),
        Seat::Agent => (
            None,
            Some(crate::session::persona(&single(&args.persona, "persona")?, s, &dialogym_engine::Context::new())?),
        ),
    };
    let agent_id = agent.as_ref().map_or("human".to_string(), |a| a.id());
    let persona_id = persona.as_ref().map_or("human".to_string(), |p| p.id());
    let reader = Reader::new(&s.id());
    writeln!(screen, "dialogym play: {} (seed {}, episode {})", s.id(), args.seed, args.episode)?;
    writeln!(screen, "agent: {agent_id}; persona: {persona_id}. End of input (Ctrl-D) or Ctrl-C ends the game.")?;

    // The secret: drawn as the world draws it, or typed by the person in the persona's seat.
    let mut hidden = dialogym_engine::judge::hidden_for(s, ep_seed);
    let mut ended: Option<&str> = None;
    if args.seat == Seat::Persona {
        if let Some(prompt) = s.secret_prompt() {
            loop {
                writeln!(screen, "{prompt}")?;
                screen.flush()?;
                match next_line(lines, stop)? {
                    Ok(t) if t.trim().is_empty() => break,
                    Ok(t) => match s.secret_from(&t) {
                        Some(h) => {
                            hidden = h;
                            break;
                        }
                        None => writeln!(screen, "`{}` is not one of the scenario's possible secrets.", t.trim())?,
                    },
                    Err(NoLine::Eof) => {
                        ended = Some("end of input");
                        break;
                    }
                    Err(NoLine::Stopped) => {
                        ended = Some("Ctrl-C");
                        break;
                    }
                }
            }
        }
        writeln!(screen, "Your secret (the agent does not see it):\n{}", s.persona_card(&hidden).trim_end())?;
        writeln!(screen, "How to answer: {}.", s.answer_hint())?;
    } else {
        writeln!(screen, "Your task:\n{}", s.agent_brief().trim_end())?;
        writeln!(screen, "Type `?` for utterances the scenario knows.")?;
    }

    let mut transcript: Vec<Message> = Vec::new();
    let (mut rewards, mut dones) = (Vec::new(), Vec::new());
    let mut success = false;
    while ended.is_none() {
        let to_speak =
            if transcript.last().is_none_or(|m| m.role == Role::Persona) { Role::Agent } else { Role::Persona };
        let t = transcript.len() as u32;
        let text = match (to_speak, agent.as_mut(), persona.as_mut()) {
            (Role::Agent, Some(a), _) => {
                let mut turns = [AgentTurn {
                    episode: args.episode,
                    transcript: &transcript,
                    rng: turn_rng(ep_seed, t, Stream::Agent),
                }];
                a.act(s, &mut turns)?.pop().context("the agent said nothing")?
            }
            (Role::Persona, _, Some(p)) => {
                let mut turns = [PersonaTurn {
                    episode: args.episode,
                    hidden: &hidden,
                    transcript: &transcript,
                    rng: turn_rng(ep_seed, t, Stream::Persona),
                }];
                p.reply(s, &mut turns)?.pop().context("the persona said nothing")?
            }
            _ => {
                let me = if to_speak == Role::Agent { "ask" } else { "answer" };
                write!(screen, "you ({me})> ")?;
                screen.flush()?;
                match next_line(lines, stop)? {
                    Ok(line) if line.trim() == "?" && to_speak == Role::Agent => {
                        let c = s.candidates(&transcript);
                        writeln!(screen, "{} utterances, e.g.:", c.len())?;
                        for u in c.iter().take(15) {
                            writeln!(screen, "  {u}")?;
                        }
                        continue;
                    }
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => line.trim().to_string(),
                    Err(NoLine::Eof) => {
                        ended = Some("end of input");
                        break;
                    }
                    Err(NoLine::Stopped) => {
                        ended = Some("Ctrl-C");
                        break;
                    }
                }
            }
        };
        transcript.push(if to_speak == Role::Agent { Message::agent(text) } else { Message::persona(text) });
        let verdict = dialogym_engine::judge::verdict(s, &hidden, &transcript);
        let done = verdict.done;
        rewards.push(verdict.reward);
        dones.push(done);
        success = verdict.success;
        let last = transcript.last().map_or("", |m| m.content.as_str());
        let who = if to_speak == Role::Agent { "agent  " } else { "persona" };
        writeln!(screen, "[turn {}] {who}: {last}", agent_turns(&transcript))?;
        let left = reader.hypotheses(&transcript).map_or(String::new(), |n| format!(" | {n} possible secrets left"));
        writeln!(
            screen,
            "          read as: {} | reward {:+.2} | return {:+.2}{left}",
            reader.read_last(&transcript),
            verdict.reward,
            rewards.iter().sum::<f64>()
        )?;
        if done {
            break;
        }
    }
    let finished = ended.is_none();
    let ret: f64 = rewards.iter().sum();
    match ended {
        Some(why) => {
            writeln!(screen, "game ended by {why} after {} agent turns; return {ret:+.2}", agent_turns(&transcript))?
        }
        None => writeln!(
            screen,
            "episode over: {} in {} agent turns; return {ret:+.2}",
            if success { "success" } else { "no success" },
            agent_turns(&transcript)
        )?,
    }
    let record = EpisodeRecord {
        schema_version: SCHEMA_VERSION,
        run_id: format!("play-{}", args.seed),
        episode: args.episode,
        seed: ep_seed,
        scenario: s.id(),
        agent: agent_id,
        persona: persona_id,
        hidden: serde_json::to_value(&hidden)?,
        turns: agent_turns(&transcript) as u32,
        metrics: s.metrics(&hidden, &transcript).into_iter().collect(),
        messages: transcript,
        rewards,
        dones,
        ret,
        success: finished && success,
    };
    Ok(PlayOutcome { record, finished })
}

/// Appends one row to the transcript file (created with its folder when missing) and syncs
/// it: earlier games in the file are never rewritten.
fn append_row(path: &std::path::Path, row: &EpisodeRecord) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut line = serde_json::to_string(row)?;
    line.push('\n');
    f.write_all(line.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_data().with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}
