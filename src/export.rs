//! `dialogym export`: a corpus in the shapes other trainers read, streamed one shard at a time.
//!
//! - `trl`: TRL's conversational format, from the agent's point of view: the scenario's
//!   agent brief as the `system` message, agent utterances as `assistant`, persona replies as
//!   `user`. One row per episode (`messages`, `reward`, `return`) or, with `--per-turn`, one
//!   row per agent turn (`prompt`, `completion`, `reward`, `return`, `done`). JSONL or Parquet.
//! - `lmrl`: LMRL-Gym's `TextTrajectory`: `text_history` of `[text, is_action]` pairs, one
//!   `reward` per text (0 on non-actions, as its `__post_init__` asserts), `done`. JSONL.
//! - `trlx`: the arguments of `trlx.train` for ILQL: one JSON object with `samples`
//!   (alternating prompt/output strings, the brief first) and `rewards` (one scalar per sample).
//!
//! Memory is bounded by one shard of the corpus (plus, for `trlx`, 8 bytes per episode for
//! the rewards array written after the samples). The output is written to `PATH.tmp` and
//! renamed when complete, like corpus shards. See docs/pipelines.md.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray, UInt32Array,
    UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use dialogym_engine::corpus::{self, EpisodeRecord, Format, Manifest, shard_name};
use dialogym_engine::{Message, Role};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

/// The consuming tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// TRL's conversational format (SFT, DPO-style prompt/completion, reward-weighted).
    Trl,
    /// LMRL-Gym's text trajectories.
    Lmrl,
    /// trlx ILQL's `samples` and `rewards`.
    Trlx,
}

/// The file type of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// One JSON object per line (for `trlx`: one JSON object).
    Jsonl,
    /// Apache Parquet (`trl` only).
    Parquet,
}

/// `dialogym export` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// The corpus folder (from `generate` or `serve --record`), JSONL or Parquet shards.
    #[arg(long)]
    pub corpus: PathBuf,
    /// The consuming tool's format.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// jsonl or parquet (default: from the extension of --out; parquet is for `trl` only).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// `trl` only: one row per agent turn (`prompt`/`completion`) instead of per episode.
    #[arg(long)]
    pub per_turn: bool,
}

/// What an export did.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    /// Episodes read.
    pub episodes: u64,
    /// Rows written (episodes, or agent turns with `--per-turn`).
    pub rows: u64,
    /// Shards read.
    pub shards: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Reads shard `k` of a corpus: its JSONL file when the corpus has one, else its Parquet
/// file. The one place that reads shards, so another reader can replace it.
pub fn read_shard(dir: &Path, manifest: &Manifest, k: u64) -> Result<Vec<EpisodeRecord>> {
    let missing =
        |p: &Path| anyhow!("{}: shard missing (the run was interrupted? finish it with --resume)", p.display());
    if manifest.formats.contains(&Format::Jsonl) {
        let path = dir.join(shard_name(k, Format::Jsonl));
        if !path.exists() {
            return Err(missing(&path));
        }
        let mut rows = Vec::new();
        corpus::read_jsonl(&path, &mut rows)?;
        return Ok(rows);
    }
    let path = dir.join(shard_name(k, Format::Parquet));
    if !path.exists() {
        return Err(missing(&path));
    }
    read_parquet(&path)
}

/// Reads the rows of one Parquet shard (the schema of `corpus::arrow_schema`).
pub fn read_parquet(path: &Path) -> Result<Vec<EpisodeRecord>> {
    let bad = |e: &dyn std::fmt::Display| anyhow!("{}: not a dialogym Parquet shard: {e}", path.display());
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        batch_rows(&batch, &mut rows).map_err(|e| bad(&e))?;
    }
    Ok(rows)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .ok_or_else(|| anyhow!("no column `{name}`"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow!("column `{name}` has type {:?}", batch.column_by_name(name).map(|c| c.data_type())))
}

