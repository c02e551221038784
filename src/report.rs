//! `dialogym report RUN_DIR... --out report.html`: one self-contained HTML page (inline
//! CSS and SVG, no script, nothing fetched) from corpora, evaluation results and training
//! runs.
//!
//! Sections, each a `<section id=...>`:
//! - `agents`: success, return with its 95% interval, turns and information gained per
//!   agent (from evaluation JSON files and from the episodes of corpora);
//! - `returns`: the distribution of the return per agent (corpora);
//! - `success`: the fraction of episodes won within k agent utterances, per agent (corpora);
//! - `learning`: per training run, its losses and its mean Q and V against the step (and
//!   an evaluation return when a run records `eval_return`);
//! - `transcripts`: the same hidden state (same episode seed) played by two agents, side by
//!   side, with each message's reward, how the scenario read it and the hypotheses left;
//! - `manifests`: the command, seed, version and configuration (speaker specs, models) of
//!   every run.
//!
//! A folder is read as a corpus (`manifest.json` + `episodes-*.jsonl`), a training run
//! (`config.json` + `metrics.jsonl`), or searched (three levels deep) for those and for
//! evaluation JSON (`dialogym eval --json`, an experiment's `results.json`). A `.json` file
//! may be named directly. The page depends only on its inputs: the same inputs write the
//! same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use dialogym_engine::Role;
use dialogym_engine::corpus::{EpisodeRecord, Manifest, read_corpus};
use plotters::prelude::*;
use serde::Deserialize;

use crate::annotate::Reader;
use crate::eval::{AgentResult, summarize};

/// The sections of the page, by id, in order (the test checks every one is there).
pub const SECTIONS: &[&str] = &["agents", "returns", "success", "learning", "transcripts", "manifests"];

/// At most this many agents per plot (the palette stays readable).
const MAX_SERIES: usize = 10;
/// Transcript pairs shown.
const PAIRS_SHOWN: usize = 3;

/// A corpus folder and its episodes.
pub struct CorpusRun {
    /// The folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its episodes.
    pub rows: Vec<EpisodeRecord>,
}

/// One row of an evaluation JSON file (`AgentResult` as written).
#[derive(Clone, Debug, Deserialize)]
pub struct EvalRow {
    /// Agent spec.
    pub agent: String,
    /// Episodes.
    pub episodes: usize,
    /// Success rate.
    pub success: Est,
    /// Return.
    #[serde(rename = "return")]
    pub ret: Est,
    /// Agent utterances per episode.
    pub turns: Est,
    /// Bits gained (entity scenarios).
    #[serde(default)]
    pub info_gain_bits: Option<Est>,
}

/// An estimate as JSON holds it (NaN is written as null).
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Est {
    /// Mean.
    pub mean: Option<f64>,
    /// 95% half-width.
    pub ci95: Option<f64>,
}

/// An evaluation results file.
pub struct EvalRun {
    /// The file (and, for an experiment's results, which table).
    pub source: String,
    /// Its rows.
    pub rows: Vec<EvalRow>,
}

/// A training run's folder: its config and metrics.
pub struct TrainRun {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: serde_json::Value,
    /// `metrics.jsonl`, one object per logged step.
    pub lines: Vec<serde_json::Value>,
}

/// Everything a report is made of.
#[derive(Default)]
pub struct Inputs {
    /// Corpora.
    pub corpora: Vec<CorpusRun>,
    /// Evaluation result files.
    pub evals: Vec<EvalRun>,
    /// Training runs.
    pub trainings: Vec<TrainRun>,
}

impl Inputs {
    /// Reads every input under `paths`; a path with nothing readable is an error.
    pub fn collect(paths: &[PathBuf]) -> Result<Inputs> {
        if paths.is_empty() {
            bail!("name at least one run folder (a corpus, a training run, evaluation JSON, or a folder of them)");
        }
        let mut inputs = Inputs::default();
        for p in paths {
            let before = inputs.count();
            if !p.exists() {
                bail!("{}: no such file or folder", p.display());
            }
            inputs.add(p, 0)?;
            if inputs.count() == before {
                bail!(
                    "{}: found no corpus (manifest.json), training run (metrics.jsonl) or evaluation JSON in it",
                    p.display()
                );
            }
        }
        Ok(inputs)
    }

