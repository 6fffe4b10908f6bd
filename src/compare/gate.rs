//! `--fail-on`: conditions over the comparison's rows that make a CI job fail.

use std::fmt;

use super::measures::Kind;
use super::{Comparison, Measure, Stat, StatChange, Verdict};

/// The syntax, for `--help` and the errors.
pub(crate) const SYNTAX: &str = "MEASURE_STAT OP THRESHOLD, e.g. e2e_p99>+5%, stage1_gen_mean>+20ms, \
     throughput_rps<-5%, error_rate>+0.5pp";

/// Why a `--fail-on` expression cannot be used; the message says what was expected (for
/// logging only).
#[derive(Debug, thiserror::Error)]
#[error("--fail-on {expression:?}: {message}")]
pub(crate) struct FailOnError {
    expression: String,
    message: String,
}

impl FailOnError {
    fn new(expression: &str, message: impl Into<String>) -> Self {
        Self {
            expression: expression.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    /// Percent of the base value.
    Percent,
    /// Percentage points (a rate's difference).
    Points,
    /// Milliseconds.
    Ms,
    /// The measure's own unit.
    Own,
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    text: String,
    measure: Measure,
    stat: Stat,
    /// `true` for `>` (an increase), `false` for `<`.
    above: bool,
    threshold: f64,
    unit: Unit,
}

/// Conditions on the comparison that fail a CI job: `--fail-on 'e2e_p99>+5%'`.
///
/// An expression is `MEASURE_STAT OP THRESHOLD`:
/// - `MEASURE` is a row's name ([`Measure`]: `e2e`, `first_output`, `stage1_gen`,
///   `edge0_1_tx`, `throughput_rps`, `error_rate`, ...);
/// - `STAT` is `p50`, `p90`, `p99` or `mean` (a throughput has only `mean`, a rate only
///   `rate`; both may be left out: `throughput_rps<-5%`, `error_rate>+1pp`);
/// - `OP` is `>` (the value went up) or `<` (it went down);
/// - `THRESHOLD` is a number with its sign and a unit: `%` of the base value, `ms` for
///   a time, `pp` (percentage points) for a rate, none for the measure's own unit (an
///   RTF, req/s). `>` takes a threshold of 0 or more, `<` of 0 or less.
///
/// A condition holds when its change is real (the statistic's interval lies wholly above 0
/// for `>`, below for `<`) and beyond the threshold (the point estimate). Several
/// expressions are separated by commas, or `--fail-on` is given again; any one holding
/// fails the job.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FailOn {
    conditions: Vec<Condition>,
}

/// A condition that held: a change both real and beyond its threshold.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub(crate) struct GateHit {
    /// The expression, as given.
    pub expression: String,
    /// The measure's row.
    pub measure: Measure,
    /// The statistic.
    pub stat: Stat,
    /// The change, in the expression's unit.
    pub change: f64,
    /// The expression's unit (`%`, `pp`, `ms`, or the measure's).
    pub unit: String,
}

impl fmt::Display for GateHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.unit.len() > 2 { " " } else { "" };
        write!(
            f,
            "{}: {}_{} changed by {:+.3}{sep}{}, beyond the threshold and beyond noise",
            self.expression,
            self.measure,
            self.stat.as_str(),
            self.change,
            self.unit
        )
    }
}

impl FailOn {
    /// Adds the expressions of `text` (a repeated `--fail-on`).
    ///
    /// # Errors
    ///
    /// [`FailOnError`], naming the expression and what was expected.
    pub(crate) fn add(&mut self, text: &str) -> Result<(), FailOnError> {
        for expr in text.split(',') {
            let expr = expr.trim();
            if expr.is_empty() {
                continue;
            }
            self.conditions.push(parse_one(expr)?);
        }
        Ok(())
    }

