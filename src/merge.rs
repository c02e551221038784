//! `dialogym corpus merge OUT PART...`: joins the parts of a run split over independent
//! jobs (`generate --shard I/N`) into one corpus.
//!
//! Before writing anything it checks that the parts belong to one run (the same manifest
//! but for the command and the part), that every corpus shard is complete in exactly one
//! part, and that each shard's rows are the run's (run id) and its episodes, each once,
//! in index order; a checksum a part's manifest records for a file is verified too. The
//! shard files are then copied unchanged (each via a temp file, fsync, rename), so the
//! merged corpus is byte-identical to a one-process run with the same arguments, manifest
//! included: its command is the parts' command without `--shard` and with `--out OUT`.
//!
//! With Parquet shards the merge also lays them out as a Hugging Face dataset:
//! `data/train-0000K-of-0000N.parquet` (hard links to the shards where the filesystem
//! allows, else copies) and a `README.md` dataset card whose YAML header names the
//! features, so `datasets.load_dataset(OUT)` loads the corpus. The manifest is written
//! last: a folder without one is an unfinished merge, and rerunning the merge redoes it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use arrow_schema::DataType;
use dialogym_engine::corpus::{self, EpisodeRecord, Format, Manifest, shard_name};
use sha2::{Digest, Sha256};

/// `corpus merge` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct MergeArgs {
    /// The merged corpus folder (must not hold a corpus yet).
    pub out: PathBuf,
    /// The part folders written by `generate --shard I/N` (any order).
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
}

