//! Compare finds exactly the real changes, at the stated confidence.

use std::collections::BTreeSet;

use crate::compare::warnings::WarningKind;
use crate::compare::{Compare, Measure, Side, Stat, Verdict};

use super::runs::Run;

/// A side of `run`'s requests and summary.
pub(crate) fn side(label: &str, run: &Run) -> Side {
    let (requests, summary) = run.build();
    Side::new(label, requests, &[summary])
}

/// The measures `compare` calls changed, with their verdicts.
fn changed(base: &Side, new: &Side, confidence: f64) -> BTreeSet<(String, Verdict)> {
    Compare::new()
        .with_confidence(confidence)
        .run(base, new)
        .changes()
        .map(|r| (r.measure.to_string(), r.verdict))
        .collect()
}

/// One stage 20% slower, one edge unchanged, a small real change (stage 2's queue 5%
/// longer) and noise everywhere else: over 30 seeds, compare finds the three real changes
/// (the stage, the queue, and the requests' e2e they lengthen) every time, in the right
/// direction, and nothing else in at most 5% of the comparisons (its stated confidence).
#[test]
fn compare_finds_exactly_the_real_changes_over_many_seeds() {
    let expected: BTreeSet<(String, Verdict)> = [
        ("e2e", Verdict::Worse),
        ("stage1_gen", Verdict::Worse),
        ("stage2_queue", Verdict::Worse),
    ]
    .into_iter()
    .map(|(m, v)| (m.to_owned(), v))
    .collect();
    let seeds = 30u64;
    let mut extra_seeds = 0;
    for seed in 0..seeds {
        let base = Run::new(8_000, 2 * seed);
        let mut new = Run::new(8_000, 2 * seed + 1);
        new.gen_time[1] = 1.2;
        new.queue[2] = 1.05;
        let (b, n) = (side("base", &base), side("new", &new));
        let found = changed(&b, &n, 0.95);
        let missed: Vec<_> = expected.difference(&found).collect();
        assert!(
            missed.is_empty(),
            "seed {seed}: missed {missed:?}; found {found:?}"
        );
        if found.len() > expected.len() {
            extra_seeds += 1;
            eprintln!(
                "seed {seed}: a false positive: {:?}",
                found.difference(&expected).collect::<Vec<_>>()
            );
        }
        // The unchanged edge is said unchanged, with its figures.
        let comparison = Compare::new().run(&b, &n);
        for m in [
            Measure::EdgeTx(0, 1),
            Measure::EdgeInFlight(0, 1),
            Measure::EdgeRx(0, 1),
        ] {
            let row = comparison.row(m).expect("the edge is compared");
            assert_eq!(row.verdict, Verdict::NoChange, "seed {seed}: {m}");
            assert_eq!((row.base_n, row.new_n), (8_000, 8_000));
        }
        // The stage's change is about 20% at every statistic.
        let row = comparison.row(Measure::StageGen(1)).expect("stage 1");
        for stat in [Stat::P50, Stat::P90, Stat::P99, Stat::Mean] {
            let c = row.stat(stat).and_then(|s| s.change_pct).expect("a change");
            assert!(
                (c - 20.0).abs() < 6.0,
                "seed {seed}: stage1_gen {stat:?} changed {c}%"
            );
        }
        assert!(
            comparison.warnings.is_empty(),
            "seed {seed}: {:?}",
            comparison.warnings
        );
    }
    // At most 5% of the comparisons with any false positive (30 seeds: at most 1.5).
    assert!(
        extra_seeds <= 1,
        "{extra_seeds} of {seeds} comparisons had a false positive"
    );
}

/// The most comparisons out of `trials` that may show a change when each does with
/// probability `rate`, before the rate is plainly above it: the binomial's mean plus 2.33
/// standard deviations (exceeded by chance 1% of the time).
fn allowed(trials: u64, rate: f64) -> f64 {
    let mean = trials as f64 * rate;
    mean + 2.33 * (mean * (1.0 - rate)).sqrt()
}

/// Noise only: two runs of one workload with different seeds. At the stated confidence the
/// share of comparisons with any better or worse row is at most 1 - confidence (up to
/// sampling error over the seeds); checked at 95% and, to see the bound is not met by a
/// method that never finds anything, at 80%.
#[test]
fn noise_alone_shows_changes_at_most_at_the_stated_rate() {
    let seeds = 300u64;
    for confidence in [0.95, 0.80] {
        let mut with_change = 0u64;
        for seed in 0..seeds {
            let b = side("base", &Run::new(1_000, 1_000 + 2 * seed));
            let n = side("new", &Run::new(1_000, 1_001 + 2 * seed));
            if !changed(&b, &n, confidence).is_empty() {
                with_change += 1;
            }
        }
        eprintln!(
            "confidence {confidence}: {with_change} of {seeds} noise-only comparisons showed a change"
        );
        assert!(
            with_change as f64 <= allowed(seeds, 1.0 - confidence),
            "at confidence {confidence}, {with_change} of {seeds} comparisons of noise showed a change"
        );
    }
}