    /// The conditions that hold in `comparison`.
    ///
    /// # Errors
    ///
    /// A condition on a measure the comparison does not have, or on a statistic it could
    /// not test (too few requests): a gate that cannot be decided is not passed silently.
    pub(crate) fn check(&self, comparison: &Comparison) -> Result<Vec<GateHit>, FailOnError> {
        let mut hits = Vec::new();
        for c in &self.conditions {
            let Some(row) = comparison.row(c.measure) else {
                let names: Vec<String> = comparison
                    .rows
                    .iter()
                    .map(|r| r.measure.to_string())
                    .collect();
                return Err(FailOnError::new(
                    &c.text,
                    format!(
                        "{} is not in this comparison (its measures: {})",
                        c.measure,
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            };
            let Some(stat) = row.stat(c.stat) else {
                return Err(FailOnError::new(
                    &c.text,
                    format!("{} has no {}", c.measure, c.stat.as_str()),
                ));
            };
            if stat.verdict == Verdict::NotTested {
                return Err(FailOnError::new(
                    &c.text,
                    format!(
                        "{}_{} could not be tested ({} values in the base, {} in the new run: a p99 needs about 600 a side, a throughput two runs a side)",
                        c.measure,
                        c.stat.as_str(),
                        row.base_n,
                        row.new_n
                    ),
                ));
            }
            if let Some(change) = holds(c, stat) {
                hits.push(GateHit {
                    expression: c.text.clone(),
                    measure: c.measure,
                    stat: c.stat,
                    change,
                    unit: match c.unit {
                        Unit::Percent => "%".to_owned(),
                        Unit::Points => "pp".to_owned(),
                        Unit::Ms => "ms".to_owned(),
                        Unit::Own => c.measure.unit().to_owned(),
                    },
                });
            }
        }
        Ok(hits)
    }
}

/// The change, if condition `c` holds for `stat`.
fn holds(c: &Condition, stat: &StatChange) -> Option<f64> {
    let (lo, hi) = stat.interval?;
    let real = if c.above { lo > 0.0 } else { hi < 0.0 };
    if !real {
        return None;
    }
    let change = match c.unit {
        Unit::Percent => match stat.change_pct {
            Some(p) => p,
            // From 0: any real increase is beyond any percentage.
            None if c.above => f64::MAX,
            None => f64::MIN,
        },
        _ => stat.difference(),
    };
    let beyond = if c.above {
        change > c.threshold
    } else {
        change < c.threshold
    };
    beyond.then_some(crate::stats::finite(change))
}

fn parse_one(expr: &str) -> Result<Condition, FailOnError> {
    let err = |m: String| FailOnError::new(expr, format!("{m}; the syntax: {SYNTAX}"));
    let Some(at) = expr.find(['>', '<']) else {
        return Err(err("expected an operator, > or <".to_owned()));
    };
    let (name, rest) = (expr[..at].trim(), &expr[at..]);
    let above = rest.starts_with('>');
    let rest = rest[1..].trim();
    if rest.starts_with(['=', '>', '<']) {
        return Err(err(
            "expected an operator, > or <, then the threshold (no >=)".to_owned(),
        ));
    }
    let (measure, stat) = parse_name(name).map_err(err)?;
    let (number, unit) = split_unit(rest);
    let threshold: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| err(format!("expected a threshold number, found {rest:?}")))?;
    let unit = match (unit.trim(), measure.kind()) {
        ("%", _) => Unit::Percent,
        ("pp", Kind::Proportion) => Unit::Points,
        ("ms", Kind::Latency) => Unit::Ms,
        ("", Kind::Ratio | Kind::PerRun) => Unit::Own,
        ("", _) => {
            return Err(err(format!(
                "the threshold needs a unit: % of the base value, or {}",
                if measure.kind() == Kind::Proportion {
                    "pp"
                } else {
                    "ms"
                }
            )));
        }
        (u, _) => {
            return Err(err(format!(
                "unit {u:?} does not fit {measure} (in {}): use %{}",
                measure.unit(),
                match measure.kind() {
                    Kind::Proportion => ", or pp",
                    Kind::Latency => ", or ms",
                    _ => ", or no unit",
                }
            )));
        }
    };
    if above && threshold < 0.0 || !above && threshold > 0.0 {
        return Err(err(format!(
            "a {} condition takes a threshold of {} (the change in that direction)",
            if above { ">" } else { "<" },
            if above { "0 or more" } else { "0 or less" }
        )));
    }
    Ok(Condition {
        text: expr.to_owned(),
        measure,
        stat,
        above,
        threshold,
        unit,
    })
}

/// The number and its unit: `+5%` is `+5` and `%`.
fn split_unit(s: &str) -> (&str, &str) {
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E' | ' ')))
        .unwrap_or(s.len());
    // An `e` that starts a unit is not an exponent: none of ours starts with one.
    s.split_at(at)
}

fn parse_name(name: &str) -> Result<(Measure, Stat), String> {
    if name.is_empty() {
        return Err("expected a measure before the operator".to_owned());
    }
    if let Some((measure, stat)) = name.rsplit_once('_') {
        if let (Some(m), Some(s)) = (Measure::parse(measure), Stat::parse(stat)) {
            let ok = match m.kind() {
                Kind::Latency | Kind::Ratio => {
                    matches!(s, Stat::P50 | Stat::P90 | Stat::P99 | Stat::Mean)
                }
                Kind::PerRun => s == Stat::Mean,
                Kind::Proportion => s == Stat::Rate,
            };
            if !ok {
                return Err(format!("{m} has no {}", s.as_str()));
            }
            return Ok((m, s));
        }
    }
    match Measure::parse(name) {
        Some(m) => match m.kind() {
            Kind::PerRun => Ok((m, Stat::Mean)),
            Kind::Proportion => Ok((m, Stat::Rate)),
            _ => Err(format!(
                "which statistic of {m}? {m}_p50, {m}_p90, {m}_p99 or {m}_mean"
            )),
        },
        None => Err(format!(
            "unknown measure {name:?} (e2e, first_output, first_audio, audio_e2e_rtf, stageN_queue, \
             stageN_gen, stageN_postprocess, stageN_first_output, stageN_audio_rtf, \
             stageN_denoise_step, stageN_audio_underrun, stageN_audio_max_gap, stageN_rR_queue, stageN_rR_gen, stageN_rR_postprocess, edgeA_B_tx, \
             edgeA_B_in_flight, edgeA_B_rx, throughput_rps, throughput_tps, error_rate, abort_rate, audio_gap_rate, \
             each with _p50, _p90, _p99 or _mean)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_with_their_units() {
        let c = parse_one("e2e_p99>+5%").expect("valid");
        assert_eq!(
            (c.measure, c.stat, c.above, c.threshold, c.unit),
            (Measure::E2e, Stat::P99, true, 5.0, Unit::Percent)
        );
        let c = parse_one(" edge0_1_in_flight_mean > 2.5ms ").expect("valid");
        assert_eq!(
            (c.measure, c.stat, c.unit),
            (Measure::EdgeInFlight(0, 1), Stat::Mean, Unit::Ms)
        );
        let c = parse_one("throughput_rps<-5%").expect("valid");
        assert_eq!(
            (c.measure, c.stat, c.above),
            (Measure::ThroughputRps, Stat::Mean, false)
        );
        let c = parse_one("error_rate>+0.5pp").expect("valid");
        assert_eq!(
            (c.stat, c.unit, c.threshold),
            (Stat::Rate, Unit::Points, 0.5)
        );
        assert_eq!(
            parse_one("stage2_audio_rtf_p90>0.1").map(|c| c.unit).ok(),
            Some(Unit::Own)
        );
    }

    #[test]
    fn bad_expressions_say_what_was_expected() {
        for (expr, says) in [
            ("e2e_p99", "an operator"),
            ("e2e_p99>=5%", "no >="),
            ("e2e>5%", "which statistic of e2e?"),
            ("e2x_p99>5%", "unknown measure"),
            ("e2e_p99>five%", "a threshold number"),
            ("e2e_p99>5", "needs a unit"),
            ("e2e_p99>5pp", "does not fit"),
            ("e2e_p99>-5%", "0 or more"),
            ("throughput_rps_p99<-5%", "has no p99"),
            (">5%", "a measure"),
        ] {
            let e = parse_one(expr).expect_err(expr).to_string();
            assert!(e.contains(says), "{expr}: {e}");
            assert!(e.contains("the syntax"), "{e}");
        }
    }
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_failon() -> Result<(), Box<dyn std::error::Error>> {
        use crate::compare::gate::{FailOn, FailOnError};
        // What `--fail-on` does with its value.
        let parse = |text: &str| -> Result<FailOn, FailOnError> {
            let mut gate = FailOn::default();
            gate.add(text).map(|()| gate)
        };
        assert!(parse("e2e_p99>+5%, throughput_rps<-3%").is_ok());
        let err = parse("e2e_p99=5%").unwrap_err();
        assert!(err.to_string().contains("an operator, > or <"));
        Ok(())
    }
}
