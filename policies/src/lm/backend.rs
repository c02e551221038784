//! The model backends behind the engine's [`LanguageModel`] trait, one row each in
//! [`BACKENDS`]: the local candle decoder (`llm[:MODEL]`) and any OpenAI-compatible server
//! (`server:URL(model=NAME)`). A language-model speaker names its backend by the spec's name
//! and gets the model from [`backend`]; models and the sentence embedder are loaded once per
//! session [`Context`] and shared by every speaker that names them.
//!
//! Adding a backend: its file in `policies/src/lm/` (implementing `LanguageModel`) and one row
//! here. Every language-model speaker of every scenario then accepts it by name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use dialogym_engine::lm::LanguageModel;
use dialogym_engine::{Context, Spec};

use super::embed::Embedder;
use super::model::WeightFormat;
use super::server::{FleetStats, ServerModel, ServerOptions};
use super::{LocalModel, ModelOptions, default_model_path};

/// Where `scripts/install-model.sh` puts all-MiniLM-L6-v2.
pub const DEFAULT_EMBEDDER: &str = "models/all-minilm-l6-v2";

/// One model backend: the spec name that selects it, its usage and help for `--help`, the
/// parameters it reads, and its builder.
pub struct BackendRow {
    /// The spec name (`llm`, `server`).
    pub name: &'static str,
    /// How a spec names it, e.g. `llm:MODEL.gguf(weights=q8_0)`.
    pub usage: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// The spec parameters the backend itself reads.
    pub keys: &'static [&'static str],
    /// The model the spec names.
    pub build: fn(&Spec, &Context) -> Result<Box<dyn LanguageModel>>,
}

/// Every model backend.
pub const BACKENDS: &[BackendRow] = &[
    BackendRow {
        name: "llm",
        usage: "llm:MODEL.gguf(weights=auto)",
        help: "a local model on candle: a GGUF file or a Hugging Face folder (`llm` alone: the installed \
               SmolLM2-135M); weights=auto (the default) keeps the file's Q4_1/Q8_0 blocks on dialogym's kernels, the \
               family picked per CPU at load (AVX-512 VNNI, else AVX2+FMA, else scalar; DIALOGYM_KERNELS forces \
               one; same tokens on all), q8_0 re-quantizes, as-shipped runs candle's kernels, f32 is the exact \
               reference",
        keys: &["weights"],
        build: |spec, context| Ok(Box::new(local(spec, context)?)),
    },
    BackendRow {
        name: "server",
        usage: "server:URL(model=NAME,concurrency=8,retries=2,timeout=120,api_key_env=VAR)",
        help: "any OpenAI-compatible server (llama-server, vLLM, Ollama) at http://HOST:PORT/v1",
        keys: &["model", "api_key_env", "concurrency", "retries", "timeout", "down"],
        build: |spec, context| {
            let model = server(spec)?;
            // One report per fleet (its URLs): counts per endpoint, summed over its speakers.
            let stats = context.report::<FleetStats>(&format!("server {}", model.bases().join("|")))?;
            Ok(Box::new(model.counting_into(stats)))
        },
    },
];

/// The backend row a spec names, if any.
pub fn backend_row(name: &str) -> Option<&'static BackendRow> {
    BACKENDS.iter().find(|b| b.name == name)
}

/// The language model `spec` names (`llm[:MODEL]` or `server:URL`), after checking that the
/// spec has no parameters beyond `speaker_keys` (the speaker's own) and the backend's.
pub fn backend(spec: &Spec, speaker_keys: &[&str], context: &Context) -> Result<Box<dyn LanguageModel>> {
    let Some(row) = backend_row(&spec.name) else {
        let names: Vec<&str> = BACKENDS.iter().map(|b| b.name).collect();
        bail!("`{spec}`: no model backend `{}` (backends: {})", spec.name, names.join(", "))
    };
    let mut known = speaker_keys.to_vec();
    known.extend(row.keys);
    spec.expect_only(&known)?;
    (row.build)(spec, context)
}

/// The language model of a `--model` argument: a local model file or folder, or a backend
/// spec such as `server:URL(model=NAME)`.
pub fn model_arg(model: &Path, context: &Context) -> Result<Box<dyn LanguageModel>> {
    match model.to_str().filter(|m| m.starts_with("server:")) {
        Some(text) => backend(&Spec::parse(text)?, &[], context),
        None => Ok(Box::new(load_model(context, model, WeightFormat::Auto)?)),
    }
}

/// A handle on the model at `path`, loaded once per context (every speaker that names it
/// forks the shared weights).
pub fn load_model(context: &Context, path: &Path, format: WeightFormat) -> Result<LocalModel> {
    let key = format!("model:{}:{}", format.name(), path.display());
    let shared = context.shared(&key, || {
        Ok(Mutex::new(LocalModel::load(path, &ModelOptions { format, ..ModelOptions::default() })?))
    })?;
    let m = shared.lock().map_err(|_| anyhow!("model {} poisoned", path.display()))?;
    Ok(m.fork())
}

/// The embedder at `dir`, loaded once per context and shared.
pub fn load_embedder(context: &Context, dir: &Path) -> Result<Arc<Mutex<Embedder>>> {
    let key = format!("embedder:{}", dir.display());
    let shared = context.shared(&key, || Ok(Arc::new(Mutex::new(Embedder::load(dir)?))))?;
    Ok((*shared).clone())
}

/// The local model of `llm[:MODEL](weights=...)`.
fn local(spec: &Spec, context: &Context) -> Result<LocalModel> {
    let name = spec.get("weights", "auto".to_string())?;
    let format = WeightFormat::from_name(&name).ok_or_else(|| {
        let names: Vec<&str> = WeightFormat::ALL.iter().map(|f| f.name()).collect();
        anyhow!("`{spec}`: weights must be one of {}, not `{name}`", names.join(", "))
    })?;
    let path = spec.arg.as_deref().map(PathBuf::from).unwrap_or_else(default_model_path);
    load_model(context, &path, format)
}

/// The model behind a `server:URL(model=NAME,...)` spec.
pub fn server(spec: &Spec) -> Result<ServerModel> {
    let Some(url) = spec.arg.as_deref() else {
        bail!("`{spec}`: name the server, e.g. server:http://127.0.0.1:8080/v1(model=NAME)")
    };
    let d = ServerOptions::default();
    let options = ServerOptions {
        model: spec.params.get("model").cloned().unwrap_or_default(),
        api_key_env: spec.params.get("api_key_env").cloned(),
        concurrency: spec.get("concurrency", d.concurrency)?,
        retries: spec.get("retries", d.retries)?,
        timeout_s: spec.get("timeout", d.timeout_s)?,
        backoff_ms: d.backoff_ms,
        down_s: spec.get("down", d.down_s)?,
    };
    if options.retries > 10 {
        bail!("`{spec}`: retries must lie in 0..=10");
    }
    ServerModel::new(url, options)
}
