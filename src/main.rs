//! The `dialogym` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dialogym::engine::corpus::{Format, read_corpus};
use dialogym::eval::{EvalArgs, eval_with_reports, metrics_table, summarize, table};
use dialogym::generate::{GenerateArgs, generate};
use dialogym::policies::learners::Algo;
use dialogym::policies::train::TrainConfig;
use dialogym::scenarios;

/// Set by the Ctrl-C handler; long runs stop at the next tick and keep what is written.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Parser)]
#[command(
    name = "dialogym",
    version,
    about = "Imagine goal-directed conversations and learn, offline, to hold them well."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline, small, on 20 Questions: imagine a corpus, train BC and ILQL, evaluate them beside the baselines (and an LLM episode when the small model is installed).
    Demo {
        /// Where the demo writes its corpus.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Master seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// One self-contained HTML page (tables, plots, transcripts side by side, manifests) from run folders.
    Report {
        /// Corpora, training runs, evaluation JSON files, or folders holding them (e.g. runs/demo).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
    /// Play one episode at the terminal: answer as the persona, or ask as the agent.
    Play {
        /// Scenario name or file.
        #[arg(long, default_value = "twenty-questions")]
        scenario: String,
        /// The side you play: persona (you hold the secret and answer) or agent (you ask).
        #[arg(long, value_enum, default_value = "persona")]
        seat: dialogym::play::Seat,
        /// The program's agent, when you sit as the persona.
        #[arg(long, default_value = "greedy-eig")]
        agent: String,
        /// The program's persona, when you sit as the agent.
        #[arg(long, default_value = "oracle")]
        persona: String,
        /// Master seed (with --episode, it fixes the shown secret and every scripted draw).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Episode index.
        #[arg(long, default_value_t = 0)]
        episode: u64,
        /// The transcript file: one corpus row (JSONL) per game, appended.
        #[arg(long, default_value = "runs/play/transcripts.jsonl")]
        out: PathBuf,
    },
    /// List, describe or validate scenarios.
    Scenarios {
        #[command(subcommand)]
        action: ScenariosCmd,
    },
    /// Play episodes and write them to a corpus (JSONL + Parquet shards).
    Generate {
        /// Scenario name (see `scenarios list`) or a scenario file (.toml).
        #[arg(long, default_value = "twenty-questions")]
        scenario: String,
        /// Agent spec, e.g. `greedy-eig`, `eps-greedy(eps=0.3)`, `mix:random@1,greedy-eig@3`,
        /// `llm:MODEL.gguf(weights=auto)`. Local models' `weights=`: `auto` (default) keeps the
        /// file's Q4_1/Q8_0 blocks on dialogym's kernels, the family chosen per CPU at load:
        /// AVX-512 VNNI where the CPU has it, else AVX2+FMA, else scalar (`DIALOGYM_KERNELS=
        /// avx512|avx2|scalar` forces one; all give the same tokens); `q8_0` re-quantizes every
        /// weight to Q8_0; `as-shipped` runs candle's kernels; `f32` is the exact reference.
        #[arg(long, default_value = "greedy-eig")]
        agent: String,
        /// Persona spec, e.g. `oracle`, `oracle(slip=0.05)`.
        #[arg(long, default_value = "oracle")]
        persona: String,
        /// Number of episodes.
        #[arg(long, default_value_t = 1000)]
        episodes: i64,
        /// Master seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Live episodes at once (does not change the output).
        #[arg(long, default_value_t = 256)]
        concurrency: i64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Finish an interrupted run in --out (same arguments).
        #[arg(long)]
        resume: bool,
        /// Episodes per shard file.
        #[arg(long, default_value_t = 10_000)]
        shard_size: i64,
        /// Files per shard: jsonl, parquet, or both (comma-separated).
        #[arg(long, default_value = "jsonl,parquet")]
        format: String,
        /// Play only part I of N of the run (shards k with k % N == I), for job arrays;
        /// `auto/N` reads I from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or RANK. Join
        /// the parts with `corpus merge` (docs/scale-out.md).
        #[arg(long, value_name = "I/N")]
        shard: Option<dialogym::generate::ShardSpec>,
    },
    /// Work on corpus folders: merge the parts of a sharded run.
    Corpus {
        #[command(subcommand)]
        action: CorpusCmd,
    },
    /// Convert a corpus for other trainers: TRL (JSONL/Parquet), LMRL-Gym, trlx ILQL (docs/pipelines.md).
    Export(dialogym::export::ExportArgs),
    /// Serve a scenario and persona as an HTTP environment on 127.0.0.1 (OpenEnv-style; docs/pipelines.md).
    Serve(dialogym::serve::ServeArgs),
    /// Have a language model imagine persona cards (JSON validated against the scenario).
    Imagine {
        #[command(subcommand)]
        what: ImagineCmd,
    },
    /// Reproducible experiments (results in docs/results.md).
    Experiment {
        #[command(subcommand)]
        which: ExperimentCmd,
    },
    /// Learn offline from a corpus: ILQL, BC, filtered BC or MC returns (candle).
    Train(TrainArgs),
    /// Evaluate agents: success, return (95% CI), turns, information gained.
    Eval {
        /// Scenario name or file.
        #[arg(long, default_value = "twenty-questions")]
        scenario: String,
        /// Agent specs to compare (repeat the flag); each plays the same episodes.
        #[arg(long = "agent", default_values_t = vec!["greedy-eig".to_string(), "random".to_string()])]
        agents: Vec<String>,
        /// Persona spec.
        #[arg(long, default_value = "oracle")]
        persona: String,
        /// Episodes per agent.
        #[arg(long, default_value_t = 2000)]
        episodes: i64,
        /// Master seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Live episodes at once.
        #[arg(long, default_value_t = 256)]
        concurrency: i64,
        /// Summarize a corpus instead of playing (per agent id in the corpus).
        #[arg(long, conflicts_with_all = ["agents"])]
        corpus: Option<PathBuf>,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Corpus folder written by `generate`.
    #[arg(long)]
    corpus: PathBuf,
    /// Learner (the registry of policies/src/learners).
    #[arg(long, default_value = "ilql", value_parser = algo_parser())]
    algo: Algo,
    /// Checkpoint folder.
    #[arg(long)]
    out: PathBuf,
    /// Seed of initialization and minibatches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, or cuda (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// A JSON file with any TrainConfig fields and learner sections (docs/training.md);
    /// flags below override it. Unknown keys and out-of-range values are errors.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Gradient steps.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Transitions per minibatch (at most 65536).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: Option<u64>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Discount per utterance.
    #[arg(long, allow_negative_numbers = true)]
    gamma: Option<f64>,
    /// ILQL expectile (`learners.ilql.tau`).
    #[arg(long, allow_negative_numbers = true)]
    tau: Option<f64>,
    /// Weight of the CQL term (`learners.ilql.cql_weight` or `learners.mc.cql_weight`).
    #[arg(long, allow_negative_numbers = true)]
    cql_weight: Option<f64>,
    /// Fraction of episodes filtered BC keeps (`learners.filtered-bc.filter_fraction`).
    #[arg(long, allow_negative_numbers = true)]
    filter_fraction: Option<f64>,
}

/// `--algo`: the names of the learner registry, each with its help.
fn algo_parser() -> impl clap::builder::TypedValueParser<Value = Algo> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(Algo::all().map(|a| PossibleValue::new(a.name()).help(a.help())))
        .try_map(|name| Algo::named(&name))
}

/// Reads a training config file: its keys over the defaults, then the same validation as
/// the flags; every error names the file.
fn config_file(path: &std::path::Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut base = serde_json::to_value(TrainConfig::default())?;
    let given: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    if !given.is_object() {
        bail!("{}: a training config must be a JSON object", path.display());
    }
    merge(&mut base, given);
    let c: TrainConfig = serde_json::from_value(base).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    c.validate().map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    Ok(c)
}

impl TrainArgs {
    /// The config file (or the defaults), then the flags over it, validated.
    fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => config_file(path)?,
            None => TrainConfig::default(),
        };
        c.algo = self.algo;
        c.seed = self.seed;
        if let Some(v) = self.steps {
            c.steps = usize::try_from(v).context("--steps is too large")?;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = usize::try_from(v).context("--batch-size is too large")?;
        }
        if let Some(v) = self.lr {
            c.optimizer.lr = v;
        }
        if let Some(v) = self.gamma {
            c.gamma = v;
        }
        for (flag, key, given) in [
            ("--tau", "tau", self.tau),
            ("--cql-weight", "cql_weight", self.cql_weight),
            ("--filter-fraction", "filter_fraction", self.filter_fraction),
        ] {
            if let Some(v) = given {
                c.set_learner_setting(key, v).context(flag)?;
            }
        }
        c.validate().context("invalid training settings")?;
        Ok(c)
    }
}

