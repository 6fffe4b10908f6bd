//! Replicas and the model name on the Prometheus endpoint (issue 25, items 1 and 2).
//!
//! Without replicas the exposition is what it was before them, byte for byte, but for
//! `model_name`: `snapshots/without-replicas-*.txt` were written by the crate at f4d5810
//! (before either label) from the same workload ([`Harness::play_many`]`(10)`, a fresh sink);
//! with replicas, stage and edge series are broken down by vLLM-Omni's `replica`,
//! `from_replica` and `to_replica`; the model name comes from the builder or
//! `OMNI_METRICS_MODEL_NAME` (code wins), and every series carries it.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use omni_metrics::PrometheusSink;
use omni_metrics::report::Sink;
use omni_metrics::stats::{RequestE2EStats, StageRequestStats};
use tracing_subscriber::prelude::*;

use crate::support::{Harness, UNNAMED, counter, histogram, labels_of, parse};

/// `text` as it was before `model_name`: the default model's label taken out of every
/// series (`{model_name="unknown"}`, first among others, or after OpenMetrics' `le`).
fn without_model_name(text: &str) -> String {
    let label = format!("model_name=\"{UNNAMED}\"");
    text.replace(&format!(",{label},"), ",")
        .replace(&format!("{{{label}}}"), "")
        .replace(&format!("{{{label},"), "{")
        .replace(&format!(",{label}}}"), "}")
}

/// The families of an exposition, in order: each one's `#` lines as written, and its
/// sample lines sorted (a family's series come in the order of prometheus-client's hash
/// map, which differs from process to process).
fn families(text: &str) -> Vec<(Vec<&str>, Vec<&str>)> {
    let mut out: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    // OpenMetrics' end marker belongs to no family (families added since come before it).
    for line in text.lines().filter(|l| *l != "# EOF") {
        if line.starts_with("# HELP ") || out.is_empty() {
            out.push((Vec::new(), Vec::new()));
        }
        let family = out.last_mut().expect("one");
        if line.starts_with('#') {
            family.0.push(line);
        } else {
            family.1.push(line);
        }
    }
    for family in &mut out {
        family.1.sort_unstable();
    }
    out
}

/// Every family of `before` is in `now`, in the same order, with the same lines; `now` may
/// have families `before` lacks (those added since by other changes).
#[track_caller]
fn same_families(now: &str, before: &str, what: &str) {
    let now = families(now);
    let before = families(before);
    let mut at = 0;
    for family in &before {
        let Some(found) = now[at..].iter().position(|f| f.0 == family.0) else {
            panic!(
                "{what}: the family {:?} is not as it was (or out of order)",
                family.0
            );
        };
        at += found;
        assert_eq!(now[at].1, family.1, "{what}: {:?}", family.0);
        at += 1;
    }
}

#[test]
fn without_replicas_the_exposition_is_as_before_but_for_model_name() {
    // A fresh sink: the label-less families' zero series.
    let fresh = PrometheusSink::unserved();
    let (_, text) = fresh.encode_for(None);
    same_families(
        &without_model_name(&text),
        include_str!("snapshots/without-replicas-fresh.txt"),
        "fresh",
    );

    let h = Harness::new();
    h.play_many(10);
    assert!(
        h.requests()
            .iter()
            .all(|r| r.model_name.is_none() && r.stages.iter().all(|s| s.replica_id.is_none()))
    );
    let (_, classic) = h.prometheus.encode_for(None);
    let openmetrics = h.prometheus.encode();
    for (text, before, what) in [
        (
            &classic,
            include_str!("snapshots/without-replicas-classic.txt"),
            "classic text",
        ),
        (
            &openmetrics,
            include_str!("snapshots/without-replicas-openmetrics.txt"),
            "OpenMetrics",
        ),
    ] {
        assert!(!text.contains("replica"), "{what}: {text}");
        // `model_name` is on every series, once.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                line.matches(&format!("model_name=\"{UNNAMED}\"")).count(),
                1,
                "{what}: {line}"
            );
        }
        same_families(&without_model_name(text), before, what);
    }
}

