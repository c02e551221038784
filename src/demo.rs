//! `dialogym demo`: the whole pipeline, small, on the embedded 20 Questions, told in words:
//! imagine a corpus of weak questioners, train BC and ILQL on it, play every agent on the
//! same fresh episodes, say how the learned agents compare with the data and with greedy
//! EIG, and write an HTML report (tables, plots, transcripts side by side).
//!
//! The budget (8,000 episodes, 3,000 steps per learner) is the smallest at which ILQL's
//! advantage over the data and over BC stands clear of the 95% intervals on this project's
//! machine (measured in `docs/results.md`, "The demo's budget"). Every stage reuses what a
//! previous run left in `--out`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result};
use dialogym_agents::cast::{agent, persona};
use dialogym_engine::corpus::{EpisodeRecord, Format, read_corpus};
use dialogym_engine::world::play_episodes;
use dialogym_engine::{Context, MixSpec, Role, Spec};
use dialogym_policies::learners::Algo;
use dialogym_policies::lm::backend::DEFAULT_EMBEDDER;
use dialogym_policies::lm::default_model_path;
use dialogym_policies::train::TrainConfig;

use crate::eval::{AgentResult, summarize, table};
use crate::experiment::{BEHAVIOUR_MIX, GREEDY, PERSONA};
use crate::generate::{GenerateArgs, generate};

/// Corpus episodes.
pub const EPISODES: u64 = 8_000;
/// Gradient steps per learner.
pub const STEPS: usize = 3_000;
/// Evaluation episodes per agent.
pub const EVAL_EPISODES: u64 = 500;
/// Steps per second of one learner on one thread of the project's idle 2-core EPYC
/// (`docs/results.md`): the basis of the time estimate printed before training.
const STEPS_PER_SECOND: f64 = 15.0;

fn play_into(out: &Path, agent: &str, episodes: u64, seed: u64, stop: &AtomicBool) -> Result<()> {
    let args = GenerateArgs {
        scenario: "twenty-questions".into(),
        agent: agent.into(),
        persona: PERSONA.into(),
        episodes,
        seed,
        concurrency: 256,
        out: out.to_path_buf(),
        resume: out.join("manifest.json").exists(),
        shard_size: 10_000,
        formats: vec![Format::Jsonl, Format::Parquet],
        shard: None,
    };
    generate(&args, vec!["dialogym".into(), "demo".into()], stop, true)?;
    Ok(())
}

/// One agent's row, looked up by spec.
fn find<'a>(results: &'a [AgentResult], agent: &str) -> Option<&'a AgentResult> {
    results.iter().find(|r| r.agent == agent)
}

/// `a − b` of mean returns, with whether the 95% intervals are apart.
fn versus(a: &AgentResult, b: &AgentResult) -> String {
    let d = a.ret.mean - b.ret.mean;
    let apart = (a.ret.mean - b.ret.mean).abs() > a.ret.ci95 + b.ret.ci95;
    format!(
        "{:+.2} return per episode ({:.1}% vs {:.1}% success){}",
        d,
        100.0 * a.success.mean,
        100.0 * b.success.mean,
        if apart { "" } else { "; within the 95% intervals, so not a clear difference at this sample size" }
    )
}

