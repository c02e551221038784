//! The trajectory corpus: one row per episode, in JSONL and Parquet shards, crash-safe.
//!
//! A corpus is a folder:
//!
//! ```text
//! manifest.json              the run: command, version, seed, config (written first)
//! episodes-00000.jsonl       episodes [0, shard_size) in index order, one JSON object a line
//! episodes-00000.parquet     the same rows, columnar
//! episodes-00001.jsonl ...
//! ```
//!
//! Each shard is written to `NAME.tmp`, fsynced, then renamed, and the folder fsynced: a file
//! with a final name is complete. `--resume` keeps the complete shards and plays only the
//! episodes of the others; as every episode depends only on (seed, index), the resumed
//! corpus is byte-identical to an uninterrupted run.
//!
//! Row semantics (`schema_version` 1):
//! - `messages[i]`: role (`agent`|`persona`), content, `is_action` (true for agent turns).
//! - `rewards[i]`: the reward the judge emitted right after message `i`; in every shipped
//!   scenario it lands on agent messages. The reward of an action is the sum from it to
//!   the next action.
//! - `dones[i]`: true iff the episode ended right after message `i` (so only the last is
//!   true). NB: trlx's ILQL uses the opposite convention (1 = not done).
//! - `return` = sum of rewards; `success` as the scenario defines it; `turns` = agent
//!   messages; `seed` = the episode's own seed, derived from the run seed and `episode`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use crossbeam_channel::{Receiver, Sender};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::transcript::{Message, Role};

/// Version of the row layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// One episode, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// Row layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The run that made this row.
    pub run_id: String,
    /// Index of the episode in its run.
    pub episode: u64,
    /// The episode's own seed (derived from the run seed and the index).
    pub seed: u64,
    /// Canonical scenario spec.
    pub scenario: String,
    /// Canonical agent spec (the drawn component, for mixtures).
    pub agent: String,
    /// Canonical persona spec.
    pub persona: String,
    /// The persona's hidden state.
    pub hidden: serde_json::Value,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Reward emitted after each message.
    pub rewards: Vec<f64>,
    /// True after the message that ended the episode.
    pub dones: Vec<bool>,
    /// Sum of rewards.
    #[serde(rename = "return")]
    pub ret: f64,
    /// Whether the agent reached the goal.
    pub success: bool,
    /// Number of agent messages.
    pub turns: u32,
    /// Scenario-specific measurements (e.g. `info_gain_bits`).
    pub metrics: BTreeMap<String, f64>,
}

/// Which files a corpus holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (snappy), for pandas, pyarrow, HF datasets, Spark.
    Parquet,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// The run's description, written before any episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Row layout version.
    pub schema_version: u32,
    /// dialogym's version.
    pub dialogym_version: String,
    /// Hash of the config: the same config gives the same id.
    pub run_id: String,
    /// The command line that made the run (without `--resume`).
    pub command: Vec<String>,
    /// Master seed.
    pub seed: u64,
    /// Total episodes.
    pub episodes: u64,
    /// Episodes per shard.
    pub shard_size: u64,
    /// Files written per shard.
    pub formats: Vec<Format>,
    /// Everything else that determines the content (scenario, agents, personas).
    pub config: serde_json::Value,
    /// Set when this folder is one part of a run split over several jobs
    /// (`generate --shard I/N`): it holds only the shards [`ShardOf::owns`]. Absent in a
    /// whole corpus, so a part and a whole share the run id and the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardOf>,
}

/// Part `index` of `count` of a run split over independent jobs: the part holds the
/// corpus shards `k` with `k % count == index` (round-robin, so parts differ by at most
/// one shard), each byte-identical to the same shard of a one-process run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardOf {
    /// This part, in `0..count`.
    pub index: u64,
    /// Number of parts.
    pub count: u64,
}

impl ShardOf {
    /// Whether corpus shard `k` belongs to this part.
    pub fn owns(&self, k: u64) -> bool {
        k % self.count == self.index
    }
}

