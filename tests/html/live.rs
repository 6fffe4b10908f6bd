//! The live report: `Builder::with_html_path` (and `OMNI_METRICS_HTML`) write each run's
//! page when it closes, on the layer's thread; the cap; failures warned once, never a panic.

use std::time::Duration;

use omni_metrics::OmniMetricsLayer;
use omni_metrics::instrument::{Request, Run};
use omni_metrics::testing::CaptureSink;
use tracing_subscriber::prelude::*;

use super::shared_buf::SharedBuf;
use super::support::{attr, blob, browser, rendered_dom, temp_dir};

/// Runs `requests` requests of two stages and one transfer in a run named `run_id`, then one
/// online request, under `layer`; returns what a capture sink saw.
fn scenario(
    layer: omni_metrics::Builder,
    run_id: &str,
    requests: usize,
) -> (CaptureSink, omni_metrics::MetricsHandle) {
    let capture = CaptureSink::new();
    let layer = layer
        .with_console(false)
        .with_sink(capture.clone())
        .build()
        .expect("the layer");
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let run = Run::with_id(run_id);
        for i in 0..requests {
            let request = run.request(&format!("r-{i}"));
            let thinker = request.stage(0);
            thinker
                .name("thinker")
                .batch(i as u64 / 2, 2)
                .tokens_in(10)
                .tokens_out(3);
            drop(thinker.queue());
            drop(thinker);
            let transfer = request.transfer(0, 1);
            transfer.size_bytes(2048);
            drop(transfer.tx());
            drop(transfer.rx_decode());
            drop(transfer);
            let talker = request.stage(1);
            talker.name("talker").tokens_out(5);
            drop(talker.postprocess());
            drop(talker);
            request.finish();
        }
        drop(run);
        // Online: its own scope, no report.
        let online = Request::start("online-1");
        drop(online.stage(0));
        online.finish();
    });
    handle.flush(Duration::from_secs(10)).expect("flushed");
    (capture, handle)
}

#[test]
fn issue11_a_run_writes_its_report_when_it_closes() {
    let dir = temp_dir("live");
    let (capture, handle) = scenario(
        OmniMetricsLayer::builder().with_html_path(dir.join("report-{scope}.html")),
        "live run/1",
        4,
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    // The scope was changed to be a file name (` ` and `/`): its hash keeps it apart from a
    // run really named `live_run_1`.
    assert_eq!(
        files,
        ["report-live_run_1-7e6a6fd2.html"],
        "one page, the run's; none online"
    );
    let path = dir.join("report-live_run_1-7e6a6fd2.html");
    let html = std::fs::read_to_string(&path).expect("the page");
    let blob = blob(&html);
    let runs: Vec<_> = capture
        .requests()
        .into_iter()
        .filter(|r| r.scope == "live run/1")
        .collect();
    assert_eq!(blob["requests"].as_array().map(Vec::len), Some(runs.len()));
    assert_eq!(blob["left_out"], 0);
    assert_eq!(handle.sink_losses().total(), 0);

    let Some(browser) = browser("issue11_a_run_writes_its_report_when_it_closes") else {
        return;
    };
    let dom = rendered_dom(&browser, &path, "");
    let bars: usize = runs
        .iter()
        .map(|r| r.stages.len() + r.transfers.len())
        .sum();
    assert_eq!(attr(&dom, "data-requests"), "4");
    assert_eq!(attr(&dom, "data-bars"), bars.to_string());
    assert_eq!(bars, 12);
    assert_eq!(
        attr(&dom, "data-batches"),
        "2",
        "the thinker's batches 0 and 1"
    );
}

#[test]
fn issue11_a_run_keeps_at_most_max_requests_and_says_how_many_are_left_out() {
    let dir = temp_dir("capped");
    let path = dir.join("report.html");
    let _ = scenario(
        OmniMetricsLayer::builder()
            .with_html_path(&path)
            .with_html_max_requests(3),
        "capped",
        5,
    );
    let blob = blob(&std::fs::read_to_string(&path).expect("the page"));
    assert_eq!(blob["requests"].as_array().map(Vec::len), Some(3));
    assert_eq!(blob["left_out"], 2);
}

#[test]
fn issue11_a_report_that_cannot_be_written_is_warned_once_never_a_panic() {
    let dir = temp_dir("unwritable");
    let path = dir.join("no-such-directory").join("report.html");
    let logs = SharedBuf::default();
    let writer = logs.clone();
    let capture = CaptureSink::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_sink(capture.clone())
        .with_html_path(&path)
        .build()
        .expect("the layer");
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer).with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false),
    );
    // Kept until the end: the warning goes to the layer's subscriber, from a thread of its
    // own, while the subscriber lives.
    let dispatch = tracing::Dispatch::new(subscriber);
    tracing::dispatcher::with_default(&dispatch, || {
        for run_id in ["a", "b"] {
            let run = Run::with_id(run_id);
            run.request("r-1").finish();
            drop(run);
        }
    });
    handle.flush(Duration::from_secs(10)).expect("flushed");
    assert_eq!(handle.sink_losses().html_failed, 2);
    // The warning is emitted from a thread of its own: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !logs.text().contains("is not written") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("HTML report is not written"));
    assert_eq!(warnings.count(), 1, "once, naming the file:\n{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_eq!(capture.summaries().len(), 2, "the engine went on");
    drop(dispatch);
}

/// A stream's playback gaps are drawn on its stage's bar, where they happened.
#[test]
fn audio_gaps_are_drawn_on_the_timeline() {
    use omni_metrics::testing::ManualClock;
    let dir = temp_dir("gaps");
    let path = dir.join("report.html");
    let clock = ManualClock::new();
    let layer = OmniMetricsLayer::builder()
        .with_console(false)
        .with_clock(clock.clone())
        .with_html_path(&path)
        .build()
        .expect("the layer");
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let run = Run::with_id("speech");
        // SPEC's example, twice: 200 ms packets at 0, 150 and 500 ms: one gap, 400 to 500.
        for k in 0..2_u64 {
            let start = k * 1_000_000_000;
            clock.set_ns(start);
            let request = run.request(&format!("r-{k}"));
            let vocoder = request.stage(2);
            vocoder.name("code2wav").audio(14_400, 24_000);
            for at in [0.0, 150.0, 500.0] {
                clock.set_ns(start + (at * 1e6) as u64);
                vocoder.output(4_800);
            }
            clock.advance_ms(10.0);
            drop(vocoder);
            request.finish();
        }
    });
    handle.flush(Duration::from_secs(10)).expect("flushed");
    let html = std::fs::read_to_string(&path).expect("the page");
    let blob = blob(&html);
    let gaps = &blob["requests"][0][14][0];
    let stage_columns = blob["columns"]["stage"].as_array().expect("columns");
    let at = stage_columns
        .iter()
        .position(|c| c == "audio_gaps")
        .expect("an audio_gaps column");
    let gap = &gaps[at][0];
    assert_eq!(
        (gap[0].as_f64(), gap[1].as_f64()),
        (Some(400.0), Some(500.0)),
        "{gaps}"
    );
    let Some(browser) = browser("audio_gaps_are_drawn_on_the_timeline") else {
        return;
    };
    let dom = rendered_dom(&browser, &path, "");
    assert_eq!(attr(&dom, "data-audio-gaps"), "2");
    assert_eq!(attr(&dom, "data-audio-gaps-drawn"), "2");
}
