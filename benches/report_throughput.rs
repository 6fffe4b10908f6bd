//! `omni-metrics report` throughput and memory (issue 10, item 8): the replay of a trace
//! file of N requests as the Collector's file exporter writes it (OTLP JSON lines, 512 spans
//! an export), single-threaded, streaming (traces replayed and freed as they complete)
//! against holding every trace to the end (`with_window(u64::MAX)`, what the report did
//! before).
//!
//! Each request: `omni.request` (linked to the run's span) with 3 stages (a queue and a
//! post-processing child each, two `omni.output` events) and 2 transfers (tx and rx_decode
//! children): 16 spans, with the attributes the layer's annotations and the bridge export
//! (`thread.id`, `code.*`, the table's figures). One run span at the end.
//!
//! Every measurement runs in a child process of its own, so that its peak resident set
//! (`VmHWM` of `/proc/self/status`) is its own. Prints spans/s and the peak RSS.
//!
//! Run: `cargo bench --features cli --bench report_throughput` (10,000 and 100,000 requests,
//! streaming and not); `-- --quick` for CI (10,000 requests, streaming only).
//!
//! Measured on the 2-vCPU AMD EPYC VM this crate is developed on: see `docs/performance.md`
//! and, every figure, `docs/design/performance-history.md`.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use support::{Args, peak_rss_kib};

const SPANS_PER_REQUEST: u64 = 16;

/// Writes `requests` requests as collector JSON lines to `path`.
fn generate(path: &Path, requests: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let run_trace = format!("{:032x}", 0xabcdef_u128 << 64 | 1);
    let run_span = format!("{:016x}", 0xfeed_u64);
    let mut batch: Vec<String> = Vec::with_capacity(512);
    let flush = |batch: &mut Vec<String>, out: &mut dyn std::io::Write| -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"engine"}}}},{{"key":"host.name","value":{{"stringValue":"gpu-node-7"}}}}]}},"scopeSpans":[{{"scope":{{"name":"omni-metrics"}},"spans":[{}]}}]}}]}}"#,
            batch.join(",")
        )?;
        batch.clear();
        Ok(())
    };
    let t0: u64 = 1_700_000_000_000_000_000;
    let common = r#"{"key":"thread.id","value":{"intValue":"7"}},{"key":"thread.name","value":{"stringValue":"engine-worker"}},{"key":"code.filepath","value":{"stringValue":"src/engine.rs"}},{"key":"code.lineno","value":{"intValue":"120"}}"#;
    #[allow(clippy::too_many_arguments)]
    let span = |trace: &str,
                id: u64,
                parent: Option<u64>,
                name: &str,
                start: u64,
                end: u64,
                attrs: &str,
                events: &str,
                links: &str| {
        format!(
            r#"{{"traceId":"{trace}","spanId":"{id:016x}","parentSpanId":"{}","flags":257,"name":"{name}","kind":1,"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{common}{attrs}],"events":[{events}],"links":[{links}],"status":{{}}}}"#,
            parent.map(|p| format!("{p:016x}")).unwrap_or_default()
        )
    };
    let mut run_end = t0;
    for r in 0..requests {
        let trace = format!("{:032x}", (r as u128 + 1) << 64 | 0x5eed);
        let base = r * 100;
        // Requests overlap: one starts every 2 ms and takes about 60 ms.
        let start = t0 + r * 2_000_000;
        let ms = |m: u64| start + m * 1_000_000;
        // A child with no attributes of its own: queue, post-processing, tx, rx_decode.
        let leaf = |id: u64, parent: u64, name: &str, start: u64, end: u64| {
            span(&trace, id, Some(parent), name, start, end, "", "", "")
        };
        let mut spans = Vec::with_capacity(16);
        let mut t = 1;
        for stage in 0..3_u64 {
            let id = base + 10 + stage * 10;
            let (s, e) = (ms(t), ms(t + 12));
            spans.push(leaf(id + 1, id, "omni.queue", s, ms(t + 2)));
            spans.push(leaf(id + 2, id, "omni.postprocess", ms(t + 10), e));
            let events = format!(
                r#"{{"timeUnixNano":"{}","name":"omni.output","attributes":[{{"key":"units","value":{{"intValue":"8"}}}}]}},{{"timeUnixNano":"{}","name":"omni.output","attributes":[{{"key":"units","value":{{"intValue":"8"}}}}]}}"#,
                ms(t + 5),
                ms(t + 8)
            );
            let attrs = format!(
                r#",{{"key":"stage_id","value":{{"intValue":"{stage}"}}}},{{"key":"stage_name","value":{{"stringValue":"stage-{stage}"}}}},{{"key":"batch_id","value":{{"intValue":"{}"}}}},{{"key":"batch_size","value":{{"intValue":"4"}}}},{{"key":"num_tokens_in","value":{{"intValue":"{}"}}}},{{"key":"num_tokens_out","value":{{"intValue":"16"}}}},{{"key":"stage_gen_time_ms","value":{{"doubleValue":8.0}}}},{{"key":"postprocess_time_ms","value":{{"doubleValue":2.0}}}},{{"key":"queue_time_ms","value":{{"doubleValue":2.0}}}}"#,
                r / 4,
                100 + r % 50
            );
            spans.push(span(
                &trace,
                id,
                Some(base + 1),
                &format!("stage {stage} stage-{stage}"),
                s,
                e,
                &attrs,
                &events,
                "",
            ));
            t += 13;
            if stage < 2 {
                let id = base + 60 + stage * 10;
                let (s, e) = (ms(t), ms(t + 5));
                spans.push(leaf(id + 1, id, "omni.transfer.tx", s, ms(t + 1)));
                spans.push(leaf(id + 2, id, "omni.transfer.rx_decode", ms(t + 3), e));
                let attrs = format!(
                    r#",{{"key":"from_stage","value":{{"intValue":"{stage}"}}}},{{"key":"to_stage","value":{{"intValue":"{}"}}}},{{"key":"size_bytes","value":{{"intValue":"65536"}}}},{{"key":"tx_time_ms","value":{{"doubleValue":1.0}}}},{{"key":"rx_decode_time_ms","value":{{"doubleValue":2.0}}}},{{"key":"in_flight_time_ms","value":{{"doubleValue":2.0}}}}"#,
                    stage + 1
                );
                spans.push(span(
                    &trace,
                    id,
                    Some(base + 1),
                    &format!("transfer {stage}->{}", stage + 1),
                    s,
                    e,
                    &attrs,
                    "",
                    "",
                ));
                t += 6;
            }
        }
        let end = ms(t);
        run_end = run_end.max(end);
        let attrs = format!(
            r#",{{"key":"request_id","value":{{"stringValue":"r-{r}"}}}},{{"key":"status","value":{{"stringValue":"ok"}}}},{{"key":"e2e_total_ms","value":{{"doubleValue":{}.0}}}},{{"key":"e2e_total_tokens","value":{{"intValue":"200"}}}}"#,
            t
        );
        let link = format!(
            r#"{{"traceId":"{run_trace}","spanId":"{run_span}","traceState":"","attributes":[],"droppedAttributesCount":0,"flags":257}}"#
        );
        spans.push(span(
            &trace,
            base + 1,
            None,
            &format!("request r-{r}"),
            start,
            end,
            &attrs,
            "",
            &link,
        ));
        debug_assert_eq!(spans.len() as u64, SPANS_PER_REQUEST);
        for s in spans {
            batch.push(s);
            if batch.len() == 512 {
                flush(&mut batch, &mut out)?;
            }
        }
    }
    batch.push(format!(
        r#"{{"traceId":"{run_trace}","spanId":"{run_span}","parentSpanId":"","name":"run bench","kind":1,"startTimeUnixNano":"{t0}","endTimeUnixNano":"{run_end}","attributes":[{{"key":"run_id","value":{{"stringValue":"bench"}}}},{{"key":"e2e_requests","value":{{"intValue":"{requests}"}}}}],"status":{{}}}}"#
    ));
    flush(&mut batch, &mut out)?;
    out.flush()
}

