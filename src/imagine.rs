//! `dialogym imagine personas` and `dialogym imagine critique`: thin verbs over
//! `dialogym_agents::llm::imagine_personas` and `dialogym_agents::critique`, writing JSONL
//! files atomically.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dialogym_agents::llm::{ImagineStats, imagine_personas};
use dialogym_engine::{Context, Message};
use dialogym_policies::lm::backend::model_arg;

/// Writes `items` to `path`, one JSON object per line, atomically (a killed run leaves no
/// half file).
fn write_jsonl<T: serde::Serialize>(path: &Path, items: &[T]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    dialogym_engine::corpus::write_atomic(path, |w| {
        for item in items {
            serde_json::to_writer(&mut *w, item)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// `dialogym imagine personas`.
#[derive(Clone, Debug)]
pub struct ImagineArgs {
    /// Scenario name or file.
    pub scenario: String,
    /// Cards to write.
    pub n: usize,
    /// The model file, or a `server:URL(model=NAME,...)` spec.
    pub model: PathBuf,
    /// Master seed.
    pub seed: u64,
    /// Output JSONL file (one card per line).
    pub out: PathBuf,
}

/// Imagines persona cards and writes them, one JSON object per line, to `args.out`
/// (written to a temporary file and renamed, so a killed run leaves no half file).
pub fn imagine(args: &ImagineArgs) -> Result<ImagineStats> {
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let scenario = crate::session::entity(&args.scenario)?;
    let mut model = model_arg(&args.model, &Context::new())?;
    let (cards, stats) = imagine_personas(model.as_mut(), &scenario, args.n, args.seed)?;
    write_jsonl(&args.out, &cards)?;
    Ok(stats)
}

/// `dialogym imagine critique`.
#[derive(Clone, Debug)]
pub struct CritiqueArgs {
    /// Corpus folder written by `generate`.
    pub corpus: PathBuf,
    /// The model file, or a `server:URL(model=NAME,...)` spec.
    pub model: PathBuf,
    /// Critique only the first this many episodes (None: all).
    pub episodes: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
    /// Output JSONL file (one dialogue and its revision per line).
    pub out: PathBuf,
}

/// The critique-and-rewrite pass over a corpus: one line per episode with the original
/// transcript, the critique and the revised transcript (or none), written to a temporary
/// file and renamed, so a killed run leaves no half file.
pub fn critique(args: &CritiqueArgs) -> Result<dialogym_agents::critique::CritiqueStats> {
    let (_, rows) = dialogym_engine::corpus::read_corpus(&args.corpus)?;
    let rows = &rows[..args.episodes.unwrap_or(rows.len()).min(rows.len())];
    let Some(first) = rows.first() else { bail!("{} holds no episodes", args.corpus.display()) };
    let brief = crate::session::load(&first.scenario)
        .with_context(|| format!("{}: cannot load its scenario `{}`", args.corpus.display(), first.scenario))?
        .agent_brief();
    let mut model = model_arg(&args.model, &Context::new())?;
    let dialogues: Vec<(u64, Vec<Message>)> = rows.iter().map(|r| (r.episode, r.messages.clone())).collect();
    let (revisions, stats) = dialogym_agents::critique::critique(model.as_mut(), &brief, &dialogues, args.seed)?;
    write_jsonl(&args.out, &revisions)?;
    Ok(stats)
}
