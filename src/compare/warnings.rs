//! Runs that do not compare like with like: different request counts, stages or edges,
//! errors on a side, a different workload. Said at the top of every output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::Side;
use super::measures::Values;
use crate::stats::{RequestE2EStats, RequestStatus, generated_tokens, prompt_tokens};

/// What a [`Warning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum WarningKind {
    /// The sides hold different numbers of requests.
    RequestCounts,
    /// A stage (or a stage's name) is on one side only.
    Stages,
    /// An edge is on one side only.
    Edges,
    /// The stages' replicas differ.
    Replicas,
    /// A side has requests that ended in error or were aborted.
    Errors,
    /// The workload differs: tokens per request beyond the tolerance.
    Workload,
    /// The sides hold different numbers of runs, or a side has none (no throughput).
    Runs,
}

impl WarningKind {
    /// A short name: `request_counts`, `stages`, `edges`, `replicas`, `errors`,
    /// `workload`, `runs`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WarningKind::RequestCounts => "request_counts",
            WarningKind::Stages => "stages",
            WarningKind::Edges => "edges",
            WarningKind::Replicas => "replicas",
            WarningKind::Errors => "errors",
            WarningKind::Workload => "workload",
            WarningKind::Runs => "runs",
        }
    }
}

/// A way the two runs differ that the rows alone would hide.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// What to tell the reader, one sentence.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn warn(kind: WarningKind, message: String) -> Warning {
    Warning { kind, message }
}

/// The stages of a side's requests: id and the first name seen.
fn stages(side: &Side) -> BTreeMap<u64, Option<&str>> {
    let mut out: BTreeMap<u64, Option<&str>> = BTreeMap::new();
    for s in side.requests.iter().flat_map(|r| &r.stages) {
        let name = out.entry(s.stage_id).or_default();
        if name.is_none() {
            *name = s.stage_name.as_deref();
        }
    }
    out
}

/// The (stage, replica) pairs of a side's requests that name their replica.
fn replicas(side: &Side) -> BTreeSet<(u64, u64)> {
    side.requests
        .iter()
        .flat_map(|r| &r.stages)
        .filter_map(|s| Some((s.stage_id, s.replica_id?)))
        .collect()
}

