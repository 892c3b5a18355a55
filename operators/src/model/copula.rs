//! The `unsupervised:copula` kind: how far an event lies from the training events once every
//! input is put on one scale — a Gaussian copula (each input's empirical distribution mapped
//! to normal scores) and the Mahalanobis distance of those scores.
//!
//! Scoring, for a batch: each input value → its training quantile `u` by linear
//! interpolation between `knots` (the training values at `K + 1` evenly spaced quantiles; a
//! tie run takes its middle) → `z = Φ⁻¹(u)`, clipped to `±clip` (so one wild value cannot
//! dominate) → `y = W (z − μ)` with `W` the inverse Cholesky factor of the (shrunk) training
//! covariance → logit `2·ln(Σ y² / cut)`: 0 at the training quantile `cut`, and on a log
//! scale so that neither ordinary nor wild events saturate the f32 score (the squared
//! distance spans five orders of magnitude; a linear logit made most events score exactly 0,
//! tied, which wrecks every ranking metric). A missing input takes
//! `z = μ_j`: nothing unusual. The transform is a candle op over the batch tensor, the rest
//! candle matmul and reductions.
//!
//! Reasons: the squared distance splits exactly into per-input terms `d_j (Σ_k P_jk d_k)`
//! (`P = WᵀW`, `d = z − μ`), which rank the inputs; the phrase uses the input's own tail share.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};

use crate::model::tree_walk::contiguous_f32;

/// Logit per unit of `ln` squared distance: doubling the distance beyond the cut adds ~1.4.
pub const LOG_SLOPE: f64 = 2.0;
/// Added to the squared distance before the log, so an event at the training mean scores a
/// finite logit.
const MIN_DISTANCE: f64 = 1e-6;

/// The fitted transform and distance, in file layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Copula {
    pub inputs: usize,
    /// Knots per input (`K + 1`), row-major `inputs × knots`, non-decreasing per row.
    pub knots: usize,
    pub knot_values: Vec<f32>,
    /// Mean normal score per input.
    pub mean: Vec<f32>,
    /// `inputs × inputs`, row-major: `y = W (z − μ)`.
    pub whiten: Vec<f32>,
    pub clip: f32,
    /// The training quantile of the squared distance at which the logit is 0.
    pub cut: f32,
}

/// The loaded model: the table plus tensors for the matmul.
#[derive(Debug)]
pub struct CopulaNet {
    table: Copula,
    /// `Wᵀ` (`inputs × inputs`), so `y = d · Wᵀ` for row-major `d`.
    whiten_t: Tensor,
    mean: Tensor,
    /// `P = WᵀW`, row-major, for per-input terms.
    precision: Vec<f32>,
}

impl CopulaNet {
    pub fn new(table: Copula) -> candle_core::Result<Self> {
        let f = table.inputs;
        let w = Tensor::from_slice(&table.whiten, (f, f), &Device::Cpu)?;
        let mean = Tensor::from_slice(&table.mean, (1, f), &Device::Cpu)?;
        let mut precision = vec![0f32; f * f];
        for r in 0..f {
            for c in 0..f {
                precision[r * f + c] = (0..f).map(|k| table.whiten[k * f + r] * table.whiten[k * f + c]).sum();
            }
        }
        Ok(CopulaNet { whiten_t: w.t()?.contiguous()?, mean, precision, table })
    }

    pub fn table(&self) -> &Copula {
        &self.table
    }

    /// Squared distances of `n` raw rows (`n × inputs`, NaN = missing).
    pub fn distances(&self, rows: &[f32], n: usize) -> candle_core::Result<Tensor> {
        let x = Tensor::from_slice(rows, (n, self.table.inputs), &Device::Cpu)?;
        let d = x.apply_op1_no_bwd(&Scores(&self.table))?.broadcast_sub(&self.mean)?;
        d.matmul(&self.whiten_t)?.sqr()?.sum(1)
    }

    /// Logits of `n` raw rows: `LOG_SLOPE · ln((d² + ε) / cut)`.
    pub fn logits(&self, rows: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        let log_cut = f64::from(self.table.cut).max(MIN_DISTANCE).ln();
        (((self.distances(rows, n)? + MIN_DISTANCE)?.log()? - log_cut)? * LOG_SLOPE)?.to_vec1::<f32>()
    }