impl Manifest {
    /// Builds a manifest and derives its run id from everything but the command.
    pub fn new(
        command: Vec<String>,
        seed: u64,
        episodes: u64,
        shard_size: u64,
        formats: Vec<Format>,
        config: serde_json::Value,
    ) -> Manifest {
        let mut m = Manifest {
            schema_version: SCHEMA_VERSION,
            dialogym_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: String::new(),
            command,
            seed,
            episodes,
            shard_size,
            formats,
            config,
            shard: None,
        };
        let key = serde_json::json!([m.seed, m.episodes, m.shard_size, m.formats, m.config]).to_string();
        m.run_id = format!("{:016x}", crate::util::fnv1a(key.as_bytes()));
        m
    }

    /// Number of shards.
    pub fn shards(&self) -> u64 {
        self.episodes.div_ceil(self.shard_size)
    }

    /// Whether this folder is meant to hold corpus shard `k` (every shard, unless the
    /// manifest names a part).
    pub fn owns(&self, k: u64) -> bool {
        self.shard.is_none_or(|p| p.owns(k))
    }

    /// Episode indices of shard `k`.
    pub fn shard_range(&self, k: u64) -> std::ops::Range<u64> {
        k * self.shard_size..((k + 1) * self.shard_size).min(self.episodes)
    }

    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
    }
}

const MANIFEST: &str = "manifest.json";