fn list_values<'a, T: 'static>(list: &'a ListArray, name: &str) -> Result<&'a T> {
    list.values().as_any().downcast_ref::<T>().ok_or_else(|| anyhow!("column `{name}`: unexpected item type"))
}

fn batch_rows(b: &RecordBatch, rows: &mut Vec<EpisodeRecord>) -> Result<()> {
    let schema_version = column::<UInt32Array>(b, "schema_version")?;
    let run_id = column::<StringArray>(b, "run_id")?;
    let episode = column::<UInt64Array>(b, "episode")?;
    let seed = column::<UInt64Array>(b, "seed")?;
    let scenario = column::<StringArray>(b, "scenario")?;
    let agent = column::<StringArray>(b, "agent")?;
    let persona = column::<StringArray>(b, "persona")?;
    let hidden = column::<StringArray>(b, "hidden")?;
    let messages = column::<ListArray>(b, "messages")?;
    let msg = list_values::<StructArray>(messages, "messages")?;
    let str_field = |name: &str| -> Result<&StringArray> {
        msg.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| anyhow!("messages: no text field `{name}`"))
    };
    let (roles, contents) = (str_field("role")?, str_field("content")?);
    let is_action = msg
        .column_by_name("is_action")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .ok_or_else(|| anyhow!("messages: no boolean field `is_action`"))?;
    let rewards = column::<ListArray>(b, "rewards")?;
    let reward_values = list_values::<Float64Array>(rewards, "rewards")?;
    let dones = column::<ListArray>(b, "dones")?;
    let done_values = list_values::<BooleanArray>(dones, "dones")?;
    let ret = column::<Float64Array>(b, "return")?;
    let success = column::<BooleanArray>(b, "success")?;
    let turns = column::<UInt32Array>(b, "turns")?;
    let metrics = column::<StringArray>(b, "metrics")?;
    let span = |l: &ListArray, i: usize| {
        let o = l.value_offsets();
        o[i] as usize..o[i + 1] as usize
    };
    for i in 0..b.num_rows() {
        let msgs = span(messages, i)
            .map(|j| {
                let role = match roles.value(j) {
                    "agent" => Role::Agent,
                    "persona" => Role::Persona,
                    other => bail!("row {i}: unknown role `{other}`"),
                };
                Ok(Message { role, content: contents.value(j).to_string(), is_action: is_action.value(j) })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push(EpisodeRecord {
            schema_version: schema_version.value(i),
            run_id: run_id.value(i).to_string(),
            episode: episode.value(i),
            seed: seed.value(i),
            scenario: scenario.value(i).to_string(),
            agent: agent.value(i).to_string(),
            persona: persona.value(i).to_string(),
            hidden: serde_json::from_str(hidden.value(i)).map_err(|e| anyhow!("row {i}: hidden: {e}"))?,
            messages: msgs,
            rewards: span(rewards, i).map(|j| reward_values.value(j)).collect(),
            dones: span(dones, i).map(|j| done_values.value(j)).collect(),
            ret: ret.value(i),
            success: success.value(i),
            turns: turns.value(i),
            metrics: serde_json::from_str(metrics.value(i)).map_err(|e| anyhow!("row {i}: metrics: {e}"))?,
        });
    }
    Ok(())
}

/// The agent's actions of an episode: (message index, reward of the action = the sum of
/// rewards from it to the next action, reward-to-go from it, done after it and its reply).
pub fn actions(r: &EpisodeRecord) -> Vec<(usize, f64, f64, bool)> {
    let idx: Vec<usize> = (0..r.messages.len()).filter(|&i| r.messages[i].role == Role::Agent).collect();
    let mut out: Vec<(usize, f64, f64, bool)> = idx
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let end = idx.get(n + 1).copied().unwrap_or(r.messages.len());
            (i, r.rewards[i..end].iter().sum(), 0.0, r.dones[i..end].iter().any(|&d| d))
        })
        .collect();
    let mut to_go = 0.0;
    for a in out.iter_mut().rev() {
        to_go += a.1;
        a.2 = to_go;
    }
    out
}

fn chat_role(role: Role) -> &'static str {
    match role {
        Role::Agent => "assistant",
        Role::Persona => "user",
    }
}

/// The agent briefs by scenario id, loaded once each.
#[derive(Default)]
pub struct Briefs(HashMap<String, Arc<str>>);

