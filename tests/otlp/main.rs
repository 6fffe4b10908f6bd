//! OTLP export end to end, against a real receiver on loopback.

#[path = "../support/example.rs"]
mod example;
#[path = "../support/http_receiver.rs"]
mod http_receiver;
#[path = "../support/otlp_points.rs"]
mod otlp_points;
#[path = "../support/grpc_receiver.rs"]
mod receiver;
#[path = "../support/warnings.rs"]
mod warnings;

mod detail;
mod losses;
mod metrics;
mod names;
mod processes;
mod runs;
mod subscribers;
mod support;
mod tls;
mod traces;

// `metrics` runs the convention's requests as `crate::pipeline_requests`.
use support::pipeline_requests;
