//! Filtered behaviour cloning: BC (`bc.rs`'s loss) on the transitions of the top
//! `filter_fraction` of episodes by return (every episode tied with the cut-off is kept).

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::terms::Terms;
use super::{Acting, Learner, Range, StepInput, check, parse_section};
use crate::data::{Batch, Transitions};

/// Filtered BC's config section (`learners.filtered-bc`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilteredBcConfig {
    /// The fraction of episodes kept, by return, in (0, 1].
    pub filter_fraction: f64,
}

impl Default for FilteredBcConfig {
    fn default() -> Self {
        FilteredBcConfig { filter_fraction: 0.3 }
    }
}

/// The registry's builder.
pub fn build(section: &serde_json::Value) -> Result<Box<dyn Learner>> {
    let c: FilteredBcConfig = parse_section(section)?;
    check("filter_fraction", c.filter_fraction, Range::UpToOne)?;
    Ok(Box::new(c))
}

impl Learner for FilteredBcConfig {
    fn section(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn acting(&self) -> Acting {
        Acting::Policy
    }

    fn pool(&self, data: &Transitions) -> Vec<u32> {
        data.top_episodes(self.filter_fraction)
    }

    fn loss(&self, step: &StepInput<'_>, batch: &Batch) -> Result<(Tensor, Terms)> {
        super::bc::loss(step, batch)
    }
}
