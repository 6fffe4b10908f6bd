//! The live gauges as the metrics exports read them ([`observe_live`]): from the layers the
//! export was built into, when it is collected (a scrape, an OTLP export).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::catalog::{LabelValues, MetricId, observe_live};
use super::queue::Observation;
use crate::MetricsHandle;
use crate::shared::Shared;

/// Gauge series remembered (and read as 0 when nothing is open on them): bounded, as the
/// stage and replica caps bound them anyway (64 x 64 stages and replicas would be more).
const MAX_REMEMBERED: usize = 4096;

/// The layers a metrics export was added to ([`Sink::on_layer_built`]), and the gauge series
/// it has reported.
///
/// [`Sink::on_layer_built`]: crate::report::Sink::on_layer_built
#[derive(Debug, Default)]
pub(crate) struct LiveSources {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Weak: an export keeps no layer alive; a dropped layer is forgotten.
    layers: Vec<Weak<Shared>>,
    /// Series read before: read as 0 when nothing is open on them now, so that a stage
    /// that emptied shows 0 rather than its last value or a gap.
    seen: HashSet<(MetricId, LabelValues)>,
    /// The last reading, when it was taken, and the gauges that have had it
    /// ([`LiveSources::read_for`]).
    last: Option<(Instant, Arc<Vec<Observation>>, u64)>,
}

impl LiveSources {
    /// Reads `handle`'s layer from now on (once however often it is attached).
    pub(crate) fn attach(&self, handle: &MetricsHandle) {
        let weak = handle.downgrade();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.layers.retain(|l| l.strong_count() > 0);
        if !state.layers.iter().any(|l| l.ptr_eq(&weak)) {
            state.layers.push(weak);
        }
    }

    /// Every gauge series now: each layer's [`observe_live`], summed over layers serving
    /// the same model, and 0 for the series read before on which nothing is open now.
    /// Readers take turns (a reading is a scan of each layer's open spans).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))] // the scrape's reader
    pub(crate) fn read(&self) -> Vec<Observation> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        read_locked(&mut state)
    }

    /// [`LiveSources::read`] for gauge `gauge` (a [`MetricId`]): the last reading if that
    /// gauge has not had it yet and it is younger than `max_age`, else a new one. An OTLP
    /// collection calls each gauge's callback once, in any order: one scan of the open
    /// spans serves them all, and the next collection reads anew.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))] // OTLP's gauge callbacks' reader
    pub(crate) fn read_for(&self, gauge: MetricId, max_age: Duration) -> Arc<Vec<Observation>> {
        let bit = 1_u64 << (gauge as u64 % 64);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, reading, had)) = &mut state.last {
            if *had & bit == 0 && at.elapsed() < max_age {
                *had |= bit;
                return Arc::clone(reading);
            }
        }
        let reading = Arc::new(read_locked(&mut state));
        state.last = Some((Instant::now(), Arc::clone(&reading), bit));
        reading
    }
}

/// [`LiveSources::read`] under its lock.
fn read_locked(state: &mut State) -> Vec<Observation> {
    state.layers.retain(|l| l.strong_count() > 0);
    let mut now: HashMap<(MetricId, LabelValues), f64> = HashMap::new();
    for layer in &state.layers {
        let Some(handle) = MetricsHandle::upgrade(layer) else {
            continue;
        };
        let model = handle.model_name();
        observe_live(&handle.live(), model.as_deref(), |def, labels, value| {
            *now.entry((def.id, labels)).or_default() += value;
        });
    }
    for key in &state.seen {
        now.entry(*key).or_insert(0.0);
    }
    for key in now.keys() {
        if state.seen.len() >= MAX_REMEMBERED {
            break;
        }
        state.seen.insert(*key);
    }
    now.into_iter()
        .map(|((id, labels), value)| (id.def(), labels, value))
        .collect()
}
