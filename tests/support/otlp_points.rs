//! OTLP metrics as a test reads them: every data point of what a receiver got.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric};

/// One data point as received: a series of one metric in one export.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) histogram: bool,
    /// A gauge's point (its value in `sum`).
    pub(crate) gauge: bool,
    pub(crate) temporality: i32,
    pub(crate) monotonic: bool,
    /// Attributes as text (`stage` -> `"1"`); ints are marked `i:` to check their type.
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) bounds: Vec<f64>,
    pub(crate) start: u64,
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::IntValue(v)) => format!("i:{v}"),
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Every data point of every export, in the order received.
pub(crate) fn points(exports: &[ResourceMetrics]) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in exports {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let attrs = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
                    kvs.iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect::<BTreeMap<_, _>>()
                };
                match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            out.push(Point {
                                name: m.name.clone(),
                                unit: m.unit.clone(),
                                histogram: true,
                                gauge: false,
                                temporality: h.aggregation_temporality,
                                monotonic: true,
                                attributes: attrs(&p.attributes),
                                count: p.count,
                                sum: p.sum.unwrap_or_default(),
                                bounds: p.explicit_bounds.clone(),
                                start: p.start_time_unix_nano,
                            });
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            let value = match p.value {
                                Some(NumberValue::AsInt(v)) => v as f64,
                                Some(NumberValue::AsDouble(v)) => v,
                                None => f64::NAN,
                            };
                            out.push(Point {
                                name: m.name.clone(),
                                unit: m.unit.clone(),
                                histogram: false,
                                gauge: false,
                                temporality: s.aggregation_temporality,
                                monotonic: s.is_monotonic,
                                attributes: attrs(&p.attributes),
                                count: 0,
                                sum: value,
                                bounds: Vec::new(),
                                start: p.start_time_unix_nano,
                            });
                        }
                    }
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let value = match p.value {
                                Some(NumberValue::AsInt(v)) => v as f64,
                                Some(NumberValue::AsDouble(v)) => v,
                                None => f64::NAN,
                            };
                            out.push(Point {
                                name: m.name.clone(),
                                unit: m.unit.clone(),
                                histogram: false,
                                gauge: true,
                                temporality: 0,
                                monotonic: false,
                                attributes: attrs(&p.attributes),
                                count: 0,
                                sum: value,
                                bounds: Vec::new(),
                                start: p.start_time_unix_nano,
                            });
                        }
                    }
                    other => panic!("{}: unexpected data {other:?}", m.name),
                }
            }
        }
    }
    out
}

/// A series: a metric's name and its attributes.
pub(crate) type Series = (String, BTreeMap<String, String>);

/// The latest point of each series (cumulative: the totals).
pub(crate) fn latest(points: &[Point]) -> HashMap<Series, Point> {
    points
        .iter()
        .map(|p| ((p.name.clone(), p.attributes.clone()), p.clone()))
        .collect()
}
