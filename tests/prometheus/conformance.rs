//! A dashboard made for vLLM-Omni works unchanged (issue 25): every family of the facts sheet
//! (`shared/anchors/vllm-omni-today.md`, "Prometheus families"), its type, label set and
//! bucket list, checked against the catalogue. The table below is transcribed from the
//! sheet; the deliberate differences are listed in `docs/reference/metrics.md` ("Differences
//! from vLLM-Omni's families"), which the README links.

use std::collections::BTreeSet;

use omni_metrics::metrics::{METRICS, MetricDef};

use crate::support::{Harness, labels_of, parse};

/// The sheet's bucket lists.
const SECONDS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
const FAST_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
const RTF: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 5.0, 10.0];
const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * KIB;
const BYTES: &[f64] = &[
    KIB,
    4.0 * KIB,
    16.0 * KIB,
    64.0 * KIB,
    256.0 * KIB,
    MIB,
    4.0 * MIB,
    16.0 * MIB,
    64.0 * MIB,
    256.0 * MIB,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Histogram(&'static [f64]),
}

/// One row of the sheet: the family (without `vllm_omni:`), its type and labels.
struct Row {
    family: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    /// The sheet states these labels only as a floor ("its per-stage labels are not
    /// stated"): the catalogue's must include them, and may have more.
    at_least: bool,
}

const STAGE: &[&str] = &["model_name", "stage", "replica"];
const EDGE: &[&str] = &[
    "model_name",
    "from_stage",
    "from_replica",
    "to_stage",
    "to_replica",
];

/// The sheet's table, row for row.
const FACTS: &[Row] = &[
    row("num_requests_running", Kind::Gauge, &["model_name"]),
    row("num_requests_waiting", Kind::Gauge, &["model_name"]),
    row(
        "e2e_request_latency_s",
        Kind::Histogram(SECONDS),
        &["model_name"],
    ),
    // Its per-stage labels are not stated in the definitions: `model_name` at least.
    at_least("stage_outputs_queue_size", Kind::Gauge, &["model_name"]),
    at_least("stage_inflight_requests", Kind::Gauge, &["model_name"]),
    row(
        "requests_success",
        Kind::Counter,
        &["model_name", "finished_reason"],
    ),
    row("prompt_tokens", Kind::Counter, &["model_name"]),
    row("generation_tokens", Kind::Counter, &["model_name"]),
    row("audio_ttfp_s", Kind::Histogram(SECONDS), STAGE),
    row("audio_duration_s", Kind::Histogram(SECONDS), STAGE),
    row("audio_rtf", Kind::Histogram(RTF), STAGE),
    row("audio_frames", Kind::Counter, STAGE),
    row("audio_underrun_s", Kind::Histogram(FAST_SECONDS), STAGE),
    row(
        "audio_continuity_ok",
        Kind::Counter,
        &["model_name", "stage", "replica", "threshold_ms"],
    ),
    row(
        "audio_skipped_requests",
        Kind::Counter,
        &["model_name", "stage", "replica", "reason"],
    ),
    row("transfer_size_bytes", Kind::Histogram(BYTES), EDGE),
    row("transfer_tx_s", Kind::Histogram(FAST_SECONDS), EDGE),
    row("transfer_rx_s", Kind::Histogram(FAST_SECONDS), EDGE),
    row("transfer_in_flight_s", Kind::Histogram(FAST_SECONDS), EDGE),
];

const fn row(family: &'static str, kind: Kind, labels: &'static [&'static str]) -> Row {
    Row {
        family,
        kind,
        labels,
        at_least: false,
    }
}

const fn at_least(family: &'static str, kind: Kind, labels: &'static [&'static str]) -> Row {
    Row {
        at_least: true,
        ..row(family, kind, labels)
    }
}

/// Families of the sheet the catalogue does not define, on purpose: each is one of the
/// differences `docs/reference/metrics.md` lists (checked below). Only these may be missing.
///
/// `stage_outputs_queue_size` is the length of vLLM-Omni's own per-stage output queue
/// (outputs a stage made that its consumer has not taken yet): the span convention records
/// when outputs are made (`omni.output`), not when they are taken, so no number of the crate
/// is that queue.
const EXPECTED_LATER: &[&str] = &["stage_outputs_queue_size"];

/// Each family left out is named, with its reason, in the documented differences.
#[test]
fn families_left_out_are_documented_differences() {
    let doc = include_str!("../../docs/reference/metrics.md");
    let differences = doc
        .split_once("## Differences from vLLM-Omni's families")
        .expect("the section")
        .1;
    let differences = differences.split("\n## ").next().unwrap_or_default();
    for family in EXPECTED_LATER {
        assert!(
            differences.contains(&format!("`{family}`")),
            "docs/reference/metrics.md's differences do not name {family}"
        );
    }
    assert!(!differences.contains("Not here yet"), "{differences}");
}

fn def_of(family: &str) -> Option<&'static MetricDef> {
    let name = format!("vllm_omni:{family}");
    METRICS.iter().find(|d| d.prometheus == name)
}

#[test]
fn every_family_of_the_facts_sheet_is_the_catalogues_with_its_labels_and_buckets() {
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    for row in FACTS {
        let Some(def) = def_of(row.family) else {
            if EXPECTED_LATER.contains(&row.family) {
                skipped.push(row.family);
            } else {
                problems.push(format!("{}: not in the catalogue", row.family));
            }
            continue;
        };
        if !def.vllm_omni {
            problems.push(format!("{}: not marked vLLM-Omni's", row.family));
        }
        // By name: the catalogue's kinds grow with the families added later (a gauge).
        let (want, got) = (format!("{:?}", row.kind), format!("{:?}", def.kind));
        if !want.starts_with(&got) {
            problems.push(format!("{}: a {got}, not a {want}", row.family));
        }
        if let Kind::Histogram(buckets) = row.kind {
            if def.buckets != buckets {
                problems.push(format!(
                    "{}: buckets {:?}, the sheet's {buckets:?}",
                    row.family, def.buckets
                ));
            }
        }
        let keys: BTreeSet<&str> = def.labels.keys().iter().copied().collect();
        let sheet: BTreeSet<&str> = row.labels.iter().copied().collect();
        if row.at_least {
            if !sheet.is_subset(&keys) {
                problems.push(format!(
                    "{}: labels {keys:?}, without the sheet's {sheet:?}",
                    row.family
                ));
            }
            continue;
        }
        if keys != sheet {
            problems.push(format!(
                "{}: labels {keys:?}, the sheet's {sheet:?}",
                row.family
            ));
        }
        // In the sheet's order too (vLLM-Omni's label order, which the exposition follows).
        if def.labels.keys() != row.labels && keys == sheet {
            problems.push(format!(
                "{}: label order {:?}, the sheet's {:?}",
                row.family,
                def.labels.keys(),
                row.labels
            ));
        }
    }
    // Nothing else claims to be vLLM-Omni's.
    for def in METRICS.iter().filter(|d| d.vllm_omni) {
        let family = def.prometheus.trim_start_matches("vllm_omni:");
        if !FACTS.iter().any(|r| r.family == family) {
            problems.push(format!("{family}: marked vLLM-Omni's, not in the sheet"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Only the families named as expected later may be missing.
    assert!(skipped.iter().all(|f| EXPECTED_LATER.contains(f)));
}

/// What a scrape shows agrees with the sheet: each family's series carry no label outside
/// its set, and `model_name` always (with replicas given, so the replica keys show). A
/// request whose audio stage made no audio, and one held in a stage during the scrape, make
/// the skipped-audio and in-flight series.
#[test]
fn scraped_label_sets_are_the_sheets() {
    use omni_metrics::instrument::Request;
    let h = Harness::with_model_name("Qwen/Qwen3-Omni-30B-A3B-Instruct");
    h.play_replicas(6);
    let response = h.run(|| {
        let silent = Request::start("silent");
        silent.stage(1).replica(2).audio(0, 24_000);
        silent.finish();
        let held = Request::start("held");
        let thinker = held.stage(0);
        thinker.replica(1);
        let (response, _) = h.scrape();
        drop(thinker);
        held.finish();
        response
    });
    let parsed = parse(&response.body);
    let mut checked = 0;
    for row in FACTS {
        let Some(def) = def_of(row.family) else {
            continue; // left out (above)
        };
        let Some(family) = parsed.families.get(def.prometheus) else {
            panic!("{} not scraped", def.prometheus);
        };
        for sample in family.iter_samples() {
            let keys: BTreeSet<String> = labels_of(sample).into_iter().map(|(k, _)| k).collect();
            let sheet: BTreeSet<String> = row.labels.iter().map(|k| (*k).to_owned()).collect();
            if row.at_least {
                assert!(sheet.is_subset(&keys), "{}: {keys:?}", def.prometheus);
            } else {
                assert_eq!(keys, sheet, "{}", def.prometheus);
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} series");
}
