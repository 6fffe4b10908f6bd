//! Field-by-field comparison of the layer's records with the model's: every mismatch is
//! listed, by path (`request r-3 stage 1 inter_output_ms: crate 4.0, model 2.0`).

use std::collections::BTreeMap;
use std::fmt::Debug;

use omni_metrics::stats::LatencyStats;
use omni_metrics::stats::{OverallSummary, RequestE2EStats, StageRequestStats, TransferEdgeStats};

use crate::drive::Outcome;
use crate::reference::{Edge, Expected, Req, Stage, Summary};

/// Relative tolerance of float comparisons (absolute below 1).
const TOLERANCE: f64 = 1e-9;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

fn to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Mismatches, each a line naming the field.
#[derive(Default)]
pub(crate) struct Diff {
    pub(crate) lines: Vec<String>,
}

impl Diff {
    fn push(&mut self, path: &str, field: &str, got: impl Debug, want: impl Debug) {
        self.lines
            .push(format!("{path} {field}: crate {got:?}, model {want:?}"));
    }

    fn eq<T: PartialEq + Debug>(&mut self, path: &str, field: &str, got: T, want: T) {
        if got != want {
            self.push(path, field, got, want);
        }
    }

    fn float(&mut self, path: &str, field: &str, got: f64, want: f64) {
        if !close(got, want) {
            self.push(path, field, got, want);
        }
    }

