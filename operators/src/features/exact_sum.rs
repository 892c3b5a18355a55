//! Double-double accumulators for sliding-window sums and variances.
//!
//! A window's running sum and sum of squares see every amount added once and subtracted once.
//! In plain f64 the rounding errors of those updates accumulate, and the population variance
//! `(n·Σx² − (Σx)²) / n²` cancels catastrophically when the amounts are close together, so a
//! std of 0 could come out as 1e-4. Carrying each sum as an unevaluated pair `hi + lo`
//! (error-free transformations, Dekker/Knuth) keeps ~106 bits, which meets SPEC §2's
//! 1e-9 relative / 1e-6 absolute tolerance without rescanning the window.

use serde::{Deserialize, Serialize};

/// An exact-enough sum `hi + lo` with `|lo| ≤ ulp(hi)/2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DoubleDouble {
    hi: f64,
    lo: f64,
}

#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

#[inline]
fn split(a: f64) -> (f64, f64) {
    let t = 134_217_729.0 * a;
    let hi = t - (t - a);
    (hi, a - hi)
}

/// `a·b` as an exact pair (Dekker), without relying on a hardware FMA.
#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

impl DoubleDouble {
    /// Adds a pair, renormalising so the representation stays canonical.
    #[inline]
    fn add_pair(&mut self, hi: f64, lo: f64) {
        let (s, e) = two_sum(self.hi, hi);
        let (h, l) = two_sum(s, e + self.lo + lo);
        self.hi = h;
        self.lo = l;
    }

    /// Adds `x` exactly (to ~106 bits).
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.add_pair(x, 0.0);
    }

    /// Subtracts `x` exactly (to ~106 bits).
    #[inline]
    pub fn sub(&mut self, x: f64) {
        self.add_pair(-x, 0.0);
    }

    /// Adds `x²` exactly (to ~106 bits).
    #[inline]
    pub fn add_square(&mut self, x: f64) {
        let (p, e) = two_prod(x, x);
        self.add_pair(p, e);
    }

    /// Subtracts `x²` exactly (to ~106 bits).
    #[inline]
    pub fn sub_square(&mut self, x: f64) {
        let (p, e) = two_prod(x, x);
        self.add_pair(-p, -e);
    }

    /// The sum rounded to f64.
    #[inline]
    pub fn value(self) -> f64 {
        self.hi + self.lo
    }
}

/// Population standard deviation of `n` values from their sum and sum of squares,
/// evaluated as `sqrt(n·Σx² − (Σx)²) / n` in double-double to avoid cancellation.
pub fn population_std(n: u64, sum: DoubleDouble, sum_sq: DoubleDouble) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let nf = n as f64;
    let mut scaled = DoubleDouble::default();
    let (p, e) = two_prod(nf, sum_sq.hi);
    scaled.add_pair(p, e + nf * sum_sq.lo);
    let (p, e) = two_prod(sum.hi, sum.hi);
    scaled.add_pair(-p, -(e + 2.0 * sum.hi * sum.lo));
    scaled.value().max(0.0).sqrt() / nf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_values_have_zero_std_after_churn() {
        let (mut sum, mut sq) = (DoubleDouble::default(), DoubleDouble::default());
        for i in 0..100_000 {
            let x = 12_345.67 + f64::from(i % 7) * 1e6;
            sum.add(x);
            sq.add_square(x);
            sum.sub(x);
            sq.sub_square(x);
        }
        for _ in 0..3 {
            sum.add(0.1);
            sq.add_square(0.1);
        }
        assert_eq!(population_std(3, sum, sq), 0.0);
        assert!((sum.value() - 0.30000000000000004).abs() < 1e-16);
    }

    #[test]
    fn matches_two_pass_std() {
        let xs = [1e4 + 0.01, 1e4 + 0.02, 1e4 + 0.04, 1e4 - 0.03];
        let (mut sum, mut sq) = (DoubleDouble::default(), DoubleDouble::default());
        for x in xs {
            sum.add(x);
            sq.add_square(x);
        }
        let mean = xs.iter().sum::<f64>() / 4.0;
        let two_pass = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((population_std(4, sum, sq) - two_pass).abs() < 1e-12);
    }
}
