//! A synthetic run for the HTML report: requests through three batching stages and two
//! edges, on a simulated clock (deterministic for a seed).

use std::collections::BTreeMap;

use omni_metrics::stats::{
    Distributions, EdgeName, LatencyStats, OverallSummary, Quantity, RequestE2EStats,
    RequestStatus, StageRequestStats, TransferEdgeStats,
};

const MS: u64 = 1_000_000;
const STAGE_NAMES: [&str; 3] = ["thinker", "talker", "code2wav"];
/// The clock's reading when the run starts (any origin works; the page is relative).
const EPOCH_NS: u64 = 1_750_000_000 * 1_000_000_000;

struct Rng(u64);

impl Rng {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn ms(&mut self, lo: f64, hi: f64) -> u64 {
        ((lo + (hi - lo) * self.next()) * MS as f64) as u64
    }
}

/// `n` requests arriving about every 5 ms into thinker -> talker -> code2wav; each stage
/// serves batches of up to 8 waiting requests, one batch at a time; every 50th request
/// fails. Returns the run's summary and its requests (in completion order of stage 0).
pub(crate) fn run(n: usize, seed: u64) -> (OverallSummary, Vec<RequestE2EStats>) {
    let mut rng = Rng(seed | 1);
    let mut arrival: Vec<u64> = (0..n)
        .map(|i| EPOCH_NS + i as u64 * 5 * MS + rng.ms(0.0, 4.0))
        .collect();
    let mut requests: Vec<RequestE2EStats> = (0..n)
        .map(|i| RequestE2EStats {
            request_id: format!("req-{i}"),
            status: if i % 50 == 49 {
                RequestStatus::Error
            } else {
                RequestStatus::Ok
            },
            scope: "synthetic-run".into(),
            start_ns: arrival[i],
            ..Default::default()
        })
        .collect();
    let mut batch_id = 0u64;
    for stage in 0..3u64 {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| arrival[i]);
        let mut free_at = 0u64;
        let mut next = 0;
        while next < order.len() {
            let start = free_at.max(arrival[order[next]]);
            let mut members = vec![order[next]];
            while members.len() < 8
                && next + members.len() < order.len()
                && arrival[order[next + members.len()]] <= start
            {
                members.push(order[next + members.len()]);
            }
            next += members.len();
            let size = members.len() as u64;
            let compute = match stage {
                0 => 10 * MS + 3 * MS * size / 2 + rng.ms(0.0, 6.0),
                1 => 14 * MS + 2 * MS * size + rng.ms(0.0, 8.0),
                _ => 4 * MS + MS * size + rng.ms(0.0, 3.0),
            };
            free_at = start + compute;
            for &i in &members {
                let post = rng.ms(0.2, 3.0);
                let queue = start - arrival[i];
                let end = start + compute + post;
                let tokens_in = 300 + (i as u64 * 97) % 4_500;
                requests[i].stages.push(StageRequestStats {
                    stage_id: stage,
                    stage_name: Some(STAGE_NAMES[stage as usize].into()),
                    batch_id,
                    batch_size: size,
                    batch_recorded: true,
                    num_tokens_in: tokens_in,
                    num_tokens_out: if stage == 2 { 0 } else { 40 + i as u64 % 200 },
                    stage_gen_time_ms: compute as f64 / MS as f64,
                    postprocess_time_ms: post as f64 / MS as f64,
                    queue_time_ms: queue as f64 / MS as f64,
                    audio_generated_frames: if stage == 2 { 24_000 * 3 } else { 0 },
                    spans: 1,
                    wall_time_ms: (end - arrival[i]) as f64 / MS as f64,
                    start_ns: arrival[i],
                    end_ns: end,
                    ..Default::default()
                });
                if stage < 2 {
                    let tx = rng.ms(0.3, 3.0);
                    let flight = rng.ms(0.05, 1.0);
                    let rx = rng.ms(0.5, 5.0);
                    let bytes = 50_000 + (i as u64 * 7_919) % 4_000_000;
                    requests[i].transfers.push(TransferEdgeStats {
                        edge: EdgeName {
                            from: stage,
                            to: stage + 1,
                        },
                        from_stage: stage,
                        to_stage: stage + 1,
                        size_kbytes: kbytes(bytes),
                        tx_time_ms: tx as f64 / MS as f64,
                        rx_decode_time_ms: rx as f64 / MS as f64,
                        in_flight_time_ms: flight as f64 / MS as f64,
                        size_bytes: bytes,
                        transfers: 1,
                        start_ns: end,
                        end_ns: end + tx + flight + rx,
                        ..Default::default()
                    });
                    arrival[i] = end + tx + flight + rx;
                } else {
                    arrival[i] = end;
                }
            }
            batch_id += 1;
        }
    }
    let mut summary = OverallSummary {
        scope: "synthetic-run".into(),
        ..Default::default()
    };
    let mut last_end = EPOCH_NS;
    let mut stage_windows = [(u64::MAX, 0u64); 3];
    for (r, end) in requests.iter_mut().zip(&arrival) {
        // After the last stage, `arrival` is when the request left it.
        r.end_ns = *end;
        r.e2e_total_ms = (r.end_ns - r.start_ns) as f64 / MS as f64;
        r.e2e_total_tokens = e2e_total_tokens(&r.stages);
        r.transfers_total_time_ms = transfers_total_time_ms(&r.transfers);
        r.transfers_total_kbytes = transfers_total_kbytes(&r.transfers);
        match r.status {
            RequestStatus::Ok => {
                summary.e2e_requests += 1;
                summary.e2e_total_tokens += r.e2e_total_tokens;
                last_end = last_end.max(r.end_ns);
                for s in &r.stages {
                    let w = &mut stage_windows[s.stage_id as usize];
                    *w = (w.0.min(s.start_ns), w.1.max(s.end_ns));
                }
            }
            RequestStatus::Error => summary.e2e_requests_error += 1,
            RequestStatus::Aborted => summary.e2e_requests_aborted += 1,
        }
    }
    summary.e2e_wall_time_ms = (last_end - EPOCH_NS) as f64 / MS as f64;
    summary.e2e_avg_time_per_request_ms =
        e2e_avg_time_per_request_ms(summary.e2e_wall_time_ms, summary.e2e_requests);
    summary.e2e_avg_tokens_per_s =
        e2e_avg_tokens_per_s(summary.e2e_total_tokens, summary.e2e_wall_time_ms);
    summary.stage_wall_time_ms = stage_windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.1 > 0)
        .map(|(id, w)| (id as u64, (w.1 - w.0) as f64 / MS as f64))
        .collect();
    summary.distributions = distributions(&requests);
    (summary, requests)
}