    fn opt_float(&mut self, path: &str, field: &str, got: Option<f64>, want: Option<f64>) {
        let same = match (got, want) {
            (Some(a), Some(b)) => close(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.push(path, field, got, want);
        }
    }

    fn one_of(&mut self, path: &str, field: &str, got: u64, allowed: &[u64]) {
        if !allowed.contains(&got) {
            match allowed {
                [one] => self.push(path, field, got, one),
                _ => self.push(path, field, got, format!("one of {allowed:?}")),
            }
        }
    }
}

/// Every mismatch between what the layer reported and what the model expects.
pub(crate) fn compare(outcome: &Outcome, expected: &Expected) -> Vec<String> {
    let mut d = Diff::default();
    let mut got: BTreeMap<&str, Vec<&RequestE2EStats>> = BTreeMap::new();
    for r in &outcome.requests {
        got.entry(r.request_id.as_str()).or_default().push(r);
    }
    for want in &expected.requests {
        let path = format!("request {}", want.request_id);
        match got.remove(want.request_id.as_str()).as_deref() {
            Some([r]) => request(&mut d, &path, r, want),
            Some(many) => d.push(&path, "records", many.len(), 1),
            None => d.push(&path, "record", "none", "one"),
        }
    }
    for (id, extra) in got {
        d.push(
            &format!("request {id}"),
            "record",
            extra.len(),
            "none expected",
        );
    }
    let mut got: BTreeMap<&str, Vec<&OverallSummary>> = BTreeMap::new();
    for s in &outcome.summaries {
        got.entry(s.scope.as_str()).or_default().push(s);
    }
    for want in &expected.summaries {
        let path = format!("summary {}", want.scope);
        match got.remove(want.scope.as_str()).as_deref() {
            Some([s]) => summary(&mut d, &path, s, want),
            Some(many) => d.push(&path, "summaries", many.len(), 1),
            None => d.push(&path, "summary", "none", "one"),
        }
    }
    for (scope, extra) in got {
        d.push(
            &format!("summary {scope}"),
            "summary",
            extra.len(),
            "none expected",
        );
    }
    d.lines
}

// Each record is destructured field by field (no `..`): a field added to a record type
// fails to compile here until it is compared.

fn request(d: &mut Diff, path: &str, r: &RequestE2EStats, m: &Req) {
    let RequestE2EStats {
        request_id: _, // matched by
        status,
        status_message,
        scope,
        model_name,
        trace_id,
        source,
        e2e_total_ms,
        e2e_total_tokens,
        transfers_total_time_ms,
        transfers_total_kbytes,
        time_to_first_output_ms,
        time_to_first_audio_ms,
        audio_duration_ms,
        audio_e2e_rtf,
        invalid_spans,
        stages,
        transfers,
        start_ns,
        end_ns,
    } = r;
    d.eq(path, "status", status.as_str(), m.status);
    d.eq(path, "status_message", status_message, &m.status_message);
    d.eq(path, "scope", scope, &m.scope);
    d.eq(path, "trace_id", trace_id, &None);
    // The layer's own spans: the convention's.
    d.eq(path, "source", source, &None);
    // The model's layers name no model.
    d.eq(path, "model_name", model_name, &None);
    d.float(path, "e2e_total_ms", *e2e_total_ms, to_ms(m.e2e_us));
    d.eq(
        path,
        "e2e_total_tokens",
        *e2e_total_tokens,
        m.e2e_total_tokens,
    );
    let total = to_ms(m.transfers_total_us);
    d.float(
        path,
        "transfers_total_time_ms",
        *transfers_total_time_ms,
        total,
    );
    let kbytes = m.transfers_total_kbytes;
    d.float(
        path,
        "transfers_total_kbytes",
        *transfers_total_kbytes,
        kbytes,
    );
    let first = m.time_to_first_output_us.map(to_ms);
    d.opt_float(
        path,
        "time_to_first_output_ms",
        *time_to_first_output_ms,
        first,
    );
    let audio = m.time_to_first_audio_us.map(to_ms);
    d.opt_float(
        path,
        "time_to_first_audio_ms",
        *time_to_first_audio_ms,
        audio,
    );
    d.opt_float(
        path,
        "audio_duration_ms",
        *audio_duration_ms,
        m.audio_duration_ms,
    );
    d.opt_float(path, "audio_e2e_rtf", *audio_e2e_rtf, m.audio_e2e_rtf);
    d.eq(path, "invalid_spans", *invalid_spans, 0);
    d.eq(path, "start_ns", *start_ns, m.start * 1000);
    d.eq(path, "end_ns", *end_ns, m.end * 1000);

    let got_ids: Vec<u64> = stages.iter().map(|s| s.stage_id).collect();
    let want_ids: Vec<u64> = m.stages.iter().map(|s| s.stage_id).collect();
    d.eq(path, "stages (ids, in order)", &got_ids, &want_ids);
    for want in &m.stages {
        if let Some(got) = stages.iter().find(|s| s.stage_id == want.stage_id) {
            stage(
                d,
                &format!("{path} stage {}", want.stage_id),
                got,
                want,
                m.status,
            );
        }
    }
    let got_edges: Vec<(u64, u64)> = transfers
        .iter()
        .map(|e| (e.from_stage, e.to_stage))
        .collect();
    let want_edges: Vec<(u64, u64)> = m.edges.iter().map(|e| (e.from, e.to)).collect();
    d.eq(path, "transfers (edges, in order)", &got_edges, &want_edges);
    for want in &m.edges {
        let found = transfers
            .iter()
            .find(|e| (e.from_stage, e.to_stage) == (want.from, want.to));
        if let Some(got) = found {
            let path = format!("{path} edge {}->{}", want.from, want.to);
            edge(d, &path, got, want);
        }
    }
}

fn stage(d: &mut Diff, path: &str, s: &StageRequestStats, m: &Stage, status: &str) {
    let StageRequestStats {
        stage_id: _, // matched by
        stage_name,
        batch_id,
        batch_size,
        num_tokens_in,
        num_tokens_out,
        stage_gen_time_ms,
        postprocess_time_ms,
        audio_generated_frames,
        image_num,
        resolution,
        queue_time_ms,
        audio_sample_rate,
        spans,
        wall_time_ms,
        output_chunks,
        output_units,
        time_to_first_output_ms,
        inter_output_ms,
        inter_output_gaps_ms,
        audio_duration_ms,
        audio_rtf,
        first_output_ns,
        last_output_ns,
        start_ns,
        end_ns,
        batch_recorded,
        replica_id,
        num_inference_steps,
        denoise_step_latency_ms,
        video_frames,
        video_fps,
        video_duration_ms,
        video_rtf,
        audio_underrun_ms,
        audio_max_gap_ms,
        audio_continuity,
        audio_skipped,
        audio_gaps_ns,
    } = s;
    // The gaps kept: one per gap above 0, up to the bound (their sum is the underrun).
    let kept_ms: f64 = audio_gaps_ns
        .iter()
        .map(|(a, b)| (b - a) as f64 / 1e6)
        .sum();
    // Their ends are on the clock's nanoseconds: each within half of one of the sum.
    let want_ms = m.audio_gaps_ms.map_or(0.0, |g| g.0);
    if audio_gaps_ns.len() < omni_metrics::stats::MAX_AUDIO_GAPS
        && (kept_ms - want_ms).abs() > 1e-6 * (audio_gaps_ns.len() as f64 + 1.0)
    {
        d.push(path, "audio_gaps_ns (summed, ms)", kept_ms, want_ms);
    }
    // Audio continuity: judged at the harness's default threshold, 100 ms; an audio stage
    // without audio is skipped, for its request's status.
    let gaps = m.audio_gaps_ms;
    d.opt_float(
        path,
        "audio_underrun_ms",
        *audio_underrun_ms,
        gaps.map(|g| g.0),
    );
    d.opt_float(
        path,
        "audio_max_gap_ms",
        *audio_max_gap_ms,
        gaps.map(|g| g.1),
    );
    let judged: Vec<(u64, bool)> = audio_continuity
        .iter()
        .map(|c| (c.threshold_ms, c.ok))
        .collect();
    let want: Vec<(u64, bool)> = gaps.map(|g| vec![(100, g.1 <= 100.0)]).unwrap_or_default();
    if gaps.is_none_or(|g| (g.1 - 100.0).abs() > 1e-6) {
        d.eq(path, "audio_continuity", judged, want);
    }
    let skipped = (m.audio_sample_rate.is_some()
        && gaps.is_none()
        && m.audio_generated_frames == 0
        && m.output_units == 0)
        .then_some(match status {
            "ok" => "no_frames",
            other => other,
        });
    d.eq(path, "audio_skipped", *audio_skipped, skipped);
    // The generator gives no replica, diffusion or video field (tests/layer covers them):
    // each stays absent.
    d.eq(path, "replica_id", *replica_id, None);
    d.eq(path, "num_inference_steps", *num_inference_steps, None);
    d.eq(
        path,
        "denoise_step_latency_ms",
        *denoise_step_latency_ms,
        None,
    );
    d.eq(path, "video_frames", *video_frames, 0);
    d.eq(path, "video_fps", *video_fps, None);
    d.eq(path, "video_duration_ms", *video_duration_ms, None);
    d.eq(path, "video_rtf", *video_rtf, None);
    d.eq(
        path,
        "stage_name",
        stage_name.as_deref(),
        m.stage_name.as_deref(),
    );
    d.one_of(path, "batch_id", *batch_id, &m.batch_id);
    d.one_of(path, "batch_size", *batch_size, &m.batch_size);
    d.eq(path, "batch_recorded", *batch_recorded, m.batch_recorded);
    d.eq(path, "num_tokens_in", *num_tokens_in, m.num_tokens_in);
    d.eq(path, "num_tokens_out", *num_tokens_out, m.num_tokens_out);
    d.float(
        path,
        "stage_gen_time_ms",
        *stage_gen_time_ms,
        to_ms(m.gen_us),
    );
    let postprocess = to_ms(m.postprocess_us);
    d.float(
        path,
        "postprocess_time_ms",
        *postprocess_time_ms,
        postprocess,
    );
    d.float(path, "queue_time_ms", *queue_time_ms, to_ms(m.queue_us));
    let frames = m.audio_generated_frames;
    d.eq(
        path,
        "audio_generated_frames",
        *audio_generated_frames,
        frames,
    );
    d.eq(
        path,
        "audio_sample_rate",
        *audio_sample_rate,
        m.audio_sample_rate,
    );
    d.eq(path, "image_num", *image_num, m.image_num);
    d.eq(
        path,
        "resolution",
        resolution.as_deref(),
        m.resolution.as_deref(),
    );
    d.eq(path, "spans", *spans, m.spans);
    d.float(path, "wall_time_ms", *wall_time_ms, to_ms(m.end - m.start));
    d.eq(path, "start_ns", *start_ns, m.start * 1000);
    d.eq(path, "end_ns", *end_ns, m.end * 1000);
    d.eq(path, "output_chunks", *output_chunks, m.output_chunks);
    d.eq(path, "output_units", *output_units, m.output_units);
    let first = m.first_output.map(|t| t * 1000);
    d.eq(path, "first_output_ns", *first_output_ns, first);
    let last = m.last_output.map(|t| t * 1000);
    d.eq(path, "last_output_ns", *last_output_ns, last);
    let ttfo = m.time_to_first_output_us.map(to_ms);
    d.opt_float(
        path,
        "time_to_first_output_ms",
        *time_to_first_output_ms,
        ttfo,
    );
    d.opt_float(path, "inter_output_ms", *inter_output_ms, m.inter_output_ms);
    // Compared as sorted lists: SPEC.md fixes the gaps' values, not the order the record
    // keeps them in.
    let mut got: Vec<f64> = inter_output_gaps_ms.clone();
    got.sort_by(f64::total_cmp);
    let mut want: Vec<f64> = m.gaps_us.iter().map(|g| to_ms(*g)).collect();
    want.sort_by(f64::total_cmp);
    let same = got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| close(*a, *b));
    if !same {
        d.push(path, "inter_output_gaps_ms (sorted)", got, want);
    }
    d.opt_float(
        path,
        "audio_duration_ms",
        *audio_duration_ms,
        m.audio_duration_ms,
    );
    d.opt_float(path, "audio_rtf", *audio_rtf, m.audio_rtf);
}