fn edges(side: &Side) -> BTreeSet<(u64, u64)> {
    side.requests
        .iter()
        .flat_map(|r| &r.transfers)
        .map(|e| (e.from_stage, e.to_stage))
        .collect()
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every warning for `base` against `new`: counts and failures, the pipeline's shape
/// (stages, edges, replicas), the workload, the runs.
pub(crate) fn find(
    base: &Side,
    new: &Side,
    vb: &Values,
    vn: &Values,
    tolerance: f64,
) -> Vec<Warning> {
    let mut out = Vec::new();
    counts(base, new, vb, vn, &mut out);
    stage_mismatches(base, new, &mut out);
    edge_mismatches(base, new, &mut out);
    replica_mismatches(base, new, &mut out);
    workload(base, new, tolerance, &mut out);
    run_mismatches(base, new, &mut out);
    out
}

/// "`what` only in base; `what` only in new", when either side has some of its own.
fn only_in(what: &[String], base: &str, other: &[String], new: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !what.is_empty() {
        parts.push(format!("{} only in {base}", list(what)));
    }
    if !other.is_empty() {
        parts.push(format!("{} only in {new}", list(other)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Different request counts; requests that failed on either side.
fn counts(base: &Side, new: &Side, vb: &Values, vn: &Values, out: &mut Vec<Warning>) {
    let (lb, ln) = (&base.label, &new.label);
    if vb.total != vn.total {
        out.push(warn(
            WarningKind::RequestCounts,
            format!(
                "different request counts: {} in {lb}, {} in {ln}",
                vb.total, vn.total
            ),
        ));
    }
    for (side, v) in [(base, vb), (new, vn)] {
        if v.errors + v.aborted > 0 {
            out.push(warn(
                WarningKind::Errors,
                format!(
                    "{} has {} error and {} aborted of {} requests; latencies are of its {} ok requests",
                    side.label,
                    v.errors,
                    v.aborted,
                    v.total,
                    v.total - v.errors - v.aborted
                ),
            ));
        }
    }
}

/// Stages of one side only; a stage id with two names.
fn stage_mismatches(base: &Side, new: &Side, out: &mut Vec<Warning>) {
    let (lb, ln) = (&base.label, &new.label);
    let (sb, sn) = (stages(base), stages(new));
    // "stage 1, 2 only in base": one part per side.
    let only = |a: &BTreeMap<u64, Option<&str>>, b: &BTreeMap<u64, Option<&str>>| {
        let ids: Vec<u64> = a.keys().filter(|k| !b.contains_key(k)).copied().collect();
        if ids.is_empty() {
            Vec::new()
        } else {
            vec![format!("stage {}", list(&ids))]
        }
    };
    if let Some(parts) = only_in(&only(&sb, &sn), lb, &only(&sn, &sb), ln) {
        out.push(warn(
            WarningKind::Stages,
            format!("different stages: {parts}"),
        ));
    }
    for (id, name) in &sb {
        if let (Some(Some(a)), Some(Some(b))) = (Some(name), sn.get(id)) {
            if a != b {
                out.push(warn(
                    WarningKind::Stages,
                    format!(
                        "stage {id} is {} in {lb} and {} in {ln}",
                        crate::report::table::printable(a, false),
                        crate::report::table::printable(b, false)
                    ),
                ));
            }
        }
    }
}

/// Edges of one side only.
fn edge_mismatches(base: &Side, new: &Side, out: &mut Vec<Warning>) {
    let (eb, en) = (edges(base), edges(new));
    let edge = |(a, b): &(u64, u64)| format!("{a}->{b}");
    let only_b: Vec<String> = eb.difference(&en).map(edge).collect();
    let only_n: Vec<String> = en.difference(&eb).map(edge).collect();
    if let Some(parts) = only_in(&only_b, &base.label, &only_n, &new.label) {
        out.push(warn(
            WarningKind::Edges,
            format!("different edges: {parts}"),
        ));
    }
}

/// Different replicas serving the stages.
fn replica_mismatches(base: &Side, new: &Side, out: &mut Vec<Warning>) {
    let (rb, rn) = (replicas(base), replicas(new));
    if rb != rn && !(rb.is_empty() && rn.is_empty()) {
        let show = |r: &BTreeSet<(u64, u64)>| {
            if r.is_empty() {
                "none".to_owned()
            } else {
                list(r.iter().map(|(s, r)| format!("stage {s} r{r}")))
            }
        };
        out.push(warn(
            WarningKind::Replicas,
            format!(
                "different replicas: {} in {}; {} in {}",
                show(&rb),
                base.label,
                show(&rn),
                new.label
            ),
        ));
    }
}

/// No run summary on a side (no throughput), or different run counts.
fn run_mismatches(base: &Side, new: &Side, out: &mut Vec<Warning>) {
    let (lb, ln) = (&base.label, &new.label);
    let (rb, rn) = (base.runs.len(), new.runs.len());
    if rb == 0 || rn == 0 {
        out.push(warn(
            WarningKind::Runs,
            format!(
                "no run summary in {}: throughput is not compared",
                if rb == 0 && rn == 0 {
                    format!("{lb} nor {ln}")
                } else if rb == 0 {
                    lb.clone()
                } else {
                    ln.clone()
                }
            ),
        ));
    } else if rb != rn {
        out.push(warn(
            WarningKind::Runs,
            format!("different run counts: {rb} in {lb}, {rn} in {ln}"),
        ));
    }
}

/// Mean prompt and generated tokens of a side's ok requests.
fn token_means(side: &Side) -> Option<(f64, f64)> {
    let ok: Vec<&RequestE2EStats> = side
        .requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
        .collect();
    if ok.is_empty() {
        return None;
    }
    let n = ok.len() as f64;
    let prompt = ok
        .iter()
        .map(|r| prompt_tokens(&r.stages) as f64)
        .sum::<f64>()
        / n;
    let generated = ok
        .iter()
        .map(|r| generated_tokens(&r.stages) as f64)
        .sum::<f64>()
        / n;
    Some((prompt, generated))
}

/// Whether `a` and `b` differ by more than `tolerance` of the larger.
fn differs(a: f64, b: f64, tolerance: f64) -> bool {
    let scale = a.abs().max(b.abs());
    scale > 0.0 && (a - b).abs() > tolerance * scale
}

/// The workload: mean tokens per request, and, when the sides share request ids, the
/// requests whose tokens differ.
fn workload(base: &Side, new: &Side, tolerance: f64, out: &mut Vec<Warning>) {
    let (lb, ln) = (&base.label, &new.label);
    let pct = tolerance * 100.0;
    if let (Some((pb, gb)), Some((pn, gn))) = (token_means(base), token_means(new)) {
        for (what, b, n) in [("prompt", pb, pn), ("generated", gb, gn)] {
            if differs(b, n, tolerance) {
                out.push(warn(
                    WarningKind::Workload,
                    format!(
                        "different workload: {b:.1} {what} tokens per request in {lb}, {n:.1} in {ln} (beyond {pct}%)"
                    ),
                ));
            }
        }
    }
    // The same requests (by id) on both sides: each one's tokens.
    let ids: HashMap<&str, u64> = base
        .requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
        .map(|r| (r.request_id.as_str(), r.e2e_total_tokens))
        .collect();
    let (mut shared, mut different) = (0u64, 0u64);
    for r in new
        .requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
    {
        if let Some(&t) = ids.get(r.request_id.as_str()) {
            shared += 1;
            if differs(t as f64, r.e2e_total_tokens as f64, tolerance) {
                different += 1;
            }
        }
    }
    if shared > 0 && different > 0 {
        out.push(warn(
            WarningKind::Workload,
            format!(
                "different workload: {different} of the {shared} requests (by id) in both runs have e2e_total_tokens beyond {pct}% apart"
            ),
        ));
    }
}
