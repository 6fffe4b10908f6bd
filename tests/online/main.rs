//! Online serving has an aggregate (issue 9, item 3): the cumulative and window summaries,
//! resetting, open runs' snapshots, the summary printed on demand, the periodic line, and
//! online tables that can be turned off; on scoped dispatchers and a manual clock.

mod aggregates;
mod concurrency;
mod console;
mod env;
mod support;
#[path = "../support/warnings.rs"]
mod warnings;
