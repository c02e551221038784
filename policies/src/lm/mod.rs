//! A local chat model on candle, batched across conversations.
//!
//! [`LocalModel`] implements the engine's [`LanguageModel`]: the world hands it every prompt
//! of a tick, and it decodes them together. Each request becomes a *sequence* with its own
//! KV cache; each step of the decoder runs one row per live sequence (or a chunk of a
//! prompt) through [`model::Weights::forward`], so the quantized matmuls, the bulk of the
//! work, see all conversations at once while attention stays per sequence. Finished
//! sequences leave their KV cache in a prefix cache: the next turn of a conversation (the
//! same prompt plus two messages) only feeds the new tokens.
//!
//! Determinism: rows never influence each other (see `model.rs`), every request samples
//! with its own generator seeded by `Sampling::seed`, and the prefix cache stores exactly
//! the numbers a fresh prefill would compute. A request gives the same text alone, inside
//! any batch, and whatever was cached before.
//!
//! Threads: candle's quantized matmul runs on one process-wide pool (one thread per
//! physical core, or `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS`); attention runs on the same
//! pool. Several models, or several threads calling one, take turns on that pool instead
//! of oversubscribing the cores (which collapsed throughput 10× in `../shared/LLM-NOTES.md`).

pub mod backend;
pub mod embed;
pub mod gguf;
pub mod hf;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod server;
pub mod template;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use dialogym_engine::lm::{ChatMessage, ChatRequest, LanguageModel};

use model::{KvCache, Row, WeightFormat, Weights};
use sampling::Sampler;
use template::ChatTemplate;
use tokenizer::Tokenizer;

/// How to load and run a local model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Matmul weight storage (default: [`WeightFormat::Auto`]).
    pub format: WeightFormat,
    /// Kernel family of the matmuls; `None`: `DIALOGYM_KERNELS`, else the best this CPU has.
    pub kernels: Option<quant::Kernels>,
    /// Where the matmuls run (CPU unless built with `cuda` and asked for).
    pub device: Device,
    /// Longest sequence accepted (prompt + reply), capped by the model's own context.
    pub max_context: usize,
    /// Memory for the prefix cache of finished conversations, in MiB.
    pub cache_mib: usize,
    /// At most this many rows (tokens) per decoder step; long prompts are fed in chunks.
    pub max_step_rows: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            format: WeightFormat::Auto,
            kernels: None,
            device: Device::Cpu,
            max_context: 8192,
            cache_mib: 1024,
            max_step_rows: 256,
        }
    }
}

/// The read-only parts of a model, shared by its forks.
struct Shared {
    weights: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    template_source: String,
    id: String,
}

/// Counters of the work a model did (for benchmarks and progress lines).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LmStats {
    /// Requests completed.
    pub requests: u64,
    /// Prompt tokens across requests.
    pub prompt_tokens: u64,
    /// Of which found in the prefix cache (not recomputed).
    pub cached_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Decoder steps run.
    pub steps: u64,
    /// Seconds spent in `complete`.
    pub seconds: f64,
}

/// One completed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The reply, cut before the first stop string, without special tokens.
    pub text: String,
    /// The generated ids (including the end token when one was produced).
    pub tokens: Vec<u32>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the prefix cache.
    pub cached_tokens: usize,
    /// Why generation stopped: `eos`, `stop` or `length`.
    pub finish: &'static str,
}

/// A GGUF (or Hugging Face folder) chat model running locally; see the module docs.
pub struct LocalModel {
    shared: Arc<Shared>,
    cache: PrefixCache,
    stats: LmStats,
    max_step_rows: usize,
}

/// Finished sequences' KV caches, looked up by longest common token prefix.
struct PrefixCache {
    entries: Vec<CacheEntry>,
    budget_tokens: usize,
    clock: u64,
}

