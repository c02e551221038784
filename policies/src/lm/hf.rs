//! Loading a Hugging Face folder: `config.json` → [`Config`], `model.safetensors` (or the
//! shards listed by `model.safetensors.index.json`) → [`Weights`], `tokenizer.json` (with
//! `tokenizer_config.json` and `generation_config.json` for the special tokens and the chat
//! template) → [`Tokenizer`] and [`ChatTemplate`]: the same [`Loaded`] a GGUF file gives.
//!
//! Supported: `model_type` `llama` (SmolLM2, Llama, Mistral-style dense models) and `qwen2`
//! (Qwen2, Qwen2.5), tensors in F32, F16 or BF16 (converted to F32, then re-quantized to
//! Q8_0 like the GGUF path unless [`WeightFormat::AsShipped`]).
//!
//! RoPE: llama.cpp's converter permutes the q and k rows of `llama` models so that rotated
//! pairs sit side by side (interleaved RoPE). Hugging Face checkpoints are not permuted and
//! rotate the halves of each head (`rotate_half`, NeoX layout), so both families load with
//! `rope_neox = true` and the rows as stored.
//!
//! The files are read into memory (no memory map: the workspace forbids `unsafe`). Every
//! failure (a missing or malformed file, an unsupported model, a missing or misshapen tensor,
//! a truncated safetensors file) is an error that names the file, never a panic.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::BufferedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::gguf::Loaded;
use super::model::{Arch, Block, Config, Linear, WeightFormat, Weights};
use super::template::{CHATML, ChatTemplate};
use super::tokenizer::Tokenizer;

/// The folder a path names: the folder itself, or the folder of a `config.json` (or any
/// other file) inside it.
pub fn model_dir(path: &Path) -> PathBuf {
    if path.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() }
}

/// True when `path` looks like a Hugging Face model: a folder, or its `config.json`.
pub fn is_hf_path(path: &Path) -> bool {
    path.is_dir() || path.file_name().is_some_and(|f| f == "config.json")
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A JSON file that may be absent (but must be valid when present).
fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    if path.exists() { read_json(path).map(Some) } else { Ok(None) }
}

/// A special token as `tokenizer_config.json` writes it: `"<s>"` or `{"content": "<s>", ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Token ids as configs write them: `2` or `[2, 32000]`.
fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|i| i as u32).into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|i| i as u32).collect(),
        _ => Vec::new(),
    }
}

/// The safetensors files of a model, read into memory, and where each tensor is.
struct Tensors {
    shards: Vec<(PathBuf, BufferedSafetensors)>,
    index: HashMap<String, usize>,
    dir: PathBuf,
}

impl Tensors {
    fn open(dir: &Path) -> Result<Tensors> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .with_context(|| format!("{} has no `weight_map` object", index_path.display()))?;
            let names: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
            if names.is_empty() {
                bail!("{} lists no safetensors files", index_path.display());
            }
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            bail!(
                "{}: found neither model.safetensors nor model.safetensors.index.json (Hugging Face folders need the weights in safetensors)",
                dir.display()
            );
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, file) in files.into_iter().enumerate() {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let st = BufferedSafetensors::new(bytes).map_err(|e| {
                anyhow!("{} is not a valid safetensors file (truncated or corrupt?): {e}", file.display())
            })?;
            for (name, _) in st.tensors() {
                index.insert(name, i);
            }
            shards.push((file, st));
        }
        Ok(Tensors { shards, index, dir: dir.to_path_buf() })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Tensor `name` as F32 on the CPU, checked to have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let Some(&i) = self.index.get(name) else {
            bail!("{}: tensor {name} is missing from the safetensors files", self.dir.display())
        };
        let (file, st) = &self.shards[i];
        let t = st.load(name, &Device::Cpu).map_err(|e| anyhow!("{}: tensor {name}: {e}", file.display()))?;
        let t = match t.dtype() {
            DType::F32 => t,
            DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
            other => bail!("{}: tensor {name} is {other:?}; supported: F32, F16, BF16", file.display()),
        };
        if t.dims() != shape {
            bail!("{}: tensor {name} has shape {:?}, expected {shape:?}", file.display(), t.dims());
        }
        Ok(t)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QTensor> {
        let t = self.get(name, &[rows, cols])?;
        QTensor::quantize(&t, GgmlDType::F32).with_context(|| format!("{}: tensor {name}", self.dir.display()))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.get(name, &[len])?.to_vec1::<f32>()?)
    }
}