    /// Per-input terms of the squared distance for one row (they sum to it), which rank the
    /// inputs for reasons.
    pub fn terms(&self, row: &[f32], out: &mut [f32]) {
        let f = self.table.inputs;
        let d: Vec<f32> = (0..f).map(|j| self.table.score(j, row[j]) - self.table.mean[j]).collect();
        for j in 0..f {
            let pd: f32 = (0..f).map(|k| self.precision[j * f + k] * d[k]).sum();
            out[j] += d[j] * pd;
        }
    }

    /// Per input, the training share at least as extreme on the value's side, as the rarity
    /// term `−ln(2·t)` (0 at the median; missing = 0).
    pub fn rarity(&self, row: &[f32], out: &mut [f32]) {
        for (j, o) in out.iter_mut().enumerate().take(self.table.inputs) {
            let u = self.table.quantile(j, row[j]);
            *o = match u {
                Some(u) => {
                    let tail = f64::from(u.min(1.0 - u)).max(0.5 / (self.table.knots as f64 * 64.0));
                    (-(2.0 * tail).ln()).max(0.0) as f32
                }
                None => 0.0,
            };
        }
    }

    /// Tensors as the file names them (`copula.knots`, `copula.mean`, `copula.whiten`,
    /// `copula.clip_cut`).
    pub fn named_tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let t = &self.table;
        let dev = &Device::Cpu;
        let mut named = HashMap::new();
        named.insert("copula.knots".into(), Tensor::from_slice(&t.knot_values, (t.inputs, t.knots), dev)?);
        named.insert("copula.mean".into(), Tensor::from_slice(&t.mean, t.inputs, dev)?);
        named.insert("copula.whiten".into(), Tensor::from_slice(&t.whiten, (t.inputs, t.inputs), dev)?);
        named.insert("copula.clip_cut".into(), Tensor::from_slice(&[t.clip, t.cut], 2, dev)?);
        Ok(named)
    }

    /// Reads what [`CopulaNet::named_tensors`] wrote.
    pub fn from_named_tensors(mut named: HashMap<String, Tensor>) -> Result<Self, String> {
        let mut take = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
            let t = named.remove(name).ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.dtype() != DType::F32 {
                return Err(format!("tensor {name} is {:?}, expected F32", t.dtype()));
            }
            let dims = t.dims().to_vec();
            let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| format!("tensor {name}: {e}"))?;
            Ok((dims, values))
        };
        let (kd, knot_values) = take("copula.knots")?;
        let (_, mean) = take("copula.mean")?;
        let (wd, whiten) = take("copula.whiten")?;
        let (_, clip_cut) = take("copula.clip_cut")?;
        let [inputs, knots] = kd[..] else { return Err(format!("tensor copula.knots is {kd:?}, expected 2 dims")) };
        if wd != [inputs, inputs] || mean.len() != inputs || clip_cut.len() != 2 {
            return Err(format!("copula tensors disagree on the input count {inputs}"));
        }
        if let Some(name) = named.keys().next() {
            return Err(format!("unexpected tensor {name} in a copula model"));
        }
        let table = Copula { inputs, knots, knot_values, mean, whiten, clip: clip_cut[0], cut: clip_cut[1] };
        CopulaNet::new(table).map_err(|e| e.to_string())
    }

    /// Feeds the shape and every value to `eat` (the version hash).
    pub fn hash_into(&self, eat: &mut dyn FnMut(&[u8])) {
        let t = &self.table;
        eat(&(t.inputs as u64).to_le_bytes());
        eat(&(t.knots as u64).to_le_bytes());
        t.knot_values
            .iter()
            .chain(&t.mean)
            .chain(&t.whiten)
            .chain([&t.clip, &t.cut])
            .for_each(|v| eat(&v.to_le_bytes()));
    }

    /// Checks the table against the model's input count.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        let t = &self.table;
        if t.inputs != inputs || t.knots < 2 || t.knot_values.len() != inputs * t.knots {
            return Err(format!("the copula has {} inputs of {} knots, the model {inputs} inputs", t.inputs, t.knots));
        }
        let finite = t.knot_values.iter().chain(&t.mean).chain(&t.whiten).chain([&t.clip, &t.cut]);
        if finite.into_iter().any(|v| !v.is_finite()) || t.clip <= 0.0 {
            return Err("copula values contain NaN or infinity".to_string());
        }
        if t.knot_values.chunks_exact(t.knots).any(|k| k.windows(2).any(|w| w[1] < w[0])) {
            return Err("copula knots are not sorted".to_string());
        }
        Ok(())
    }
}

