//! Benchmarks of the local language model (results in docs/benchmarks-llm.md).
//!
//! ```text
//! cargo run --release --example bench_lm -- [--model PATH] [--sections load,single,batch,complete,episodes]
//!     [--repeats 3] [--gen 128] [--episodes 8] [--formats auto,q8_0,as-shipped]
//! ```
//!
//! Prints the CPU (model name, SIMD features) and the kernel family the matmuls run on:
//! the best this CPU has, or the one `DIALOGYM_KERNELS=avx512|avx2|scalar` forces (so the
//! AVX2 path can be measured on an AVX-512 machine).
//!
//! - `load`: seconds to load the GGUF in each of `--formats`.
//! - `single`: one stream, the prompt of `tests/fixtures/bench_prompt.txt` (the same text
//!   `scripts/bench_llm_reference.py` gives llama.cpp and PyTorch): prompt tokens/s (one
//!   forward over the whole prompt) and greedy generation tokens/s (`--gen` tokens, one per
//!   forward, end tokens ignored), for each of `--formats`. Medians of `--repeats`.
//! - `batch`: N = 1, 4, 16, 64 live conversations (distinct prompts): aggregate generation
//!   tokens/s of 64 decode steps with one row per conversation, prompts prefilled first
//!   (the first of `--formats`).
//! - `complete`: the same N through `LanguageModel::complete` (sampling, stop handling,
//!   prefix cache, prompt processing included): generated tokens / wall seconds.
//! - `episodes`: LLM-driven 20 Questions episodes per minute, end to end through the ECS
//!   world: LLM agent vs `oracle(matcher=minilm)`, LLM persona vs `greedy-eig`.
//!
//! Threads: candle uses one thread per physical core unless `CANDLE_NUM_THREADS` says
//! otherwise; the numbers in the docs name the setting.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use dialogym::engine::Spec;
use dialogym::engine::lm::{ChatMessage, ChatRequest, Sampling};
use dialogym::policies::lm::model::{KvCache, Row, WeightFormat};
use dialogym::policies::lm::sampling::argmax;
use dialogym::policies::lm::{LocalModel, ModelOptions, default_model_path};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

struct Args {
    model: PathBuf,
    sections: Vec<String>,
    repeats: usize,
    generate: usize,
    episodes: u64,
    formats: Vec<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        model: default_model_path(),
        sections: ["load", "single", "batch", "complete", "episodes"].iter().map(|s| s.to_string()).collect(),
        repeats: 3,
        generate: 128,
        episodes: 8,
        formats: vec!["auto".into(), "q8_0".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = PathBuf::from(value),
            "--sections" => a.sections = value.split(',').map(str::to_string).collect(),
            "--repeats" => a.repeats = value.parse()?,
            "--gen" => a.generate = value.parse()?,
            "--episodes" => a.episodes = value.parse()?,
            "--formats" => a.formats = value.split(',').map(str::to_string).collect(),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn load(path: &std::path::Path, format: WeightFormat) -> Result<(LocalModel, f64)> {
    let t = Instant::now();
    let m = LocalModel::load(path, &ModelOptions { format, ..ModelOptions::default() })?;
    Ok((m, t.elapsed().as_secs_f64()))
}

/// Prompt tokens/s and generation tokens/s of one stream.
fn single(m: &LocalModel, prompt: &[u32], generate: usize) -> Result<(f64, f64)> {
    let w = m.weights();
    let mut cache = vec![KvCache::new(w.config.n_layer)];
    let rows: Vec<Row> =
        prompt.iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 1 == prompt.len() }).collect();
    let t = Instant::now();
    let logits = w.forward(&rows, &mut cache)?;
    let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
    let mut next = argmax(&logits[0]);
    let t = Instant::now();
    for _ in 0..generate {
        let l = w.forward(&[Row { seq: 0, token: next, logits: true }], &mut cache)?;
        next = argmax(&l[0]);
    }
    Ok((prefill, generate as f64 / t.elapsed().as_secs_f64()))
}