#[test]
fn with_replicas_stages_and_edges_are_broken_down_by_replica() {
    let h = Harness::with_model_name("qwen3-omni");
    h.play_replicas(6);
    let records = h.requests();
    assert_eq!(records.len(), 6);
    let (response, parsed) = h.scrape();
    let model = ("model_name", "qwen3-omni");
    // The default model's zero series went: the layer said its model at build.
    assert!(!response.body.contains(UNNAMED), "{}", response.body);

    // The thinker on replicas 0 and 1 (3 requests each), the talker on 0, 1 and 2 (2 each).
    for (stage, replicas, each) in [("0", 2, 3), ("1", 3, 2)] {
        let mut total = 0.0;
        for replica in 0..replicas {
            let replica = replica.to_string();
            let series = histogram(
                &parsed,
                "vllm_omni:stage_gen_time_s",
                &[model, ("stage", stage), ("replica", &replica)],
            );
            assert_eq!(series.count, Some(each), "stage {stage} replica {replica}");
            total += series.sum.expect("a sum").as_f64();
        }
        // `sum by (stage)` over the replicas is the stage's whole.
        let id: u64 = stage.parse().expect("an id");
        let want: f64 = records
            .iter()
            .map(|r| r.stage(id).expect("ran").stage_gen_time_ms / 1000.0)
            .sum();
        assert!((total - want).abs() < 1e-9, "{total} vs {want}");
    }
    // Each edge series by both ends' replicas, as the records give them.
    let mut by_ends: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    for r in &records {
        let e = r.edge(0, 1).expect("the edge");
        let ends = (e.from_replica.expect("given"), e.to_replica.expect("given"));
        *by_ends.entry(ends).or_default() += e.size_bytes as f64;
    }
    for ((from, to), bytes) in &by_ends {
        let (from, to) = (from.to_string(), to.to_string());
        let size = histogram(
            &parsed,
            "vllm_omni:transfer_size_bytes",
            &[
                model,
                ("from_stage", "0"),
                ("from_replica", &from),
                ("to_stage", "1"),
                ("to_replica", &to),
            ],
        );
        assert_eq!(size.sum.expect("a sum").as_f64(), *bytes);
    }
    // The audio stage's families by its replica too; label-less families by the model.
    let frames = counter(
        &parsed,
        "vllm_omni:audio_frames",
        &[model, ("stage", "1"), ("replica", "2")],
    );
    assert!(frames > 0.0);
    assert_eq!(
        counter(
            &parsed,
            "vllm_omni:requests_success",
            &[model, ("finished_reason", "stop")]
        ),
        6.0
    );
    // vLLM-Omni's label order, in the classic text a plain client reads.
    let (_, classic) = h.prometheus.encode_for(None);
    assert!(
        classic.contains(
            "vllm_omni:transfer_tx_s_count{model_name=\"qwen3-omni\",from_stage=\"0\",\
             from_replica=\"1\",to_stage=\"1\",to_replica=\"1\"} 1\n"
        ),
        "{classic}"
    );
    assert!(
        classic.contains(
            "vllm_omni:stage_gen_time_s_count{model_name=\"qwen3-omni\",stage=\"0\",replica=\"1\"} 3\n"
        ),
        "{classic}"
    );
    for family in parsed.families.values() {
        for sample in family.iter_samples() {
            let labels = labels_of(sample);
            assert!(
                labels.contains(&("model_name".to_owned(), "qwen3-omni".to_owned())),
                "{}: {labels:?}",
                family.family_name
            );
        }
    }
}