    fn count(&self) -> usize {
        self.corpora.len() + self.evals.len() + self.trainings.len()
    }

    fn add(&mut self, p: &Path, depth: usize) -> Result<()> {
        if p.is_file() {
            if p.extension().is_some_and(|e| e == "json") {
                self.add_eval(p, depth == 0)?;
            }
            return Ok(());
        }
        if p.join("manifest.json").exists() {
            let (manifest, rows) = read_corpus(p)?;
            self.corpora.push(CorpusRun { dir: p.to_path_buf(), manifest, rows });
            return Ok(());
        }
        if p.join("metrics.jsonl").exists() && p.join("config.json").exists() {
            self.trainings.push(read_training(p)?);
            return Ok(());
        }
        if depth >= 3 {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("cannot list {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            self.add(&e, depth + 1)?;
        }
        Ok(())
    }

    /// Reads an evaluation JSON file; one that is not evaluation results is an error only
    /// when the user named it.
    fn add_eval(&mut self, path: &Path, named: bool) -> Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) if named => bail!("{}:{}:{}: not JSON: {e}", path.display(), e.line(), e.column()),
            Err(_) => return Ok(()),
        };
        let tables: Vec<(String, serde_json::Value)> = match value {
            serde_json::Value::Array(_) => vec![(path.display().to_string(), value)],
            serde_json::Value::Object(mut o) if o.contains_key("main") => ["main", "generalization"]
                .into_iter()
                .filter_map(|k| o.remove(k).map(|v| (format!("{} ({k})", path.display()), v)))
                .collect(),
            _ if named => bail!("{}: not evaluation results (an array of agent results)", path.display()),
            _ => return Ok(()),
        };
        for (source, v) in tables {
            match serde_json::from_value::<Vec<EvalRow>>(v) {
                Ok(rows) if !rows.is_empty() => self.evals.push(EvalRun { source, rows }),
                Ok(_) => {}
                Err(e) if named => bail!("{}: not evaluation results: {e}", path.display()),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

fn read_training(dir: &Path) -> Result<TrainRun> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let config = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}:{}:{}: {e}", config_path.display(), e.line(), e.column()))?;
    let metrics_path = dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&metrics_path).with_context(|| format!("cannot read {}", metrics_path.display()))?;
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .map_err(|e| anyhow!("{}:{}: not a metrics line: {e}", metrics_path.display(), i + 1))?;
        lines.push(v);
    }
    Ok(TrainRun { dir: dir.to_path_buf(), config, lines })
}