impl Briefs {
    /// The agent brief of scenario `id` (as recorded in corpus rows).
    pub fn get(&mut self, id: &str) -> Result<Arc<str>> {
        if let Some(b) = self.0.get(id) {
            return Ok(b.clone());
        }
        let brief: Arc<str> = crate::session::load(id)
            .with_context(|| format!("cannot load scenario `{id}` named in the corpus (for its agent brief)"))?
            .agent_brief()
            .into();
        self.0.insert(id.to_string(), brief.clone());
        Ok(brief)
    }
}

/// The TRL rows of one episode: `(messages or prompt, completion, reward, return, done)`.
pub struct TrlRow<'a> {
    /// The episode.
    pub record: &'a EpisodeRecord,
    /// The conversation (per episode) or the prompt (per turn): (role, content).
    pub messages: Vec<(&'static str, &'a str)>,
    /// The agent's utterance (per turn only).
    pub completion: Option<&'a str>,
    /// Per episode: the return; per turn: the reward of this action.
    pub reward: f64,
    /// Per episode: the return; per turn: the reward-to-go from this action.
    pub ret: f64,
    /// Per turn: the episode ended after this action (and its reply).
    pub done: bool,
    /// Per turn: the 0-based agent turn.
    pub turn: u32,
}

/// Turns one episode into TRL rows.
pub fn trl_rows<'a>(r: &'a EpisodeRecord, brief: &'a str, per_turn: bool) -> Vec<TrlRow<'a>> {
    let conv = |upto: usize| -> Vec<(&'static str, &'a str)> {
        std::iter::once(("system", brief))
            .chain(r.messages[..upto].iter().map(|m| (chat_role(m.role), m.content.as_str())))
            .collect()
    };
    if !per_turn {
        return vec![TrlRow {
            record: r,
            messages: conv(r.messages.len()),
            completion: None,
            reward: r.ret,
            ret: r.ret,
            done: true,
            turn: 0,
        }];
    }
    actions(r)
        .into_iter()
        .enumerate()
        .map(|(n, (i, reward, ret, done))| TrlRow {
            record: r,
            messages: conv(i),
            completion: Some(r.messages[i].content.as_str()),
            reward,
            ret,
            done,
            turn: n as u32,
        })
        .collect()
}

fn chat_json(messages: &[(&str, &str)]) -> Value {
    Value::Array(messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect())
}

fn trl_json(row: &TrlRow<'_>) -> Value {
    let r = row.record;
    let mut v = match row.completion {
        None => json!({"messages": chat_json(&row.messages)}),
        Some(c) => json!({
            "prompt": chat_json(&row.messages),
            "completion": chat_json(&[("assistant", c)]),
        }),
    };
    let o = v.as_object_mut().expect("an object");
    o.insert("reward".into(), json!(row.reward));
    o.insert("return".into(), json!(row.ret));
    if row.completion.is_some() {
        o.insert("done".into(), json!(row.done));
        o.insert("turn".into(), json!(row.turn));
    }
    o.insert("success".into(), json!(r.success));
    o.insert("scenario".into(), json!(r.scenario));
    o.insert("agent".into(), json!(r.agent));
    o.insert("persona".into(), json!(r.persona));
    o.insert("run_id".into(), json!(r.run_id));
    o.insert("episode".into(), json!(r.episode));
    v
}

/// The LMRL-Gym `TextTrajectory` of an episode, with the brief as the first (non-action) text.
pub fn lmrl_json(r: &EpisodeRecord, brief: &str) -> Value {
    let mut history = vec![json!([brief, false])];
    let mut reward = vec![0.0];
    let acts = actions(r);
    let mut next = acts.iter().peekable();
    for (i, m) in r.messages.iter().enumerate() {
        history.push(json!([m.content, m.is_action]));
        match next.peek() {
            Some(&&(j, rew, _, _)) if j == i => {
                reward.push(rew);
                next.next();
            }
            _ => reward.push(0.0),
        }
    }
    json!({
        "text_history": history,
        "reward": reward,
        "done": r.dones.last().copied().unwrap_or(false),
        "return": r.ret,
        "success": r.success,
        "scenario": r.scenario,
        "agent": r.agent,
        "persona": r.persona,
        "run_id": r.run_id,
        "episode": r.episode,
    })
}