/// Reads the model's shape from `config.json`.
fn read_config(path: &Path, max_context: usize) -> Result<Config> {
    let shown = path.display();
    let cfg = read_json(path)?;
    let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or_default();
    let arch = match model_type {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "" => bail!("{shown} has no `model_type` (supported: llama, qwen2)"),
        other => bail!("{shown}: model_type `{other}` is not supported (supported: llama, qwen2)"),
    };
    let u = |key: &str| -> Result<usize> {
        cfg.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .with_context(|| format!("{shown} lacks the integer `{key}`"))
    };
    let opt_u = |key: &str| cfg.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let f = |key: &str, default: f64| cfg.get(key).and_then(Value::as_f64).unwrap_or(default) as f32;
    if let Some(act) = cfg.get("hidden_act").and_then(Value::as_str)
        && act != "silu"
    {
        bail!("{shown}: hidden_act `{act}` is not supported (only silu)");
    }
    if let Some(scaling) = cfg.get("rope_scaling").filter(|v| !v.is_null()) {
        let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(Value::as_str).unwrap_or("?");
        if kind != "default" {
            bail!("{shown}: rope_scaling `{kind}` is not supported (only plain RoPE)");
        }
    }
    let n_embd = u("hidden_size")?;
    let n_head = u("num_attention_heads")?;
    let head_dim = opt_u("head_dim").unwrap_or(n_embd / n_head.max(1));
    Ok(Config {
        arch,
        n_layer: u("num_hidden_layers")?,
        n_embd,
        n_head,
        n_kv_head: opt_u("num_key_value_heads").unwrap_or(n_head),
        head_dim,
        n_ff: u("intermediate_size")?,
        vocab: u("vocab_size")?,
        rope_theta: f("rope_theta", 10_000.0),
        // Hugging Face checkpoints rotate halves (see the module docs).
        rope_neox: true,
        rms_eps: f("rms_norm_eps", 1e-6),
        context: opt_u("max_position_embeddings").unwrap_or(max_context).min(max_context),
    })
}