fn merge(base: &mut serde_json::Value, given: serde_json::Value) {
    match (base, given) {
        (serde_json::Value::Object(b), serde_json::Value::Object(g)) => {
            for (k, v) in g {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[derive(Subcommand)]
enum ImagineCmd {
    /// Persona cards, one JSON object per line.
    Personas {
        /// Scenario name or file.
        #[arg(long, default_value = "twenty-questions")]
        scenario: String,
        /// How many cards.
        #[arg(long, default_value_t = 20)]
        n: usize,
        /// A local GGUF model, or an OpenAI-compatible server as `server:URL(model=NAME)`.
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        model: PathBuf,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file (JSONL).
        #[arg(long)]
        out: PathBuf,
    },
    /// Critique-and-rewrite: a language model critiques each dialogue of a corpus and
    /// rewrites it; both versions go to one JSONL file.
    Critique {
        /// Corpus folder written by `generate`.
        #[arg(long)]
        corpus: PathBuf,
        /// A local GGUF model, or an OpenAI-compatible server as `server:URL(model=NAME)`.
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        model: PathBuf,
        /// Only the first N episodes.
        #[arg(long)]
        episodes: Option<i64>,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file (JSONL).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ExperimentCmd {
    /// Weak behaviour policies → corpus → BC, filtered BC, MC, ILQL → evaluation, and
    /// generalization to held-out objects.
    #[command(name = "offline-20q")]
    Offline20q {
        /// Output folder (reused: an interrupted experiment continues).
        #[arg(long, default_value = "runs/offline-20q")]
        out: PathBuf,
        /// Corpus episodes.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        episodes: u64,
        /// Evaluation episodes per agent.
        #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
        eval_episodes: u64,
        /// Gradient steps per learner.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        steps: Option<u64>,
        /// Master seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Fraction of objects held out for the generalization run (0 skips it).
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Train every learner with this many seeds (seed, seed + 1, ...) and report each.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        train_seeds: u64,
    },
}

#[derive(Subcommand)]
enum CorpusCmd {
    /// Join the parts written by `generate --shard I/N` into one corpus, checked (one
    /// run, every episode once, rows and checksums) and byte-identical to a one-process
    /// run; its Parquet also in the Hugging Face datasets layout (data/, README.md).
    Merge(dialogym::merge::MergeArgs),
}

#[derive(Subcommand)]
enum ScenariosCmd {
    /// The built-in scenarios.
    List,
    /// One scenario's rules, question bank size, agents and personas.
    Describe {
        /// Scenario name or file.
        scenario: String,
    },
    /// Check a scenario file; errors name file, line and column.
    Validate {
        /// The .toml file.
        file: PathBuf,
    },
}

fn positive(name: &str, v: i64) -> Result<u64> {
    if v < 1 {
        bail!("{name} must be at least 1 (got {v})");
    }
    Ok(v as u64)
}

fn formats(text: &str) -> Result<Vec<Format>> {
    text.split(',')
        .map(|f| match f.trim() {
            "jsonl" => Ok(Format::Jsonl),
            "parquet" => Ok(Format::Parquet),
            other => bail!("--format: unknown format `{other}` (valid: jsonl, parquet)"),
        })
        .collect()
}

fn command_line() -> Vec<String> {
    std::env::args().filter(|a| a != "--resume").collect()
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Scenarios { action: ScenariosCmd::List } => {
            let width = dialogym::session::SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0).max(20);
            for row in dialogym::session::SCENARIOS {
                println!("{:<width$} {}", row.name, row.about);
            }
            println!("{:<width$} a scenario file in the TOML format of docs/scenario-files.md", "PATH.toml");
        }
        Command::Scenarios { action: ScenariosCmd::Describe { scenario } } => {
            print!("{}", dialogym::session::load(&scenario)?.describe());
        }
        Command::Scenarios { action: ScenariosCmd::Validate { file } } => {
            let s = scenarios::load_file(&file.to_string_lossy())?;
            let pairs = s.table.indistinguishable_pairs();
            let open = match s.table.open.len() {
                0 => String::new(),
                n => format!(", {n} open attributes"),
            };
            println!(
                "{}: ok: {} entities, {} attributes{open}, max {} turns",
                file.display(),
                s.table.entities.len(),
                s.table.attributes.len(),
                s.rules.max_turns
            );
            for (a, b) in pairs {
                println!(
                    "warning: `{}` and `{}` answer every question alike; no agent can tell them apart",
                    s.table.entities[a].names[0], s.table.entities[b].names[0]
                );
            }
        }
        Command::Generate {
            scenario,
            agent,
            persona,
            episodes,
            seed,
            concurrency,
            out,
            resume,
            shard_size,
            format,
            shard,
        } => {
            let args = GenerateArgs {
                scenario,
                agent,
                persona,
                episodes: positive("--episodes", episodes)?,
                seed,
                concurrency: positive("--concurrency", concurrency)? as usize,
                out,
                resume,
                shard_size: positive("--shard-size", shard_size)?,
                formats: formats(&format)?,
                shard,
            };
            let s = generate(&args, command_line(), &STOP, true)?;
            eprintln!(
                "wrote {} episodes to {} in {:.2}s ({:.0} episodes/s); success {:.1}%, mean return {:.2}{}",
                s.played,
                args.out.display(),
                s.seconds,
                s.played as f64 / s.seconds.max(1e-9),
                100.0 * s.successes as f64 / s.played.max(1) as f64,
                s.mean_return,
                if s.kept_shards > 0 { format!(" ({} shards kept from before)", s.kept_shards) } else { String::new() }
            );
            for (label, line) in &s.reports {
                eprintln!("{label}: {line}");
            }
        }
        Command::Corpus { action: CorpusCmd::Merge(args) } => {
            let s = dialogym::merge::merge(&args, &STOP)?;
            eprintln!(
                "merged {} parts into {}: {} episodes, {} shards, {} files ({:.1} MB) in {:.2}s",
                s.parts,
                args.out.display(),
                s.episodes,
                s.shards,
                s.files,
                s.bytes as f64 / 1e6,
                s.seconds
            );
        }
        Command::Eval { scenario, agents, persona, episodes, seed, concurrency, corpus, json } => {
            let (results, reports) = match corpus {
                Some(dir) => {
                    let (_, rows) = read_corpus(&dir)?;
                    (summarize(&rows), Vec::new())
                }
                None => eval_with_reports(
                    &EvalArgs {
                        scenario,
                        agents,
                        persona,
                        episodes: positive("--episodes", episodes)?,
                        seed,
                        concurrency: positive("--concurrency", concurrency)? as usize,
                    },
                    &STOP,
                    true,
                )?,
            };
            print!("{}", table(&results));
            let metrics = metrics_table(&results);
            if !metrics.is_empty() {
                print!("\n{metrics}");
            }
            for (label, line) in reports {
                println!("{label}: {line}");
            }
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&results)?;
                std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Command::Train(args) => {
            let config = args.config()?;
            let s = dialogym::train::run(&args.corpus, &config, &args.out, args.resume, &args.device, &STOP, true)?;
            eprintln!(
                "{}: {} transitions, {} steps at {:.1} steps/s -> {}",
                config.algo.name(),
                s.transitions,
                s.steps,
                s.steps_per_second,
                args.out.display()
            );
        }
        Command::Experiment {
            which: ExperimentCmd::Offline20q { out, episodes, eval_episodes, steps, seed, holdout, train_seeds },
        } => {
            if !(0.0..1.0).contains(&holdout) {
                bail!("--holdout must lie in [0, 1)");
            }
            let mut train = TrainConfig { seed, ..TrainConfig::default() };
            if let Some(s) = steps {
                train.steps = usize::try_from(s).context("--steps is too large")?;
            }
            let args = dialogym::experiment::ExperimentArgs {
                out,
                episodes,
                eval_episodes,
                train,
                algos: ["bc", "filtered-bc", "mc", "ilql"].into_iter().map(Algo::named).collect::<Result<_>>()?,
                seed,
                holdout,
                train_seeds,
            };
            dialogym::experiment::offline_20q(&args, &STOP)?;
        }
        Command::Imagine { what: ImagineCmd::Personas { scenario, n, model, seed, out } } => {
            let s = dialogym::imagine::imagine(&dialogym::imagine::ImagineArgs {
                scenario,
                n,
                model,
                seed,
                out: out.clone(),
            })?;
            eprintln!(
                "wrote {} persona cards to {} ({} invalid outputs retried, {} missing)",
                s.valid,
                out.display(),
                s.invalid_retried,
                s.missing
            );
        }
        Command::Imagine { what: ImagineCmd::Critique { corpus, model, episodes, seed, out } } => {
            let episodes = episodes.map(|n| positive("--episodes", n)).transpose()?.map(|n| n as usize);
            let s = dialogym::imagine::critique(&dialogym::imagine::CritiqueArgs {
                corpus,
                model,
                episodes,
                seed,
                out: out.clone(),
            })?;
            eprintln!(
                "wrote {} dialogues to {} ({} revised, {} invalid outputs retried, {} left unrevised)",
                s.revised + s.unrevised,
                out.display(),
                s.revised,
                s.invalid_retried,
                s.unrevised
            );
        }
        Command::Export(args) => {
            let s = dialogym::export::export(&args, &STOP)?;
            eprintln!(
                "exported {} episodes ({} rows, {} shards) to {} in {:.2}s ({:.0} episodes/s)",
                s.episodes,
                s.rows,
                s.shards,
                args.out.display(),
                s.seconds,
                s.episodes as f64 / s.seconds.max(1e-9)
            );
        }
        Command::Serve(args) => {
            let s = dialogym::serve::run(&args, command_line(), &STOP)?;
            eprintln!(
                "served {} requests, {} steps, {} episodes finished ({} recorded), {} sessions expired",
                s.requests, s.steps, s.finished, s.recorded, s.expired
            );
        }
        Command::Report { runs, out } => {
            let (c, e, t) = dialogym::report::write(&runs, &out)?;
            eprintln!("wrote {} ({c} corpora, {e} evaluation tables, {t} training runs)", out.display());
        }
        Command::Play { scenario, seat, agent, persona, seed, episode, out } => {
            let args = dialogym::play::PlayArgs { scenario, seat, agent, persona, seed, episode, out };
            let stdin = Box::new(std::io::BufReader::new(std::io::stdin()));
            dialogym::play::play(&args, stdin, &mut std::io::stdout(), &STOP)?;
        }
        Command::Demo { out, seed } => dialogym::demo::run(&out, seed, &STOP)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the user really wants out.
            std::process::exit(130);
        }
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if STOP.load(Ordering::SeqCst) { ExitCode::from(130) } else { ExitCode::FAILURE }
        }
    }
}
