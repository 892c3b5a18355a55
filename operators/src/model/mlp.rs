//! The MLP kind: inputs (standardised) → ReLU hidden layers → one logit, scored as one candle
//! matmul per layer for a whole batch, explained by occlusion against the training mean.
//!
//! The file format around it (metadata, version, load/save) is `model/file.rs`; this module
//! owns only the network: its layers in file layout, their tensors and the forward pass.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

/// One fully connected layer in file layout: `w` is `out × in`, row-major (PyTorch's
/// `Linear.weight` convention, so the file can be read by other tools).
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub in_dim: usize,
    pub out_dim: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// A network ready to score. Holds the weights twice: in file layout (for saving and hashing)
/// and pre-transposed as tensors (so scoring is one matmul per layer, no copies).
#[derive(Debug)]
pub struct Mlp {
    dense: Vec<Dense>,
    /// Per layer `(in × out, 1 × out)`.
    tensors: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    pub fn new(dense: Vec<Dense>) -> candle_core::Result<Self> {
        let tensors = dense
            .iter()
            .map(|l| {
                let w = Tensor::from_slice(&l.w, (l.out_dim, l.in_dim), &Device::Cpu)?;
                let b = Tensor::from_slice(&l.b, (1, l.out_dim), &Device::Cpu)?;
                Ok((w.t()?.contiguous()?, b))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Mlp { dense, tensors })
    }

    pub fn dense(&self) -> &[Dense] {
        &self.dense
    }

    /// All layer widths, input first, output (1) last.
    pub fn widths(&self) -> Vec<usize> {
        widths_of(&self.dense)
    }

    /// The logits of standardised rows (`n × in`), `n` values.
    pub fn logits(&self, x: Vec<f32>, n: usize) -> candle_core::Result<Vec<f32>> {
        let x = Tensor::from_vec(x, (n, self.dense[0].in_dim), &Device::Cpu)?;
        forward(&self.tensors, &x)?.flatten_all()?.to_vec1::<f32>()
    }

    /// Per-input logit contributions of standardised rows: `z(x) − z(x with input j at its
    /// training mean)` (0 after standardisation) for every row and input. One forward pass over
    /// the `n · (width + 1)` probe rows.
    pub fn occlusion(&self, x: &[f32], out: &mut Vec<f32>) -> candle_core::Result<()> {
        let d = self.dense[0].in_dim;
        let n = x.len() / d;
        let mut probes = Vec::with_capacity(n * (d + 1) * d);
        for row in x.chunks_exact(d) {
            probes.extend_from_slice(row);
            for j in 0..d {
                let start = probes.len();
                probes.extend_from_slice(row);
                probes[start + j] = 0.0;
            }
        }
        let z = self.logits(probes, n * (d + 1))?;
        out.reserve(n * d);
        for block in z.chunks_exact(d + 1) {
            out.extend(block[1..].iter().map(|&zj| block[0] - zj));
        }
        Ok(())
    }

    /// The tensors as the file names them: `layers.{i}.weight` (`out × in`), `layers.{i}.bias`.
    pub fn named_tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut named = HashMap::new();
        for (i, l) in self.dense.iter().enumerate() {
            named.insert(format!("layers.{i}.weight"), Tensor::from_slice(&l.w, (l.out_dim, l.in_dim), &Device::Cpu)?);
            named.insert(format!("layers.{i}.bias"), Tensor::from_slice(&l.b, l.out_dim, &Device::Cpu)?);
        }
        Ok(named)
    }

    /// Feeds the layer shapes and the little-endian bytes of every weight to `eat` (the
    /// version hash).
    pub fn hash_into(&self, eat: &mut dyn FnMut(&[u8])) {
        for l in &self.dense {
            eat(&(l.in_dim as u64).to_le_bytes());
            eat(&(l.out_dim as u64).to_le_bytes());
            l.w.iter().chain(&l.b).for_each(|v| eat(&v.to_le_bytes()));
        }
    }

    /// Checks the layers against the metadata's `layers` and input count.
    pub fn check(&self, layers: &[usize], inputs: usize) -> Result<(), String> {
        let widths = self.widths();
        if widths != layers || widths.len() < 2 || widths.last() != Some(&1) {
            return Err(format!(
                "layers {layers:?} must run from the input count to 1 and match the weights {widths:?}"
            ));
        }
        if inputs != widths[0] {
            return Err(format!("{inputs} inputs named but the first layer takes {}", widths[0]));
        }
        if self.dense.iter().any(|l| l.w.iter().chain(&l.b).any(|v| !v.is_finite())) {
            return Err("weights contain NaN or infinity".to_string());
        }
        Ok(())
    }
}

fn widths_of(dense: &[Dense]) -> Vec<usize> {
    dense.first().map(|l| l.in_dim).into_iter().chain(dense.iter().map(|l| l.out_dim)).collect()
}

/// The MLP: `relu(x·W + b)` per hidden layer, a plain affine output. `layers` are
/// `(in × out, 1 × out)`; returns `n × 1` logits.
pub fn forward(layers: &[(Tensor, Tensor)], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(w)?.broadcast_add(b)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Reads `layers.{i}.weight` (`out × in`) and `layers.{i}.bias` (`out`) for the widths the
/// metadata declares; any other tensor is an error, as it means the files do not match.
pub fn dense_from_tensors(
    mut tensors: std::collections::HashMap<String, Tensor>,
    widths: &[usize],
) -> Result<Vec<Dense>, String> {
    let mut dense = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let (in_dim, out_dim) = (pair[0], pair[1]);
        let mut take = |name: String, shape: &[usize]| -> Result<Vec<f32>, String> {
            let t = tensors.remove(&name).ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.dims() != shape || t.dtype() != DType::F32 {
                return Err(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?} (layers {widths:?} in the metadata)",
                    t.dtype(),
                    t.dims()
                ));
            }
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| format!("tensor {name}: {e}"))
        };
        let w = take(format!("layers.{i}.weight"), &[out_dim, in_dim])?;
        let b = take(format!("layers.{i}.bias"), &[out_dim])?;
        dense.push(Dense { in_dim, out_dim, w, b });
    }
    let mut extra: Vec<&String> = tensors.keys().collect();
    extra.sort();
    match extra.first() {
        Some(name) => Err(format!("unexpected tensor {name} (layers {widths:?} in the metadata)")),
        None => Ok(dense),
    }
}
