//! The seed's two identities, on random pipelines, checked against the generated inputs.

use crate::support::{Harness, assert_close};
use proptest::prelude::*;
use tracing::info_span;

#[derive(Debug, Clone)]
struct StageIn {
    chunks: Vec<(u64, u64, u32)>, // (tokens_in, tokens_out, duration us) per chunk
}

#[derive(Debug, Clone)]
struct EdgeIn {
    chunks: Vec<(u64, u32, u32, u32)>, // (bytes, tx us, gap us, rx us) per chunk
}

fn pipeline() -> impl Strategy<Value = (Vec<StageIn>, Vec<EdgeIn>)> {
    let stage = prop::collection::vec((0u64..10_000, 0u64..5_000, 1u32..50_000), 1..4)
        .prop_map(|chunks| StageIn { chunks });
    let edge = prop::collection::vec(
        (0u64..50_000_000, 0u32..10_000, 0u32..5_000, 0u32..10_000),
        1..4,
    )
    .prop_map(|chunks| EdgeIn { chunks });
    (1usize..6).prop_flat_map(move |n| {
        (
            prop::collection::vec(stage.clone(), n),
            prop::collection::vec(edge.clone(), n - 1),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn identities_hold_for_random_pipelines((stages, edges) in pipeline()) {
        let h = Harness::new();
        let mut now_us = 0u64;
        h.run(|| {
            let req = info_span!("omni.request", request_id = "p");
            for (i, stage) in stages.iter().enumerate() {
                for &(tin, tout, dur) in &stage.chunks {
                    let s = info_span!(parent: &req, "omni.stage", stage_id = i as u64,
                        num_tokens_in = tin, num_tokens_out = tout);
                    now_us += u64::from(dur);
                    h.clock().set_ns(now_us * 1000);
                    drop(s);
                }
                if let Some(edge) = edges.get(i) {
                    for &(bytes, tx, gap, rx) in &edge.chunks {
                        let t = info_span!(parent: &req, "omni.transfer", from_stage = i as u64,
                            to_stage = i as u64 + 1, size_bytes = bytes);
                        let txs = info_span!(parent: &t, "omni.transfer.tx");
                        now_us += u64::from(tx);
                        h.clock().set_ns(now_us * 1000);
                        drop(txs);
                        now_us += u64::from(gap);
                        h.clock().set_ns(now_us * 1000);
                        let rxs = info_span!(parent: &t, "omni.transfer.rx_decode");
                        now_us += u64::from(rx);
                        h.clock().set_ns(now_us * 1000);
                        drop(rxs);
                    }
                }
            }
        });
        let r = &h.capture().requests()[0];
        let stage0_in: u64 = stages[0].chunks.iter().map(|c| c.0).sum();
        let outs: u64 = stages.iter().flat_map(|s| &s.chunks).map(|c| c.1).sum();
        prop_assert_eq!(r.e2e_total_tokens, stage0_in + outs);
        let time_us: u64 = edges.iter().flat_map(|e| &e.chunks)
            .map(|c| u64::from(c.1) + u64::from(c.2) + u64::from(c.3)).sum();
        assert_close(r.transfers_total_time_ms, time_us as f64 / 1000.0, "transfers_total_time_ms");
        let sum_edges: f64 = r.transfers.iter()
            .map(|e| e.tx_time_ms + e.rx_decode_time_ms + e.in_flight_time_ms).sum();
        assert_close(r.transfers_total_time_ms, sum_edges, "identity on the report");
        let bytes: u64 = edges.iter().flat_map(|e| &e.chunks).map(|c| c.0).sum();
        assert_close(r.transfers_total_kbytes, bytes as f64 / 1024.0, "kbytes");
        prop_assert_eq!(r.stages.len(), stages.len());
        prop_assert_eq!(h.handle().totals().invalid_spans, 0);
    }
}
