//! The HTML report (issue 11): self-contained, escaped, the console's tables and the
//! records' numbers in a real browser's DOM, a bar per stage and transfer, 10,000 requests
//! in under 2 s, and the live report a run writes when it closes.
//!
//! The browser tests run headless Chromium (`apt-get install -y chromium`; `.ci/run`
//! installs it) and fail without it, saying so; `OMNI_METRICS_SKIP_BROWSER=1` skips them
//! explicitly.

#[path = "../support/chromium.rs"]
mod chromium;
#[path = "../support/example.rs"]
mod example;
mod interaction;
mod live;
mod page;
#[path = "../support/shared_buf.rs"]
mod shared_buf;
mod support;
#[path = "../support/synthetic.rs"]
mod synthetic;