/// Each kind of interval on its own keeps its level: at a per-test level of 99.2% (a
/// table of 64 tests at 50% confidence), each statistic's share of false verdicts over
/// 16 measures and 300 seeds is at most 0.8% (up to sampling error).
#[test]
fn each_interval_keeps_its_level_on_noise() {
    let seeds = 300u64;
    let mut false_verdicts: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut tested: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut alpha = 0.0;
    for seed in 0..seeds {
        let b = side("base", &Run::new(2_000, 5_000 + 2 * seed));
        let n = side("new", &Run::new(2_000, 5_001 + 2 * seed));
        let c = Compare::new().with_confidence(0.5).run(&b, &n);
        alpha = 1.0 - c.per_test_confidence();
        for s in c.rows.iter().flat_map(|r| &r.stats) {
            if s.verdict != Verdict::NotTested {
                *tested.entry(s.stat.as_str()).or_default() += 1;
            }
            if matches!(s.verdict, Verdict::Better | Verdict::Worse) {
                *false_verdicts.entry(s.stat.as_str()).or_default() += 1;
            }
        }
    }
    eprintln!("per-test level {alpha}: false verdicts {false_verdicts:?} of {tested:?}");
    for (stat, n) in &tested {
        let wrong = false_verdicts.get(stat).copied().unwrap_or(0);
        assert!(
            wrong as f64 <= allowed(*n, alpha),
            "{stat}: {wrong} false verdicts in {n} tests at level {alpha}"
        );
    }
    assert_eq!(
        tested.len(),
        4,
        "p50, p90, p99 and mean are all tested: {tested:?}"
    );
}

/// A change too small for the sample is no change; the same change with 40 times the
/// requests is found.
#[test]
fn a_small_change_needs_enough_requests() {
    let mut base = Run::new(200, 11);
    let mut new = Run::new(200, 12);
    new.gen_time[0] = 1.04;
    let small = changed(&side("base", &base), &side("new", &new), 0.95);
    assert!(!small.iter().any(|(m, _)| m == "stage0_gen"), "{small:?}");
    base.requests = 8_000;
    new.requests = 8_000;
    let large = changed(&side("base", &base), &side("new", &new), 0.95);
    assert!(
        large.contains(&("stage0_gen".to_owned(), Verdict::Worse)),
        "{large:?}"
    );
}

/// Faster is better, and the largest real change comes first.
#[test]
fn improvements_are_better_and_the_largest_change_leads() {
    let base = Run::new(3_000, 21);
    let mut new = Run::new(3_000, 22);
    new.gen_time[0] = 0.5;
    new.edges[1][0] = 1.3;
    let comparison = Compare::new().run(&side("base", &base), &side("new", &new));
    assert_eq!(comparison.rows[0].measure, Measure::StageGen(0));
    assert_eq!(comparison.rows[0].verdict, Verdict::Better);
    assert_eq!(
        comparison.row(Measure::EdgeTx(1, 2)).map(|r| r.verdict),
        Some(Verdict::Worse)
    );
    // Changed rows first, sorted by their largest real change.
    let changes: Vec<f64> = comparison
        .changes()
        .map(|r| r.largest_real_change_pct())
        .collect();
    assert!(changes.windows(2).all(|w| w[0] >= w[1]), "{changes:?}");
    let first_unchanged = comparison
        .rows
        .iter()
        .position(|r| !r.verdict.is_change())
        .unwrap_or(0);
    assert!(
        comparison.rows[first_unchanged..]
            .iter()
            .all(|r| !r.verdict.is_change())
    );
}

