//! Collects the layer's diagnostics: the messages of WARN events of target
//! `omni_metrics::diagnostics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A layer keeping the diagnostics' messages; clones share them.
#[derive(Clone, Default)]
pub(crate) struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "omni_metrics::diagnostics" {
            return;
        }
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut msg = Msg(String::new());
        event.record(&mut msg);
        if let Ok(mut m) = self.0.lock() {
            m.push(msg.0);
        }
    }
}

impl Warnings {
    /// The messages so far.
    #[allow(dead_code)] // not every test target reads them without waiting
    pub(crate) fn messages(&self) -> Vec<String> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Waits (at most 10 s) for `n` warnings; returns those seen.
    #[allow(dead_code)] // not every test target waits
    pub(crate) fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.messages();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
