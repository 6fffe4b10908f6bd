//! Latency distributions (issue 9, item 2): count, mean, p50/p90/p99 and max of request
//! latency, per stage compute and queue time and per edge transfer time, in the summary,
//! the console's `Distributions` table and the summary record's `distributions` key.

mod console;
mod jsonl;
mod properties;
mod scenario;
#[path = "../support/distributions.rs"]
mod support;