/// What a merge did.
#[derive(Clone, Debug)]
pub struct MergeSummary {
    /// Parts read.
    pub parts: usize,
    /// Episodes in the merged corpus.
    pub episodes: u64,
    /// Corpus shards.
    pub shards: u64,
    /// Shard files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Folder of the Hugging Face layout inside a merged corpus.
pub const HF_DATA_DIR: &str = "data";

/// File name of shard `k` of `n` in the Hugging Face layout.
pub fn hf_name(k: u64, n: u64) -> String {
    format!("train-{k:05}-of-{n:05}.parquet")
}

struct Part {
    dir: PathBuf,
    manifest: Manifest,
    /// The manifest as JSON, to find checksums recorded beside the fields this build knows.
    raw: serde_json::Value,
}

/// Checks the parts and writes the merged corpus to `args.out`.
pub fn merge(args: &MergeArgs, stop: &AtomicBool) -> Result<MergeSummary> {
    let start = Instant::now();
    let parts = args.parts.iter().map(|dir| load_part(dir)).collect::<Result<Vec<_>>>()?;
    let base = &parts[0];
    let m = &base.manifest;
    for p in &parts[1..] {
        same_run(base, p)?;
    }
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            if fs::canonicalize(&a.dir).ok() == fs::canonicalize(&b.dir).ok() {
                bail!("{} is given twice", a.dir.display());
            }
            if let (Some(x), Some(y)) = (a.manifest.shard, b.manifest.shard)
                && x == y
            {
                bail!("{} and {} are both part {}/{}", a.dir.display(), b.dir.display(), x.index, x.count);
            }
        }
    }
    // Which part holds each shard: exactly one, complete, with the run's rows.
    let mut owner = Vec::with_capacity(m.shards() as usize);
    for k in 0..m.shards() {
        let mut holders = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if corpus::shard_is_complete(&p.dir, &p.manifest, k)? {
                holders.push(i);
            }
        }
        let range = m.shard_range(k);
        match holders[..] {
            [i] => owner.push(i),
            [] => {
                let hint = match parts.iter().find(|p| p.manifest.owns(k)) {
                    Some(p) => {
                        format!("{} should hold it: finish that job with `generate ... --resume`", p.dir.display())
                    }
                    None => format!(
                        "no part given owns it{}",
                        m_count(&parts)
                            .map(|n| format!(" (is part {}/{n} missing from the arguments?)", k % n))
                            .unwrap_or_default()
                    ),
                };
                bail!("episodes {}..{} (shard {k}) are in no part: {hint}", range.start, range.end);
            }
            [i, j, ..] => bail!(
                "episodes {}..{} (shard {k}) are in both {} and {}: every episode must come from one part",
                range.start,
                range.end,
                parts[i].dir.display(),
                parts[j].dir.display()
            ),
        }
    }
    for (k, &i) in owner.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted before anything was written; rerun the merge");
        }
        check_shard(&parts[i], k as u64)?;
    }

    prepare_out(&args.out)?;
    let (mut files, mut bytes) = (0, 0);
    let n = m.shards();
    let hf = m.formats.contains(&Format::Parquet);
    if hf {
        let data = args.out.join(HF_DATA_DIR);
        fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    }
    for (k, &i) in owner.iter().enumerate() {
        let k = k as u64;
        for &f in &m.formats {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted; {} has no manifest yet: rerun the merge", args.out.display());
            }
            let name = shard_name(k, f);
            let dest = args.out.join(&name);
            bytes += copy_checked(&parts[i], &name, &dest)?;
            files += 1;
            if f == Format::Parquet {
                let link = args.out.join(HF_DATA_DIR).join(hf_name(k, n));
                let _ = fs::remove_file(&link);
                if fs::hard_link(&dest, &link).is_err() {
                    let src = dest.clone();
                    corpus::write_atomic(&link, |w| {
                        std::io::copy(&mut File::open(&src)?, w)?;
                        Ok(())
                    })?;
                }
            }
        }
    }
    if hf {
        let card = dataset_card(m);
        corpus::write_atomic(&args.out.join("README.md"), |w| Ok(w.write_all(card.as_bytes())?))?;
    }
    let merged = Manifest { command: merged_command(&m.command, &args.out), shard: None, ..m.clone() };
    corpus::write_atomic(&args.out.join("manifest.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &merged)?;
        w.write_all(b"\n")?;
        Ok(())
    })?;
    Ok(MergeSummary {
        parts: parts.len(),
        episodes: m.episodes,
        shards: n,
        files,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn m_count(parts: &[Part]) -> Option<u64> {
    parts.iter().find_map(|p| p.manifest.shard.map(|s| s.count))
}

fn load_part(dir: &Path) -> Result<Part> {
    let manifest = Manifest::load(dir)?;
    let path = dir.join("manifest.json");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw = serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Part { dir: dir.to_path_buf(), manifest, raw })
}

/// The parts must describe one run: the same manifest but for the command and the part.
fn same_run(a: &Part, b: &Part) -> Result<()> {
    let (x, y) = (&a.manifest, &b.manifest);
    let strip = |m: &Manifest| Manifest { command: Vec::new(), shard: None, ..m.clone() };
    if strip(x) == strip(y) {
        return Ok(());
    }
    let differs = if x.seed != y.seed {
        format!("seed {} vs {}", y.seed, x.seed)
    } else if x.episodes != y.episodes {
        format!("episodes {} vs {}", y.episodes, x.episodes)
    } else if x.shard_size != y.shard_size {
        format!("shard size {} vs {}", y.shard_size, x.shard_size)
    } else if x.formats != y.formats {
        format!("formats {:?} vs {:?}", y.formats, x.formats)
    } else if x.config != y.config {
        format!("configuration {} vs {}", y.config, x.config)
    } else if x.dialogym_version != y.dialogym_version {
        format!("dialogym {} vs {}", y.dialogym_version, x.dialogym_version)
    } else {
        format!("run {} vs {}", y.run_id, x.run_id)
    };
    bail!(
        "{}: not a part of the same run as {} ({differs}); merge only the parts of one `generate --shard` run",
        b.dir.join("manifest.json").display(),
        a.dir.display()
    )
}

/// Every row of the shard's files is the run's, and the rows are its episodes in order.
fn check_shard(part: &Part, k: u64) -> Result<()> {
    let m = &part.manifest;
    for &f in &m.formats {
        let path = part.dir.join(shard_name(k, f));
        let rows = match f {
            Format::Jsonl => {
                let mut rows = Vec::new();
                corpus::read_jsonl(&path, &mut rows)?;
                rows
            }
            Format::Parquet => crate::export::read_parquet(&path)?,
        };
        check_rows(&path, m, k, &rows)?;
    }
    Ok(())
}

fn check_rows(path: &Path, m: &Manifest, k: u64, rows: &[EpisodeRecord]) -> Result<()> {
    let range = m.shard_range(k);
    if rows.len() as u64 != range.end - range.start {
        bail!(
            "{}: {} rows, expected {} (episodes {}..{})",
            path.display(),
            rows.len(),
            range.end - range.start,
            range.start,
            range.end
        );
    }
    for (want, r) in range.zip(rows) {
        if r.run_id != m.run_id {
            bail!(
                "{}: episode {} is from run {}, not {}: a file of another run was copied in",
                path.display(),
                r.episode,
                r.run_id,
                m.run_id
            );
        }
        if r.episode != want {
            bail!(
                "{}: row of episode {} where episode {want} belongs (a gap, a duplicate or rows out of order)",
                path.display(),
                r.episode
            );
        }
    }
    Ok(())
}

/// A checksum the part's manifest records for `file`: any object in it that names the
/// file and carries a `sha256`, or maps the file name to one (the per-shard records of
/// corpus integrity checks). `None` when the manifest records none.
fn recorded_sha256(raw: &serde_json::Value, file: &str) -> Option<String> {
    use serde_json::Value;
    match raw {
        Value::Object(map) => {
            if map.values().any(|v| v.as_str() == Some(file))
                && let Some(h) = map.get("sha256").and_then(Value::as_str)
            {
                return Some(h.to_ascii_lowercase());
            }
            if let Some(v) = map.get(file) {
                match v {
                    Value::String(h) if h.len() == 64 => return Some(h.to_ascii_lowercase()),
                    Value::Object(o) => {
                        if let Some(h) = o.get("sha256").and_then(Value::as_str) {
                            return Some(h.to_ascii_lowercase());
                        }
                    }
                    _ => {}
                }
            }
            map.values().find_map(|v| recorded_sha256(v, file))
        }
        Value::Array(items) => items.iter().find_map(|v| recorded_sha256(v, file)),
        _ => None,
    }
}

/// Copies `name` of `part` to `dest` (temp file, fsync, rename), hashing what it reads;
/// a recorded checksum must match.
fn copy_checked(part: &Part, name: &str, dest: &Path) -> Result<u64> {
    let src = part.dir.join(name);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    corpus::write_atomic(dest, |w| {
        let mut file = File::open(&src).with_context(|| format!("cannot open {}", src.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).with_context(|| format!("cannot read {}", src.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n])?;
            total += n as u64;
        }
        Ok(())
    })?;
    let got = format!("{:x}", hasher.finalize());
    if let Some(want) = recorded_sha256(&part.raw, name)
        && want != got
    {
        let _ = fs::remove_file(dest);
        bail!(
            "{}: checksum mismatch (sha256 {got}, the manifest records {want}): the file changed after it was written",
            src.display()
        );
    }
    Ok(total)
}

fn prepare_out(out: &Path) -> Result<()> {
    if out.join("manifest.json").exists() {
        bail!("{} already holds a corpus; choose another OUT", out.display());
    }
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// The parts' command as one process would have run it: without `--shard`, into `out`.
fn merged_command(command: &[String], out: &Path) -> Vec<String> {
    let mut merged = Vec::with_capacity(command.len());
    let mut args = command.iter();
    while let Some(a) = args.next() {
        if a == "--shard" {
            args.next();
        } else if a.starts_with("--shard=") {
        } else if a == "--out" {
            merged.push(a.clone());
            args.next();
            merged.push(out.display().to_string());
        } else if a.starts_with("--out=") {
            merged.push(format!("--out={}", out.display()));
        } else {
            merged.push(a.clone());
        }
    }
    merged
}

/// The YAML feature of a corpus column, in the `datasets` card format.
fn feature(name: &str, dt: &DataType, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let scalar = |dt: &DataType| match dt {
        DataType::Utf8 => "string",
        DataType::Boolean => "bool",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float64 => "float64",
        _ => "string",
    };
    match dt {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => {
                let mut s = format!("{pad}- name: {name}\n{pad}  list:\n");
                for f in fields {
                    s += &feature(f.name(), f.data_type(), indent + 2);
                }
                s
            }
            inner => format!("{pad}- name: {name}\n{pad}  list: {}\n", scalar(inner)),
        },
        _ => format!("{pad}- name: {name}\n{pad}  dtype: {}\n", scalar(dt)),
    }
}

/// The dataset card: YAML header (data files, features) and a short body.
pub fn dataset_card(m: &Manifest) -> String {
    let mut yaml = String::from("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n");
    yaml += &format!("    path: {HF_DATA_DIR}/train-*.parquet\n");
    yaml += "dataset_info:\n  features:\n";
    for f in corpus::arrow_schema().fields() {
        yaml += &feature(f.name(), f.data_type(), 2);
    }
    yaml += "tags:\n- dialogym\n- offline-rl\n- dialogue\n---\n";
    let scenario = m.config.get("scenario").and_then(|v| v.as_str()).unwrap_or("?");
    format!(
        "{yaml}\n# dialogym corpus {run}\n\n{episodes} episodes of `{scenario}` imagined by dialogym {version} \
         (schema version {schema}, master seed {seed}), one row per episode.\n\n\
         - agents: {agents}\n- personas: {personas}\n\n\
         Load it with `datasets.load_dataset(\"PATH\")` (the `train` split). `messages[i]` is \
         `{{role, content, is_action}}`; `rewards[i]` is the reward right after message `i`; \
         `dones[i]` is true only after the final message; `hidden` and `metrics` are JSON text. \
         `manifest.json` holds the full configuration; the same rows are in `episodes-*.jsonl`.\n",
        run = m.run_id,
        episodes = m.episodes,
        version = m.dialogym_version,
        schema = m.schema_version,
        seed = m.seed,
        agents = m.config.get("agent").map(|v| v.to_string()).unwrap_or_default(),
        personas = m.config.get("persona").map(|v| v.to_string()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_loses_its_part_and_gains_the_merged_folder() {
        let c: Vec<String> =
            ["dialogym", "generate", "--out", "parts/2", "--shard", "auto/4", "--seed=3", "--shard=1/2", "--out=x"]
                .map(String::from)
                .to_vec();
        assert_eq!(
            merged_command(&c, Path::new("all")),
            ["dialogym", "generate", "--out", "all", "--seed=3", "--out=all"]
        );
    }

    #[test]
    fn recorded_checksums_are_found_in_lists_and_maps() {
        let h = "ab".repeat(32);
        let list = serde_json::json!({"shards": [{"file": "episodes-00001.jsonl", "sha256": h}]});
        assert_eq!(recorded_sha256(&list, "episodes-00001.jsonl"), Some(h.clone()));
        assert_eq!(recorded_sha256(&list, "episodes-00000.jsonl"), None);
        let map = serde_json::json!({"checksums": {"episodes-00000.parquet": h}});
        assert_eq!(recorded_sha256(&map, "episodes-00000.parquet"), Some(h.clone()));
        let nested = serde_json::json!({"files": {"episodes-00000.parquet": {"sha256": h, "bytes": 3}}});
        assert_eq!(recorded_sha256(&nested, "episodes-00000.parquet"), Some(h));
    }
}
