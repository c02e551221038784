//! dialogym: imagine goal-directed conversations, write them to a corpus, learn offline to
//! hold them better, and evaluate. The CLI (`src/main.rs`) is a thin layer over this crate;
//! tests and examples call it directly.

pub mod annotate;
pub mod demo;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod generate;
pub mod imagine;
pub mod merge;
pub mod play;
pub mod report;
pub mod serve;
pub mod session;
pub mod train;

pub use dialogym_agents as agents;
pub use dialogym_engine as engine;
pub use dialogym_policies as policies;
pub use dialogym_scenarios as scenarios;

/// A progress bar on stderr, or a hidden one when stderr is not a terminal.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{per_sec}} {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}