struct CacheEntry {
    tokens: Vec<u32>,
    kv: KvCache,
    used: u64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// The KV cache of the longest cached prefix of `prompt`, leaving at least one token
    /// to feed (its logits start the reply).
    fn take(&mut self, prompt: &[u32], n_layer: usize, kv_dim: usize) -> KvCache {
        self.clock += 1;
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .map(|e| {
                let n = common_prefix(&e.tokens, prompt).min(limit);
                (n, e)
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, e)) if n > 0 => {
                e.used = self.clock;
                e.kv.prefix(n, kv_dim)
            }
            _ => KvCache::new(n_layer),
        }
    }

    fn put(&mut self, tokens: Vec<u32>, kv: KvCache) {
        if self.budget_tokens == 0 || tokens.is_empty() {
            return;
        }
        self.clock += 1;
        // An entry that is a prefix of the new one is superseded by it.
        self.entries.retain(|e| common_prefix(&e.tokens, &tokens) < e.tokens.len());
        self.entries.push(CacheEntry { tokens, kv, used: self.clock });
        let mut total: usize = self.entries.iter().map(|e| e.tokens.len()).sum();
        while total > self.budget_tokens && !self.entries.is_empty() {
            let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used).unwrap_or(0);
            total -= self.entries.swap_remove(oldest).tokens.len();
        }
    }
}

/// A request being decoded.
struct Seq {
    /// Prompt, then the generated tokens fed back.
    tokens: Vec<u32>,
    prompt_len: usize,
    cached: usize,
    generated: Vec<u32>,
    sampler: Sampler,
    max_tokens: usize,
    stop: Vec<String>,
    text: String,
    finish: Option<&'static str>,
}

impl LocalModel {
    /// Loads a model: a `.gguf` file, or a Hugging Face folder (`config.json`,
    /// `model.safetensors` or its shards, `tokenizer.json`), named by the folder or its
    /// `config.json`; see [`hf`].
    pub fn load(path: &Path, opts: &ModelOptions) -> Result<LocalModel> {
        let started = Instant::now();
        let kernels = match opts.kernels {
            Some(k) => k,
            None => quant::Kernels::from_env()?,
        };
        let mut loaded = if hf::is_hf_path(path) {
            hf::load(path, opts.format, &opts.device, opts.max_context)?
        } else {
            if !path.exists() {
                bail!(
                    "model file {} does not exist (scripts/install-model.sh installs the small default model into models/)",
                    path.display()
                );
            }
            gguf::load(path, opts.format, &opts.device, opts.max_context)?
        };
        loaded.weights.set_kernels(kernels)?;
        let fmt = opts.format.name();
        let shown = if hf::is_hf_path(path) { hf::model_dir(path) } else { path.to_path_buf() };
        let file = shown.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let id = format!("local:{file}(weights={fmt})");
        let kv_per_token = loaded.weights.config.kv_bytes_per_token().max(1);
        let model = LocalModel {
            shared: Arc::new(Shared {
                weights: loaded.weights,
                tokenizer: loaded.tokenizer,
                template: loaded.template,
                template_source: loaded.template_source,
                id,
            }),
            cache: PrefixCache {
                entries: Vec::new(),
                budget_tokens: opts.cache_mib * (1 << 20) / kv_per_token,
                clock: 0,
            },
            stats: LmStats::default(),
            max_step_rows: opts.max_step_rows.max(1),
        };
        let _ = started;
        Ok(model)
    }