/// Writes the report of `paths` to `out`; returns what it was made of (corpora, eval
/// files, training runs).
pub fn write(paths: &[PathBuf], out: &Path) -> Result<(usize, usize, usize)> {
    let inputs = Inputs::collect(paths)?;
    let html = render(&inputs)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    dialogym_engine::corpus::write_atomic(out, |w| {
        use std::io::Write as _;
        w.write_all(html.as_bytes())?;
        Ok(())
    })
    .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((inputs.corpora.len(), inputs.evals.len(), inputs.trainings.len()))
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;line-height:1.4}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .5em;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin-bottom:2em}\
.pair table{width:100%}.agent{background:#eef4ff}.persona{background:#fff8e8}\
.ok{color:#070;font-weight:bold}.fail{color:#a00;font-weight:bold}\
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}\
.note{color:#555;font-size:.9em}";

/// The page.
pub fn render(inputs: &Inputs) -> Result<String> {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<title>dialogym report</title>\n");
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>\n<body>");
    let _ = writeln!(
        h,
        "<h1>dialogym report</h1>\n<p class=\"note\">dialogym {}; {} corpora, {} evaluation tables, {} training runs.</p>",
        env!("CARGO_PKG_VERSION"),
        inputs.corpora.len(),
        inputs.evals.len(),
        inputs.trainings.len()
    );
    agents_section(&mut h, inputs);
    returns_section(&mut h, inputs)?;
    success_section(&mut h, inputs)?;
    learning_section(&mut h, inputs)?;
    transcripts_section(&mut h, inputs);
    manifests_section(&mut h, inputs);
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

fn section_open(h: &mut String, id: &str, title: &str, about: &str) {
    let _ = writeln!(h, "<section id=\"{id}\">\n<h2>{}</h2>\n<p class=\"note\">{}</p>", esc(title), esc(about));
}

/// Legend labels of the groups: the agent's short name, with its folder when two groups
/// share a name.
fn labels(gs: &[(String, &str, Vec<&EpisodeRecord>)]) -> Vec<String> {
    gs.iter()
        .map(|(dir, agent, _)| {
            let name = short(agent);
            if gs.iter().filter(|g| short(g.1) == name).count() > 1 {
                let folder = Path::new(dir).file_name().map_or(dir.clone(), |f| f.to_string_lossy().into_owned());
                format!("{name} [{folder}]")
            } else {
                name
            }
        })
        .collect()
}

/// A corpus's per-agent results.
fn corpus_results(c: &CorpusRun) -> Vec<AgentResult> {
    summarize(&c.rows)
}

/// Corpus episodes grouped by (corpus folder, agent), in folder then agent order.
fn groups(inputs: &Inputs) -> Vec<(String, &str, Vec<&EpisodeRecord>)> {
    let mut out = Vec::new();
    for c in &inputs.corpora {
        let mut by: BTreeMap<&str, Vec<&EpisodeRecord>> = BTreeMap::new();
        for r in &c.rows {
            by.entry(r.agent.as_str()).or_default().push(r);
        }
        for (agent, rows) in by {
            out.push((c.dir.display().to_string(), agent, rows));
        }
    }
    out
}

fn agents_section(h: &mut String, inputs: &Inputs) {
    section_open(
        h,
        "agents",
        "Agents",
        "Success rate and mean return with their 95% intervals, agent utterances per episode and bits of the \
         secret revealed, per agent: from evaluation results and from the episodes of each corpus.",
    );
    h.push_str(
        "<table>\n<tr><th>source</th><th>agent</th><th>episodes</th><th>success %</th><th>return (95% CI)</th>\
         <th>turns</th><th>info gain (bits)</th></tr>\n",
    );
    let num = |x: Option<f64>, scale: f64| x.map_or("-".to_string(), |v| format!("{:.2}", v * scale));
    let mut seen: BTreeSet<(String, usize, String)> = BTreeSet::new();
    for c in &inputs.corpora {
        for r in corpus_results(c) {
            seen.insert((r.agent.clone(), r.episodes, format!("{:.4}", r.ret.mean)));
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1} ± {:.1}</td>\
                 <td class=\"n\">{:.2} ± {:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td></tr>",
                esc(&c.dir.display().to_string()),
                esc(&r.agent),
                r.episodes,
                100.0 * r.success.mean,
                100.0 * r.success.ci95,
                r.ret.mean,
                r.ret.ci95,
                r.turns.mean,
                r.info_gain_bits.map_or("-".to_string(), |e| format!("{:.2}", e.mean))
            );
        }
    }
    for e in &inputs.evals {
        for r in &e.rows {
            // The same agent on the same episodes, already shown from its corpus.
            let key = (r.agent.clone(), r.episodes, r.ret.mean.map_or(String::new(), |m| format!("{m:.4}")));
            if seen.contains(&key) {
                continue;
            }
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{} ± {}</td>\
                 <td class=\"n\">{} ± {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&e.source),
                esc(&r.agent),
                r.episodes,
                num(r.success.mean, 100.0),
                num(r.success.ci95, 100.0),
                num(r.ret.mean, 1.0),
                num(r.ret.ci95, 1.0),
                num(r.turns.mean, 1.0),
                num(r.info_gain_bits.and_then(|e| e.mean), 1.0)
            );
        }
    }
    h.push_str("</table>\n</section>\n");
}

/// A short label for an agent spec in a legend: learned agents by their folder's name.
fn short(agent: &str) -> String {
    match agent.strip_prefix("learned:") {
        Some(rest) => {
            let (path, params) = rest.split_once('(').map_or((rest, ""), |(p, q)| (p, q));
            let name = Path::new(path).file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
            if params.is_empty() { format!("learned {name}") } else { format!("learned {name} ({params}") }
        }
        None => agent.to_string(),
    }
}