impl Copula {
    /// The training quantile of `v` for input `j` (`None` when missing): linear between the
    /// knots, the middle of a run of equal knots, 0 or 1 beyond them.
    pub fn quantile(&self, j: usize, v: f32) -> Option<f32> {
        if !v.is_finite() {
            return None;
        }
        let k = &self.knot_values[j * self.knots..(j + 1) * self.knots];
        let last = (self.knots - 1) as f32;
        let lo = k.partition_point(|&q| q < v);
        let hi = k.partition_point(|&q| q <= v);
        Some(if hi > lo {
            (lo + hi - 1) as f32 / 2.0 / last
        } else if lo == 0 {
            0.0
        } else if lo == self.knots {
            1.0
        } else {
            ((lo - 1) as f32 + (v - k[lo - 1]) / (k[lo] - k[lo - 1])) / last
        })
    }

    /// The clipped normal score of `v` for input `j`; a missing value scores the mean.
    pub fn score(&self, j: usize, v: f32) -> f32 {
        match self.quantile(j, v) {
            Some(u) => (normal_quantile(f64::from(u).clamp(1e-6, 1.0 - 1e-6)) as f32).clamp(-self.clip, self.clip),
            None => self.mean[j],
        }
    }
}

/// The candle op mapping raw rows to clipped normal scores.
struct Scores<'t>(&'t Copula);

impl candle_core::CustomOp1 for Scores<'_> {
    fn name(&self) -> &'static str {
        "copula-scores"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, f) = layout.shape().dims2()?;
        let rows = contiguous_f32(storage, layout, self.name())?;
        let out: Vec<f32> = rows.iter().enumerate().map(|(i, &v)| self.0.score(i % f, v)).collect();
        Ok((CpuStorage::F32(out), Shape::from((n, f))))
    }
}

/// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error < 1.2e-9), far
/// below the f32 the scores are kept in.
pub fn normal_quantile(p: f64) -> f64 {
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
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tabulated_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.001, -3.090_232_306_167_813),
            (1e-6, -4.753_424_308_822_899),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "{p}");
        }
    }

    fn two_inputs() -> Copula {
        Copula {
            inputs: 2,
            knots: 5,
            knot_values: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 10.0],
            mean: vec![0.0, 0.0],
            whiten: vec![1.0, 0.0, 0.5, 2.0],
            clip: 3.0,
            cut: 1.0,
        }
    }

    #[test]
    fn quantiles_interpolate_between_knots_and_take_the_middle_of_ties() {
        let c = two_inputs();
        assert_eq!(c.quantile(0, 1.5), Some(0.375));
        assert_eq!(c.quantile(0, -1.0), Some(0.0));
        assert_eq!(c.quantile(0, 9.0), Some(1.0));
        assert_eq!(c.quantile(1, 5.0), Some(0.25));
        assert_eq!(c.quantile(1, f32::NAN), None);
        assert_eq!(c.score(1, f32::NAN), 0.0);
        assert_eq!(c.score(0, 100.0), 3.0);
    }

    #[test]
    fn logits_are_the_log_distance_beyond_the_cut_and_terms_split_it() -> candle_core::Result<()> {
        let net = CopulaNet::new(two_inputs())?;
        let rows = [1.5f32, 8.0, 2.0, f32::NAN];
        let logits = net.logits(&rows, 2)?;
        for (r, row) in rows.chunks(2).enumerate() {
            let z: Vec<f64> = (0..2).map(|j| f64::from(net.table().score(j, row[j]))).collect();
            // y = W z, by hand.
            let y = [z[0], 0.5 * z[0] + 2.0 * z[1]];
            let distance = y[0] * y[0] + y[1] * y[1];
            let want = LOG_SLOPE * ((distance + 1e-6) / 1.0).ln();
            assert!((f64::from(logits[r]) - want).abs() < 1e-5, "row {r}: {} vs {want}", logits[r]);
            let mut terms = [0f32; 2];
            net.terms(row, &mut terms);
            assert!((f64::from(terms[0] + terms[1]) - distance).abs() < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn tables_round_trip_through_tensors() -> Result<(), String> {
        let net = CopulaNet::new(two_inputs()).map_err(|e| e.to_string())?;
        let back = CopulaNet::from_named_tensors(net.named_tensors().map_err(|e| e.to_string())?)?;
        assert_eq!(back.table(), net.table());
        net.check(2)?;
        assert!(net.check(3).is_err());
        Ok(())
    }
}