/// trlx ILQL's sample of an episode: [brief, action, reply, action, ...], ending on an
/// action (a persona reply after the last action is dropped: trlx needs an even count).
pub fn trlx_sample(r: &EpisodeRecord, brief: &str) -> Vec<String> {
    let last_action = r.messages.iter().rposition(|m| m.role == Role::Agent);
    let Some(last) = last_action else { return Vec::new() };
    let mut out = vec![brief.to_string()];
    for m in &r.messages[..=last] {
        match (m.role, out.len() % 2) {
            // An output slot (odd index) takes the agent; a prompt slot the persona.
            (Role::Agent, 1) | (Role::Persona, 0) => out.push(m.content.clone()),
            // Two persona messages in a row join one prompt; two agent messages get an
            // empty prompt between them (never happens: messages alternate).
            (Role::Persona, _) => {
                if let Some(p) = out.last_mut() {
                    p.push('\n');
                    p.push_str(&m.content);
                }
            }
            (Role::Agent, _) => {
                out.push(String::new());
                out.push(m.content.clone());
            }
        }
    }
    out
}

enum Sink {
    Jsonl(BufWriter<File>),
    Parquet(Box<ArrowWriter<BufWriter<File>>>, Arc<Schema>),
    Trlx { w: BufWriter<File>, rewards: Vec<f64>, first: bool },
}

fn msg_fields() -> Fields {
    Fields::from(vec![Field::new("role", DataType::Utf8, false), Field::new("content", DataType::Utf8, false)])
}

fn chat_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(msg_fields()), false)))
}

/// The Parquet schema of a `trl` export.
pub fn trl_schema(per_turn: bool) -> Arc<Schema> {
    let mut f = if per_turn {
        vec![Field::new("prompt", chat_type(), false), Field::new("completion", chat_type(), false)]
    } else {
        vec![Field::new("messages", chat_type(), false)]
    };
    f.push(Field::new("reward", DataType::Float64, false));
    f.push(Field::new("return", DataType::Float64, false));
    if per_turn {
        f.push(Field::new("done", DataType::Boolean, false));
        f.push(Field::new("turn", DataType::UInt32, false));
    }
    f.extend([
        Field::new("success", DataType::Boolean, false),
        Field::new("scenario", DataType::Utf8, false),
        Field::new("agent", DataType::Utf8, false),
        Field::new("persona", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("episode", DataType::UInt64, false),
    ]);
    Arc::new(Schema::new(f))
}

fn chat_array<'a>(convs: impl Iterator<Item = Vec<(&'a str, &'a str)>> + Clone) -> Result<ArrayRef> {
    let all = || convs.clone().flatten();
    let structs = StructArray::try_new(
        msg_fields(),
        vec![
            Arc::new(StringArray::from_iter_values(all().map(|m| m.0))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(all().map(|m| m.1))),
        ],
        None,
    )?;
    let offsets = OffsetBuffer::<i32>::from_lengths(convs.map(|c| c.len()));
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", DataType::Struct(msg_fields()), false)),
        offsets,
        Arc::new(structs),
        None,
    )?))
}