/// Runs the demo into `out` (re-running it reuses what is there).
pub fn run(out: &Path, seed: u64, stop: &AtomicBool) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let minutes = 2.0 * STEPS as f64 / STEPS_PER_SECOND / 60.0;
    println!(
        "dialogym demo: 20 Questions (158 objects, ≤ 20 yes/no questions, −1 per question).\n\
         1. imagine {EPISODES} games of four weak, human-like questioners against an answerer who slips 5% of the time;\n\
         2. learn two questioners offline from those games: BC (copy the data) and ILQL (learn what pays);\n\
         3. play every agent on the same {EVAL_EPISODES} fresh games, beside greedy expected-information-gain;\n\
         4. write an HTML report.\n\
         Training takes about {minutes:.0} minutes ({STEPS} steps per learner at ~{STEPS_PER_SECOND:.0} steps/s on one \
         core of an idle 2-core machine; longer on a busy one). The whole demo: about {:.0} minutes.\n",
        minutes + 2.0
    );

    let corpus = out.join("corpus");
    eprintln!("1/4 imagining {EPISODES} games: {BEHAVIOUR_MIX} vs {PERSONA}");
    play_into(&corpus, BEHAVIOUR_MIX, EPISODES, seed, stop)?;
    let (_, rows) = read_corpus(&corpus)?;
    let data = summarize(&rows);

    eprintln!("2/4 training BC and ILQL, {STEPS} steps each");
    let mut dirs: Vec<(Algo, PathBuf)> = Vec::new();
    for algo in [Algo::named("bc")?, Algo::named("ilql")?] {
        let dir = out.join(algo.name());
        let config = TrainConfig { algo, seed, steps: STEPS, ..TrainConfig::default() };
        let s = crate::train::run(&corpus, &config, &dir, dir.join("model.safetensors").exists(), "cpu", stop, true)
            .with_context(|| format!("training {}", algo.name()))?;
        if s.steps > 0 {
            eprintln!(
                "    {}: {} transitions, {:.1} steps/s -> {}",
                algo.name(),
                s.transitions,
                s.steps_per_second,
                dir.display()
            );
        } else {
            eprintln!("    {}: reused {}", algo.name(), dir.display());
        }
        dirs.push((algo, dir));
    }

    let behaviour: Vec<String> = MixSpec::parse(BEHAVIOUR_MIX)?.components.iter().map(|(s, _)| s.to_string()).collect();
    let learned: Vec<String> = dirs.iter().map(|(_, d)| format!("learned:{}", d.display())).collect();
    let agents: Vec<(String, String)> = behaviour
        .iter()
        .cloned()
        .chain([GREEDY.to_string()])
        .chain(learned.iter().cloned())
        .enumerate()
        .map(|(i, a)| {
            let name = match a.strip_prefix("learned:") {
                Some(p) => Path::new(p).file_name().map_or(format!("agent{i}"), |n| n.to_string_lossy().into_owned()),
                None => a.split('(').next().unwrap_or("agent").to_string(),
            };
            (format!("{i}-{name}"), a)
        })
        .collect();
    eprintln!(
        "3/4 playing {} agents on the same {EVAL_EPISODES} fresh games (seed {})",
        agents.len(),
        seed + 1_000_000
    );
    let mut results = Vec::new();
    for (name, agent) in &agents {
        let dir = out.join("eval").join(name);
        play_into(&dir, agent, EVAL_EPISODES, seed + 1_000_000, stop)?;
        let (_, rows) = read_corpus(&dir)?;
        results.extend(summarize(&rows));
    }
    let md = format!(
        "# dialogym demo\n\ncorpus: {EPISODES} episodes of `{BEHAVIOUR_MIX}` vs `{PERSONA}` (seed {seed}); BC and ILQL: \
         {STEPS} steps each; evaluation: {EVAL_EPISODES} episodes per agent (seed {}).\n\n{}",
        seed + 1_000_000,
        table(&results)
    );
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results)? + "\n")?;

    println!("{}", summary(&data, &results, &behaviour, &learned));

    eprintln!("4/4 writing the report");
    let report = out.join("report.html");
    let mut inputs = vec![out.join("eval")];
    inputs.extend(dirs.iter().map(|(_, d)| d.clone()));
    crate::report::write(&inputs, &report)?;
    println!("report: {} (open it in a browser; it needs no network)", report.display());
    println!("tables: {}", out.join("results.md").display());

    demo_llm(seed, stop, Some(&corpus))?;
    Ok(())
}