/// File name of shard `k` in `format`.
pub fn shard_name(k: u64, format: Format) -> String {
    format!("episodes-{k:05}.{}", format.extension())
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
    let file = w.into_inner().map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
    file.sync_all().with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        // Makes the rename itself durable; not every filesystem allows it, and the data
        // is already safe, so a failure here is not an error.
        let _ = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Prepares `dir` for a run and says which episodes remain to be played.
///
/// Fresh run: `dir` must not hold a corpus already. Resume: the stored manifest must match
/// `manifest` (all but the command), complete shards are checked and kept, leftover temp
/// files are removed.
pub fn prepare(dir: &Path, manifest: &Manifest, resume: bool) -> Result<(BTreeSet<u64>, Vec<u64>)> {
    if manifest.shard_size == 0 {
        bail!("shard size must be at least 1");
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create output folder {}", dir.display()))?;
    let mut done = BTreeSet::new();
    let path = dir.join(MANIFEST);
    if path.exists() {
        if !resume {
            bail!("{} already holds a corpus; pass --resume to finish it or choose another --out", dir.display());
        }
        let stored = Manifest::load(dir).context("corrupt resume state")?;
        let strip = |m: &Manifest| Manifest { command: Vec::new(), ..m.clone() };
        if strip(&stored) != strip(manifest) {
            bail!(
                "cannot resume: {} was made with another config (run {} vs {}); \
                 use the same arguments or another --out",
                path.display(),
                stored.run_id,
                manifest.run_id
            );
        }
        for k in (0..manifest.shards()).filter(|&k| manifest.owns(k)) {
            if shard_is_complete(dir, manifest, k)? {
                done.insert(k);
            }
        }
    } else {
        write_atomic(&path, |w| {
            serde_json::to_writer_pretty(&mut *w, manifest)?;
            w.write_all(b"\n")?;
            Ok(())
        })
        .with_context(|| format!("cannot write to output folder {}", dir.display()))?;
    }
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let todo = (0..manifest.shards())
        .filter(|k| manifest.owns(*k) && !done.contains(k))
        .flat_map(|k| manifest.shard_range(k))
        .collect();
    Ok((done, todo))
}

/// A shard counts as complete when every format's file exists; its JSONL must then hold
/// exactly the shard's rows, else the state is corrupt and we say which file.
pub fn shard_is_complete(dir: &Path, manifest: &Manifest, k: u64) -> Result<bool> {
    for &f in &manifest.formats {
        if !dir.join(shard_name(k, f)).exists() {
            return Ok(false);
        }
    }
    if manifest.formats.contains(&Format::Jsonl) {
        let path = dir.join(shard_name(k, Format::Jsonl));
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let want = manifest.shard_range(k).count() as u64;
        if lines != want || bytes.last() != Some(&b'\n') {
            bail!(
                "corrupt resume state: {} holds {lines} complete rows, expected {want}; delete it and rerun with --resume",
                path.display()
            );
        }
    }
    Ok(true)
}

/// Receives finished episodes in any order and writes each shard once all its rows arrived.
pub struct ShardWriter {
    dir: PathBuf,
    manifest: Manifest,
    /// Shards being filled: their rows by slot, and how many slots are filled.
    open: BTreeMap<u64, (Vec<Option<EpisodeRecord>>, usize)>,
    /// Shards written by this writer.
    pub written: u64,
}

impl ShardWriter {
    /// A writer for the run described by `manifest` into `dir` (after [`prepare`]).
    pub fn new(dir: &Path, manifest: &Manifest) -> Self {
        ShardWriter { dir: dir.to_path_buf(), manifest: manifest.clone(), open: BTreeMap::new(), written: 0 }
    }

    /// Adds one episode; writes its shard when complete.
    pub fn push(&mut self, record: EpisodeRecord) -> Result<()> {
        let m = &self.manifest;
        let k = record.episode / m.shard_size;
        let range = m.shard_range(k);
        if !range.contains(&record.episode) {
            bail!("episode {} is outside the run's {} episodes", record.episode, m.episodes);
        }
        let slot = (record.episode - range.start) as usize;
        let (rows, filled) = self.open.entry(k).or_insert_with(|| (vec![None; range.clone().count()], 0));
        if rows[slot].replace(record).is_some() {
            bail!("episode {} arrived twice", range.start + slot as u64);
        }
        *filled += 1;
        if *filled == rows.len() {
            let rows: Vec<EpisodeRecord> =
                self.open.remove(&k).map(|(r, _)| r).unwrap_or_default().into_iter().flatten().collect();
            self.write_shard(k, &rows)?;
        }
        Ok(())
    }

    fn write_shard(&mut self, k: u64, rows: &[EpisodeRecord]) -> Result<()> {
        for &f in &self.manifest.formats {
            let path = self.dir.join(shard_name(k, f));
            match f {
                Format::Jsonl => write_atomic(&path, |w| write_jsonl(w, rows))?,
                Format::Parquet => write_atomic(&path, |w| write_parquet(w, rows))?,
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Episodes received but not yet written (an interrupted run loses only these).
    pub fn pending(&self) -> usize {
        self.open.values().map(|(_, filled)| filled).sum()
    }
}

/// Runs a [`ShardWriter`] on its own thread; returns the sender the world records into.
pub fn spawn_writer(mut writer: ShardWriter) -> (Sender<EpisodeRecord>, JoinHandle<Result<ShardWriter>>) {
    let (tx, rx): (Sender<EpisodeRecord>, Receiver<EpisodeRecord>) = crossbeam_channel::bounded(4096);
    let handle = std::thread::Builder::new()
        .name("corpus-writer".into())
        .spawn(move || {
            for record in rx {
                writer.push(record)?;
            }
            Ok(writer)
        })
        .expect("spawning the writer thread");
    (tx, handle)
}

/// Writes rows as JSON lines.
pub fn write_jsonl(w: &mut impl Write, rows: &[EpisodeRecord]) -> Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *w, r)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// The Parquet schema of a corpus shard. `hidden` and `metrics` are JSON text (their shape
/// is the scenario's).
pub fn arrow_schema() -> Arc<Schema> {
    let item = |dt: DataType| Arc::new(Field::new("item", dt, false));
    Arc::new(Schema::new(vec![
        Field::new("schema_version", DataType::UInt32, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("episode", DataType::UInt64, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("scenario", DataType::Utf8, false),
        Field::new("agent", DataType::Utf8, false),
        Field::new("persona", DataType::Utf8, false),
        Field::new("hidden", DataType::Utf8, false),
        Field::new("messages", DataType::List(item(DataType::Struct(message_fields()))), false),
        Field::new("rewards", DataType::List(item(DataType::Float64)), false),
        Field::new("dones", DataType::List(item(DataType::Boolean)), false),
        Field::new("return", DataType::Float64, false),
        Field::new("success", DataType::Boolean, false),
        Field::new("turns", DataType::UInt32, false),
        Field::new("metrics", DataType::Utf8, false),
    ]))
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("is_action", DataType::Boolean, false),
    ])
}

fn list_of(values: ArrayRef, lengths: impl Iterator<Item = usize>, dt: DataType) -> Result<ArrayRef> {
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    Ok(Arc::new(ListArray::try_new(Arc::new(Field::new("item", dt, false)), offsets, values, None)?))
}

/// Writes rows as one Parquet row group.
pub fn write_parquet(w: &mut (impl Write + Send), rows: &[EpisodeRecord]) -> Result<()> {
    let schema = arrow_schema();
    let s = |f: &dyn Fn(&EpisodeRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let all_msgs = || rows.iter().flat_map(|r| r.messages.iter());
    let messages = StructArray::try_new(
        message_fields(),
        vec![
            Arc::new(StringArray::from_iter_values(all_msgs().map(|m| m.role.as_str()))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(all_msgs().map(|m| m.content.as_str()))),
            Arc::new(BooleanArray::from_iter(all_msgs().map(|m| Some(m.is_action)))),
        ],
        None,
    )?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.schema_version))),
        s(&|r| &r.run_id),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.episode))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seed))),
        s(&|r| &r.scenario),
        s(&|r| &r.agent),
        s(&|r| &r.persona),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.hidden.to_string()))),
        list_of(Arc::new(messages), rows.iter().map(|r| r.messages.len()), DataType::Struct(message_fields()))?,
        list_of(
            Arc::new(Float64Array::from_iter_values(rows.iter().flat_map(|r| r.rewards.iter().copied()))),
            rows.iter().map(|r| r.rewards.len()),
            DataType::Float64,
        )?,
        list_of(
            Arc::new(BooleanArray::from_iter(rows.iter().flat_map(|r| r.dones.iter().map(|&d| Some(d))))),
            rows.iter().map(|r| r.dones.len()),
            DataType::Boolean,
        )?,
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.ret))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.success)))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.turns))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| serde_json::to_string(&r.metrics).unwrap_or_else(|_| "{}".into())),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("dialogym {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(w, schema, Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

/// Reads every episode of a corpus folder (JSONL shards, in order).
pub fn read_corpus(dir: &Path) -> Result<(Manifest, Vec<EpisodeRecord>)> {
    let manifest = Manifest::load(dir)?;
    if let Some(p) = manifest.shard {
        bail!(
            "{}: this is part {}/{} of a sharded run; merge the parts first with `dialogym corpus merge OUT PART...`",
            dir.display(),
            p.index,
            p.count
        );
    }
    if !manifest.formats.contains(&Format::Jsonl) {
        bail!("{}: this corpus has no JSONL shards (formats {:?})", dir.display(), manifest.formats);
    }
    let mut rows = Vec::new();
    for k in 0..manifest.shards() {
        let path = dir.join(shard_name(k, Format::Jsonl));
        if !path.exists() {
            bail!("{}: shard missing (the run was interrupted? finish it with --resume)", path.display());
        }
        read_jsonl(&path, &mut rows)?;
    }
    Ok((manifest, rows))
}

/// Appends the rows of one JSONL file, naming file and line on any error.
pub fn read_jsonl(path: &Path, rows: &mut Vec<EpisodeRecord>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: EpisodeRecord = serde_json::from_str(&line)
            .map_err(|e| anyhow!("{}:{}:{}: not an episode row: {e}", path.display(), i + 1, e.column()))?;
        if row.schema_version != SCHEMA_VERSION {
            bail!(
                "{}:{}: schema_version {} (this build reads {SCHEMA_VERSION})",
                path.display(),
                i + 1,
                row.schema_version
            );
        }
        check_row(&row).map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        rows.push(row);
    }
    Ok(())
}

fn check_row(r: &EpisodeRecord) -> Result<()> {
    if r.rewards.len() != r.messages.len() || r.dones.len() != r.messages.len() {
        bail!("rewards/dones must have one entry per message");
    }
    for (i, m) in r.messages.iter().enumerate() {
        if m.is_action != (m.role == Role::Agent) {
            bail!("message {i}: is_action must be true exactly for agent messages");
        }
    }
    Ok(())
}
