//! The figures of a scope's distributions, as its summary carries them: what a distribution
//! is of ([`Quantity`]), its count, mean, percentiles and max ([`LatencyStats`]), and a
//! scope's set of them ([`Distributions`]).
//!
//! Public in [`crate::stats`], as [`OverallSummary`](super::OverallSummary) holds them; the
//! crate's `distribution` module records them.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use super::{EdgeName, finite, keys};

/// What a distribution is of: one row of the `Distributions` table, one key of the
/// `distributions` record object.
///
/// Quantities sort as the table lists them: request latency, then each stage (ascending id)
/// with its quantities, then each edge ordered by (from, to). New quantities (time to first
/// output) will be new variants.
///
/// ```
/// use omni_metrics::stats::Quantity;
/// use omni_metrics::stats::EdgeName;
/// assert_eq!(Quantity::RequestLatency.to_string(), "e2e_total_ms");
/// assert_eq!(Quantity::StageGenTime(0).to_string(), "stage_0_gen_time_ms");
/// assert_eq!(Quantity::StageQueueTime(2).to_string(), "stage_2_queue_time_ms");
/// assert_eq!(Quantity::TransferTime(EdgeName { from: 0, to: 1 }).to_string(), "transfer_0->1_time_ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quantity {
    /// Each request's `e2e_total_ms`.
    RequestLatency,
    /// `stage_gen_time_ms` of a stage (by id), per request.
    StageGenTime(u64),
    /// `queue_time_ms` of a stage (by id), per request.
    StageQueueTime(u64),
    /// An edge's transfer time per request: `tx_time_ms + rx_decode_time_ms +
    /// in_flight_time_ms`
    /// ([`total_time_ms`](crate::stats::TransferEdgeStats::total_time_ms)).
    TransferTime(EdgeName),
    /// A request's `time_to_first_output_ms` (request start to its last stage's first
    /// `omni.output`), for requests that have one.
    RequestFirstOutput,
    /// A request's `time_to_first_audio_ms`, for requests that have one.
    RequestFirstAudio,
    /// `time_to_first_output_ms` of a stage (by id), per request that has one.
    StageFirstOutput(u64),
    /// Every gap between consecutive `omni.output` events of a stage (by id): not one
    /// value per request, one per gap (see
    /// [`inter_output_gaps_ms`](crate::stats::StageRequestStats::inter_output_gaps_ms)).
    StageInterOutput(u64),
    /// `stage_gen_time_ms` of a stage on one of its replicas (`replica_id`), per request:
    /// shown when more than one replica of the stage served the scope.
    StageReplicaGenTime {
        /// The stage.
        stage: u64,
        /// The replica.
        replica: u64,
    },
    /// An edge's transfer time between two replicas (`from_replica`, `to_replica`), per
    /// request: shown when more than one pair of replicas served the edge in the scope.
    TransferReplicaTime {
        /// The edge.
        edge: EdgeName,
        /// The sending stage's replica.
        from_replica: u64,
        /// The receiving stage's replica.
        to_replica: u64,
    },
}

impl Quantity {
    /// The table's order: (group, stage id or edge, rank within the stage).
    fn order_key(&self) -> (u8, u64, u64, u8) {
        match *self {
            Quantity::RequestLatency => (0, 0, 0, 0),
            Quantity::RequestFirstOutput => (0, 0, 0, 1),
            Quantity::RequestFirstAudio => (0, 0, 0, 2),
            Quantity::StageGenTime(id) => (1, id, 0, 0),
            Quantity::StageQueueTime(id) => (1, id, 0, 1),
            Quantity::StageFirstOutput(id) => (1, id, 0, 2),
            Quantity::StageInterOutput(id) => (1, id, 0, 3),
            Quantity::StageReplicaGenTime { stage, replica } => {
                (1, stage, replica.saturating_add(1), 0)
            }
            Quantity::TransferTime(edge) => (2, edge.from, edge.to, 0),
            // After their edge, by replica pair (at most 64 quantities in all: the pair
            // fits the rank).
            Quantity::TransferReplicaTime {
                edge,
                from_replica,
                to_replica,
            } => (
                2,
                edge.from,
                edge.to,
                u8::try_from(1 + from_replica.min(15) * 16 + to_replica.min(15)).unwrap_or(u8::MAX),
            ),
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::RequestLatency => f.write_str(keys::E2E_TOTAL_MS),
            Quantity::StageGenTime(id) => write!(f, "stage_{id}_gen_time_ms"),
            Quantity::StageQueueTime(id) => write!(f, "stage_{id}_queue_time_ms"),
            Quantity::TransferTime(edge) => write!(f, "transfer_{edge}_time_ms"),
            Quantity::RequestFirstOutput => f.write_str(keys::TIME_TO_FIRST_OUTPUT_MS),
            Quantity::RequestFirstAudio => f.write_str(keys::TIME_TO_FIRST_AUDIO_MS),
            Quantity::StageFirstOutput(id) => write!(f, "stage_{id}_time_to_first_output_ms"),
            Quantity::StageInterOutput(id) => write!(f, "stage_{id}_inter_output_ms"),
            Quantity::StageReplicaGenTime { stage, replica } => {
                write!(f, "stage_{stage}_replica_{replica}_gen_time_ms")
            }
            Quantity::TransferReplicaTime {
                edge,
                from_replica,
                to_replica,
            } => write!(
                f,
                "transfer_{edge}_replica_{from_replica}->{to_replica}_time_ms"
            ),
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Count, mean, percentiles and max of one quantity, in milliseconds (always finite).
///
/// Serialized as `{"count":..,"mean_ms":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..}`.
///
/// ```
/// use omni_metrics::stats::LatencyStats;
/// let none = LatencyStats::default();
/// assert_eq!((none.count, none.max_ms), (0, 0.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyStats {
    /// How many values (requests) were recorded.
    pub count: u64,
    /// Their mean.
    pub mean_ms: f64,
    /// The median (nearest rank).
    pub p50_ms: f64,
    /// The 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// The 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// The largest value.
    pub max_ms: f64,
}

impl Serialize for LatencyStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("LatencyStats", 6)?;
        s.serialize_field(keys::COUNT, &self.count)?;
        s.serialize_field(keys::MEAN_MS, &finite(self.mean_ms))?;
        s.serialize_field(keys::P50_MS, &finite(self.p50_ms))?;
        s.serialize_field(keys::P90_MS, &finite(self.p90_ms))?;
        s.serialize_field(keys::P99_MS, &finite(self.p99_ms))?;
        s.serialize_field(keys::MAX_MS, &finite(self.max_ms))?;
        s.end()
    }
}

