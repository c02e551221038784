//! Tokenizers: rebuilt from a GGUF file's `tokenizer.ggml.*` metadata, or read from a
//! Hugging Face `tokenizer.json`.
//!
//! A GGUF file carries the vocabulary and merges of a byte-level BPE but not the
//! pre-tokenizer; llama.cpp picks that by the `tokenizer.ggml.pre` name. We rebuild the same
//! pre-tokenizer with the `tokenizers` crate. For `smollm` (SmolLM2) llama.cpp splits digits
//! one by one and then applies the GPT-2 regex without a prefix space; this matched
//! llama.cpp's ids on 1031/1031 texts (`../shared/LLM-NOTES.md`), and `tests/llm.rs` checks
//! it against ids recorded from llama.cpp (`tests/fixtures/tokenizer_ids.json`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3` regex.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` regex.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A text ↔ token-id codec with the special tokens a chat needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Ids that end a reply (eos, `<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`...).
    pub eos: Vec<u32>,
    /// Beginning-of-sequence token text, for chat templates.
    pub bos_token: String,
    /// End-of-sequence token text, for chat templates.
    pub eos_token: String,
    /// Id prepended to every prompt when the model asks for it (`add_bos_token`).
    pub add_bos: Option<u32>,
    /// False when the GGUF names a pre-tokenizer we do not reproduce exactly (ids may then
    /// differ from llama.cpp's on some texts).
    pub exact: bool,
}

/// Names of tokens that end a turn in the chat formats we know.
const END_TOKENS: &[&str] =
    &["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>", "<end_of_turn>"];

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    ct.metadata.get(key)
}

impl Tokenizer {
    /// Rebuilds the tokenizer of a GGUF file from its metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
        let model = md(ct, "tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if model != "gpt2" {
            bail!(
                "tokenizer `{model}` is not supported from GGUF metadata (only byte-level BPE, `gpt2`); \
                 use the model's Hugging Face folder with its tokenizer.json instead"
            );
        }
        let tokens: Vec<String> = md(ct, "tokenizer.ggml.tokens")
            .context("GGUF metadata lacks tokenizer.ggml.tokens")?
            .to_vec()?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<_>>()?;
        let merges: Vec<(String, String)> = md(ct, "tokenizer.ggml.merges")
            .context("GGUF metadata lacks tokenizer.ggml.merges")?
            .to_vec()?
            .iter()
            .map(|v| {
                let m = v.to_string()?;
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| candle_core::Error::Msg(format!("merge `{m}` is not two tokens")))
            })
            .collect::<candle_core::Result<_>>()?;
        let types: Vec<i32> = match md(ct, "tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<candle_core::Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe =
            BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| anyhow!("building the BPE: {e}"))?;
        let pre =
            md(ct, "tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_else(|| "default".into());
        let (pre_tokenizer, exact) = pre_tokenizer(&pre)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control (3) and user-defined (4) tokens are matched whole in the text, as llama.cpp
        // does with `special = true`: that is how `<|im_start|>` in a rendered chat becomes
        // one id.
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(special).map_err(|e| anyhow!("adding special tokens: {e}"))?;
        let id = |key: &str| md(ct, key).and_then(|v| v.to_u32().ok());
        let text_of = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize).cloned()).unwrap_or_default();
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let add_bos = md(ct, "tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        let mut eos: Vec<u32> = eos_id.into_iter().collect();
        eos.extend(id("tokenizer.ggml.eot_token_id"));
        for name in END_TOKENS {
            if let Some(i) = tokens.iter().position(|t| t == name) {
                eos.push(i as u32);
            }
        }
        eos.sort_unstable();
        eos.dedup();
        Ok(Tokenizer {
            inner,
            eos,
            bos_token: text_of(bos),
            eos_token: text_of(eos_id),
            add_bos: if add_bos { bos } else { None },
            exact,
        })
    }

    /// Reads a Hugging Face `tokenizer.json`. The special tokens come from the model's
    /// `tokenizer_config.json` (`bos_token`, `eos_token`, `add_bos_token`) or, failing that,
    /// the ids of `generation_config.json` / `config.json` (`bos_id`, `eos_ids`). Replies end
    /// at the eos token, every id of `eos_ids`, and the end tokens of the chat formats we know
    /// (as for GGUF files). When `add_bos` is not given it is read off the tokenizer's
    /// post-processor (does it put BOS in front of a text?).
    pub fn from_json(
        path: &Path,
        bos_token: Option<String>,
        bos_id: Option<u32>,
        eos_token: Option<String>,
        eos_ids: &[u32],
        add_bos: Option<bool>,
    ) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot read tokenizer {}: {e}", path.display()))?;
        let vocab: HashMap<String, u32> = inner.get_vocab(true);
        let text_of = |i: Option<u32>| i.and_then(|i| inner.id_to_token(i)).unwrap_or_default();
        let bos_token = bos_token.unwrap_or_else(|| text_of(bos_id));
        let eos_token = eos_token.unwrap_or_else(|| text_of(eos_ids.first().copied()));
        let bos = vocab.get(&bos_token).copied().or(bos_id);
        let mut eos: Vec<u32> =
            END_TOKENS.iter().chain([&eos_token.as_str()]).filter_map(|n| vocab.get(*n).copied()).collect();
        eos.extend(eos_ids.iter().copied().filter(|&i| (i as usize) < inner.get_vocab_size(true)));
        eos.sort_unstable();
        eos.dedup();
        let add_bos = match add_bos {
            Some(a) => a,
            None => match (bos, inner.encode("a", true)) {
                (Some(b), Ok(enc)) => enc.get_ids().first() == Some(&b),
                _ => false,
            },
        };
        Ok(Tokenizer { inner, eos, bos_token, eos_token, add_bos: if add_bos { bos } else { None }, exact: true })
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (a GGUF tokenizer saved this
    /// way reloads with [`Tokenizer::from_json`] to the same ids).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| anyhow!("cannot write tokenizer {}: {e}", path.display()))
    }

    /// Token ids of `text`; special-token texts (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt ids of a rendered chat: the text's ids, with BOS in front when the model
    /// wants one and the template did not write it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if let Some(b) = self.add_bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    /// Text of `ids`, without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("detokenizing: {e}"))
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name, and whether we
/// reproduce it exactly.
fn pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    let byte_level = |regex: bool| -> PreTokenizerWrapper { ByteLevel::new(false, true, regex).into() };
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| anyhow!("pre-tokenizer regex: {e}"))?
            .into())
    };
    Ok(match pre {
        "smollm" => (Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(), true),
        "gpt2" | "default" => (byte_level(true), true),
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" => {
            (Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level(false)]).into(), true)
        }
        "qwen2" | "deepseek-r1-qwen" => (Sequence::new(vec![split(QWEN2_REGEX)?, byte_level(false)]).into(), true),
        // Unknown names: the GPT-2 regex is the common ancestor; ids may differ on digits or
        // long runs of punctuation.
        _ => (byte_level(true), false),
    })
}
