//! `dialogym generate`: play episodes in the ECS world and write them to a corpus.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use dialogym_engine::MixSpec;
use dialogym_engine::corpus::{self, Format, Manifest, ShardOf, ShardWriter};
use dialogym_engine::world::PlayConfig;

/// Everything that defines a generation run.
#[derive(Clone, Debug)]
pub struct GenerateArgs {
    /// Scenario spec or scenario file.
    pub scenario: String,
    /// Agent spec (or `mix:`).
    pub agent: String,
    /// Persona spec (or `mix:`).
    pub persona: String,
    /// Number of episodes.
    pub episodes: u64,
    /// Master seed.
    pub seed: u64,
    /// Live episodes at once (does not change the output).
    pub concurrency: usize,
    /// Output folder.
    pub out: PathBuf,
    /// Finish an interrupted run in `out`.
    pub resume: bool,
    /// Episodes per shard.
    pub shard_size: u64,
    /// Files per shard.
    pub formats: Vec<Format>,
    /// Play only one part of the run (`--shard I/N` or `auto/N`); `None`: all of it.
    pub shard: Option<ShardSpec>,
}

/// `--shard`: which part of a run split over N independent jobs this job plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `I/N`.
    Fixed(ShardOf),
    /// `auto/N`: the index comes from the scheduler's environment ([`SHARD_INDEX_VARS`]).
    Auto {
        /// N.
        count: u64,
    },
}

/// Where `--shard auto/N` reads its index, in this order: Slurm job arrays, Kubernetes
/// Indexed Jobs, torchrun / Ray / MPI-style launchers.
pub const SHARD_INDEX_VARS: [&str; 3] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "RANK"];

impl std::str::FromStr for ShardSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<ShardSpec> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| anyhow!("`{text}` is not I/N or auto/N (e.g. 0/4: the first of 4 parts)"))?;
        let count: u64 = count
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| anyhow!("`{text}`: N must be a whole number >= 1"))?;
        if index.trim() == "auto" {
            return Ok(ShardSpec::Auto { count });
        }
        let index: u64 =
            index.trim().parse().map_err(|_| anyhow!("`{text}`: I must be a whole number in 0..N, or `auto`"))?;
        if index >= count {
            bail!("`{text}`: I must be below N (parts are numbered 0..{count})");
        }
        Ok(ShardSpec::Fixed(ShardOf { index, count }))
    }
}

impl ShardSpec {
    /// The part this job plays; `auto/N` reads the first of [`SHARD_INDEX_VARS`] that is
    /// set (through `var`, the process environment in the CLI).
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<ShardOf> {
        let count = match self {
            ShardSpec::Fixed(p) => return Ok(p),
            ShardSpec::Auto { count } => count,
        };
        for name in SHARD_INDEX_VARS {
            let Some(value) = var(name) else { continue };
            let index: u64 = value
                .trim()
                .parse()
                .map_err(|_| anyhow!("--shard auto/{count}: {name}={value:?} is not a whole number"))?;
            if index >= count {
                bail!(
                    "--shard auto/{count}: {name}={index} is not below {count} \
                     (number the jobs 0..{count}, e.g. sbatch --array=0-{})",
                    count - 1
                );
            }
            return Ok(ShardOf { index, count });
        }
        bail!(
            "--shard auto/{count}: none of {} is set; pass the index as --shard I/{count}",
            SHARD_INDEX_VARS.join(", ")
        )
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct GenerateSummary {
    /// Episodes played by this invocation (a resumed run skips complete shards).
    pub played: u64,
    /// Of which successful.
    pub successes: u64,
    /// Mean return of the episodes played.
    pub mean_return: f64,
    /// Shards already complete before this invocation.
    pub kept_shards: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The speakers' reports, by label (server fleets: requests, retries, failures per
    /// endpoint).
    pub reports: Vec<(String, String)>,
}

/// Plays the run and writes the corpus; on Ctrl-C (`stop`) or an error, complete shards
/// stay on disk and `--resume` finishes the run.
pub fn generate(
    args: &GenerateArgs,
    command: Vec<String>,
    stop: &AtomicBool,
    progress: bool,
) -> Result<GenerateSummary> {
    if args.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.shard_size == 0 {
        bail!("--shard-size must be at least 1");
    }
    if args.formats.is_empty() {
        bail!("--format needs at least one of jsonl, parquet");
    }
    // Before any model loads: a job that cannot tell its part fails at once.
    let part = args.shard.map(|s| s.resolve(|name| std::env::var(name).ok())).transpose()?;
    let session = crate::session::load(&args.scenario)?;
    let agent_spec = MixSpec::parse(&args.agent).context("--agent")?;
    let persona_spec = MixSpec::parse(&args.persona).context("--persona")?;
    let cast = session.prepare(&agent_spec, &persona_spec)?;
    let config = serde_json::json!({
        "scenario": session.id(),
        "agent": cast.agent_ids(),
        "persona": cast.persona_ids(),
    });
    let mut manifest = Manifest::new(command, args.seed, args.episodes, args.shard_size, args.formats.clone(), config);
    if let Some(part) = part {
        if part.count > manifest.shards() {
            bail!(
                "--shard {}/{}: the run has only {} shards ({} episodes, --shard-size {}); \
                 use at most {} parts or a smaller --shard-size",
                part.index,
                part.count,
                manifest.shards(),
                args.episodes,
                args.shard_size,
                manifest.shards()
            );
        }
        manifest.shard = Some(part);
    }
    let (done, todo) = corpus::prepare(&args.out, &manifest, args.resume)?;
    let played_target = todo.len() as u64;
    let (tx, writer) = corpus::spawn_writer(ShardWriter::new(&args.out, &manifest));
    let pb = if progress { crate::progress_bar(played_target, "generate") } else { indicatif::ProgressBar::hidden() };
    let start = Instant::now();
    let result = cast.play(
        &PlayConfig { seed: args.seed, run_id: manifest.run_id.clone(), episodes: todo, concurrency: args.concurrency },
        tx,
        stop,
        &mut |t| {
            pb.set_position(t.finished);
            if t.finished > 0 && t.finished % 256 == 0 {
                pb.set_message(format!("success {:.1}%", 100.0 * t.successes as f64 / t.finished as f64));
            }
        },
    );
    pb.finish_and_clear();
    // The world dropped its sender: the writer drains what it has and stops.
    let writer = writer.join().map_err(|_| anyhow!("the corpus writer panicked"))?;
    let (tally, writer) = match (result, writer) {
        (Ok(t), Ok(w)) => (t, w),
        (_, Err(e)) => return Err(e.context(format!("writing the corpus in {}", args.out.display()))),
        (Err(e), Ok(w)) => {
            let complete = done.len() as u64 + w.written;
            let reports: String =
                session.report_lines().iter().map(|(label, line)| format!(" ({label}: {line})")).collect();
            return Err(e.context(format!(
                "{complete} of {} shards are complete in {}; rerun the same command with --resume to finish{reports}",
                manifest.shards(),
                args.out.display()
            )));
        }
    };
    debug_assert_eq!(writer.pending(), 0);
    Ok(GenerateSummary {
        played: tally.finished,
        successes: tally.successes,
        mean_return: if tally.finished > 0 { tally.return_sum / tally.finished as f64 } else { 0.0 },
        kept_shards: done.len() as u64,
        seconds: start.elapsed().as_secs_f64(),
        reports: session.report_lines(),
    })
}