/// A line chart as an SVG string.
fn line_chart(title: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<String> {
    line_chart_at(title, x_desc, y_desc, series, SeriesLabelPosition::UpperRight)
}

/// A line chart with its legend at `legend`.
fn line_chart_at(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    legend: SeriesLabelPosition,
) -> Result<String> {
    let pts = || series.iter().flat_map(|s| s.1.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (x0, x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !x0.is_finite() || !y0.is_finite() {
        bail!("plot `{title}`: no finite points");
    }
    let (x0, x1) = if x1 > x0 { (x0, x1) } else { (x0 - 1.0, x1 + 1.0) };
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let err = |e: &dyn std::fmt::Display| anyhow!("plot `{title}`: {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| err(&e))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

fn figure(h: &mut String, class: &str, svg: &str, caption: &str) {
    let _ = writeln!(h, "<figure class=\"plot {class}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>", esc(caption));
}

fn returns_section(h: &mut String, inputs: &Inputs) -> Result<()> {
    section_open(
        h,
        "returns",
        "Return distribution",
        "The share of each agent's episodes at each return (corpora; an evaluation file holds only means).",
    );
    let gs = groups(inputs);
    let all: Vec<f64> = gs.iter().flat_map(|g| g.2.iter().map(|r| r.ret)).collect();
    if all.is_empty() {
        h.push_str("<p>No corpus among the inputs.</p>\n</section>\n");
        return Ok(());
    }
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    // Whole-number returns (20 Questions) get one bin per value; others 20 bins.
    let integral = all.iter().all(|r| r.fract() == 0.0) && hi - lo <= 60.0;
    let (bins, width) = if integral { ((hi - lo) as usize + 1, 1.0) } else { (20, ((hi - lo) / 20.0).max(1e-9)) };
    let names = labels(&gs);
    let series: Vec<(String, Vec<(f64, f64)>)> = gs
        .iter()
        .zip(names)
        .take(MAX_SERIES)
        .map(|((_, _, rows), name)| {
            let mut counts = vec![0usize; bins];
            for r in rows {
                let b = (((r.ret - lo) / width).floor() as usize).min(bins - 1);
                counts[b] += 1;
            }
            let pts = counts
                .iter()
                .enumerate()
                .map(|(b, &c)| {
                    let x = if integral { lo + b as f64 } else { lo + (b as f64 + 0.5) * width };
                    (x, c as f64 / rows.len() as f64)
                })
                .collect();
            (name, pts)
        })
        .collect();
    let svg = line_chart("Return per episode", "return", "share of episodes", &series)?;
    figure(h, "returns", &svg, "Share of episodes at each return, per agent.");
    h.push_str("</section>\n");
    Ok(())
}

fn success_section(h: &mut String, inputs: &Inputs) -> Result<()> {
    section_open(
        h,
        "success",
        "Success against number of questions",
        "The share of each agent's episodes won within k agent utterances: a curve that rises early is an agent \
         that finds the secret with few questions.",
    );
    let gs = groups(inputs);
    let max_turns = gs.iter().flat_map(|g| g.2.iter().map(|r| r.turns)).max().unwrap_or(0);
    if gs.is_empty() || max_turns == 0 {
        h.push_str("<p>No corpus among the inputs.</p>\n</section>\n");
        return Ok(());
    }
    let names = labels(&gs);
    let series: Vec<(String, Vec<(f64, f64)>)> = gs
        .iter()
        .zip(names)
        .take(MAX_SERIES)
        .map(|((_, _, rows), name)| {
            let pts = (1..=max_turns)
                .map(|k| {
                    let won = rows.iter().filter(|r| r.success && r.turns <= k).count();
                    (k as f64, won as f64 / rows.len() as f64)
                })
                .collect();
            (name, pts)
        })
        .collect();
    let svg = line_chart_at(
        "Success within k utterances",
        "agent utterances k",
        "share of episodes won",
        &series,
        SeriesLabelPosition::LowerRight,
    )?;
    figure(h, "success", &svg, "Share of episodes won within k agent utterances, per agent.");
    h.push_str("</section>\n");
    Ok(())
}

fn learning_section(h: &mut String, inputs: &Inputs) -> Result<()> {
    section_open(
        h,
        "learning",
        "Learning curves",
        "Per training run: every loss term, and the mean Q of the data's actions and the mean V, against the \
         gradient step (from metrics.jsonl).",
    );
    if inputs.trainings.is_empty() {
        h.push_str("<p>No training run among the inputs.</p>\n");
    }
    for t in &inputs.trainings {
        let algo = t.config.pointer("/config/algo").or_else(|| t.config.get("algo")).and_then(|a| a.as_str());
        let name = format!("{} ({})", t.dir.display(), algo.unwrap_or("?"));
        let step = |l: &serde_json::Value| l.get("step").and_then(|s| s.as_f64());
        let field = |key: &str| -> Vec<(f64, f64)> {
            t.lines.iter().filter_map(|l| Some((step(l)?, l.get(key)?.as_f64()?))).collect()
        };
        let mut terms: BTreeSet<String> = BTreeSet::new();
        for l in &t.lines {
            if let Some(o) = l.get("losses").and_then(|o| o.as_object()) {
                terms.extend(o.keys().cloned());
            }
        }
        let losses: Vec<(String, Vec<(f64, f64)>)> = terms
            .iter()
            .map(|k| {
                let pts = t.lines.iter().filter_map(|l| Some((step(l)?, l.get("losses")?.get(k)?.as_f64()?))).collect();
                (format!("loss {k}"), pts)
            })
            .collect();
        let _ = writeln!(h, "<h3>{}</h3>", esc(&name));
        if losses.iter().all(|s| s.1.is_empty()) {
            h.push_str("<p>No metrics logged yet.</p>\n");
            continue;
        }
        figure(h, "losses", &line_chart(&format!("{name}: losses"), "step", "loss", &losses)?, "Loss terms.");
        let values = vec![("mean Q(s,a)".to_string(), field("q_mean")), ("mean V(s)".to_string(), field("v_mean"))];
        figure(
            h,
            "values",
            &line_chart(&format!("{name}: Q and V"), "step", "value", &values)?,
            "Mean Q of the data's actions and mean V.",
        );
        let evals = field("eval_return");
        if !evals.is_empty() {
            figure(
                h,
                "eval-return",
                &line_chart(&format!("{name}: evaluation return"), "step", "return", &[("eval".into(), evals)])?,
                "Mean return of evaluation episodes during training.",
            );
        }
    }
    h.push_str("</section>\n");
    Ok(())
}

/// The pair of agent groups to show side by side: two groups that played episodes of the
/// same seeds, preferring ILQL against BC, then a learned agent against anything.
fn pick_pair<'a>(
    gs: &'a [(String, &'a str, Vec<&'a EpisodeRecord>)],
) -> Option<(usize, usize, Vec<(&'a EpisodeRecord, &'a EpisodeRecord)>)> {
    let score = |a: &str| {
        let s = short(a);
        if s.contains("ilql") {
            3
        } else if s.contains(" bc") && !s.contains("filtered") {
            2
        } else if a.starts_with("learned:") {
            1
        } else {
            0
        }
    };
    let mut best: Option<(i32, usize, usize, Vec<(&EpisodeRecord, &EpisodeRecord)>)> = None;
    for i in 0..gs.len() {
        for j in (i + 1)..gs.len() {
            let by_seed: BTreeMap<u64, &EpisodeRecord> = gs[j].2.iter().map(|r| (r.seed, *r)).collect();
            let shared: Vec<(&EpisodeRecord, &EpisodeRecord)> = gs[i]
                .2
                .iter()
                .filter_map(|a| by_seed.get(&a.seed).filter(|b| b.scenario == a.scenario).map(|b| (*a, *b)))
                .collect();
            if shared.is_empty() {
                continue;
            }
            let (si, sj) = (score(gs[i].1), score(gs[j].1));
            let s = if si.min(sj) == 2 && si.max(sj) == 3 { 10 } else { si + sj };
            if best.as_ref().is_none_or(|b| s > b.0) {
                best = Some((s, i, j, shared));
            }
        }
    }
    best.map(|(_, i, j, shared)| (i, j, shared))
}

fn transcript_table(h: &mut String, title: &str, r: &EpisodeRecord, reader: &Reader) {
    let notes = reader.notes(&r.messages);
    let _ = writeln!(
        h,
        "<div class=\"side\">\n<h4>{}</h4>\n<p>{} in {} utterances, return {:.2}</p>\n<table class=\"transcript\">\n\
         <tr><th>#</th><th>who</th><th>message</th><th>reward</th><th>read as</th><th>left</th></tr>",
        esc(title),
        if r.success { "<span class=\"ok\">won</span>" } else { "<span class=\"fail\">lost</span>" },
        r.turns,
        r.ret
    );
    for (i, (m, note)) in r.messages.iter().zip(&notes).enumerate() {
        let (class, who) = if m.role == Role::Agent { ("agent", "agent") } else { ("persona", "persona") };
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td class=\"n\">{}</td><td>{who}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
             <td class=\"n\">{}</td></tr>",
            i + 1,
            esc(&m.content),
            r.rewards.get(i).map_or(String::new(), |x| format!("{x:+.2}")),
            esc(&note.read_as),
            note.hypotheses.map_or("-".to_string(), |n| n.to_string())
        );
    }
    h.push_str("</table>\n</div>\n");
}

fn transcripts_section(h: &mut String, inputs: &Inputs) {
    section_open(
        h,
        "transcripts",
        "Transcripts side by side",
        "The same hidden state (the same episode seed) played by two agents: each message with the reward it \
         earned, how the scenario read it, and how many possible secrets the conversation leaves.",
    );
    let gs = groups(inputs);
    let Some((i, j, mut shared)) = pick_pair(&gs) else {
        h.push_str(
            "<p>No two agents played the same episodes: give two corpora generated with the same --seed (or one \
             corpus with several agents).</p>\n</section>\n",
        );
        return;
    };
    // The most telling episodes first: where the two returns differ most.
    shared.sort_by(|a, b| {
        (b.0.ret - b.1.ret).abs().total_cmp(&(a.0.ret - a.1.ret).abs()).then(a.0.episode.cmp(&b.0.episode))
    });
    let mut readers: BTreeMap<&str, Reader> = BTreeMap::new();
    let _ = writeln!(
        h,
        "<p>{} against {}: {} shared episodes; the {} whose returns differ most.</p>",
        esc(&short(gs[i].1)),
        esc(&short(gs[j].1)),
        shared.len(),
        PAIRS_SHOWN.min(shared.len())
    );
    for (a, b) in shared.into_iter().take(PAIRS_SHOWN) {
        let reader = readers.entry(a.scenario.as_str()).or_insert_with(|| Reader::new(&a.scenario));
        let _ = writeln!(
            h,
            "<h3>Episode seed {} ({}): hidden state <code>{}</code></h3>\n<div class=\"pair\">",
            a.seed,
            esc(&a.scenario),
            esc(&a.hidden.to_string())
        );
        transcript_table(h, &short(gs[i].1), a, reader);
        transcript_table(h, &short(gs[j].1), b, reader);
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

fn manifests_section(h: &mut String, inputs: &Inputs) {
    section_open(
        h,
        "manifests",
        "Run manifests",
        "How every input was made: the command, the seed, dialogym's version, the scenario and the speakers (models \
         appear in their specs), and every training hyperparameter.",
    );
    for c in &inputs.corpora {
        let m = &c.manifest;
        let _ = writeln!(
            h,
            "<h3>corpus {}</h3>\n<p><code>{}</code><br>seed {}, {} episodes, dialogym {}</p>\n<pre>{}</pre>",
            esc(&c.dir.display().to_string()),
            esc(&m.command.join(" ")),
            m.seed,
            m.episodes,
            esc(&m.dialogym_version),
            esc(&serde_json::to_string_pretty(&m.config).unwrap_or_default())
        );
    }
    for t in &inputs.trainings {
        let _ = writeln!(
            h,
            "<h3>training run {}</h3>\n<pre>{}</pre>",
            esc(&t.dir.display().to_string()),
            esc(&serde_json::to_string_pretty(&t.config).unwrap_or_default())
        );
    }
    for e in &inputs.evals {
        let _ = writeln!(h, "<h3>evaluation {}</h3>\n<p>{} agents.</p>", esc(&e.source), e.rows.len());
    }
    h.push_str("</section>\n");
}
