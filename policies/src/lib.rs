//! dialogym's learners and models: text featurizers, value heads and offline RL (ILQL,
//! BC, filtered BC, MC returns) with candle, checkpoints, the learned agent, and the local
//! language-model backend. The only crate that knows candle; `--features cuda` builds its
//! GPU path.

pub mod agent;
pub mod config;
pub mod data;
pub mod featurize;
pub mod learners;
pub mod lm;
pub mod model;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod train;