fn edge(d: &mut Diff, path: &str, e: &TransferEdgeStats, m: &Edge) {
    let TransferEdgeStats {
        edge,
        from_stage,
        to_stage,
        size_kbytes,
        tx_time_ms,
        rx_decode_time_ms,
        in_flight_time_ms,
        size_bytes,
        transfers,
        start_ns,
        end_ns,
        from_replica,
        to_replica,
    } = e;
    d.eq(
        path,
        "from_replica, to_replica",
        (*from_replica, *to_replica),
        (None, None),
    );
    d.eq(
        path,
        "from_stage, to_stage",
        (*from_stage, *to_stage),
        (m.from, m.to),
    );
    d.eq(path, "edge", (edge.from, edge.to), (m.from, m.to));
    d.eq(
        path,
        "edge (as text)",
        edge.to_string(),
        format!("{}->{}", m.from, m.to),
    );
    d.eq(path, "size_bytes", *size_bytes, m.size_bytes);
    d.float(
        path,
        "size_kbytes",
        *size_kbytes,
        m.size_bytes as f64 / 1024.0,
    );
    d.float(path, "tx_time_ms", *tx_time_ms, to_ms(m.tx_us));
    d.float(
        path,
        "rx_decode_time_ms",
        *rx_decode_time_ms,
        to_ms(m.rx_us),
    );
    d.float(
        path,
        "in_flight_time_ms",
        *in_flight_time_ms,
        to_ms(m.in_flight_us),
    );
    d.eq(path, "transfers", *transfers, m.transfers);
    d.eq(path, "start_ns", *start_ns, m.start * 1000);
    d.eq(path, "end_ns", *end_ns, m.end * 1000);
}

