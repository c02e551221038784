//! The `dialogym` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dialogym::engine::corpus::{Format, read_corpus};
use dialogym::eval::{EvalArgs, eval, summarize, table};
use dialogym::generate::{GenerateArgs, generate};
use dialogym::{STOP, agents, scenarios};

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
    /// The whole pipeline, small, on 20 Questions: imagine a corpus, evaluate baselines.
    Demo {
        /// Where the demo writes its corpus.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Master seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
        /// Agent spec, e.g. `greedy-eig`, `eps-greedy(eps=0.3)`, `mix:random@1,greedy-eig@3`.
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
    },
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
            for (name, _, about) in scenarios::BUILTIN {
                println!("{name:<20} {about}");
            }
            println!("{:<20} a scenario file in the TOML format of docs/scenario-files.md", "PATH.toml");
        }
        Command::Scenarios { action: ScenariosCmd::Describe { scenario } } => {
            let s = scenarios::load(&scenario)?;
            let r = &s.rules;
            println!("{}\n\n{}\n", r.name, r.description);
            println!("entities: {} (secrets: {})", s.table.entities.len(), s.secrets().len());
            println!("questions in the bank: {}", s.table.attributes.len());
            println!(
                "max agent turns: {}; reward: -{} per utterance, {} for naming the secret",
                r.max_turns, r.question_cost, r.success_reward
            );
            println!("\nagents:");
            for (n, about) in agents::ENTITY_AGENTS {
                println!("  {n:<32} {about}");
            }
            println!("personas:");
            for (n, about) in agents::ENTITY_PERSONAS {
                println!("  {n:<32} {about}");
            }
        }
        Command::Scenarios { action: ScenariosCmd::Validate { file } } => {
            let s = scenarios::load(&file.to_string_lossy())?;
            let pairs = s.table.indistinguishable_pairs();
            println!(
                "{}: ok: {} entities, {} attributes, max {} turns",
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
        }
        Command::Eval { scenario, agents, persona, episodes, seed, concurrency, corpus, json } => {
            let results = match corpus {
                Some(dir) => {
                    let (_, rows) = read_corpus(&dir)?;
                    summarize(&rows)
                }
                None => eval(
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
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&results)?;
                std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
            }
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
