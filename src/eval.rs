//! `dialogym eval`: success rate, return (mean ± 95% interval), turns and information
//! gained, per agent, from live play against a persona or from a corpus.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use dialogym_engine::MixSpec;
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::stats::Estimate;
use dialogym_engine::world::PlayConfig;
use serde::Serialize;

/// One agent's results.
#[derive(Clone, Debug, Serialize)]
pub struct AgentResult {
    /// Agent spec.
    pub agent: String,
    /// Episodes played.
    pub episodes: usize,
    /// Success rate (a mean of 0/1, with its interval).
    pub success: Estimate,
    /// Return.
    #[serde(rename = "return")]
    pub ret: Estimate,
    /// Agent utterances per episode.
    pub turns: Estimate,
    /// Information gained about the hidden state, in bits (entity scenarios).
    pub info_gain_bits: Option<Estimate>,
    /// Every other per-episode metric the scenario records in all episodes (e.g. polling's
    /// `acc_after_3`), averaged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Estimate>,
}

/// The numbers kept per episode (not the transcript).
#[derive(Clone, Debug)]
struct Row {
    agent: String,
    ret: f64,
    success: bool,
    turns: u32,
    info: Option<f64>,
    metrics: BTreeMap<String, f64>,
}

impl From<&EpisodeRecord> for Row {
    fn from(r: &EpisodeRecord) -> Row {
        Row {
            agent: r.agent.clone(),
            ret: r.ret,
            success: r.success,
            turns: r.turns,
            info: r.metrics.get("info_gain_bits").copied(),
            metrics: r.metrics.iter().filter(|(k, _)| *k != "info_gain_bits").map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

fn summarize_rows(rows: &[Row]) -> Vec<AgentResult> {
    let mut by_agent: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_agent.entry(&r.agent).or_default().push(r);
    }
    by_agent
        .into_iter()
        .map(|(agent, rs)| AgentResult {
            agent: agent.to_string(),
            episodes: rs.len(),
            success: Estimate::of(rs.iter().map(|r| r.success as u8 as f64)),
            ret: Estimate::of(rs.iter().map(|r| r.ret)),
            turns: Estimate::of(rs.iter().map(|r| r.turns as f64)),
            info_gain_bits: if rs.iter().all(|r| r.info.is_some()) {
                Some(Estimate::of(rs.iter().filter_map(|r| r.info)))
            } else {
                None
            },
            metrics: rs[0]
                .metrics
                .keys()
                .filter(|k| rs.iter().all(|r| r.metrics.contains_key(*k)))
                .map(|k| (k.clone(), Estimate::of(rs.iter().map(|r| r.metrics[k]))))
                .collect(),
        })
        .collect()
}

/// Per-agent results of a corpus's episodes.
pub fn summarize<'a>(records: impl IntoIterator<Item = &'a EpisodeRecord>) -> Vec<AgentResult> {
    let rows: Vec<Row> = records.into_iter().map(Row::from).collect();
    summarize_rows(&rows)
}

/// A live evaluation.
#[derive(Clone, Debug)]
pub struct EvalArgs {
    /// Scenario spec or file.
    pub scenario: String,
    /// Agents to evaluate, each on the same episodes (same seeds, same secrets).
    pub agents: Vec<String>,
    /// Persona spec.
    pub persona: String,
    /// Episodes per agent.
    pub episodes: u64,
    /// Master seed.
    pub seed: u64,
    /// Live episodes at once.
    pub concurrency: usize,
}

/// Plays every agent on the same `episodes` and summarizes.
pub fn eval(args: &EvalArgs, stop: &AtomicBool, progress: bool) -> Result<Vec<AgentResult>> {
    Ok(eval_with_reports(args, stop, progress)?.0)
}

/// [`eval`], and what the speakers reported about themselves (one line per label: the
/// persona played against every agent is one speaker, e.g. "persona consistency ...").
pub fn eval_with_reports(
    args: &EvalArgs,
    stop: &AtomicBool,
    progress: bool,
) -> Result<(Vec<AgentResult>, Vec<(String, String)>)> {
    if args.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    if args.agents.is_empty() {
        bail!("name at least one --agent");
    }
    let session = crate::session::load(&args.scenario)?;
    let persona_spec = MixSpec::parse(&args.persona).context("--persona")?;
    let mut results = Vec::new();
    for agent in &args.agents {
        let agent_spec = MixSpec::parse(agent).with_context(|| format!("--agent {agent}"))?;
        let cast = session.prepare(&agent_spec, &persona_spec)?;
        let (tx, rx) = crossbeam_channel::unbounded::<EpisodeRecord>();
        let folder = std::thread::spawn(move || rx.iter().map(|r: EpisodeRecord| Row::from(&r)).collect::<Vec<Row>>());
        let pb = if progress { crate::progress_bar(args.episodes, agent) } else { indicatif::ProgressBar::hidden() };
        let run = cast.play(
            &PlayConfig {
                seed: args.seed,
                run_id: format!("eval-{}", args.seed),
                episodes: (0..args.episodes).collect(),
                concurrency: args.concurrency,
            },
            tx,
            stop,
            &mut |t| pb.set_position(t.finished),
        );
        pb.finish_and_clear();
        let rows = folder.join().map_err(|_| anyhow!("evaluation collector panicked"))?;
        run?;
        // A mixture is reported as one row under its spec, not per component.
        let label = agent_spec.to_string();
        let rows: Vec<Row> = rows.into_iter().map(|r| Row { agent: label.clone(), ..r }).collect();
        results.extend(summarize_rows(&rows));
    }
    Ok((results, session.report_lines()))
}

/// The scenario's own metrics as a Markdown table, one row per metric and one column per
/// agent (empty when no agent has any): `acc_after_1`, ... read down the column.
pub fn metrics_table(results: &[AgentResult]) -> String {
    let mut keys: Vec<&String> = results.iter().flat_map(|r| r.metrics.keys()).collect();
    // Natural order, so `acc_after_10` follows `acc_after_9`.
    let split = |k: &str| {
        let stem = k.trim_end_matches(|c: char| c.is_ascii_digit());
        (stem.to_string(), k[stem.len()..].parse::<u64>().unwrap_or(0))
    };
    keys.sort_by_key(|k| split(k));
    keys.dedup();
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::from("| metric |");
    for r in results {
        out.push_str(&format!(" {} |", r.agent));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(results.len()));
    out.push('\n');
    for k in keys {
        out.push_str(&format!("| {k} |"));
        for r in results {
            match r.metrics.get(k) {
                Some(e) => out.push_str(&format!(" {:.3} ± {:.3} |", e.mean, e.ci95)),
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// The results as a Markdown table.
pub fn table(results: &[AgentResult]) -> String {
    let mut out = String::from("| agent | episodes | success % | return (95% CI) | turns | info gain (bits) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {:.1} ± {:.1} | {:.2} ± {:.2} | {:.2} | {} |\n",
            r.agent,
            r.episodes,
            100.0 * r.success.mean,
            100.0 * r.success.ci95,
            r.ret.mean,
            r.ret.ci95,
            r.turns.mean,
            r.info_gain_bits.map_or("-".to_string(), |e| format!("{:.2}", e.mean)),
        ));
    }
    out
}
