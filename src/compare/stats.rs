//! The intervals behind each verdict: the difference of two quantiles (order statistics),
//! of two means (Welch), of two proportions (Newcombe), with the normal and Student
//! quantiles they need. Every function here is deterministic, runs in time linear in its
//! input once the samples are sorted, and returns `None` rather than a non-finite number.

/// The quantile levels compared, with their statistic.
pub(crate) const QUANTILES: [(super::Stat, f64); 3] = [
    (super::Stat::P50, 0.50),
    (super::Stat::P90, 0.90),
    (super::Stat::P99, 0.99),
];

/// The normal quantile used to read a standard error off an order-statistic interval
/// (a 95 % interval: `(x_(u) - x_(l)) / (2 * 1.96)`).
const SE_Z: f64 = 1.959_963_984_540_054;

/// An estimate and its standard error; `se` is `None` when the sample is too small to give
/// one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) value: f64,
    pub(crate) se: Option<f64>,
    /// Degrees of freedom of `se` (a mean's `n - 1`), `None` for a large-sample normal one.
    pub(crate) df: Option<f64>,
}

/// The `p`-quantile of `sorted` (ascending, finite, not empty) by nearest rank: the
/// `ceil(p * n)`-th smallest value.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p * n as f64).ceil().clamp(1.0, n as f64) as usize;
    sorted.get(rank - 1).copied()
}

/// The `p`-quantile of `sorted` with its standard error, read off the distribution-free
/// interval between two order statistics: the number of values below the true quantile is
/// Binomial(n, p), so `[x_(l), x_(u)]` with `l, u = n p -/+ 1.96 sqrt(n p (1 - p))` (rounded
/// outwards) covers it with probability about 95 %, and its width over `2 * 1.96` is the
/// quantile's standard error (Price and Bonett, 2002, for the median; the same holds for
/// any quantile). No standard error when `l` or `u` falls outside the sample: a p99 needs
/// about 600 values.
pub(crate) fn quantile_estimate(sorted: &[f64], p: f64) -> Option<Estimate> {
    let value = quantile(sorted, p)?;
    let n = sorted.len() as f64;
    let half = SE_Z * (n * p * (1.0 - p)).sqrt();
    let (l, u) = ((n * p - half).floor(), (n * p + half).ceil());
    let se = (l >= 1.0 && u <= n).then(|| {
        let (lo, hi) = (sorted[l as usize - 1], sorted[u as usize - 1]);
        (hi - lo) / (2.0 * SE_Z)
    });
    Some(Estimate {
        value,
        se: se.filter(|s| s.is_finite()),
        df: None,
    })
}

/// The mean of `values` with its standard error (`s / sqrt(n)`, `n - 1` degrees of
/// freedom); no standard error for fewer than two values.
pub(crate) fn mean_estimate(values: &[f64]) -> Option<Estimate> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    // Two passes: the mean, then the squared deviations (no catastrophic cancellation).
    let mean = values.iter().sum::<f64>() / n as f64;
    let se = (n >= 2).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n as f64 - 1.0) / n as f64).sqrt()
    });
    mean.is_finite().then_some(Estimate {
        value: mean,
        se: se.filter(|s| s.is_finite()),
        df: Some(n as f64 - 1.0),
    })
}