#[test]
fn replica_ids_beyond_the_cap_are_counted_not_exported() {
    const CAP: u64 = 64;
    let sink = PrometheusSink::unserved();
    for replica in 0..CAP + 2 {
        sink.on_request(&RequestE2EStats {
            stages: vec![StageRequestStats {
                stage_id: 0,
                replica_id: Some(replica),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let text = sink.encode();
    let parsed = parse(&text);
    let last = (CAP - 1).to_string();
    assert_eq!(
        histogram(
            &parsed,
            "vllm_omni:stage_gen_time_s",
            &[("stage", "0"), ("replica", &last)]
        )
        .count,
        Some(1)
    );
    assert!(!text.contains(&format!("replica=\"{CAP}\"")), "{text}");
    // Two replicas over, three stage histograms each (gen, queue, postprocess).
    assert_eq!(sink.overflowed_observations(), 6);
    // The requests themselves still count.
    assert_eq!(
        counter(
            &parsed,
            "vllm_omni:requests_success",
            &[("finished_reason", "stop")]
        ),
        (CAP + 2) as f64
    );
}

const CHILD: &str = "OMNI_TEST_CHILD";

/// Runs the test `name` of this binary as a child with `OMNI_METRICS_MODEL_NAME` set to
/// `model` (raw bytes: it may not be UTF-8); its stdout and stderr.
fn run_child(name: &str, model: &[u8]) -> (String, String) {
    use std::os::unix::ffi::OsStrExt as _;
    let exe = std::env::current_exe().expect("test binary path");
    let out: Output = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env(
            "OMNI_METRICS_MODEL_NAME",
            std::ffi::OsStr::from_bytes(model),
        )
        .env_remove("RUST_LOG")
        .env_remove("OMNI_METRICS_PROMETHEUS_ADDR")
        .env_remove("OMNI_METRICS_JSONL")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// In the child: a layer (named in code when `code` is given) with a Prometheus sink, one
/// request; prints the record's model name and the scrape.
fn child_scrape(code: Option<&str>) {
    let prometheus = PrometheusSink::unserved();
    let capture = omni_metrics::testing::CaptureSink::new();
    let mut builder = omni_metrics::OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(prometheus.clone())
        .with_sink(capture.clone());
    if let Some(name) = code {
        builder = builder.with_model_name(name);
    }
    let layer = builder.build().expect("a model name never fails the build");
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing::subscriber::with_default(subscriber, || {
        // The builder's warnings are said from a thread once the layer has joined.
        std::thread::sleep(std::time::Duration::from_millis(300));
        omni_metrics::instrument::Request::start("r-1").finish();
    });
    let record = &capture.requests()[0];
    println!("record model_name: {:?}", record.model_name.as_deref());
    println!("{}", prometheus.encode_for(None).1);
}

#[test]
fn the_model_name_comes_from_the_variable_and_code_wins() {
    const VARIABLE: &str = "replicas::the_model_name_comes_from_the_variable_and_code_wins";
    if std::env::var(CHILD).is_ok_and(|s| s == VARIABLE) {
        return child_scrape(None);
    }
    let (stdout, _) = run_child(VARIABLE, b"  env-model  ");
    assert!(
        stdout.contains("record model_name: Some(\"env-model\")"),
        "trimmed: {stdout}"
    );
    assert!(
        stdout.contains(
            "vllm_omni:requests_success_total{model_name=\"env-model\",finished_reason=\"stop\"} 1\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(UNNAMED), "{stdout}");
}

#[test]
fn code_wins_over_the_model_name_variable() {
    const NAME: &str = "replicas::code_wins_over_the_model_name_variable";
    if std::env::var(CHILD).is_ok_and(|s| s == NAME) {
        return child_scrape(Some("code-model"));
    }
    let (stdout, _) = run_child(NAME, b"env-model");
    assert!(
        stdout.contains("record model_name: Some(\"code-model\")"),
        "{stdout}"
    );
    assert!(
        stdout.contains("vllm_omni:prompt_tokens_total{model_name=\"code-model\"} 0\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("env-model"), "{stdout}");
}

#[test]
fn a_model_name_that_is_not_utf8_is_a_warning_and_no_name() {
    const NAME: &str = "replicas::a_model_name_that_is_not_utf8_is_a_warning_and_no_name";
    if std::env::var(CHILD).is_ok_and(|s| s == NAME) {
        return child_scrape(None);
    }
    let (stdout, stderr) = run_child(NAME, b"qwen\xff");
    assert!(stdout.contains("record model_name: None"), "{stdout}");
    assert!(
        stdout.contains("vllm_omni:prompt_tokens_total{model_name=\"unknown\"} 0\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("OMNI_METRICS_MODEL_NAME=") && stderr.contains("is not UTF-8"),
        "{stderr}"
    );
}
