//! dialogym's scenarios: each is one module plus one line in [`BUILTIN`]. Scenarios are
//! pure: they know nothing of agents, models, files on disk (beyond what they embed) or IO.

pub mod entity;
pub mod file;
pub mod guess_my_city;
pub mod polling;
pub mod preference;
pub mod tutoring;
pub mod twenty_questions;

use anyhow::{Context, Result, bail};
use dialogym_engine::Spec;
use dialogym_engine::seed::mix64;

use entity::EntityScenario;

/// The built-in scenarios: name, builder, one-line description.
pub const BUILTIN: &[(&str, fn(&Spec) -> Result<EntityScenario>, &str)] = &[
    (
        "twenty-questions",
        twenty_questions::build,
        "LMRL-Gym's 20 Questions: 158 objects, ≤ 20 yes/no questions, −1 per question, 0 for naming the object",
    ),
    ("guess-my-city", guess_my_city::build, GUESS_MY_CITY),
];

/// One line on Guess My City (shared by both registries).
pub const GUESS_MY_CITY: &str =
    "LMRL-Gym's Guess My City: 100 world cities, ≤ 20 yes/no or open questions, −1 per question, 0 for naming the city";

/// Loads a scenario: a built-in name (with parameters) or a scenario file
/// (`path/to/file.toml`, optionally `file:PATH(split=train)`).
pub fn load(text: &str) -> Result<EntityScenario> {
    let text = text.trim();
    // A bare path; `file:PATH(...)` (what a corpus records) goes through the spec parser.
    let spec = if text.ends_with(".toml") && !text.starts_with("file:") {
        Spec { name: "file".into(), arg: Some(text.to_string()), params: Default::default() }
    } else {
        Spec::parse(text)?
    };
    if spec.name == "file" {
        let path = spec.arg.clone().unwrap_or_default();
        let body = std::fs::read_to_string(&path).with_context(|| format!("cannot read scenario file {path}"))?;
        let parsed = file::parse(&path, &body, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        return with_split(&spec, parsed);
    }
    for (name, build, _) in BUILTIN {
        if *name == spec.name {
            return build(&spec);
        }
    }
    let names: Vec<&str> = BUILTIN.iter().map(|b| b.0).collect();
    bail!("unknown scenario `{}`; built-in scenarios: {} (or a .toml scenario file)", spec.name, names.join(", "))
}

/// Applies the `holdout`/`split`/`holdout_seed` parameters every entity scenario takes:
/// a `holdout` fraction of the entities (chosen by hashing their names with the seed) is
/// never a secret in `split=train` and the only secrets in `split=test`.
pub fn with_split(spec: &Spec, parsed: file::ScenarioFile) -> Result<EntityScenario> {
    spec.expect_only(&["holdout", "split", "holdout_seed"])?;
    let holdout = spec.probability("holdout", 0.0)?;
    let split: String = spec.get("split", "all".to_string())?;
    let seed: u64 = spec.get("holdout_seed", 0)?;
    let n = parsed.table.entities.len();
    let mut order: Vec<usize> = (0..n).collect();
    let key = |e: usize| {
        let name = &parsed.table.entities[e].names[0];
        mix64(seed ^ dialogym_engine::util::fnv1a(name.as_bytes()))
    };
    order.sort_by_key(|&e| key(e));
    let n_test = (holdout * n as f64).round() as usize;
    let mut test: Vec<usize> = order[..n_test].to_vec();
    let mut train: Vec<usize> = order[n_test..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    let secrets = match split.as_str() {
        "all" => None,
        "train" => Some(train),
        "test" => Some(test),
        other => bail!("`{spec}`: split must be all, train or test, not `{other}`"),
    };
    if spec.params.contains_key("split") && holdout == 0.0 {
        bail!("`{spec}`: split needs holdout > 0");
    }
    EntityScenario::new(parsed.rules, parsed.table, spec.to_string(), secrets)
}
