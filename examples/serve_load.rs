//! Load test of `dialogym serve` on loopback: 1, 16 and 64 concurrent clients, 10,000 steps
//! each run (bounded: it stops by itself), a scripted greedy agent per client against the
//! 20 Questions table oracle. Reports steps/s, p50/p99 step latency, and the ratio to the
//! same steps played in-process without HTTP (the baseline, measured in this process).
//! Every reply is checked against the persona re-run locally with the episode's seed, so
//! a session lost or mixed up fails the run.
//!
//! ```sh
//! cargo run --release --example serve_load -- [STEPS] [CLIENTS,...]
//! ```

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/serve_client.rs"]
mod serve_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use dialogym::engine::seed::{Stream, episode_seed, turn_rng};
use dialogym::engine::transcript::agent_turns;
use dialogym::engine::{AgentTurn, Message, PersonaTurn, Scenario, Spec};
use dialogym::serve::{ServeArgs, start};
use serve_client::{play, quantile};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: i64 = args.first().map(|s| s.parse().expect("STEPS")).unwrap_or(10_000);
    let clients: Vec<usize> = args
        .get(1)
        .map(|s| s.split(',').map(|c| c.parse().expect("CLIENTS")).collect())
        .unwrap_or_else(|| vec![1, 16, 64]);
    let scenario = dialogym::session::entity("twenty-questions").unwrap();
    let agent_spec = Spec::parse("greedy-eig").unwrap();
    let persona_spec = Spec::parse("oracle").unwrap();

    // Baseline: the same kind of steps, in-process, one thread, no HTTP.
    let mut agent = dialogym::session::agent(&agent_spec, &*scenario, &dialogym::engine::Context::new()).unwrap();
    let mut oracle = dialogym::session::persona(&persona_spec, &*scenario, &dialogym::engine::Context::new()).unwrap();
    let t = Instant::now();
    let (mut done_steps, mut index) = (0i64, 0u64);
    while done_steps < steps {
        let seed = episode_seed(1, index);
        index += 1;
        let hidden = scenario.sample_hidden(&mut turn_rng(seed, 0, Stream::Hidden));
        let mut tr: Vec<Message> = Vec::new();
        loop {
            let mut at =
                [AgentTurn { episode: 0, transcript: &tr, rng: turn_rng(seed, tr.len() as u32, Stream::Agent) }];
            let text = agent.act(&scenario, &mut at).unwrap().remove(0);
            tr.push(Message::agent(text));
            done_steps += 1;
            let v = scenario.judge(&hidden, &tr);
            if v.done || agent_turns(&tr) >= scenario.max_agent_turns() || done_steps >= steps {
                break;
            }
            let mut pt = [PersonaTurn {
                episode: 0,
                hidden: &hidden,
                transcript: &tr,
                rng: turn_rng(seed, tr.len() as u32, Stream::Persona),
            }];
            let reply = oracle.reply(&scenario, &mut pt).unwrap().remove(0);
            tr.push(Message::persona(reply));
            scenario.judge(&hidden, &tr);
        }
    }
    let base = steps as f64 / t.elapsed().as_secs_f64();
    println!("baseline (in-process, 1 thread, no HTTP): {base:.0} steps/s");
    println!("| clients | steps | episodes finished | steps/s | p50 ms | p99 ms | vs baseline | mixed |");
    println!("|---|---|---|---|---|---|---|---|");
    for &c in &clients {
        let server = start(&ServeArgs { port: 0, seed: 1, workers: 8, ..ServeArgs::default() }, vec![]).unwrap();
        let (next, budget) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicI64::new(steps)));
        let t = Instant::now();
        let threads: Vec<_> = (0..c)
            .map(|_| {
                let (scenario, next, budget, addr) = (scenario.clone(), next.clone(), budget.clone(), server.addr);
                let (a, p) = (agent_spec.clone(), persona_spec.clone());
                std::thread::spawn(move || {
                    let agent = dialogym::session::agent(&a, &*scenario, &dialogym::engine::Context::new()).unwrap();
                    let oracle = dialogym::session::persona(&p, &*scenario, &dialogym::engine::Context::new()).unwrap();
                    play(addr, scenario, agent, oracle, 1, &next, &budget)
                })
            })
            .collect();
        let played: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let secs = t.elapsed().as_secs_f64();
        let summary = server.shutdown().unwrap();
        let mut lat: Vec<f64> = played.iter().flat_map(|p| p.latencies.iter().copied()).collect();
        let mixed: u64 = played.iter().map(|p| p.mixed).sum();
        let finished: usize = played.iter().map(|p| p.episodes.len()).sum();
        assert_eq!(lat.len() as i64, steps, "every step answered");
        assert_eq!(summary.steps as i64, steps);
        assert_eq!(summary.finished as usize, finished, "no finished episode lost");
        assert_eq!(mixed, 0, "a reply of another episode");
        let sps = steps as f64 / secs;
        let (p50, p99) = (quantile(&mut lat, 0.5) * 1e3, quantile(&mut lat, 0.99) * 1e3);
        println!("| {c} | {steps} | {finished} | {sps:.0} | {p50:.2} | {p99:.2} | {:.2}x | {mixed} |", sps / base);
    }
}
