//! dialogym's scenarios, one module each; each describes itself (`Scenario::rules`,
//! `Scenario::return_range`, an `ABOUT` line) and is built by its `from_spec`. The one
//! registry of scenario names is `dialogym::session::SCENARIOS`. Scenarios are
//! pure: they know nothing of agents, models, files on disk (beyond what they embed and the
//! scenario file a user names) or IO.

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

/// Whether `text` names a scenario file (`path.toml`, or `file:PATH(...)` as a corpus
/// records it) rather than a registered scenario.
pub fn is_file_spec(text: &str) -> bool {
    let t = text.trim();
    t.ends_with(".toml") || t.starts_with("file:")
}

/// Loads a scenario file: `path/to/file.toml`, or `file:PATH(split=train,...)`.
pub fn load_file(text: &str) -> Result<EntityScenario> {
    let text = text.trim();
    let spec = if text.starts_with("file:") {
        Spec::parse(text)?
    } else {
        Spec { name: "file".into(), arg: Some(text.to_string()), params: Default::default() }
    };
    if spec.name != "file" {
        bail!("`{text}` is not a scenario file");
    }
    let path = spec.arg.clone().unwrap_or_default();
    let body = std::fs::read_to_string(&path).with_context(|| format!("cannot read scenario file {path}"))?;
    let parsed = file::parse(&path, &body, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    with_split(&spec, parsed)
}

/// Applies the `holdout`/`split`/`holdout_seed` parameters every entity scenario takes:
/// a `holdout` fraction of the entities (chosen by hashing their names with the seed) is
/// never a secret in `split=train` and the only secrets in `split=test`.
pub fn with_split(spec: &Spec, parsed: file::ScenarioFile) -> Result<EntityScenario> {
    #[derive(serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Params {
        holdout: dialogym_engine::Probability,
        split: String,
        holdout_seed: u64,
    }
    impl Default for Params {
        fn default() -> Self {
            Params { holdout: dialogym_engine::Probability(0.0), split: "all".into(), holdout_seed: 0 }
        }
    }
    let Params { holdout, split, holdout_seed: seed } = spec.params()?;
    let holdout = holdout.0;
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