/// The two-sided interval, at level `1 - alpha`, of `new - base` for two independent
/// estimates: `d -/+ q * sqrt(se_b^2 + se_n^2)`, `q` the normal quantile, or Student's
/// with Welch-Satterthwaite degrees of freedom when both estimates carry theirs. `None`
/// without both standard errors.
pub(crate) fn difference_interval(
    base: &Estimate,
    new: &Estimate,
    alpha: f64,
) -> Option<(f64, f64)> {
    let (sb, sn) = (base.se?, new.se?);
    let d = new.value - base.value;
    let var = sb * sb + sn * sn;
    let se = var.sqrt();
    let q = match (base.df, new.df) {
        (Some(db), Some(dn)) if var > 0.0 => {
            let (vb, vn) = (sb * sb, sn * sn);
            let denom = if db > 0.0 { vb * vb / db } else { 0.0 }
                + if dn > 0.0 { vn * vn / dn } else { 0.0 };
            let df = if denom > 0.0 {
                var * var / denom
            } else {
                f64::INFINITY
            };
            student_quantile(1.0 - alpha / 2.0, df)?
        }
        _ => normal_quantile(1.0 - alpha / 2.0)?,
    };
    let (lo, hi) = (d - q * se, d + q * se);
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

/// Wilson's score interval of a proportion `k / n` at normal quantile `z`.
fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's hybrid score interval (his method 10, 1998), at level `1 - alpha`, of the
/// difference of two proportions `new_k / new_n - base_k / base_n`; `None` for an empty
/// side. It keeps its level for small counts and rates near 0, where the Wald interval
/// does not.
pub(crate) fn proportion_difference(
    base_k: u64,
    base_n: u64,
    new_k: u64,
    new_n: u64,
    alpha: f64,
) -> Option<(f64, f64)> {
    if base_n == 0 || new_n == 0 || base_k > base_n || new_k > new_n {
        return None;
    }
    let z = normal_quantile(1.0 - alpha / 2.0)?;
    let (pb, pn) = (base_k as f64 / base_n as f64, new_k as f64 / new_n as f64);
    let (lb, ub) = wilson(base_k, base_n, z);
    let (ln, un) = wilson(new_k, new_n, z);
    let d = pn - pb;
    let lo = d - ((pn - ln).powi(2) + (ub - pb).powi(2)).sqrt();
    let hi = d + ((un - pn).powi(2) + (pb - lb).powi(2)).sqrt();
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

/// The standard normal quantile of `p` (Acklam's rational approximation, relative error
/// below 1.2e-9); `None` outside (0, 1).
pub(crate) fn normal_quantile(p: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0) {
        return None;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    x.is_finite().then_some(x)
}

/// Student's t quantile of `p` with `df` degrees of freedom (the normal's for infinite
/// or very large `df`): bisection on the distribution function, which is the regularized
/// incomplete beta function. `None` outside (0, 1) or for `df` not positive.
pub(crate) fn student_quantile(p: f64, df: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0 && df > 0.0) {
        return None;
    }
    if df > 1e6 {
        return normal_quantile(p);
    }
    if p < 0.5 {
        return student_quantile(1.0 - p, df).map(|t| -t);
    }
    // Upper tail probability of |T| > t is I_{df / (df + t^2)}(df / 2, 1 / 2).
    let upper = |t: f64| 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    let target = 1.0 - p;
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while upper(hi) > target {
        hi *= 2.0;
        if hi > 1e12 {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if upper(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi.max(1.0) {
            break;
        }
    }
    let t = 0.5 * (lo + hi);
    t.is_finite().then_some(t)
}

/// `ln Gamma(x)` for `x > 0` (Lanczos, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function `I_x(a, b)` (continued fraction, Lentz).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} is not {b} (within {tol})");
    }

    #[test]
    fn normal_and_student_quantiles_match_tables() {
        close(normal_quantile(0.975).unwrap_or(0.0), 1.959_964, 1e-6);
        close(normal_quantile(0.5).unwrap_or(1.0), 0.0, 1e-12);
        close(normal_quantile(0.001).unwrap_or(0.0), -3.090_232, 1e-6);
        // Student's t: exact for 1 and 2 degrees of freedom, table values otherwise.
        close(
            student_quantile(0.975, 1.0).unwrap_or(0.0),
            12.706_205,
            1e-5,
        );
        close(student_quantile(0.975, 2.0).unwrap_or(0.0), 4.302_653, 1e-5);
        close(
            student_quantile(0.975, 10.0).unwrap_or(0.0),
            2.228_139,
            1e-5,
        );
        close(
            student_quantile(0.995, 30.0).unwrap_or(0.0),
            2.749_996,
            1e-5,
        );
        close(
            student_quantile(0.025, 5.0).unwrap_or(0.0),
            -2.570_582,
            1e-5,
        );
        assert_eq!(normal_quantile(1.0), None);
        assert_eq!(student_quantile(0.9, 0.0), None);
    }

    #[test]
    fn quantiles_by_nearest_rank_with_an_order_statistic_error() {
        let sorted: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(500.0));
        assert_eq!(quantile(&sorted, 0.99), Some(990.0));
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        let e = quantile_estimate(&sorted, 0.5).unwrap_or(Estimate {
            value: 0.0,
            se: None,
            df: None,
        });
        // l, u = 500 -/+ 31 (rounded outwards): (531 - 469) / 3.92.
        close(e.se.unwrap_or(0.0), 62.0 / (2.0 * SE_Z), 1e-9);
        // A p99 of 100 values has no standard error.
        assert_eq!(
            quantile_estimate(&sorted[..100], 0.99).and_then(|e| e.se),
            None
        );
    }

    #[test]
    fn newcombe_matches_his_worked_example() {
        // Newcombe (1998), table II example: 56/70 against 48/80, method 10: 0.0524 to 0.3339
        // for p1 - p2; here new - base, so base is 48/80 and new 56/70.
        let (lo, hi) = proportion_difference(48, 80, 56, 70, 0.05).unwrap_or((0.0, 0.0));
        close(lo, 0.0524, 5e-4);
        close(hi, 0.3339, 5e-4);
        // Zero events on both sides: an interval around 0.
        let (lo, hi) = proportion_difference(0, 100, 0, 100, 0.05).unwrap_or((1.0, 1.0));
        assert!(lo < 0.0 && hi > 0.0);
        assert_eq!(proportion_difference(1, 0, 0, 5, 0.05), None);
    }

    #[test]
    fn welch_interval_uses_student_degrees_of_freedom() {
        let a = mean_estimate(&[1.0, 2.0, 3.0, 4.0]).unwrap_or(Estimate {
            value: 0.0,
            se: None,
            df: None,
        });
        let b = mean_estimate(&[2.0, 3.0, 4.0, 5.0]).unwrap_or(Estimate {
            value: 0.0,
            se: None,
            df: None,
        });
        let (lo, hi) = difference_interval(&a, &b, 0.05).unwrap_or((0.0, 0.0));
        // Equal variances, 6 degrees of freedom: 1 -/+ 2.446912 * sqrt(2 * 1.6667 / 4).
        let half = 2.446_912 * (2.0 * (5.0 / 3.0) / 4.0_f64).sqrt();
        close(lo, 1.0 - half, 1e-5);
        close(hi, 1.0 + half, 1e-5);
    }
}