    /// Another handle on the same weights with its own prefix cache and counters (cheap:
    /// the weights are shared, not copied).
    pub fn fork(&self) -> LocalModel {
        LocalModel {
            shared: self.shared.clone(),
            cache: PrefixCache { entries: Vec::new(), budget_tokens: self.cache.budget_tokens, clock: 0 },
            stats: LmStats::default(),
            max_step_rows: self.max_step_rows,
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// The weights (for tests and benchmarks that drive the decoder directly).
    pub fn weights(&self) -> &Weights {
        &self.shared.weights
    }

    /// The chat template's Jinja source.
    pub fn template_source(&self) -> &str {
        &self.shared.template_source
    }

    /// The prompt text of a chat, with the assistant header appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        self.shared.template.render(messages, true)
    }

    /// Work counters since load (or the last fork).
    pub fn stats(&self) -> LmStats {
        self.stats
    }

    /// Forgets every cached conversation.
    pub fn clear_cache(&mut self) {
        self.cache.entries.clear();
    }

    /// Completes every request together; see the module docs.
    pub fn generate(&mut self, batch: &[ChatRequest]) -> Result<Vec<Generation>> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let w = &shared.weights;
        let cfg = &w.config;
        let mut seqs = Vec::with_capacity(batch.len());
        let mut caches = Vec::with_capacity(batch.len());
        for (i, req) in batch.iter().enumerate() {
            sampling::validate(&req.sampling).with_context(|| format!("request {i}"))?;
            if req.messages.is_empty() {
                bail!("request {i} has no messages");
            }
            let text = shared.template.render(&req.messages, true)?;
            let tokens = shared.tokenizer.encode_prompt(&text)?;
            if tokens.is_empty() {
                bail!("request {i}: the prompt is empty");
            }
            if tokens.len() + req.sampling.max_tokens > cfg.context {
                bail!(
                    "request {i}: {} prompt tokens + {} to generate exceed the model's context of {} tokens",
                    tokens.len(),
                    req.sampling.max_tokens,
                    cfg.context
                );
            }
            let kv = self.cache.take(&tokens, cfg.n_layer, cfg.kv_dim());
            seqs.push(Seq {
                prompt_len: tokens.len(),
                cached: kv.len(),
                tokens,
                generated: Vec::new(),
                sampler: Sampler::new(&req.sampling),
                max_tokens: req.sampling.max_tokens,
                stop: req.sampling.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
                text: String::new(),
                finish: None,
            });
            caches.push(kv);
        }
        loop {
            // Decode rows first (one per live sequence), then prompt chunks in the room left.
            let mut rows = Vec::new();
            let mut budget = self.max_step_rows;
            for (i, s) in seqs.iter().enumerate() {
                if s.finish.is_none() && s.tokens.len() - caches[i].len() == 1 {
                    rows.push(Row { seq: i, token: s.tokens[s.tokens.len() - 1], logits: true });
                    budget = budget.saturating_sub(1);
                }
            }
            for (i, s) in seqs.iter().enumerate() {
                let pending = s.tokens.len() - caches[i].len();
                if s.finish.is_some() || pending <= 1 || budget == 0 {
                    continue;
                }
                let take = pending.min(budget);
                let start = caches[i].len();
                for j in start..start + take {
                    rows.push(Row { seq: i, token: s.tokens[j], logits: j + 1 == s.tokens.len() });
                }
                budget -= take;
            }
            if rows.is_empty() {
                break;
            }
            let logits = w.forward(&rows, &mut caches)?;
            self.stats.steps += 1;
            let mut li = logits.into_iter();
            for r in rows.iter().filter(|r| r.logits) {
                let Some(l) = li.next() else { bail!("the decoder returned too few logits") };
                let s = &mut seqs[r.seq];
                let next = s.sampler.next(&l);
                s.generated.push(next);
                if shared.tokenizer.eos.contains(&next) {
                    s.finish = Some("eos");
                    continue;
                }
                s.tokens.push(next);
                let text = shared.tokenizer.decode(&s.generated)?;
                if let Some(cut) = s.stop.iter().filter_map(|st| text.find(st.as_str())).min() {
                    s.text = text[..cut].to_string();
                    s.finish = Some("stop");
                    continue;
                }
                s.text = text;
                if s.generated.len() >= s.max_tokens {
                    s.finish = Some("length");
                }
            }
        }
        let mut out = Vec::with_capacity(seqs.len());
        for (s, kv) in seqs.into_iter().zip(caches) {
            self.stats.requests += 1;
            self.stats.prompt_tokens += s.prompt_len as u64;
            self.stats.cached_tokens += s.cached as u64;
            self.stats.generated_tokens += s.generated.len() as u64;
            let mut fed = s.tokens;
            fed.truncate(kv.len());
            out.push(Generation {
                text: s.text,
                tokens: s.generated,
                prompt_tokens: s.prompt_len,
                cached_tokens: s.cached,
                finish: s.finish.unwrap_or("length"),
            });
            self.cache.put(fed, kv);
        }
        self.stats.seconds += started.elapsed().as_secs_f64();
        Ok(out)
    }
}

impl LanguageModel for LocalModel {
    fn id(&self) -> String {
        self.shared.id.clone()
    }

    fn complete(&mut self, batch: &[ChatRequest]) -> Result<Vec<String>> {
        Ok(self.generate(batch)?.into_iter().map(|g| g.text).collect())
    }
}

/// Where the small default model lives once `scripts/install-model.sh` has run.
pub fn default_model_path() -> PathBuf {
    PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}
