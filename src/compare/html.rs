//! The comparison as one self-contained HTML page: the table, the two distributions of
//! every measure overlaid, and the two timelines one above the other on one time scale.
//!
//! The page fetches nothing (its style, script and data are inline) and works from a
//! `file://` URL offline. Its style is the run report's ([`crate::report::html`]), its
//! stage colors the run report's too. The table and the distributions are plain HTML and
//! SVG; the timelines are drawn by a short script on two canvases of one width over the
//! same span of time (the longer run's), so that a bar of the same length is the same time
//! on both; at most [`MAX_TIMELINE_REQUESTS`] requests a side are drawn (evenly by start),
//! said under the timeline. Records read back from JSON lines carry no times: their side has
//! no timeline, said so.
//!
//! When its script has run, `<body>` carries `data-rendered="1"` and `data-errors` (the
//! count of script errors); each timeline canvas carries `data-scale-ms` (the span of time
//! its width stands for) and `data-rows`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::json;

use super::measures::{Kind, Values};
use super::render::{change, method, number};
use super::{Comparison, Measure, Side, Stat, Verdict};
use crate::report::html::{STYLE, escape_html};
use crate::report::table::{format_int, printable};

/// The most requests a side's timeline draws (evenly sampled by start).
pub(crate) const MAX_TIMELINE_REQUESTS: usize = 2_000;

/// Bins of each distribution.
const BINS: usize = 40;

/// The base side's color and the new side's (the run report's first two stage colors).
const BASE_COLOR: &str = "#4e79a7";
const NEW_COLOR: &str = "#f28e2b";

