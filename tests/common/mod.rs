//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The dialogym binary built for these tests.
pub fn dialogym() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dialogym"))
}

/// Runs dialogym with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    dialogym().args(args).output().expect("running dialogym")
}

/// Every file of a folder, sorted by name, with its bytes.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("listing corpus")
        .map(|e| {
            let p: PathBuf = e.expect("entry").path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).expect("reading"))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The shard files only (the manifest holds the command line, which names the folder).
pub fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir).into_iter().filter(|(n, _)| n.starts_with("episodes-")).collect()
}
