//! dialogym's learners: text featurizers, value heads and offline RL (ILQL, BC, filtered
//! BC, MC returns) with candle, checkpoints, and the learned agent. The only crate that
//! knows candle; `--features cuda` builds its GPU path.

pub mod agent;
pub mod baselines;
pub mod data;
pub mod featurize;
pub mod ilql;
pub mod model;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod train;