/// Mismatched runs are said at the top: request counts, a stage only on one side, errors,
/// a different workload.
#[test]
fn mismatched_runs_are_said_first() {
    let base = Run::new(1_000, 31);
    let mut new = Run::new(900, 32);
    new.stages = 2;
    new.error_every = Some(20);
    new.extra_prompt = 100;
    let comparison = Compare::new().run(&side("base", &base), &side("new", &new));
    let kinds: Vec<WarningKind> = comparison.warnings.iter().map(|w| w.kind).collect();
    for kind in [
        WarningKind::RequestCounts,
        WarningKind::Stages,
        WarningKind::Edges,
        WarningKind::Errors,
        WarningKind::Workload,
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind:?} warning in {:#?}",
            comparison.warnings
        );
    }
    let said = |needle: &str| {
        comparison
            .warnings
            .iter()
            .any(|w| w.message.contains(needle))
    };
    assert!(
        said("1000 in base, 900 in new"),
        "{:#?}",
        comparison.warnings
    );
    assert!(said("stage 2 only in base"), "{:#?}", comparison.warnings);
    assert!(said("1->2 only in base"), "{:#?}", comparison.warnings);
    assert!(said("new has 45 error"), "{:#?}", comparison.warnings);
    assert!(
        said("prompt tokens per request"),
        "{:#?}",
        comparison.warnings
    );
    // The error rate is a row of its own, compared as proportions.
    let row = comparison
        .row(Measure::ErrorRate)
        .expect("an error rate row");
    let rate = row.stat(Stat::Rate).expect("its rate");
    assert_eq!((rate.base, rate.new), (0.0, 5.0));
    assert_eq!(row.verdict, Verdict::Worse);
    // The stage only one side has is shown, not tested.
    assert_eq!(
        comparison.row(Measure::StageGen(2)).map(|r| r.verdict),
        Some(Verdict::NotTested)
    );
    // The table says the warnings above the rows.
    let table = comparison.to_table();
    let warning = table
        .find("warning: different request counts")
        .expect("said");
    assert!(warning < table.find("| measure").unwrap_or(0), "{table}");
}

/// Throughput is one value per run: tested with several runs a side, shown otherwise.
#[test]
fn throughput_is_compared_over_runs() {
    let sides = |slower: f64| {
        let mut requests = Vec::new();
        let mut summaries = Vec::new();
        for k in 0..4 {
            let mut run = Run::new(300, 40 + k + (slower * 100.0) as u64);
            run.scope = format!("run-{k}");
            let (r, mut s) = run.build();
            s.e2e_wall_time_ms *= slower * (1.0 + 0.01 * k as f64);
            requests.extend(r);
            summaries.push(s);
        }
        Side::new("side", requests, &summaries)
    };
    let comparison = Compare::new().run(&sides(1.0), &sides(1.5));
    let row = comparison.row(Measure::ThroughputRps).expect("throughput");
    assert_eq!((row.base_n, row.new_n), (4, 4));
    assert_eq!(row.verdict, Verdict::Worse, "{row:?}");
    // One run a side: shown, not tested.
    let one = |slower: f64| {
        let (r, mut s) = Run::new(300, 50).build();
        s.e2e_wall_time_ms *= slower;
        Side::new("side", r, &[s])
    };
    let comparison = Compare::new().run(&one(1.0), &one(1.5));
    let row = comparison.row(Measure::ThroughputRps).expect("throughput");
    assert_eq!(row.verdict, Verdict::NotTested);
    assert!(
        row.stat(Stat::Mean)
            .and_then(|s| s.change_pct)
            .is_some_and(|c| c < -30.0)
    );
}

/// A slower replica is found as that replica's change (the stage's own rows pool both);
/// audio gaps are compared as a rate, and their lengths per stage.
#[test]
fn a_slower_replica_and_audio_gaps_are_found() {
    use crate::stats::AudioContinuity;
    let build = |seed: u64, slow_replica: f64, gap_every: usize| {
        let (mut requests, summary) = Run::new(4_000, seed).build();
        for (i, r) in requests.iter_mut().enumerate() {
            let replica = (i % 2) as u64;
            r.stages[1].replica_id = Some(replica);
            if replica == 1 {
                r.stages[1].stage_gen_time_ms *= slow_replica;
            }
            let gap = i % gap_every == 0;
            r.stages[2].audio_underrun_ms = Some(if gap { 150.0 } else { 0.0 });
            r.stages[2].audio_max_gap_ms = Some(if gap { 150.0 } else { 0.0 });
            r.stages[2].audio_continuity = vec![
                AudioContinuity {
                    threshold_ms: 100,
                    ok: !gap,
                },
                AudioContinuity {
                    threshold_ms: 500,
                    ok: true,
                },
            ];
        }
        Side::new("side", requests, &[summary])
    };
    let comparison = Compare::new().run(&build(201, 1.0, 50), &build(202, 1.3, 10));
    let verdict = |m: Measure| comparison.row(m).map(|r| r.verdict);
    assert_eq!(verdict(Measure::ReplicaGen(1, 1)), Some(Verdict::Worse));
    assert_eq!(verdict(Measure::ReplicaGen(1, 0)), Some(Verdict::NoChange));
    assert_eq!(verdict(Measure::AudioGapRate), Some(Verdict::Worse));
    let rate = comparison
        .row(Measure::AudioGapRate)
        .and_then(|r| r.stat(Stat::Rate))
        .expect("a gap rate");
    assert_eq!((rate.base, rate.new), (2.0, 10.0));
    assert_eq!(
        verdict(Measure::StageAudioUnderrun(2)),
        Some(Verdict::Worse)
    );
}
