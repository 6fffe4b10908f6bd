//! The Prometheus endpoint end to end (issue 9, item 4): requests driven through the real
//! layer on a scoped dispatcher and a manual clock, scraped over loopback HTTP, parsed by an
//! OpenMetrics parser, and compared with the model's own figures.

#[path = "../support/prometheus.rs"]
mod support;

mod burst;
mod conformance;
mod env;
mod exemplars;
mod http;
mod live;
mod replicas;
mod slow_clients;
mod values;
