//! Throughput of scripted 20 Questions, three rates in one process (median of 5 interleaved rounds):
//!
//! 1. the plain loop: the same speakers played one episode at a time, no world, no writing
//!    (the baseline);
//! 2. the ECS world with a sink that discards finished episodes (the world's own cost);
//! 3. the ECS world writing the JSONL corpus (and, last, JSONL + Parquet).
//!
//! Prints episodes/s and each rate's ratio to the plain loop, and the CPU it ran on.
//!
//! `cargo bench --bench generate` (or `-- EPISODES`).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use dialogym::engine::corpus::Format;
use dialogym::engine::seed::{Stream, episode_seed, turn_rng};
use dialogym::engine::world::PlayConfig;
use dialogym::engine::{AgentTurn, Context, Message, MixSpec, PersonaTurn, Scenario, Spec};
use dialogym::generate::{GenerateArgs, generate};
use dialogym::session::{agent, persona};

fn plain_loop(episodes: u64) -> f64 {
    let scenario = dialogym::session::entity("twenty-questions").expect("scenario");
    let context = Context::new();
    let mut agent = agent(&Spec::parse("greedy-eig").expect("spec"), &*scenario, &context).expect("agent");
    let mut persona = persona(&Spec::parse("oracle").expect("spec"), &*scenario, &context).expect("persona");
    let start = Instant::now();
    let mut successes = 0u64;
    for i in 0..episodes {
        let seed = episode_seed(7, i);
        let hidden = scenario.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden));
        let mut t: Vec<Message> = Vec::new();
        loop {
            let rng = turn_rng(seed, t.len() as u32, Stream::Agent);
            let a = agent.act(&*scenario, &mut [AgentTurn { episode: i, transcript: &t, rng }]).expect("act");
            t.push(Message::agent(a.into_iter().next().unwrap_or_default()));
            let j = scenario.judge(&hidden, &t);
            if j.done {
                successes += j.success as u64;
                break;
            }
            let rng = turn_rng(seed, t.len() as u32, Stream::Persona);
            let r = persona
                .reply(&*scenario, &mut [PersonaTurn { episode: i, hidden: &hidden, transcript: &t, rng }])
                .expect("reply");
            t.push(Message::persona(r.into_iter().next().unwrap_or_default()));
        }
    }
    assert!(successes > episodes * 99 / 100);
    episodes as f64 / start.elapsed().as_secs_f64()
}

fn world_discarding(episodes: u64) -> f64 {
    let session = dialogym::session::load("twenty-questions").expect("scenario");
    let cast = session
        .prepare(&MixSpec::parse("greedy-eig").expect("spec"), &MixSpec::parse("oracle").expect("spec"))
        .expect("cast");
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let sink = std::thread::spawn(move || rx.iter().count());
    let config = PlayConfig { seed: 7, run_id: "bench".into(), episodes: (0..episodes).collect(), concurrency: 256 };
    let start = Instant::now();
    let tally = cast.play(&config, tx, &AtomicBool::new(false), &mut |_| {}).expect("play");
    let received = sink.join().expect("sink");
    let rate = episodes as f64 / start.elapsed().as_secs_f64();
    assert_eq!(received as u64, episodes);
    assert!(tally.successes > episodes * 99 / 100);
    rate
}

fn world(episodes: u64, formats: Vec<Format>) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = GenerateArgs {
        scenario: "twenty-questions".into(),
        agent: "greedy-eig".into(),
        persona: "oracle".into(),
        episodes,
        seed: 7,
        concurrency: 256,
        out: dir.path().join("c"),
        resume: false,
        shard_size: 10_000,
        formats,
        shard: None,
    };
    let s = generate(&args, vec![], &AtomicBool::new(false), false).expect("generate");
    s.played as f64 / s.seconds
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// `lscpu`'s model name and the SIMD features this build can use.
fn cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut simd = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx512vnni", std::arch::is_x86_feature_detected!("avx512vnni")),
        ] {
            if on {
                simd.push(name);
            }
        }
    }
    format!("{model} ({}), {} threads", simd.join(", "), std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn main() {
    let episodes: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    // Interleaved repetitions: each round runs all four, so a load that comes and goes on
    // the machine weighs on every rate alike.
    let reps = 5;
    let (mut base, mut discard, mut jsonl, mut both) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        base.push(plain_loop(episodes));
        discard.push(world_discarding(episodes));
        jsonl.push(world(episodes, vec![Format::Jsonl]));
        both.push(world(episodes, vec![Format::Jsonl, Format::Parquet]));
    }
    let (base, discard, jsonl, both) = (median(base), median(discard), median(jsonl), median(both));
    println!("scripted 20 Questions, greedy-eig vs oracle, {episodes} episodes, median of {reps} interleaved rounds");
    println!("CPU: {}", cpu());
    println!("plain loop, no world, no writing : {base:>10.0} episodes/s");
    println!("ECS world, discarding sink       : {discard:>10.0} episodes/s  ({:.2}x the plain loop)", discard / base);
    println!("ECS world + JSONL writer         : {jsonl:>10.0} episodes/s  ({:.2}x the plain loop)", jsonl / base);
    println!("ECS world + JSONL + Parquet      : {both:>10.0} episodes/s  ({:.2}x the plain loop)", both / base);
}