/// The child: runs `omni-metrics report --format jsonl` on `path` in-process (the records
/// on standard output, which the parent counts), then prints its figures on stderr.
fn replay(path: &Path, streaming: bool, spans: u64) {
    let mut args: Vec<String> = ["omni-metrics", "report", "--format", "jsonl"]
        .into_iter()
        .map(String::from)
        .collect();
    args.extend([
        "--input-format".into(),
        "json".into(),
        "--no-progress".into(),
    ]);
    if !streaming {
        args.extend(["--window".into(), u64::MAX.to_string()]);
    }
    args.push(path.display().to_string());
    let started = Instant::now();
    let code = omni_metrics::cli::run(args);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{:>10} spans {:>9}  {:>6.2} s  {:>9.0} spans/s  peak RSS {:>7.1} MiB",
        spans,
        if streaming { "streaming" } else { "whole" },
        secs,
        spans as f64 / secs,
        peak_rss_kib() as f64 / 1024.0,
    );
    if code != std::process::ExitCode::SUCCESS {
        std::process::exit(1);
    }
}

fn main() {
    let args = Args::parse();
    if let Some([path, mode, spans]) = args.values("--child", 3) {
        replay(
            &PathBuf::from(path),
            mode == "streaming",
            spans.parse().unwrap_or(0),
        );
        return;
    }
    // For profiling: `--generate N FILE`, then `--child FILE streaming` under `perf`.
    if let Some([n, path]) = args.values("--generate", 2) {
        let n = n.parse().expect("a number of requests");
        generate(Path::new(path), n).expect("the trace file is written");
        return;
    }
    let quick = args.quick();
    support::print_machine();
    let dir = std::env::temp_dir().join(format!("omni-report-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sizes: &[u64] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let modes: &[&str] = if quick {
        &["streaming"]
    } else {
        &["streaming", "whole"]
    };
    for &n in sizes {
        let path = dir.join(format!("traces-{n}.json"));
        generate(&path, n).expect("the trace file is written");
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{n} requests: {:.1} MiB of collector JSON ({} spans)",
            bytes as f64 / (1 << 20) as f64,
            n * SPANS_PER_REQUEST + 1
        );
        for mode in modes {
            let child = std::process::Command::new(args.program())
                .args(["--child", &path.display().to_string(), mode])
                .arg((n * SPANS_PER_REQUEST + 1).to_string())
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("the child runs");
            assert!(child.status.success(), "the replay failed");
            let requests = String::from_utf8_lossy(&child.stdout)
                .lines()
                .filter(|l| l.starts_with("{\"type\":\"request\""))
                .count() as u64;
            assert_eq!(requests, n, "every request reported");
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
