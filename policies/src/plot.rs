//! The learning curve of a run, as SVG (plotters), from its `metrics.jsonl`.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::train::MetricsLine;

/// Plots every loss term and the mean Q against the step.
pub fn learning_curve(metrics: &Path, out: &Path, title: &str) -> Result<()> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("cannot read {}", metrics.display()))?;
    let lines: Vec<MetricsLine> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    if lines.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = lines[0].losses.keys().cloned().collect();
    names.sort();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = names
        .iter()
        .map(|n| {
            (
                format!("loss {n}"),
                lines.iter().map(|l| (l.step as f64, *l.losses.get(n).unwrap_or(&0.0) as f64)).collect(),
            )
        })
        .collect();
    series.push(("mean Q(s,a)".into(), lines.iter().map(|l| (l.step as f64, l.q_mean as f64)).collect()));
    let xs = lines.last().map_or(1.0, |l| l.step as f64).max(1.0);
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let root = SVGBackend::new(out, (800, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", out.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: learning curve"), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..xs, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("step").draw().map_err(|e| err(&e))?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
