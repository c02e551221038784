//! Loading a GGUF file: metadata → [`Config`], tensors → [`Weights`] (Q4_1/Q8_0 blocks kept
//! as shipped, others re-quantized to Q8_0, unless asked otherwise), tokenizer and chat
//! template from the `tokenizer.*` metadata.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use candle_core::quantized::{QTensor, gguf_file};

use super::model::{Arch, Block, Config, Linear, WeightFormat, Weights};
use super::template::{CHATML, ChatTemplate};
use super::tokenizer::Tokenizer;

/// Everything a local chat model needs, read from one file.
pub struct Loaded {
    /// The decoder's weights.
    pub weights: Weights,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    /// `general.name` or the file stem.
    pub name: String,
    /// The chat template's source (for snapshots and docs).
    pub template_source: String,
}

/// Reads `path`, a GGUF file of the Llama family (`llama`, `qwen2` architectures).
pub fn load(path: &Path, format: WeightFormat, device: &Device, max_context: usize) -> Result<Loaded> {
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot open model file {shown}"))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|_| anyhow::anyhow!("{shown} is not a GGUF model: it is shorter than a GGUF header"))?;
    if &magic != b"GGUF" {
        bail!("{shown} is not a GGUF model: it starts with {:?}, not \"GGUF\"", String::from_utf8_lossy(&magic));
    }
    reader.seek(SeekFrom::Start(0))?;
    let ct = gguf_file::Content::read(&mut reader)
        .map_err(|e| anyhow::anyhow!("cannot read GGUF model {shown} (truncated or corrupt?): {e}"))?;
    let read = |reader: &mut BufReader<File>, name: &str| -> Result<QTensor> {
        ct.tensor(reader, name, &Device::Cpu)
            .map_err(|e| anyhow::anyhow!("model {shown}: tensor {name}: {e} (truncated or corrupt file?)"))
    };
    let arch_name =
        ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let arch = match arch_name.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => bail!("model {shown}: architecture `{other}` is not supported (supported: llama, qwen2)"),
    };
    let u = |key: &str| -> Result<usize> {
        let full = format!("{arch_name}.{key}");
        Ok(ct.metadata.get(&full).with_context(|| format!("model {shown}: metadata lacks {full}"))?.to_u32()? as usize)
    };
    let f = |key: &str, default: f32| -> f32 {
        ct.metadata.get(&format!("{arch_name}.{key}")).and_then(|v| v.to_f32().ok()).unwrap_or(default)
    };
    let n_embd = u("embedding_length")?;
    let n_head = u("attention.head_count")?;
    let embed_q = read(&mut reader, "token_embd.weight")?;
    let (vocab, embd_cols) = embed_q.shape().dims2()?;
    if embd_cols != n_embd {
        bail!("model {shown}: token_embd is {vocab}×{embd_cols}, expected width {n_embd}");
    }
    let config = Config {
        arch,
        n_layer: u("block_count")?,
        n_embd,
        n_head,
        n_kv_head: u("attention.head_count_kv").unwrap_or(n_head),
        head_dim: u("rope.dimension_count").unwrap_or(n_embd / n_head.max(1)),
        n_ff: u("feed_forward_length")?,
        vocab,
        rope_theta: f("rope.freq_base", 10_000.0),
        rope_neox: arch == Arch::Qwen2,
        rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
        context: u("context_length").unwrap_or(max_context).min(max_context),
    };
    let vec1 = |t: QTensor| -> Result<Vec<f32>> { Ok(t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?) };
    let mut blocks = Vec::with_capacity(config.n_layer);
    for l in 0..config.n_layer {
        let p = format!("blk.{l}");
        let mut t = |name: &str| read(&mut reader, &format!("{p}.{name}"));
        let qkv = vec![t("attn_q.weight")?, t("attn_k.weight")?, t("attn_v.weight")?];
        let qkv_bias = if arch == Arch::Qwen2 {
            let mut b = vec1(t("attn_q.bias")?)?;
            b.extend(vec1(t("attn_k.bias")?)?);
            b.extend(vec1(t("attn_v.bias")?)?);
            Some(b)
        } else {
            None
        };
        blocks.push(Block {
            attn_norm: vec1(t("attn_norm.weight")?)?,
            qkv: Linear::new(qkv, format, device)?,
            qkv_bias,
            wo: Linear::new(vec![t("attn_output.weight")?], format, device)?,
            ffn_norm: vec1(t("ffn_norm.weight")?)?,
            gate_up: Linear::new(vec![t("ffn_gate.weight")?, t("ffn_up.weight")?], format, device)?,
            down: Linear::new(vec![t("ffn_down.weight")?], format, device)?,
        });
    }
    let out_norm = vec1(read(&mut reader, "output_norm.weight")?)?;
    let embed = vec1_2d(&embed_q)?;
    // Tied embeddings (SmolLM2): the output projection is the embedding matrix itself.
    let output_q =
        if ct.tensor_infos.contains_key("output.weight") { read(&mut reader, "output.weight")? } else { embed_q };
    let output = Linear::new(vec![output_q], format, device)?;
    let weights = Weights::new(config, embed, blocks, out_norm, output, device.clone())?;

    let tokenizer = Tokenizer::from_gguf(&ct).with_context(|| format!("model {shown}: tokenizer"))?;
    let template_source = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| CHATML.to_string());
    let template = ChatTemplate::new(&template_source, &tokenizer.bos_token, &tokenizer.eos_token)
        .with_context(|| format!("model {shown}: chat template"))?;
    let name = ct
        .metadata
        .get("general.name")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    Ok(Loaded { weights, tokenizer, template, name, template_source })
}

fn vec1_2d(t: &QTensor) -> Result<Vec<f32>> {
    Ok(t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Only the tokenizer and chat template of a GGUF file (reads the metadata, not the
/// weights): for tools and tests that need no decoder.
pub fn read_tokenizer(path: &Path) -> Result<(Tokenizer, ChatTemplate)> {
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot open model file {shown}"))?;
    let mut reader = BufReader::new(file);
    let ct =
        gguf_file::Content::read(&mut reader).map_err(|e| anyhow::anyhow!("cannot read GGUF model {shown}: {e}"))?;
    let tokenizer = Tokenizer::from_gguf(&ct).with_context(|| format!("model {shown}: tokenizer"))?;
    let source = ct
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| CHATML.to_string());
    let template = ChatTemplate::new(&source, &tokenizer.bos_token, &tokenizer.eos_token)?;
    Ok((tokenizer, template))
}