/// What was imagined, what was learned and how the learners compare, in words and numbers.
fn summary(data: &[AgentResult], results: &[AgentResult], behaviour: &[String], learned: &[String]) -> String {
    let mut s = String::from("What was imagined:\n");
    let n: usize = data.iter().map(|r| r.episodes).sum();
    let won: f64 = data.iter().map(|r| r.success.mean * r.episodes as f64).sum();
    let ret: f64 = data.iter().map(|r| r.ret.mean * r.episodes as f64).sum();
    s.push_str(&format!(
        "  {n} games by four weak questioners: {:.0}% won, {:.2} mean return (−1 per question; 0 is winning on \
         the first one).\n",
        100.0 * won / n.max(1) as f64,
        ret / n.max(1) as f64
    ));
    for r in data {
        s.push_str(&format!("    {:<44} {:>5.1}% won, return {:.2}\n", r.agent, 100.0 * r.success.mean, r.ret.mean));
    }
    let best = results.iter().filter(|r| behaviour.contains(&r.agent)).max_by(|a, b| a.ret.mean.total_cmp(&b.ret.mean));
    let (bc, ilql, greedy) = (
        learned.first().and_then(|a| find(results, a)),
        learned.get(1).and_then(|a| find(results, a)),
        find(results, GREEDY),
    );
    s.push_str("\nWhat was learned (on the same fresh games):\n");
    for (label, r) in
        [("BC (imitates the data)", bc), ("ILQL (learns what pays)", ilql), ("greedy EIG (hand-made)", greedy)]
    {
        if let Some(r) = r {
            s.push_str(&format!(
                "  {label:<26} {:>5.1}% won, return {:.2} ± {:.2}, {:.1} questions\n",
                100.0 * r.success.mean,
                r.ret.mean,
                r.ret.ci95,
                r.turns.mean
            ));
        }
    }
    if let (Some(i), Some(b)) = (ilql, best) {
        s.push_str(&format!("\nILQL vs the best questioner in the data ({}): {}.\n", b.agent, versus(i, b)));
    }
    if let (Some(i), Some(b)) = (ilql, bc) {
        s.push_str(&format!("ILQL vs BC: {}.\n", versus(i, b)));
    }
    if let (Some(i), Some(g)) = (ilql, greedy) {
        s.push_str(&format!(
            "ILQL vs greedy EIG: {}. Greedy EIG reasons over the whole object table; ILQL learned from the \
             weak games alone.\n",
            versus(i, g)
        ));
    }
    s
}

/// A transcript as lines `agent: ...` / `persona: ...`.
pub fn render_transcript(r: &EpisodeRecord) -> String {
    let mut out = format!("secret: {}\n", r.hidden);
    for m in &r.messages {
        let who = if m.role == Role::Agent { "agent  " } else { "persona" };
        out.push_str(&format!("  {who}: {}\n", m.content));
    }
    out.push_str(&format!("  -> success: {}, turns: {}, return: {}\n", r.success, r.turns, r.ret));
    out
}

/// The LLM part of `dialogym demo`: when the small model is installed, a few episodes with
/// an LLM persona (vs greedy EIG) and an LLM agent (vs the matching oracle), and one
/// transcript of each. With `examples` (a corpus folder), the agent gets the few-shot prompt of
/// `dialogym_agents::llm::fewshot` (`llm(examples=DIR)`). Prints a hint and returns when the model is missing.
pub fn demo_llm(seed: u64, stop: &AtomicBool, examples: Option<&Path>) -> Result<()> {
    let path = default_model_path();
    if !path.exists() {
        eprintln!("(LLM speakers skipped: {} is not installed; run scripts/install-model.sh)", path.display());
        return Ok(());
    }
    let scenario = crate::session::entity("twenty-questions")?;
    let context = Context::new();
    let persona_spec = Spec::parse(&format!("llm:{}(grounding=check)", path.display()))?;
    let llm_persona = persona(&persona_spec, &*scenario, &context)?;
    let greedy = agent(&Spec::parse("greedy-eig")?, &*scenario, &context)?;
    eprintln!("LLM persona ({}) vs greedy-eig: 4 episodes", persona_spec);
    let rows = play_episodes(scenario.clone(), greedy, llm_persona, 4, seed, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    let oracle_spec = if Path::new(DEFAULT_EMBEDDER).join("model.safetensors").exists() {
        "oracle(matcher=minilm)"
    } else {
        "oracle"
    };
    let oracle_spec = Spec::parse(oracle_spec)?;
    let oracle = persona(&oracle_spec, &*scenario, &context)?;
    let agent_spec = match examples {
        None => Spec::parse(&format!("llm:{}(max_tokens=24)", path.display()))?,
        Some(dir) => {
            Spec::parse(&format!("llm:{}(max_tokens=24,temperature=0.3,examples={})", path.display(), dir.display()))?
        }
    };
    let llm_agent = agent(&agent_spec, &*scenario, &context)?;
    eprintln!("LLM agent ({agent_spec}) vs {oracle_spec}: 4 episodes");
    let rows = play_episodes(scenario, llm_agent, oracle, 4, seed + 1, 4, stop)?;
    let wins = rows.iter().filter(|r| r.success).count();
    eprintln!("    success {wins}/{}", rows.len());
    for (label, line) in context.report_lines() {
        eprintln!("    {label}: {line}");
    }
    if let Some(r) = rows.first() {
        println!("{}", render_transcript(r));
    }
    Ok(())
}