/// Reads the Hugging Face folder at `path` (or the folder of the `config.json` it names).
pub fn load(path: &Path, format: WeightFormat, device: &Device, max_context: usize) -> Result<Loaded> {
    let dir = model_dir(path);
    if !dir.is_dir() {
        bail!("model folder {} does not exist", dir.display());
    }
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        bail!(
            "{}: no config.json (a Hugging Face model folder needs config.json, model.safetensors, tokenizer.json)",
            dir.display()
        );
    }
    let raw_config = read_json(&config_path)?;
    let config = read_config(&config_path, max_context)?;
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.exists() {
        bail!("{}: no tokenizer.json", dir.display());
    }
    let tok_config = read_optional_json(&dir.join("tokenizer_config.json"))?;
    let gen_config = read_optional_json(&dir.join("generation_config.json"))?;

    let tensors = Tensors::open(&dir)?;
    let (d, q_dim, kv_dim) = (config.n_embd, config.q_dim(), config.kv_dim());
    let embed_t = tensors.get("model.embed_tokens.weight", &[config.vocab, d])?;
    let mut blocks = Vec::with_capacity(config.n_layer);
    for l in 0..config.n_layer {
        let p = format!("model.layers.{l}");
        let m = |name: &str, rows: usize, cols: usize| tensors.matrix(&format!("{p}.{name}.weight"), rows, cols);
        let qkv = vec![
            m("self_attn.q_proj", q_dim, d)?,
            m("self_attn.k_proj", kv_dim, d)?,
            m("self_attn.v_proj", kv_dim, d)?,
        ];
        let qkv_bias = if config.arch == Arch::Qwen2 {
            let mut b = tensors.vector(&format!("{p}.self_attn.q_proj.bias"), q_dim)?;
            b.extend(tensors.vector(&format!("{p}.self_attn.k_proj.bias"), kv_dim)?);
            b.extend(tensors.vector(&format!("{p}.self_attn.v_proj.bias"), kv_dim)?);
            Some(b)
        } else {
            None
        };
        blocks.push(Block {
            attn_norm: tensors.vector(&format!("{p}.input_layernorm.weight"), d)?,
            qkv: Linear::new(qkv, format, device)?,
            qkv_bias,
            wo: Linear::new(vec![m("self_attn.o_proj", d, q_dim)?], format, device)?,
            ffn_norm: tensors.vector(&format!("{p}.post_attention_layernorm.weight"), d)?,
            gate_up: Linear::new(
                vec![m("mlp.gate_proj", config.n_ff, d)?, m("mlp.up_proj", config.n_ff, d)?],
                format,
                device,
            )?,
            down: Linear::new(vec![m("mlp.down_proj", d, config.n_ff)?], format, device)?,
        });
    }
    let out_norm = tensors.vector("model.norm.weight", d)?;
    let tied = raw_config.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false);
    let output_q = if tensors.has("lm_head.weight") {
        tensors.matrix("lm_head.weight", config.vocab, d)?
    } else if tied {
        QTensor::quantize(&embed_t, GgmlDType::F32)?
    } else {
        bail!("{}: tensor lm_head.weight is missing and config.json does not set tie_word_embeddings", dir.display());
    };
    let output = Linear::new(vec![output_q], format, device)?;
    let embed = embed_t.flatten_all()?.to_vec1::<f32>()?;
    drop(tensors);
    let weights = Weights::new(config, embed, blocks, out_norm, output, device.clone())
        .with_context(|| format!("model {}", dir.display()))?;

    // Special tokens: tokenizer_config.json first, then the ids of generation_config.json
    // and config.json.
    let tc = |key: &str| tok_config.as_ref().and_then(|c| c.get(key));
    let gc = |key: &str| gen_config.as_ref().and_then(|c| c.get(key));
    let bos_id = token_ids(gc("bos_token_id")).into_iter().chain(token_ids(raw_config.get("bos_token_id"))).next();
    let mut eos_ids = token_ids(gc("eos_token_id"));
    eos_ids.extend(token_ids(raw_config.get("eos_token_id")));
    let tokenizer = Tokenizer::from_json(
        &tokenizer_path,
        token_text(tc("bos_token")),
        bos_id,
        token_text(tc("eos_token")),
        &eos_ids,
        tc("add_bos_token").and_then(Value::as_bool),
    )?;
    // The template: tokenizer_config.json's `chat_template` (a string, or a list of named
    // templates), else chat_template.jinja, else ChatML.
    let template_source = match tc("chat_template") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| CHATML.to_string()),
        _ => {
            let jinja = dir.join("chat_template.jinja");
            if jinja.exists() {
                std::fs::read_to_string(&jinja).with_context(|| format!("cannot read {}", jinja.display()))?
            } else {
                CHATML.to_string()
            }
        }
    };
    let template = ChatTemplate::new(&template_source, &tokenizer.bos_token, &tokenizer.eos_token)
        .with_context(|| format!("model {}: chat template", dir.display()))?;
    let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Loaded { weights, tokenizer, template, name, template_source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::model::{KvCache, Row};
    use crate::lm::sampling::argmax;
    use crate::lm::{LocalModel, ModelOptions};
    use candle_core::quantized::gguf_file;
    use dialogym_engine::lm::{ChatMessage, ChatRequest, Sampling};

    fn gguf_path() -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(path.exists(), "{} is missing: run scripts/install-model.sh before the tests", path.display());
        path
    }

    /// Inverts llama.cpp's `permute(w, n_head)` =
    /// `w.reshape(n_head, 2, rows/n_head/2, k).swapaxes(1, 2).reshape(rows, k)`: the
    /// converted rows are `(head, pair, half)`; Hugging Face's are `(head, half, pair)`.
    fn unpermute(w: &Tensor, n_head: usize) -> Tensor {
        let (n, k) = w.dims2().expect("a matrix");
        w.reshape((n_head, n / n_head / 2, 2, k))
            .and_then(|t| t.transpose(1, 2))
            .and_then(|t| t.contiguous())
            .and_then(|t| t.reshape((n, k)))
            .expect("unpermute")
    }

    /// The Hugging Face name of a GGUF tensor (None for tensors HF does not have).
    fn hf_name(gguf_name: &str) -> Option<String> {
        let fixed = match gguf_name {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(f) = fixed {
            return Some(f.to_string());
        }
        let rest = gguf_name.strip_prefix("blk.")?;
        let (layer, part) = rest.split_once('.')?;
        let (base, kind) = part.rsplit_once('.')?;
        let hf = match base {
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            "attn_norm" => "input_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            _ => return None,
        };
        Some(format!("model.layers.{layer}.{hf}.{kind}"))
    }

    /// Writes a Hugging Face folder equivalent to the GGUF model: every tensor dequantized
    /// to F32 (exactly the values the GGUF path computes with), q/k rows un-permuted,
    /// config.json from the GGUF's config, the GGUF-built tokenizer saved as tokenizer.json,
    /// and tokenizer_config.json with its special tokens and chat template.
    fn hf_folder_from_gguf(dir: &Path, gguf: &LocalModel) {
        let cfg = &gguf.weights().config;
        let mut file = std::fs::File::open(gguf_path()).expect("open gguf");
        let ct = gguf_file::Content::read(&mut file).expect("read gguf");
        let mut tensors = HashMap::new();
        let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(hf) = hf_name(name) else { continue };
            let t = ct.tensor(&mut file, name, &Device::Cpu).expect("tensor").dequantize(&Device::Cpu).expect("f32");
            let t = if name.ends_with("attn_q.weight") {
                unpermute(&t, cfg.n_head)
            } else if name.ends_with("attn_k.weight") {
                unpermute(&t, cfg.n_kv_head)
            } else {
                t
            };
            tensors.insert(hf, t);
        }
        let tied = !tensors.contains_key("lm_head.weight");
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("write safetensors");
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": cfg.n_embd,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head,
            "head_dim": cfg.head_dim,
            "intermediate_size": cfg.n_ff,
            "vocab_size": cfg.vocab,
            "rope_theta": cfg.rope_theta as f64,
            "rms_norm_eps": cfg.rms_eps as f64,
            "max_position_embeddings": cfg.context,
            "tie_word_embeddings": tied,
            "torch_dtype": "float32",
        });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
        let tok = gguf.tokenizer();
        tok.save_json(&dir.join("tokenizer.json")).expect("write tokenizer");
        let tok_config = serde_json::json!({
            "bos_token": tok.bos_token,
            "eos_token": tok.eos_token,
            "add_bos_token": tok.add_bos.is_some(),
            "chat_template": gguf.template_source(),
        });
        std::fs::write(dir.join("tokenizer_config.json"), tok_config.to_string()).expect("write tokenizer config");
    }

    fn chat(system: &str, user: &str) -> Vec<ChatMessage> {
        vec![
            ChatMessage { role: "system".into(), content: system.into() },
            ChatMessage { role: "user".into(), content: user.into() },
        ]
    }

    /// The GGUF file and the Hugging Face folder made from it load to the same model: same
    /// config (but for the RoPE layout), same token ids, and greedy decoding gives the same
    /// 24 tokens with logits within 1e-3 (the attention dot products sum the head
    /// dimensions in a different order; everything else is bit-identical).
    #[test]
    fn hf_folder_matches_gguf() {
        let gguf = LocalModel::load(&gguf_path(), &ModelOptions::default()).expect("gguf loads");
        let dir = tempfile::tempdir().expect("tempdir");
        hf_folder_from_gguf(dir.path(), &gguf);
        // Both ways of naming the folder load.
        let hf = LocalModel::load(dir.path(), &ModelOptions::default()).expect("hf folder loads");
        let via_config = LocalModel::load(&dir.path().join("config.json"), &ModelOptions::default())
            .expect("hf folder loads from its config.json");
        assert_eq!(via_config.weights().config, hf.weights().config);

        let (gc, hc) = (&gguf.weights().config, &hf.weights().config);
        let hf_text = std::fs::read_to_string(dir.path().join("tokenizer.json")).expect("tokenizer.json");
        assert!(hf_text.contains("\"<|im_start|>\""), "the special tokens are saved");
        assert!(!gc.rope_neox && hc.rope_neox, "llama GGUF is interleaved, HF llama rotates halves");
        assert_eq!(&Config { rope_neox: false, ..hc.clone() }, gc);
        assert_eq!(hf.template_source(), gguf.template_source());

        let (gt, ht) = (gguf.tokenizer(), hf.tokenizer());
        assert_eq!(
            (&ht.bos_token, &ht.eos_token, ht.add_bos, &ht.eos),
            (&gt.bos_token, &gt.eos_token, gt.add_bos, &gt.eos)
        );
        assert!(!gt.eos.is_empty());
        let prompts = [
            chat("You are a helpful assistant.", "Name three colors."),
            chat("Answer yes or no.", "Is a whale a mammal? Think about 12345 whales."),
            chat("You are a pirate.", "Où est le trésor? naïve café 🤖"),
        ];
        let mut texts: Vec<String> = vec![
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n".into(),
            "  leading spaces, tabs\tand 3.14159 digits<|endoftext|>".into(),
            "naïve café — 日本語 🤖 it's 2024!".into(),
        ];
        for p in &prompts {
            texts.push(gguf.render(p).expect("render"));
            assert_eq!(hf.render(p).expect("render"), gguf.render(p).expect("render"));
        }
        for t in &texts {
            let ids = gt.encode_prompt(t).expect("encode");
            assert_eq!(ht.encode_prompt(t).expect("encode"), ids, "ids of {t:?}");
            assert_eq!(ht.decode(&ids).expect("decode"), gt.decode(&ids).expect("decode"));
        }
        let im_start = gt.encode("<|im_start|>").expect("encode");
        assert_eq!(im_start.len(), 1, "chat special tokens are one id");

        // Greedy decoding, 24 tokens, straight through the decoders (no eos stop), with F32
        // weights: no quantization, so the two layouts compute the same numbers but for the
        // order of the sums in the attention dot products. (With the default Q8_0 matmuls
        // the activations are quantized too, and that reordering can flip a rounding: on
        // this model two equally valid roundings move logits by up to ~2, see the end.)
        let f32_opts = ModelOptions { format: WeightFormat::F32, ..ModelOptions::default() };
        let gguf32 = LocalModel::load(&gguf_path(), &f32_opts).expect("gguf loads in f32");
        let hf32 = LocalModel::load(dir.path(), &f32_opts).expect("hf folder loads in f32");
        let greedy = |a: &LocalModel, b: &LocalModel, ids: &[u32]| -> (Vec<u32>, Vec<u32>, f32) {
            let n_layer = a.weights().config.n_layer;
            let (mut ca, mut cb) = (vec![KvCache::new(n_layer)], vec![KvCache::new(n_layer)]);
            let mut rows: Vec<Row> =
                ids.iter().enumerate().map(|(i, &t)| Row { seq: 0, token: t, logits: i + 1 == ids.len() }).collect();
            let (mut ta, mut tb, mut max_diff) = (Vec::new(), Vec::new(), 0f32);
            for _ in 0..24 {
                let la = a.weights().forward(&rows, &mut ca).expect("forward").remove(0);
                let lb = b.weights().forward(&rows, &mut cb).expect("forward").remove(0);
                max_diff = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(max_diff, f32::max);
                ta.push(argmax(&la));
                tb.push(argmax(&lb));
                // Both continue from the first model's token, so one mismatch is not compounded.
                rows = vec![Row { seq: 0, token: argmax(&la), logits: true }];
            }
            (ta, tb, max_diff)
        };
        let mut max_diff = 0f32;
        for p in &prompts {
            let ids = gt.encode_prompt(&gguf.render(p).expect("render")).expect("encode");
            let (tg, th, diff) = greedy(&gguf32, &hf32, &ids);
            assert_eq!(th, tg, "greedy tokens, f32 weights (logit gap {diff})");
            max_diff = max_diff.max(diff);
        }
        eprintln!("f32 weights: max |logit(gguf) - logit(hf)| over 3 prompts x 24 steps = {max_diff:e}");
        assert!(max_diff < 1e-3, "f32 logits differ by up to {max_diff}");

        // The default Q8_0 matmuls: the same quantized weights (permuted rows), so the
        // greedy tokens mostly agree; report, do not assert, the gap.
        let (mut agree, mut q8_diff) = (0, 0f32);
        for p in &prompts {
            let ids = gt.encode_prompt(&gguf.render(p).expect("render")).expect("encode");
            let (tg, th, diff) = greedy(&gguf, &hf, &ids);
            agree += tg.iter().zip(&th).filter(|(a, b)| a == b).count();
            q8_diff = q8_diff.max(diff);
        }
        eprintln!("q8_0 weights: {agree}/72 greedy tokens agree, max logit gap {q8_diff}");

        // The full generation path (template, eos, detokenization) agrees too.
        let reqs: Vec<ChatRequest> = prompts
            .iter()
            .map(|m| ChatRequest {
                messages: m.clone(),
                sampling: Sampling { temperature: 0.0, max_tokens: 24, ..Sampling::default() },
            })
            .collect();
        let (mut gguf32, mut hf32) = (gguf32, hf32);
        assert_eq!(hf32.generate(&reqs).expect("hf generates"), gguf32.generate(&reqs).expect("gguf generates"));
    }

    fn err_of(dir: &Path) -> String {
        match LocalModel::load(dir, &ModelOptions::default()) {
            Ok(_) => panic!("{} loaded", dir.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    fn tiny_config(model_type: &str) -> String {
        serde_json::json!({
            "model_type": model_type, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 16, "tie_word_embeddings": true,
        })
        .to_string()
    }

    #[test]
    fn hf_folder_errors_name_the_file_and_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let e = err_of(d);
        assert!(e.contains("config.json") && e.contains(&d.display().to_string()), "{e}");

        std::fs::write(d.join("config.json"), "{\"model_type\": \"llama\",").expect("write");
        let e = err_of(d);
        assert!(e.contains("config.json") && e.contains("not valid JSON"), "{e}");

        std::fs::write(d.join("config.json"), tiny_config("gpt2")).expect("write");
        let e = err_of(d);
        assert!(e.contains("config.json") && e.contains("model_type `gpt2` is not supported"), "{e}");

        std::fs::write(d.join("config.json"), tiny_config("llama")).expect("write");
        let e = err_of(d);
        assert!(e.contains("tokenizer.json"), "{e}");

        std::fs::write(d.join("tokenizer.json"), "{}").expect("write");
        let e = err_of(d);
        assert!(e.contains("model.safetensors"), "{e}");

        // A valid safetensors file without the model's tensors.
        let emb = Tensor::zeros((16, 64), DType::BF16, &Device::Cpu).expect("zeros");
        let st = d.join("model.safetensors");
        candle_core::safetensors::save(&HashMap::from([("model.embed_tokens.weight".to_string(), emb)]), &st)
            .expect("save");
        let e = err_of(d);
        assert!(e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("missing"), "{e}");

        // The same file cut short.
        let bytes = std::fs::read(&st).expect("read");
        for cut in [bytes.len() - 1, bytes.len() / 2, 12, 3, 0] {
            std::fs::write(&st, &bytes[..cut]).expect("write");
            let e = err_of(d);
            assert!(e.contains("model.safetensors") && e.contains("truncated"), "cut at {cut}: {e}");
        }
    }

    #[test]
    fn hf_folder_wrong_shape_and_sharded_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("config.json"), tiny_config("qwen2")).expect("write");
        std::fs::write(d.join("tokenizer.json"), "{}").expect("write");
        let emb = Tensor::zeros((16, 32), DType::F16, &Device::Cpu).expect("zeros");
        candle_core::safetensors::save(
            &HashMap::from([("model.embed_tokens.weight".to_string(), emb)]),
            d.join("model-00001-of-00002.safetensors"),
        )
        .expect("save");
        let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00002-of-00002.safetensors"}});
        std::fs::write(d.join("model.safetensors.index.json"), index.to_string()).expect("write");
        let e = err_of(d);
        assert!(e.contains("model-00002-of-00002.safetensors"), "missing shard: {e}");
        let norm = Tensor::ones(64, DType::F32, &Device::Cpu).expect("ones");
        candle_core::safetensors::save(
            &HashMap::from([("model.norm.weight".to_string(), norm)]),
            d.join("model-00002-of-00002.safetensors"),
        )
        .expect("save");
        let e = err_of(d);
        assert!(e.contains("model.embed_tokens.weight has shape [16, 32], expected [16, 64]"), "{e}");
    }
}