fn persona_chat(i: usize) -> Vec<ChatMessage> {
    const OBJECTS: &[&str] = &["Dog", "Apple", "Bicycle", "Guitar", "Table", "Shoe", "Tree", "Hammer"];
    const QUESTIONS: &[&str] =
        &["Is it alive?", "Is it bigger than a car?", "Can you eat it?", "Does it have wheels?", "Is it made of wood?"];
    let obj = OBJECTS[i % OBJECTS.len()];
    vec![
        ChatMessage {
            role: "system".into(),
            content: format!(
                "You are playing 20 Questions. You are thinking of this object: {obj} (conversation {i}). Answer the questions, then explain."
            ),
        },
        ChatMessage { role: "user".into(), content: QUESTIONS[i % QUESTIONS.len()].into() },
    ]
}

/// Aggregate generation tokens/s of `n` conversations decoding in lockstep steps.
fn batch(m: &LocalModel, n: usize, steps: usize) -> Result<f64> {
    let w = m.weights();
    let mut caches: Vec<KvCache> = (0..n).map(|_| KvCache::new(w.config.n_layer)).collect();
    let mut rows = Vec::new();
    for i in 0..n {
        let ids = m.tokenizer().encode_prompt(&m.render(&persona_chat(i))?)?;
        rows.extend(ids.iter().enumerate().map(|(j, &t)| Row { seq: i, token: t, logits: j + 1 == ids.len() }));
    }
    let mut next: Vec<u32> = Vec::with_capacity(n);
    for chunk in rows.chunks(256) {
        for l in w.forward(chunk, &mut caches)? {
            next.push(argmax(&l));
        }
    }
    let t = Instant::now();
    for _ in 0..steps {
        let rows: Vec<Row> = (0..n).map(|i| Row { seq: i, token: next[i], logits: true }).collect();
        let l = w.forward(&rows, &mut caches)?;
        next = l.iter().map(|x| argmax(x)).collect();
    }
    Ok((n * steps) as f64 / t.elapsed().as_secs_f64())
}

/// Generated tokens / wall seconds of `n` requests through `complete`.
fn complete(m: &mut LocalModel, n: usize) -> Result<(f64, u64)> {
    m.clear_cache();
    let reqs: Vec<ChatRequest> = (0..n)
        .map(|i| ChatRequest {
            messages: persona_chat(i),
            sampling: Sampling { temperature: 0.7, top_p: 0.9, top_k: 0, max_tokens: 64, stop: vec![], seed: i as u64 },
        })
        .collect();
    let t = Instant::now();
    let out = m.generate(&reqs)?;
    let toks: u64 = out.iter().map(|g| g.tokens.len() as u64).sum();
    Ok((toks as f64 / t.elapsed().as_secs_f64(), toks))
}

