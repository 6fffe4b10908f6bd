//! Guides: how to do one thing with omni-metrics, from start to end.
//!
//! The crate root gets an engine from zero to its first tables; these pages take it further.
//! Reference material lives with the module it describes ([`crate::stats`] for the fields,
//! [`crate::Builder`] for the settings, [`crate::metrics`] for Prometheus, `otlp` for
//! OpenTelemetry export, [`crate::propagation`], [`crate::report`] for the outputs).
//!
//! - [`instrumenting`]: raw spans and `#[instrument]`, tasks and threads, filters, reading
//!   the results in code.
//! - [`online_serving`]: the cumulative and window summaries, the periodic line, a server.
//! - [`report_command`]: `omni-metrics report`, the tables rebuilt from a collector's trace
//!   files, across processes and hosts.
//! - [`compare`]: `omni-metrics compare`, two runs compared with honest uncertainty, and
//!   a CI gate on regressions.
//! - [`bad_input`]: what the layer does with spans that break the convention, and what it
//!   guarantees.
//! - [`performance`]: what the layer and each output cost, and how to measure it.
//!
//! Each page is a file of the repository's `docs/` directory.

pub mod instrumenting {
    #![doc = include_str!("../docs/instrumenting.md")]
}

pub mod online_serving {
    #![doc = include_str!("../docs/online-serving.md")]
}

pub mod report_command {
    #![doc = include_str!("../docs/report-command.md")]
}

pub mod compare {
    #![doc = include_str!("../docs/compare.md")]
}

pub mod bad_input {
    #![doc = include_str!("../docs/bad-input.md")]
}

pub mod performance {
    #![doc = include_str!("../docs/performance.md")]
}