// The layer's formulas (internal to the crate), for records made here.

/// `bytes / 1024`.
fn kbytes(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

/// Stage 0's input tokens plus every stage's output tokens.
fn e2e_total_tokens(stages: &[StageRequestStats]) -> u64 {
    let prompt = stages
        .iter()
        .find(|s| s.stage_id == 0)
        .map_or(0, |s| s.num_tokens_in);
    prompt + stages.iter().map(|s| s.num_tokens_out).sum::<u64>()
}

/// Every edge's tx + rx_decode + in-flight time.
fn transfers_total_time_ms(edges: &[TransferEdgeStats]) -> f64 {
    edges.iter().fold(0.0, |sum, e| sum + e.total_time_ms())
}

/// Every edge's kbytes.
fn transfers_total_kbytes(edges: &[TransferEdgeStats]) -> f64 {
    edges.iter().fold(0.0, |sum, e| sum + e.size_kbytes)
}

/// Wall time per completed request (0 for none).
fn e2e_avg_time_per_request_ms(wall_ms: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        wall_ms / requests as f64
    }
}

/// Tokens per second of wall time (0 for none).
fn e2e_avg_tokens_per_s(tokens: u64, wall_ms: f64) -> f64 {
    if wall_ms > 0.0 {
        tokens as f64 * 1000.0 / wall_ms
    } else {
        0.0
    }
}

/// The distributions of the `ok` requests: latency, each stage's gen and queue time, each
/// edge's transfer time; exact nearest-rank percentiles (the layer's are within 0.1%).
fn distributions(requests: &[RequestE2EStats]) -> Distributions {
    let mut values: BTreeMap<Quantity, Vec<f64>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.status == RequestStatus::Ok) {
        let mut add = |q, v| values.entry(q).or_default().push(v);
        add(Quantity::RequestLatency, r.e2e_total_ms);
        for s in &r.stages {
            add(Quantity::StageGenTime(s.stage_id), s.stage_gen_time_ms);
            add(Quantity::StageQueueTime(s.stage_id), s.queue_time_ms);
        }
        for e in &r.transfers {
            add(Quantity::TransferTime(e.edge), e.total_time_ms());
        }
    }
    values.into_iter().map(|(q, v)| (q, latency(v))).collect()
}

/// Count, mean, nearest-rank p50/p90/p99 and max of `values`.
fn latency(mut values: Vec<f64>) -> LatencyStats {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    LatencyStats {
        count: n as u64,
        mean_ms: values.iter().sum::<f64>() / n as f64,
        p50_ms: rank(0.50),
        p90_ms: rank(0.90),
        p99_ms: rank(0.99),
        max_ms: values[n - 1],
    }
}