const EXTRA_STYLE: &str = "
#notes li { margin: 2px 0; }
td.better { background: #e3f4e1; } td.worse { background: #fbe3e3; } td.mixed { background: #fff6db; }
figure svg { display: block; }
.timeline canvas { display: block; max-width: 100%; }
.key { display: inline-block; width: 12px; height: 10px; margin: 0 4px 0 10px; vertical-align: -1px; }
";

const SCRIPT: &str = r#"
(function () {
  'use strict';
  var errors = 0;
  function fail() { errors += 1; document.body.setAttribute('data-errors', String(errors)); }
  window.addEventListener('error', fail);
  try {
    var data = JSON.parse(document.getElementById('compare-data').textContent);
    // The run report's stage colors (src/report/html/page.js).
    var PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#8cd17d'];
    var scale = data.scale_ms > 0 ? data.scale_ms : 1;
    var step = [1, 2, 5];
    function tick(span) {
      var target = span / 8, p = Math.pow(10, Math.floor(Math.log10(target)));
      for (var i = 0; i < 3; i++) { if (step[i] * p >= target) return step[i] * p; }
      return 10 * p;
    }
    function label(ms) { return ms >= 1000 ? (ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1) + ' s' : ms.toFixed(ms < 10 ? 1 : 0) + ' ms'; }
    data.sides.forEach(function (side, k) {
      var canvas = document.getElementById('timeline-' + k);
      if (!canvas) return;
      var rows = side.rows.length;
      var rowH = Math.max(1, Math.min(8, Math.floor(320 / Math.max(rows, 1))));
      var left = 8, right = 8, axis = 22, width = data.width;
      var height = Math.max(40, rows * rowH + axis + 6);
      canvas.width = width; canvas.height = height;
      var ctx = canvas.getContext('2d');
      ctx.fillStyle = '#ffffff'; ctx.fillRect(0, 0, width, height);
      var px = (width - left - right) / scale;
      function x(ms) { return left + ms * px; }
      side.rows.forEach(function (r, i) {
        var y = 3 + i * rowH;
        ctx.fillStyle = '#c9ced8';
        ctx.fillRect(x(r[0]), y + rowH / 2 - 0.5, Math.max(1, (r[1] - r[0]) * px), Math.max(1, rowH / 4));
        r[2].forEach(function (s) {
          ctx.fillStyle = PALETTE[s[0] % PALETTE.length];
          ctx.fillRect(x(s[1]), y, Math.max(1, (s[2] - s[1]) * px), Math.max(1, rowH - (rowH > 2 ? 1 : 0)));
        });
      });
      var t = tick(scale), base = height - axis;
      ctx.fillStyle = '#5c6577'; ctx.font = '11px system-ui, sans-serif';
      ctx.fillRect(left, base, width - left - right, 1);
      for (var v = 0; v <= scale + 1e-9; v += t) {
        ctx.fillRect(x(v), base, 1, 4);
        ctx.fillText(label(v), Math.min(x(v) + 2, width - 60), base + 15);
      }
      canvas.setAttribute('data-scale-ms', String(data.scale_ms));
      canvas.setAttribute('data-rows', String(rows));
    });
    document.body.setAttribute('data-rendered', '1');
  } catch (e) {
    fail();
    throw e;
  }
})();
"#;

/// The width of both timelines, in CSS pixels.
const TIMELINE_WIDTH: u32 = 1100;

/// The page of `comparison`, made from `base` and `new` (the sides it compared). Never
/// fails and never panics: numbers are written finite, text is escaped.
pub(crate) fn render(comparison: &Comparison, base: &Side, new: &Side) -> String {
    let mut out = String::with_capacity(64 << 10);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    escape_html(
        &mut out,
        &format!(
            "omni-metrics compare: {} vs {}",
            printable(&base.label, false),
            printable(&new.label, false)
        ),
    );
    out.push_str("</title>\n<style>\n");
    out.push_str(STYLE);
    out.push_str(EXTRA_STYLE);
    out.push_str("</style>\n</head>\n<body data-rendered=\"0\" data-errors=\"0\">\n<header>\n");
    out.push_str("<h1 id=\"title\">omni-metrics compare</h1>\n");
    for (id, color, c) in [
        ("meta-base", BASE_COLOR, &comparison.base),
        ("meta-new", NEW_COLOR, &comparison.new),
    ] {
        let _ = write!(
            out,
            "<p id=\"{id}\" class=\"hint\"><span class=\"key\" style=\"background:{color}\"></span>"
        );
        escape_html(
            &mut out,
            &format!(
                "{} {}: {} requests ({} ok, {} error, {} aborted), {} runs",
                if id == "meta-base" { "base" } else { "new" },
                printable(&c.label, false),
                format_int(c.requests),
                format_int(c.ok),
                format_int(c.errors),
                format_int(c.aborted),
                format_int(c.runs)
            ),
        );
        out.push_str("</p>\n");
    }
    if !comparison.warnings.is_empty() {
        out.push_str("<ul id=\"notes\">\n");
        for w in &comparison.warnings {
            let _ = write!(out, "<li data-kind=\"{}\">", w.kind.as_str());
            escape_html(&mut out, &w.message);
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</header>\n<main>\n<section id=\"table-section\">\n<h2>Measures</h2>\n");
    table(&mut out, comparison);
    out.push_str("<p class=\"hint\" id=\"method\">");
    escape_html(&mut out, &method(comparison));
    out.push_str("</p>\n</section>\n");
    distributions(&mut out, comparison, base, new);
    timelines(&mut out, base, new);
    out.push_str("</main>\n<script>\n");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

fn table(out: &mut String, c: &Comparison) {
    out.push_str("<table class=\"omni\" id=\"compare-table\">\n<thead><tr><th>measure</th><th>unit</th><th>n base/new</th><th>p50</th><th>p90</th><th>p99</th><th>mean</th><th>verdict</th></tr></thead>\n<tbody>\n");
    for row in &c.rows {
        let _ = write!(
            out,
            "<tr data-measure=\"{}\" data-verdict=\"{}\"><td>{}</td><td>{}</td><td>{}/{}</td>",
            row.measure,
            row.verdict.as_str(),
            row.measure,
            row.measure.unit(),
            format_int(row.base_n),
            format_int(row.new_n)
        );
        for col in [Stat::P50, Stat::P90, Stat::P99, Stat::Mean] {
            let s = row.stat(col).or(if col == Stat::Mean {
                row.stat(Stat::Rate)
            } else {
                None
            });
            match s {
                Some(s) => {
                    let class = match s.verdict {
                        Verdict::Better => " class=\"better\"",
                        Verdict::Worse => " class=\"worse\"",
                        _ => "",
                    };
                    let mark = match s.verdict {
                        Verdict::Better => " better",
                        Verdict::Worse => " worse",
                        Verdict::NotTested => " untested",
                        _ => "",
                    };
                    let _ = write!(out, "<td{class}>");
                    escape_html(
                        out,
                        &format!(
                            "{} → {} ({}{mark})",
                            number(s.base),
                            number(s.new),
                            change(row.measure, s)
                        ),
                    );
                    out.push_str("</td>");
                }
                None => out.push_str("<td>-</td>"),
            }
        }
        let class = match row.verdict {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Mixed => "mixed",
            _ => "",
        };
        let _ = writeln!(
            out,
            "<td class=\"{class}\">{}</td></tr>",
            row.verdict.as_str()
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// An overlaid histogram (SVG) per measure of requests, in the table's order of measures.
fn distributions(out: &mut String, c: &Comparison, base: &Side, new: &Side) {
    let (vb, vn) = (Values::of(base), Values::of(new));
    let mut measures: Vec<Measure> = c
        .rows
        .iter()
        .map(|r| r.measure)
        .filter(|m| matches!(m.kind(), Kind::Latency | Kind::Ratio))
        .collect();
    measures.sort_by_key(|m| m.order_key());
    out.push_str("<section id=\"figures-section\">\n<h2>Distributions: base and new overlaid</h2>\n<p class=\"hint\">");
    let _ = write!(
        out,
        "<span class=\"key\" style=\"background:{BASE_COLOR}\"></span>base <span class=\"key\" style=\"background:{NEW_COLOR}\"></span>new; share of each side's requests per bin, from the lower of the two minimums to the higher of the two 99.5th percentiles (values beyond it in the last bin)</p>\n<div id=\"figures\">\n"
    );
    for m in measures {
        let empty: &[f64] = &[];
        let b = vb.samples.get(&m).map_or(empty, Vec::as_slice);
        let n = vn.samples.get(&m).map_or(empty, Vec::as_slice);
        let stage = m
            .stage()
            .map(|s| format!(" data-stage=\"{s}\""))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<figure data-measure=\"{m}\"{stage}><figcaption>{m} ({})</figcaption>",
            m.unit()
        );
        histogram(out, b, n);
        out.push_str("</figure>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// The SVG of two sorted samples' histograms on shared bins.
fn histogram(out: &mut String, b: &[f64], n: &[f64]) {
    const W: f64 = 320.0;
    const H: f64 = 120.0;
    const AXIS: f64 = 16.0;
    let lo = b
        .first()
        .copied()
        .unwrap_or(f64::MAX)
        .min(n.first().copied().unwrap_or(f64::MAX));
    let top = |s: &[f64]| super::stats::quantile(s, 0.995).unwrap_or(f64::MIN);
    let hi = top(b).max(top(n));
    let _ = write!(
        out,
        "<svg width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\">",
        H + AXIS,
        H + AXIS
    );
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        out.push_str("</svg>");
        return;
    }
    let width = if hi > lo { hi - lo } else { 1.0 };
    let counts = |s: &[f64]| {
        let mut bins = [0u64; BINS];
        for v in s {
            let i = ((v - lo) / width * BINS as f64).floor();
            let i = if i.is_finite() {
                (i.max(0.0) as usize).min(BINS - 1)
            } else {
                0
            };
            bins[i] += 1;
        }
        let total = s.len().max(1) as f64;
        bins.map(|c| c as f64 / total)
    };
    let (cb, cn) = (counts(b), counts(n));
    let peak = cb.iter().chain(&cn).copied().fold(0.0, f64::max).max(1e-12);
    let path = |bins: &[f64; BINS]| {
        let mut d = format!("M0 {H:.1}");
        for (i, f) in bins.iter().enumerate() {
            let y = H - f / peak * (H - 4.0);
            let (x0, x1) = (i as f64 * W / BINS as f64, (i + 1) as f64 * W / BINS as f64);
            let _ = write!(d, " L{x0:.1} {y:.1} L{x1:.1} {y:.1}");
        }
        let _ = write!(d, " L{W:.1} {H:.1} Z");
        d
    };
    let _ = write!(
        out,
        "<path class=\"base\" d=\"{}\" fill=\"{BASE_COLOR}\" fill-opacity=\"0.35\" stroke=\"{BASE_COLOR}\"/><path class=\"new\" d=\"{}\" fill=\"none\" stroke=\"{NEW_COLOR}\" stroke-width=\"1.5\"/>",
        path(&cb),
        path(&cn)
    );
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{:.0}\" font-size=\"10\" fill=\"#5c6577\">{}</text><text x=\"{W}\" y=\"{:.0}\" font-size=\"10\" fill=\"#5c6577\" text-anchor=\"end\">{}</text></svg>",
        H + 12.0,
        number(lo),
        H + 12.0,
        number(hi)
    );
}

/// The timelines' section and data: each side's requests (at most
/// [`MAX_TIMELINE_REQUESTS`], evenly by start), times from its earliest start, in ms.
fn timelines(out: &mut String, base: &Side, new: &Side) {
    let stages: BTreeSet<u64> = [base, new]
        .iter()
        .flat_map(|s| {
            s.requests
                .iter()
                .flat_map(|r| r.stages.iter().map(|s| s.stage_id))
        })
        .collect();
    let mut scale = 0.0_f64;
    let mut sides = Vec::new();
    out.push_str("<section id=\"timeline-section\">\n<h2>Timelines, on one time scale</h2>\n<p class=\"hint\">");
    for (i, id) in stages.iter().enumerate() {
        let _ = write!(
            out,
            "<span class=\"key\" style=\"background:{}\"></span>stage {id}",
            [
                "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#8cd17d"
            ][i % 10]
        );
    }
    out.push_str("</p>\n");
    for (k, side) in [base, new].into_iter().enumerate() {
        let (data, span_ms) = side_timeline(out, k, side, &stages);
        scale = scale.max(span_ms);
        sides.push(data);
    }
    out.push_str("</section>\n");
    let data = json!({"scale_ms": round_ms(scale), "width": TIMELINE_WIDTH, "sides": sides});
    out.push_str("<script type=\"application/json\" id=\"compare-data\">");
    for c in data.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push_str("</script>\n");
}

/// A time in ms, finite, to the microsecond.
fn round_ms(v: f64) -> f64 {
    (crate::stats::finite(v) * 1000.0).round() / 1000.0
}

/// Side `k`'s figure (its canvas, or why there is none) and its data: the requests shown,
/// each with its stages' bars (`stages`' index, start, end). Returns the data and the time
/// its requests span, in ms.
fn side_timeline(
    out: &mut String,
    k: usize,
    side: &Side,
    stages: &BTreeSet<u64>,
) -> (serde_json::Value, f64) {
    let index = |id: u64| stages.iter().position(|s| *s == id).unwrap_or(0);
    let name = if k == 0 { "base" } else { "new" };
    let mut requests: Vec<_> = side
        .requests
        .iter()
        .filter(|r| r.end_ns >= r.start_ns)
        .collect();
    requests.sort_by_key(|r| r.start_ns);
    let _ = write!(
        out,
        "<figure class=\"timeline\" data-side=\"{name}\"><figcaption>"
    );
    escape_html(out, &format!("{name}: {}", printable(&side.label, false)));
    if !side.timed || requests.is_empty() {
        out.push_str("</figcaption><p class=\"hint no-times\">no timeline: records read back from JSON lines carry no times (compare trace files for timelines)</p></figure>\n");
        return (json!({"rows": [], "total": side.requests.len()}), 0.0);
    }
    let t0 = requests.first().map_or(0, |r| r.start_ns);
    let end = requests.iter().map(|r| r.end_ns).max().unwrap_or(t0);
    let span_ms = crate::stats::elapsed_ms(t0, end);
    let total = requests.len();
    let shown: Vec<_> = if total > MAX_TIMELINE_REQUESTS {
        (0..MAX_TIMELINE_REQUESTS)
            .filter_map(|i| requests.get(i * total / MAX_TIMELINE_REQUESTS).copied())
            .collect()
    } else {
        requests
    };
    let ms = |ns: u64| round_ms(crate::stats::elapsed_ms(t0, ns));
    let rows: Vec<_> = shown
        .iter()
        .map(|r| {
            let bars: Vec<_> = r
                .stages
                .iter()
                .filter(|s| s.end_ns >= s.start_ns && s.start_ns > 0)
                .map(|s| json!([index(s.stage_id), ms(s.start_ns), ms(s.end_ns)]))
                .collect();
            json!([ms(r.start_ns), ms(r.end_ns), bars])
        })
        .collect();
    let _ = writeln!(
        out,
        " ({} of {} requests shown)</figcaption><canvas id=\"timeline-{k}\" width=\"{TIMELINE_WIDTH}\" height=\"40\"></canvas></figure>",
        format_int(rows.len() as u64),
        format_int(total as u64)
    );
    (json!({"rows": rows, "total": total}), span_ms)
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_module() -> Result<(), Box<dyn std::error::Error>> {
        use crate::compare::{Compare, Side, html};
        use crate::stats::RequestE2EStats;

        let side = |label: &str, ms: f64| {
            let requests = (0..50)
                .map(|i| RequestE2EStats {
                    request_id: format!("r-{i}"),
                    e2e_total_ms: ms + i as f64,
                    ..Default::default()
                })
                .collect();
            Side::new(label, requests, &[])
        };
        let (base, new) = (side("base", 100.0), side("new", 130.0));
        let page = html::render(&Compare::new().run(&base, &new), &base, &new);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("http://") && !page.contains("https://")); // nothing to fetch
        Ok(())
    }
}
