#![doc = include_str!("../README.md")]
#![doc = include_str!("../docs/reference/environment.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Test support shared with the integration tests names the crate `omni_metrics`.
#[cfg(test)]
extern crate self as omni_metrics;

pub mod convention;
mod env;
pub mod guide;
pub mod instrument;
pub mod metrics;
pub mod propagation;
pub mod report;
pub mod stats;

mod accumulate;
mod aggregate;
mod clock;
mod diagnostics;
mod distribution;
mod handle;
mod install;
mod layer;
mod queue;
mod shared;

pub use handle::{LiveGauges, MetricsHandle, OpenSpans, StageInFlight, Totals};
pub use install::{InitError, Install, OmniGuard, init, log_filter};
pub use layer::{BuildError, Builder, Destination, OmniMetricsLayer};

#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;

#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use metrics::prometheus::{PrometheusError, PrometheusSink};

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;

// The command's trace reader and comparison: internals behind `cli`.
#[cfg(feature = "cli")]
mod compare;
#[cfg(feature = "cli")]
mod replay;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
// The replay plays spans on the testing module's clock: compiled without the feature too.
#[cfg(not(feature = "testing"))]
mod testing;
