//! Chat templates: the Jinja text a model ships (`tokenizer.chat_template`) rendered with
//! minijinja, configured like Hugging Face `transformers` renders it (`trim_blocks`,
//! `lstrip_blocks`, `raise_exception`), so prompts match the ones the model was tuned on.
//!
//! Sandboxed: the environment has no loader (no `include`/`import` of files), no network,
//! and a fuel budget that bounds the work (and so the output size) of one render; a
//! template that loops forever fails with an error instead of hanging a run.

use anyhow::{Result, anyhow};
use dialogym_engine::lm::ChatMessage;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, State};

/// The ChatML template, for models whose file carries none.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Instructions one render may execute (minijinja's fuel); a 64-message chat through the
/// templates we know takes a few thousand.
const FUEL: u64 = 2_000_000;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Python string and dict methods that chat templates call (`content.strip()`,
/// `message.get('x')`); minijinja itself only has filters.
fn python_method(_state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let arg_str = |i: usize| args.get(i).and_then(|a| a.as_str().map(str::to_string));
    if let Some(s) = value.as_str() {
        let chars = arg_str(0);
        let set = |c: char| chars.as_deref().map_or(c.is_whitespace(), |cs| cs.contains(c));
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(set)),
            "lstrip" => Value::from(s.trim_start_matches(set)),
            "rstrip" => Value::from(s.trim_end_matches(set)),
            "startswith" => Value::from(arg_str(0).is_some_and(|p| s.starts_with(&p))),
            "endswith" => Value::from(arg_str(0).is_some_and(|p| s.ends_with(&p))),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "title" => Value::from(
                s.split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "replace" => match (arg_str(0), arg_str(1)) {
                (Some(a), Some(b)) => Value::from(s.replace(&a, &b)),
                _ => return Err(Error::new(ErrorKind::InvalidOperation, "replace needs two strings")),
            },
            "split" => {
                let parts: Vec<Value> = match arg_str(0) {
                    Some(sep) => s.split(sep.as_str()).map(Value::from).collect(),
                    None => s.split_whitespace().map(Value::from).collect(),
                };
                Value::from(parts)
            }
            _ => return Err(Error::new(ErrorKind::UnknownMethod, format!("string has no method {method}"))),
        });
    }
    match method {
        "get" => {
            let key = args.first().cloned().unwrap_or_default();
            let got = value.get_item(&key).unwrap_or_default();
            Ok(if got.is_undefined() { args.get(1).cloned().unwrap_or_default() } else { got })
        }
        "items" => {
            let mut out = Vec::new();
            for k in value.try_iter()? {
                let v = value.get_item(&k)?;
                out.push(Value::from(vec![k, v]));
            }
            Ok(Value::from(out))
        }
        "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
        "values" => {
            Ok(Value::from(value.try_iter()?.map(|k| value.get_item(&k).unwrap_or_default()).collect::<Vec<_>>()))
        }
        _ => Err(Error::new(ErrorKind::UnknownMethod, format!("no method {method}"))),
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are the texts templates may insert.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax.trim_blocks(true).lstrip_blocks(true);
        env.set_syntax(syntax.build().map_err(|e| anyhow!("chat template syntax: {e}"))?);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        env.add_function("raise_exception", raise_exception);
        // Templates that print today's date get a fixed one: prompts must not depend on the
        // clock, or corpora would not be reproducible.
        env.add_function("strftime_now", |_fmt: String| -> Result<Value, Error> { Ok(Value::from("01 Jan 2025")) });
        env.set_unknown_method_callback(python_method);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| anyhow!("chat template does not compile: {e}"))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The prompt text for `messages`, ending with the assistant's header when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| anyhow!("{e}"))?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        tmpl.render(minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        })
        .map_err(|e| anyhow!("rendering the chat template: {e}"))
    }
}