/// A scope's distributions: [`LatencyStats`] per [`Quantity`], in the table's order: count,
/// mean, p50, p90, p99 and max of the scope's completed (`ok`) requests' latency
/// (`e2e_total_ms`), of each stage's `stage_gen_time_ms` and `queue_time_ms`, of each
/// edge's transfer time (`tx + rx_decode + in_flight`), and of the output events' times.
///
/// Each quantity is recorded in an HDR histogram, values in whole microseconds with 3
/// significant digits, so a percentile is within 0.1% of the true one (at most one
/// microsecond off below 2.048 ms); values beyond a week are recorded as a week, and at
/// most 64 quantities are kept per scope. The memory depends on the range of the values,
/// never on how many were recorded. Percentiles are by nearest rank: `pN` is the smallest
/// recorded value with at least N% of the values at or below it (rounded up to the top of
/// its histogram bucket, never above the max). Mean and max are exact (of the microsecond
/// values).
///
/// Serialized as an object keyed by the quantities' names (`"e2e_total_ms"`,
/// `"stage_0_gen_time_ms"`, `"transfer_0->1_time_ms"`, ...).
///
/// ```
/// use omni_metrics::stats::{Distributions, LatencyStats, Quantity};
/// let d: Distributions = [
///     (Quantity::StageGenTime(1), LatencyStats { count: 2, max_ms: 9.0, ..Default::default() }),
///     (Quantity::RequestLatency, LatencyStats { count: 2, max_ms: 20.0, ..Default::default() }),
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(d.get(Quantity::StageGenTime(1)).map(|s| s.max_ms), Some(9.0));
/// assert_eq!(d.iter().next().map(|(q, _)| q), Some(Quantity::RequestLatency));
/// assert!(d.get(Quantity::StageQueueTime(1)).is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distributions {
    /// Ascending by quantity, one entry per quantity.
    entries: Vec<(Quantity, LatencyStats)>,
}

impl Distributions {
    /// The distributions of `entries`, already in the table's order, one per quantity.
    pub(crate) fn from_sorted(entries: Vec<(Quantity, LatencyStats)>) -> Self {
        Self { entries }
    }

    /// The stats of `quantity`, if any value of it was recorded.
    pub fn get(&self, quantity: Quantity) -> Option<LatencyStats> {
        self.entries
            .binary_search_by(|(q, _)| q.cmp(&quantity))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, s)| *s)
    }

    /// Every quantity with its stats, in the table's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Quantity, LatencyStats)> + '_ {
        self.entries.iter().copied()
    }

    /// How many quantities there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none (no completed request).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Sorts into the table's order; of a quantity given twice, the last wins.
impl FromIterator<(Quantity, LatencyStats)> for Distributions {
    fn from_iter<I: IntoIterator<Item = (Quantity, LatencyStats)>>(iter: I) -> Self {
        let mut entries: Vec<(Quantity, LatencyStats)> = Vec::new();
        for (q, s) in iter {
            match entries.binary_search_by(|(e, _)| e.cmp(&q)) {
                Ok(i) => {
                    if let Some(entry) = entries.get_mut(i) {
                        entry.1 = s;
                    }
                }
                Err(i) => entries.insert(i, (q, s)),
            }
        }
        Self { entries }
    }
}

impl Serialize for Distributions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (q, s) in &self.entries {
            map.serialize_entry(q, s)?;
        }
        map.end()
    }
}
