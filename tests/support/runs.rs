//! Synthetic runs with known differences for `omni-metrics compare`: independent requests
//! through thinker -> talker -> code2wav with log-normal noise on every time, each stage's
//! and edge's times scaled at will. The workload (tokens per request) depends on the
//! request's index only, so two runs of one size have the same workload whatever their seeds.

use omni_metrics::stats::{
    EdgeName, OverallSummary, RequestE2EStats, RequestStatus, StageRequestStats, TransferEdgeStats,
};

const MS: f64 = 1_000_000.0;
/// The clock's reading when a run starts (the times are relative on the page).
const EPOCH_NS: u64 = 1_750_000_000 * 1_000_000_000;
const STAGE_NAMES: [&str; 3] = ["thinker", "talker", "code2wav"];
/// Median times: each stage's queue, gen and postprocess; each edge's tx, in flight, rx.
const QUEUE_MS: [f64; 3] = [2.0, 3.0, 1.5];
const GEN_MS: [f64; 3] = [120.0, 80.0, 40.0];
const POST_MS: [f64; 3] = [4.0, 2.0, 6.0];
const EDGE_MS: [[f64; 3]; 2] = [[1.5, 0.4, 2.0], [0.8, 0.3, 1.2]];
/// The spread of the log-normal noise (sigma of the log).
const SIGMA: f64 = 0.3;

/// SplitMix64: a small, good, seedable generator.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// `median` times log-normal noise.
    pub(crate) fn around(&mut self, median: f64) -> f64 {
        median * (SIGMA * self.normal()).exp()
    }
}

/// How a run differs from the reference: multipliers of each time.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) requests: usize,
    pub(crate) seed: u64,
    pub(crate) scope: String,
    pub(crate) queue: [f64; 3],
    pub(crate) gen_time: [f64; 3],
    pub(crate) post: [f64; 3],
    pub(crate) edges: [[f64; 3]; 2],
    /// Every n-th request ends in error.
    pub(crate) error_every: Option<usize>,
    /// Stages the run has (2 drops code2wav and its edge).
    pub(crate) stages: usize,
    /// Extra prompt tokens per request (a different workload).
    pub(crate) extra_prompt: u64,
}

impl Run {
    pub(crate) fn new(requests: usize, seed: u64) -> Self {
        Self {
            requests,
            seed,
            scope: format!("run-{seed}"),
            queue: [1.0; 3],
            gen_time: [1.0; 3],
            post: [1.0; 3],
            edges: [[1.0; 3]; 2],
            error_every: None,
            stages: 3,
            extra_prompt: 0,
        }
    }

    /// The run's requests and its summary.
    pub(crate) fn build(&self) -> (Vec<RequestE2EStats>, OverallSummary) {
        let mut rng = Rng::new(self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let mut requests = Vec::with_capacity(self.requests);
        let (mut first, mut last, mut ok, mut tokens) = (u64::MAX, 0u64, 0u64, 0u64);
        for i in 0..self.requests {
            let start = EPOCH_NS + (i as u64) * 5_000_000 + (rng.uniform() * 4.0 * MS) as u64;
            let mut t = start as f64;
            let mut stages = Vec::with_capacity(3);
            let mut transfers = Vec::with_capacity(2);
            for k in 0..self.stages {
                let queue = rng.around(QUEUE_MS[k]) * self.queue[k];
                let gen_ms = rng.around(GEN_MS[k]) * self.gen_time[k];
                let post = rng.around(POST_MS[k]) * self.post[k];
                let begin = t;
                t += (queue + gen_ms + post) * MS;
                // Tokens depend on the request only: the same workload on every side.
                let tokens_in = if k == 0 {
                    100 + (i as u64 * 37) % 200 + self.extra_prompt
                } else {
                    50
                };
                stages.push(StageRequestStats {
                    stage_id: k as u64,
                    stage_name: Some(STAGE_NAMES[k].into()),
                    batch_size: 1,
                    num_tokens_in: tokens_in,
                    num_tokens_out: 20 + (i as u64 * 13) % 40,
                    stage_gen_time_ms: gen_ms,
                    postprocess_time_ms: post,
                    queue_time_ms: queue,
                    spans: 1,
                    wall_time_ms: (t - begin) / MS,
                    start_ns: begin as u64,
                    end_ns: t as u64,
                    ..Default::default()
                });
                if k + 1 < self.stages {
                    let e = &self.edges[k];
                    let tx = rng.around(EDGE_MS[k][0]) * e[0];
                    let flight = rng.around(EDGE_MS[k][1]) * e[1];
                    let rx = rng.around(EDGE_MS[k][2]) * e[2];
                    let begin = t;
                    t += (tx + flight + rx) * MS;
                    transfers.push(TransferEdgeStats {
                        edge: EdgeName {
                            from: k as u64,
                            to: k as u64 + 1,
                        },
                        from_stage: k as u64,
                        to_stage: k as u64 + 1,
                        size_kbytes: 64.0,
                        tx_time_ms: tx,
                        rx_decode_time_ms: rx,
                        in_flight_time_ms: flight,
                        size_bytes: 65_536,
                        transfers: 1,
                        start_ns: begin as u64,
                        end_ns: t as u64,
                        ..Default::default()
                    });
                }
            }
            let end = t as u64;
            let status = match self.error_every {
                Some(n) if i % n == n - 1 => RequestStatus::Error,
                _ => RequestStatus::Ok,
            };
            let total_tokens =
                stages[0].num_tokens_in + stages.iter().map(|s| s.num_tokens_out).sum::<u64>();
            if status == RequestStatus::Ok {
                ok += 1;
                tokens += total_tokens;
            }
            first = first.min(start);
            last = last.max(end);
            requests.push(RequestE2EStats {
                request_id: format!("req-{i}"),
                status,
                scope: self.scope.clone(),
                e2e_total_ms: (end - start) as f64 / MS,
                e2e_total_tokens: total_tokens,
                transfers_total_time_ms: transfers.iter().map(|e| e.total_time_ms()).sum(),
                transfers_total_kbytes: 64.0 * transfers.len() as f64,
                stages,
                transfers,
                start_ns: start,
                end_ns: end,
                ..Default::default()
            });
        }
        let wall = last.saturating_sub(first) as f64 / MS;
        let summary = OverallSummary {
            scope: self.scope.clone(),
            e2e_requests: ok,
            e2e_wall_time_ms: wall,
            e2e_total_tokens: tokens,
            e2e_avg_time_per_request_ms: wall / ok.max(1) as f64,
            e2e_avg_tokens_per_s: tokens as f64 * 1000.0 / wall.max(1e-9),
            ..Default::default()
        };
        (requests, summary)
    }
}