fn trl_batch<'a>(schema: &Arc<Schema>, rows: &'a [TrlRow<'a>], per_turn: bool) -> Result<RecordBatch> {
    let s = |f: &dyn Fn(&'a TrlRow<'a>) -> &'a str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let mut cols: Vec<ArrayRef> = vec![chat_array(rows.iter().map(|r| r.messages.clone()))?];
    if per_turn {
        cols.push(chat_array(rows.iter().map(|r| vec![("assistant", r.completion.unwrap_or(""))]))?);
    }
    cols.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.reward))));
    cols.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.ret))));
    if per_turn {
        cols.push(Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.done)))));
        cols.push(Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.turn))));
    }
    cols.push(Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.record.success)))));
    cols.push(s(&|r| &r.record.scenario));
    cols.push(s(&|r| &r.record.agent));
    cols.push(s(&|r| &r.record.persona));
    cols.push(s(&|r| &r.record.run_id));
    cols.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.record.episode))));
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Runs an export. Stops with an error (the output left unfinished as `PATH.tmp`, removed)
/// when `stop` becomes true.
pub fn export(args: &ExportArgs, stop: &AtomicBool) -> Result<ExportSummary> {
    let start = Instant::now();
    let format = match args.format {
        Some(f) => f,
        None => match args.out.extension().and_then(|e| e.to_str()) {
            Some("parquet") => OutFormat::Parquet,
            _ => OutFormat::Jsonl,
        },
    };
    if format == OutFormat::Parquet && args.to != Target::Trl {
        bail!("--to {:?}: Parquet output is for `trl` only; write JSONL (e.g. --out export.jsonl)", args.to);
    }
    if args.per_turn && args.to != Target::Trl {
        bail!("--per-turn is for `--to trl` only");
    }
    let manifest = Manifest::load(&args.corpus)?;
    if manifest.shard_size == 0 {
        bail!("{}: shard_size 0 in the manifest", args.corpus.display());
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = tmp_path(&args.out);
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let w = BufWriter::with_capacity(1 << 20, file);
    let mut sink = match (args.to, format) {
        (Target::Trlx, _) => Sink::Trlx { w, rewards: Vec::new(), first: true },
        (_, OutFormat::Jsonl) => Sink::Jsonl(w),
        (_, OutFormat::Parquet) => {
            let schema = trl_schema(args.per_turn);
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("dialogym {}", env!("CARGO_PKG_VERSION")))
                .build();
            Sink::Parquet(Box::new(ArrowWriter::try_new(w, schema.clone(), Some(props))?), schema)
        }
    };
    let result = (|| -> Result<ExportSummary> {
        let mut briefs = Briefs::default();
        let mut summary = ExportSummary { episodes: 0, rows: 0, shards: 0, seconds: 0.0 };
        if let Sink::Trlx { w, .. } = &mut sink {
            w.write_all(b"{\"samples\":[")?;
        }
        for k in 0..manifest.shards() {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let rows = read_shard(&args.corpus, &manifest, k)?;
            summary.shards += 1;
            summary.episodes += rows.len() as u64;
            let mut b = Vec::with_capacity(rows.len());
            for r in &rows {
                b.push(briefs.get(&r.scenario)?);
            }
            match &mut sink {
                Sink::Jsonl(w) => {
                    for (r, brief) in rows.iter().zip(&b) {
                        let values = match args.to {
                            Target::Lmrl => vec![lmrl_json(r, brief)],
                            _ => trl_rows(r, brief, args.per_turn).iter().map(trl_json).collect(),
                        };
                        for v in values {
                            serde_json::to_writer(&mut *w, &v)?;
                            w.write_all(b"\n")?;
                            summary.rows += 1;
                        }
                    }
                }
                Sink::Parquet(writer, schema) => {
                    let out: Vec<TrlRow<'_>> =
                        rows.iter().zip(&b).flat_map(|(r, brief)| trl_rows(r, brief, args.per_turn)).collect();
                    summary.rows += out.len() as u64;
                    writer.write(&trl_batch(schema, &out, args.per_turn)?)?;
                }
                Sink::Trlx { w, rewards, first } => {
                    for (r, brief) in rows.iter().zip(&b) {
                        let sample = trlx_sample(r, brief);
                        if sample.is_empty() {
                            continue;
                        }
                        if !*first {
                            w.write_all(b",")?;
                        }
                        *first = false;
                        serde_json::to_writer(&mut *w, &sample)?;
                        rewards.push(r.ret);
                        summary.rows += 1;
                    }
                }
            }
        }
        let file = match sink {
            Sink::Jsonl(w) => w.into_inner().map_err(|e| anyhow!("{}", e.error()))?,
            Sink::Parquet(writer, _) => writer.into_inner()?.into_inner().map_err(|e| anyhow!("{}", e.error()))?,
            Sink::Trlx { mut w, rewards, .. } => {
                w.write_all(b"],\"rewards\":")?;
                serde_json::to_writer(&mut w, &rewards)?;
                w.write_all(b"}\n")?;
                w.into_inner().map_err(|e| anyhow!("{}", e.error()))?
            }
        };
        file.sync_all()?;
        summary.seconds = start.elapsed().as_secs_f64();
        Ok(summary)
    })();
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, &args.out)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), args.out.display()))?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("exporting {} to {}", args.corpus.display(), args.out.display())))
        }
    }
}
