#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod convention;
pub mod instrument;
pub mod report;
pub mod stats;

mod accumulate;
mod diagnostics;
mod handle;
mod layer;

pub use handle::{MetricsHandle, Totals};
pub use layer::{BuildError, Builder, JSONL_ENV, OmniMetricsLayer};