fn main() -> Result<()> {
    let a = args()?;
    if !a.model.exists() {
        bail!("{} is missing: run scripts/install-model.sh", a.model.display());
    }
    let threads = std::env::var("CANDLE_NUM_THREADS")
        .or_else(|_| std::env::var("RAYON_NUM_THREADS"))
        .unwrap_or_else(|_| "default (physical cores)".into());
    let formats: Vec<WeightFormat> = a
        .formats
        .iter()
        .map(|f| {
            WeightFormat::from_name(f).with_context(|| format!("unknown format {f} (auto, q8_0, as-shipped, f32)"))
        })
        .collect::<Result<_>>()?;
    let kernels = dialogym::policies::lm::quant::Kernels::from_env()?;
    println!(
        "model {} | cpu {} | kernels {} | candle threads: {threads}",
        a.model.display(),
        dialogym::policies::lm::quant::cpu_description(),
        kernels.name()
    );
    let prompt_text = std::fs::read_to_string("tests/fixtures/bench_prompt.txt")
        .context("tests/fixtures/bench_prompt.txt (run from the repository root)")?;
    let want = |s: &str| a.sections.iter().any(|x| x == s);
    if want("load") {
        for &f in &formats {
            let name = f.name();
            let secs: Vec<f64> = (0..a.repeats).map(|_| load(&a.model, f).map(|x| x.1)).collect::<Result<_>>()?;
            println!("load {name}: {:.2} s (median of {})", median(secs), a.repeats);
        }
    }
    if want("single") {
        for &f in &formats {
            let name = f.name();
            let (m, _) = load(&a.model, f)?;
            let prompt = m.tokenizer().encode(&prompt_text)?;
            let _ = single(&m, &prompt[..8], 4)?; // warm-up: thread pool, page faults
            let runs: Vec<(f64, f64)> =
                (0..a.repeats).map(|_| single(&m, &prompt, a.generate)).collect::<Result<_>>()?;
            println!(
                "single {name}: prompt {} tokens: {:.1} tok/s | generation {} tokens: {:.1} tok/s (medians of {}; runs {:?})",
                prompt.len(),
                median(runs.iter().map(|r| r.0).collect()),
                a.generate,
                median(runs.iter().map(|r| r.1).collect()),
                a.repeats,
                runs.iter().map(|r| format!("{:.1}/{:.1}", r.0, r.1)).collect::<Vec<_>>()
            );
        }
    }
    if want("batch") || want("complete") {
        let (mut m, _) = load(&a.model, formats[0])?;
        println!("batch/complete weights: {}", formats[0].name());
        for n in [1usize, 4, 16, 64] {
            if want("batch") {
                let runs: Vec<f64> = (0..a.repeats).map(|_| batch(&m, n, 64)).collect::<Result<_>>()?;
                println!(
                    "batch {n:>2} conversations: {:.1} generated tok/s aggregate (64 steps; median of {})",
                    median(runs),
                    a.repeats
                );
            }
            if want("complete") {
                let runs: Vec<(f64, u64)> = (0..a.repeats).map(|_| complete(&mut m, n)).collect::<Result<_>>()?;
                println!(
                    "complete {n:>2} requests (max 64 tokens, prompts included): {:.1} generated tok/s ({} tokens; median of {})",
                    median(runs.iter().map(|r| r.0).collect()),
                    runs[0].1,
                    a.repeats
                );
            }
        }
    }
    if want("episodes") {
        let scenario = dialogym::session::entity("twenty-questions")?;
        let context = dialogym::engine::Context::new();
        let stop = AtomicBool::new(false);
        let model = a.model.display().to_string();
        let cases = [
            (format!("llm:{model}"), "oracle(matcher=minilm)".to_string()),
            ("greedy-eig".to_string(), format!("llm:{model}")),
        ];
        for (agent_spec, persona_spec) in cases {
            let agent = dialogym::session::agent(&Spec::parse(&agent_spec)?, &*scenario, &context)?;
            let persona = dialogym::session::persona(&Spec::parse(&persona_spec)?, &*scenario, &context)?;
            let t = Instant::now();
            let rows = dialogym::engine::world::play_episodes(
                scenario.clone(),
                agent,
                persona,
                a.episodes,
                1,
                a.episodes as usize,
                &stop,
            )?;
            let secs = t.elapsed().as_secs_f64();
            let turns: f64 = rows.iter().map(|r| r.turns as f64).sum::<f64>() / rows.len().max(1) as f64;
            let wins = rows.iter().filter(|r| r.success).count();
            println!(
                "episodes {agent_spec} vs {persona_spec}: {} episodes in {secs:.1} s = {:.1} episodes/min (mean {turns:.1} turns, {wins} won; concurrency {})",
                rows.len(),
                rows.len() as f64 * 60.0 / secs,
                a.episodes
            );
        }
        for (label, line) in context.report_lines() {
            println!("{label}: {line}");
        }
    }
    Ok(())
}
