//! Training throughput of the ILQL step on synthetic 20 Questions-shaped data: candle with
//! the generic kernels (candle-nn-style AdamW as tensor ops, `index_select` embedding bags),
//! candle with dialogym's fused CPU kernels, and PyTorch doing the same work
//! (`scripts/bench_train_reference.py`, run in the same process's lifetime when torch is
//! importable). Prints steps/s, transitions/s and ratios.
//!
//! `cargo bench -p dialogym-policies --bench train -- [STEPS] [BATCH] [THREADS]`

use std::process::Command;

use candle_core::Device;
use dialogym_engine::seed::{Stream, turn_rng};
use dialogym_policies::data::Transitions;
use dialogym_policies::train::{TrainConfig, Trainer, steps_per_second};
use rand::Rng as _;

/// 50,000 transitions: states of 2–120 features over 2^14 buckets, 356 candidates of 8
/// features over 2^12 buckets, reward −1, 10% terminal (as the reference script draws).
fn synthetic() -> Transitions {
    let mut rng = turn_rng(0, 0, Stream::Learner);
    let n = 50_000;
    let c = 356;
    let mut t = Transitions {
        candidates: (0..c).map(|i| format!("c{i}")).collect(),
        candidate_features: (0..c).map(|_| (0..8).map(|_| rng.random_range(0..1u32 << 12)).collect()).collect(),
        ..Default::default()
    };
    for i in 0..n {
        let f = rng.random_range(2..120);
        t.states.push((0..f).map(|_| rng.random_range(0..1u32 << 14)).collect());
        t.actions.push(rng.random_range(0..c as u32));
        t.said.push(Vec::new());
        t.rewards.push(-1.0);
        let done = rng.random_bool(0.1) || i + 1 == n;
        t.next.push(if done { None } else { Some(i as u32 + 1) });
        t.returns_to_go.push(-1.0);
        t.episode.push(0);
    }
    t.episode_returns = vec![-1.0];
    t
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let steps = args.first().copied().unwrap_or(100);
    let batch = args.get(1).copied().unwrap_or(256);
    let threads = args.get(2).copied().unwrap_or(0);
    let data = synthetic();
    let device = Device::Cpu;
    let run = |fused: bool| -> anyhow::Result<f64> {
        let config = TrainConfig { batch_size: batch, fused_cpu_kernels: fused, ..TrainConfig::default() };
        let mut learner = Trainer::new(&config, &device)?;
        steps_per_second(&mut learner, &data, steps)
    };
    let generic = run(false)?;
    let fused = run(true)?;
    println!("ILQL step, batch {batch}, {steps} steps, CPU ({} candle threads)", candle_core::utils::get_num_threads());
    println!("candle, generic kernels : {generic:>7.2} steps/s  {:>9.0} transitions/s", generic * batch as f64);
    println!(
        "candle, fused kernels   : {fused:>7.2} steps/s  {:>9.0} transitions/s  ({:.2}x generic)",
        fused * batch as f64,
        fused / generic
    );
    let torch_threads = if threads > 0 { threads } else { candle_core::utils::get_num_threads() };
    let out = Command::new("python3")
        .args([
            "scripts/bench_train_reference.py",
            "--steps",
            &steps.to_string(),
            "--batch",
            &batch.to_string(),
            "--threads",
            &torch_threads.to_string(),
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let line = String::from_utf8_lossy(&o.stdout);
            let v: serde_json::Value = serde_json::from_str(line.trim())?;
            let torch = v["steps_per_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<24}: {torch:>7.2} steps/s  {:>9.0} transitions/s  (candle fused = {:.2}x PyTorch)",
                format!("{} ({torch_threads} thr)", v["runtime"].as_str().unwrap_or("pytorch")),
                torch * batch as f64,
                fused / torch
            );
        }
        Ok(o) => {
            println!("PyTorch reference failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""))
        }
        Err(e) => println!("PyTorch reference not run: {e}"),
    }
    Ok(())
}