fn summary(d: &mut Diff, path: &str, s: &OverallSummary, m: &Summary) {
    let OverallSummary {
        scope: _, // matched by
        model_name,
        source,
        e2e_requests,
        e2e_wall_time_ms,
        e2e_total_tokens,
        e2e_avg_time_per_request_ms,
        e2e_avg_tokens_per_s,
        stage_wall_time_ms,
        e2e_requests_error,
        e2e_requests_aborted,
        invalid_spans,
        distributions,
        audio_streams,
        audio_continuity_ok,
        audio_skipped_requests,
        e2e_images,
        e2e_images_per_s,
        e2e_megapixels_per_s,
    } = s;
    d.eq(path, "e2e_images", *e2e_images, m.images);
    let per_s = |n: u64| {
        if m.wall_us == 0 {
            0.0
        } else {
            n as f64 * 1000.0 / to_ms(m.wall_us)
        }
    };
    d.float(path, "e2e_images_per_s", *e2e_images_per_s, per_s(m.images));
    d.float(
        path,
        "e2e_megapixels_per_s",
        *e2e_megapixels_per_s,
        per_s(m.pixels) / 1e6,
    );
    d.eq(path, "model_name", model_name, &None);
    d.eq(path, "source", source, &None);
    d.eq(path, "audio_streams", *audio_streams, m.audio_streams);
    let want_ok: Vec<(u64, u64)> = if m.audio_streams > 0 {
        vec![(100, m.audio_ok_100ms)]
    } else {
        Vec::new()
    };
    d.eq(path, "audio_continuity_ok", audio_continuity_ok, &want_ok);
    d.eq(
        path,
        "audio_skipped_requests",
        *audio_skipped_requests,
        m.audio_skipped,
    );
    d.eq(path, "e2e_requests", *e2e_requests, m.e2e_requests);
    d.float(
        path,
        "e2e_wall_time_ms",
        *e2e_wall_time_ms,
        to_ms(m.wall_us),
    );
    d.eq(
        path,
        "e2e_total_tokens",
        *e2e_total_tokens,
        m.e2e_total_tokens,
    );
    let avg = m.avg_time_per_request_ms;
    d.float(
        path,
        "e2e_avg_time_per_request_ms",
        *e2e_avg_time_per_request_ms,
        avg,
    );
    d.float(
        path,
        "e2e_avg_tokens_per_s",
        *e2e_avg_tokens_per_s,
        m.avg_tokens_per_s,
    );
    d.eq(path, "e2e_requests_error", *e2e_requests_error, m.errors);
    d.eq(
        path,
        "e2e_requests_aborted",
        *e2e_requests_aborted,
        m.aborted,
    );
    d.eq(path, "invalid_spans", *invalid_spans, 0);
    let got_ids: Vec<u64> = stage_wall_time_ms.iter().map(|w| w.0).collect();
    let want_ids: Vec<u64> = m.stage_walls.iter().map(|w| w.0).collect();
    d.eq(
        path,
        "stage_wall_time_ms (ids, in order)",
        got_ids,
        want_ids,
    );
    for &(id, us) in &m.stage_walls {
        if let Some(got) = s.stage_wall_time_ms(id) {
            d.float(
                path,
                &format!("e2e_stage_{id}_wall_time_ms"),
                got,
                to_ms(us),
            );
        }
    }
    let got: BTreeMap<String, LatencyStats> = distributions
        .iter()
        .map(|(q, stats)| (q.to_string(), stats))
        .collect();
    let got_names: Vec<&String> = got.keys().collect();
    let want_names: Vec<&String> = m.distributions.keys().collect();
    d.eq(path, "distributions (quantities)", got_names, want_names);
    for (name, values) in &m.distributions {
        if let Some(stats) = got.get(name) {
            distribution(d, &format!("{path} distributions {name}"), stats, values);
        }
    }
}

/// Count and mean exact (up to float rounding), max exact (whole µs, as documented),
/// percentiles by nearest rank within the histogram's precision: at least the true value,
/// at most 0.1% above it and never above the max.
fn distribution(d: &mut Diff, path: &str, s: &LatencyStats, values: &[u64]) {
    let LatencyStats {
        count,
        mean_ms,
        p50_ms,
        p90_ms,
        p99_ms,
        max_ms,
    } = *s;
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    let max = sorted.last().copied().unwrap_or(0);
    d.eq(path, "count", count, n);
    let mean = sorted.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    d.float(path, "mean_ms", mean_ms, mean);
    d.float(path, "max_ms", max_ms, to_ms(max));
    for (field, p, got) in [
        ("p50_ms", 50, p50_ms),
        ("p90_ms", 90, p90_ms),
        ("p99_ms", 99, p99_ms),
    ] {
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let rank = (n * p).div_ceil(100).max(1);
        let exact = sorted[(rank - 1) as usize];
        let highest = (exact + exact / 1000).min(max);
        let got_us = (got * 1000.0).round() as u64;
        if !(exact..=highest).contains(&got_us) {
            let allowed = format!(
                "{} ({:.3}..={:.3} ms)",
                to_ms(exact),
                to_ms(exact),
                to_ms(highest)
            );
            d.push(path, field, got, allowed);
        }
    }
}
