//! Tree ensembles (the `gbdt` kind and the tree-shaped unsupervised kinds): every tree is a
//! table of nodes, all trees padded to one node count, stored as tensors and scored for a
//! whole batch at once; a row's logit is `base + Σ` of the leaf it reaches in each tree.
//!
//! Layout (file and memory): per tree `nodes` slots of `feature`, `threshold`, `left`,
//! `right`, `missing` (child slots, local to the tree) and `value`. A row goes to `missing`
//! when its input is missing (NaN), else to `right` when `x ≥ threshold`, else to `left`. A
//! leaf points to itself three times, so walking exactly `depth` levels from the root lands
//! on a leaf for every row: no per-row branching on "is this a leaf". `value` is the leaf's
//! output for leaves and the expected output under the node for internal nodes, which gives
//! Saabas' path attribution (the change of the expected value at every split, credited to the
//! split's input) for reasons.
//!
//! These tables are the file format and, in tests, the reference walk (node by node). The
//! stream, the trainers and gbdt reasons use a copy recompiled for speed
//! (`model/tree_walk.rs`); the unsupervised kinds' per-input reasons walk these tables.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

/// One node as a trainer describes it, before padding into tables.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `x[feature] < threshold` → `left`, else `right`; missing → `missing`. Children are
    /// indices into the same tree's node list. `value` is the expected output under the node.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
        missing: usize,
        value: f64,
    },
    Leaf {
        value: f64,
    },
}

/// The ensemble in table form (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeTables {
    pub trees: usize,
    /// Node slots per tree (the largest tree's node count).
    pub nodes: usize,
    /// Longest root-to-leaf path, in splits.
    pub depth: usize,
    pub feature: Vec<u32>,
    pub threshold: Vec<f32>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub missing: Vec<u32>,
    pub value: Vec<f32>,
    pub base: f32,
}

impl TreeTables {
    /// Pads `trees` into tables. Thresholds are rounded up to the next `f32`: for an `f32`
    /// input `x`, `x < t` in `f64` holds exactly when `x < ceil_f32(t)`, so the tables route
    /// every `f32` row as the trainer's `f64` trees do. `scale` multiplies every value and the
    /// base (a calibration or a score direction folded into the tables).
    pub fn from_nodes(trees: &[Vec<Node>], base: f64, scale: f64) -> Result<Self, String> {
        let nodes = trees.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut t = TreeTables {
            trees: trees.len(),
            nodes,
            depth: 0,
            feature: Vec::with_capacity(trees.len() * nodes),
            threshold: Vec::with_capacity(trees.len() * nodes),
            left: Vec::with_capacity(trees.len() * nodes),
            right: Vec::with_capacity(trees.len() * nodes),
            missing: Vec::with_capacity(trees.len() * nodes),
            value: Vec::with_capacity(trees.len() * nodes),
            base: (base * scale) as f32,
        };
        for (k, tree) in trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(format!("tree {k} has no nodes"));
            }
            for slot in 0..nodes {
                let own = slot as u32;
                match tree.get(slot) {
                    Some(&Node::Split { feature, threshold, left, right, missing, value }) => {
                        if [left, right, missing].iter().any(|&c| c >= tree.len() || c <= slot) {
                            return Err(format!("tree {k} node {slot}: a child index is not a later node"));
                        }
                        t.feature.push(feature as u32);
                        t.threshold.push(ceil_f32(threshold));
                        t.left.push(left as u32);
                        t.right.push(right as u32);
                        t.missing.push(missing as u32);
                        t.value.push((value * scale) as f32);
                    }
                    leaf => {
                        let value = match leaf {
                            Some(Node::Leaf { value }) => *value,
                            _ => 0.0,
                        };
                        t.feature.push(0);
                        t.threshold.push(f32::INFINITY);
                        t.left.push(own);
                        t.right.push(own);
                        t.missing.push(own);
                        t.value.push((value * scale) as f32);
                    }
                }
            }
            t.depth = t.depth.max(depth_of(tree));
        }
        Ok(t)
    }

    /// Checks the tables against the model's input count: children within the tree, features
    /// within the inputs, finite values.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        let len = self.trees * self.nodes;
        let columns = [&self.feature, &self.left, &self.right, &self.missing];
        if columns.iter().any(|c| c.len() != len) || self.threshold.len() != len || self.value.len() != len {
            return Err(format!("tree tables are not {} trees × {} nodes", self.trees, self.nodes));
        }
        if self.left.iter().chain(&self.right).chain(&self.missing).any(|&c| c as usize >= self.nodes) {
            return Err("a tree node points outside its tree".to_string());
        }
        if let Some(&f) = self.feature.iter().find(|&&f| f as usize >= inputs.max(1)) {
            return Err(format!("a tree splits on input {f}, but the model has {inputs} inputs"));
        }
        if self.value.iter().any(|v| !v.is_finite()) || !self.base.is_finite() {
            return Err("tree values contain NaN or infinity".to_string());
        }
        if self.threshold.iter().any(|t| t.is_nan()) {
            return Err("a tree threshold is NaN".to_string());
        }
        Ok(())
    }

    fn slot(&self, tree: usize, node: u32) -> usize {
        tree * self.nodes + node as usize
    }

    /// The child a row with input value `v` goes to from `at` (a slot).
    #[inline(always)]
    fn step(&self, at: usize, v: f32) -> u32 {
        if v.is_nan() {
            self.missing[at]
        } else if v >= self.threshold[at] {
            self.right[at]
        } else {
            self.left[at]
        }
    }

    /// The logits of `rows` (row-major, `inputs` columns, NaN = missing), appended to `out`:
    /// the plain node-by-node walk, the reference the stream's `tree_walk::PackedTrees` is
    /// tested against (the stream and the trainers score with that).
    #[cfg(test)]
    pub fn logits(&self, rows: &[f32], inputs: usize, out: &mut Vec<f32>) {
        for row in rows.chunks_exact(inputs.max(1)) {
            let mut sum = self.base;
            for tree in 0..self.trees {
                let mut at = self.slot(tree, 0);
                for _ in 0..self.depth {
                    at = self.slot(tree, self.step(at, row[self.feature[at] as usize]));
                }
                sum += self.value[at];
            }
            out.push(sum);
        }
    }

    /// Saabas' attribution of one row: adds to `out[j]` the change of the expected value at
    /// every split on input j along the row's path in every tree. `Σ out + Σ root values =
    /// logit − base`.
    #[cfg(test)]
    pub fn path_contributions(&self, row: &[f32], out: &mut [f32]) {
        for tree in 0..self.trees {
            let mut at = self.slot(tree, 0);
            for _ in 0..self.depth {
                let child = self.slot(tree, self.step(at, row[self.feature[at] as usize]));
                if child == at {
                    break;
                }
                out[self.feature[at] as usize] += self.value[child] - self.value[at];
                at = child;
            }
        }
    }

    /// Adds to `out[j]` the leaf value each tree gives the row, credited to the input the
    /// tree's root splits on: for ensembles of one-input trees (the unsupervised kinds) that is
    /// exactly each input's term of the logit.
    pub fn leaf_contributions(&self, row: &[f32], out: &mut [f32]) {
        for tree in 0..self.trees {
            let root = self.slot(tree, 0);
            let mut at = root;
            for _ in 0..self.depth {
                at = self.slot(tree, self.step(at, row[self.feature[at] as usize]));
            }
            out[self.feature[root] as usize] += self.value[at];
        }
    }

    /// The tables as the file names them (`trees.feature`, … each `trees × nodes`, and
    /// `trees.base`).
    pub fn named_tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let shape = (self.trees, self.nodes);
        let dev = &Device::Cpu;
        let mut named = HashMap::new();
        named.insert("trees.feature".to_string(), Tensor::from_slice(&self.feature, shape, dev)?);
        named.insert("trees.threshold".to_string(), Tensor::from_slice(&self.threshold, shape, dev)?);
        named.insert("trees.left".to_string(), Tensor::from_slice(&self.left, shape, dev)?);
        named.insert("trees.right".to_string(), Tensor::from_slice(&self.right, shape, dev)?);
        named.insert("trees.missing".to_string(), Tensor::from_slice(&self.missing, shape, dev)?);
        named.insert("trees.value".to_string(), Tensor::from_slice(&self.value, shape, dev)?);
        named.insert("trees.base".to_string(), Tensor::from_slice(&[self.base], 1, dev)?);
        Ok(named)
    }

    /// Reads the tables written by [`TreeTables::named_tensors`]; `depth` comes from the
    /// metadata and is checked against the tables.
    pub fn from_named_tensors(mut named: HashMap<String, Tensor>, depth: usize) -> Result<Self, String> {
        let mut take = |name: &str, dtype: DType| -> Result<Tensor, String> {
            let t = named.remove(name).ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.dtype() != dtype {
                return Err(format!("tensor {name} is {:?}, expected {dtype:?}", t.dtype()));
            }
            Ok(t)
        };
        let feature = take("trees.feature", DType::U32)?;
        let (trees, nodes) = feature.dims2().map_err(|e| format!("tensor trees.feature: {e}"))?;
        let u32s = |t: Tensor, name: &str| -> Result<Vec<u32>, String> {
            if t.dims() != [trees, nodes] {
                return Err(format!("tensor {name} is {:?}, expected [{trees}, {nodes}]", t.dims()));
            }
            t.flatten_all().and_then(|t| t.to_vec1::<u32>()).map_err(|e| format!("tensor {name}: {e}"))
        };
        let f32s = |t: Tensor, name: &str| -> Result<Vec<f32>, String> {
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| format!("tensor {name}: {e}"))
        };
        let threshold = take("trees.threshold", DType::F32)?;
        let value = take("trees.value", DType::F32)?;
        for (t, name) in [(&threshold, "trees.threshold"), (&value, "trees.value")] {
            if t.dims() != [trees, nodes] {
                return Err(format!("tensor {name} is {:?}, expected [{trees}, {nodes}]", t.dims()));
            }
        }
        let tables = TreeTables {
            trees,
            nodes,
            depth,
            feature: u32s(feature, "trees.feature")?,
            left: u32s(take("trees.left", DType::U32)?, "trees.left")?,
            right: u32s(take("trees.right", DType::U32)?, "trees.right")?,
            missing: u32s(take("trees.missing", DType::U32)?, "trees.missing")?,
            threshold: f32s(threshold, "trees.threshold")?,
            value: f32s(value, "trees.value")?,
            base: f32s(take("trees.base", DType::F32)?, "trees.base")?.first().copied().unwrap_or(f32::NAN),
        };
        let mut extra: Vec<&String> = named.keys().collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(format!("unexpected tensor {name} in a tree model"));
        }
        if tables.measured_depth() != depth {
            return Err(format!("the trees are {} deep, the metadata says {depth}", tables.measured_depth()));
        }
        Ok(tables)
    }

    /// The longest root-to-leaf path of the tables.
    pub fn measured_depth(&self) -> usize {
        fn walk(t: &TreeTables, tree: usize, node: u32, budget: usize) -> usize {
            let s = t.slot(tree, node);
            if t.left[s] == node || budget == 0 {
                return 0;
            }
            1 + [t.left[s], t.right[s], t.missing[s]].iter().map(|&c| walk(t, tree, c, budget - 1)).max().unwrap_or(0)
        }
        (0..self.trees).map(|k| walk(self, k, 0, self.nodes)).max().unwrap_or(0)
    }

    /// Feeds the shape and the little-endian bytes of every table to `eat` (the version hash).
    pub fn hash_into(&self, eat: &mut dyn FnMut(&[u8])) {
        eat(&(self.trees as u64).to_le_bytes());
        eat(&(self.nodes as u64).to_le_bytes());
        for c in [&self.feature, &self.left, &self.right, &self.missing] {
            c.iter().for_each(|v| eat(&v.to_le_bytes()));
        }
        self.threshold.iter().chain(&self.value).chain([&self.base]).for_each(|v| eat(&v.to_le_bytes()));
    }
}

/// Rounds up to the nearest `f32` (see [`TreeTables::from_nodes`]).
fn ceil_f32(t: f64) -> f32 {
    let r = t as f32;
    if f64::from(r) >= t || r == f32::INFINITY {
        r
    } else {
        r.next_up()
    }
}

/// Longest root-to-leaf path in splits (children are always later nodes, so one backward pass).
fn depth_of(tree: &[Node]) -> usize {
    let mut below = vec![0usize; tree.len()];
    for i in (0..tree.len()).rev() {
        if let Node::Split { left, right, missing, .. } = tree[i] {
            below[i] = 1 + below[left].max(below[right]).max(below[missing]);
        }
    }
    below.first().copied().unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// x0 < 1 → (x1 < 5 → 1.0 | 2.0); else 3.0. Missing x0 → right, missing x1 → left.
    pub(crate) fn small() -> Vec<Node> {
        vec![
            Node::Split { feature: 0, threshold: 1.0, left: 1, right: 2, missing: 2, value: 2.0 },
            Node::Split { feature: 1, threshold: 5.0, left: 3, right: 4, missing: 3, value: 1.5 },
            Node::Leaf { value: 3.0 },
            Node::Leaf { value: 1.0 },
            Node::Leaf { value: 2.0 },
        ]
    }

    #[test]
    fn rows_reach_the_hand_computed_leaves() -> Result<(), String> {
        let t = TreeTables::from_nodes(&[small(), vec![Node::Leaf { value: 0.5 }]], 0.25, 1.0)?;
        t.check(2)?;
        assert_eq!((t.trees, t.nodes, t.depth), (2, 5, 2));
        let rows = [0.0, 0.0, 0.0, 9.0, 1.0, 0.0, f32::NAN, 0.0, 0.5, f32::NAN, 0.99999994, 5.0];
        let mut out = Vec::new();
        t.logits(&rows, 2, &mut out);
        assert_eq!(out, vec![1.75, 2.75, 3.75, 3.75, 1.75, 2.75]);
        Ok(())
    }

    #[test]
    fn thresholds_round_so_f32_rows_split_as_f64() {
        for t in [0.1f64, 1.0 / 3.0, -2.7, 1e-30, 123456.789] {
            let c = ceil_f32(t);
            let below = c.next_down();
            assert!(f64::from(c) >= t && f64::from(below) < t, "{t}");
        }
    }

    #[test]
    fn contributions_add_up_to_the_logit() -> Result<(), String> {
        let t = TreeTables::from_nodes(&[small(), small()], 0.0, 2.0)?;
        for row in [[0.0f32, 0.0], [0.0, 9.0], [4.0, 0.0], [f32::NAN, f32::NAN]] {
            let mut logit = Vec::new();
            t.logits(&row, 2, &mut logit);
            let mut c = [0.0f32; 2];
            t.path_contributions(&row, &mut c);
            let roots = 2.0 * 2.0 * 2.0;
            assert!((c[0] + c[1] + roots - logit[0]).abs() < 1e-6, "{row:?}: {c:?} {logit:?}");
        }
        let mut c = [0.0f32; 2];
        t.path_contributions(&[0.0, 0.0], &mut c);
        // Root 2.0 → node 1 (1.5) → leaf 1.0, twice, scaled by 2.
        assert_eq!(c, [-2.0, -2.0]);
        Ok(())
    }

    #[test]
    fn tables_round_trip_through_tensors_and_refuse_bad_ones() -> Result<(), String> {
        let t = TreeTables::from_nodes(&[small(), small()], 0.5, 1.0)?;
        let named = t.named_tensors().map_err(|e| e.to_string())?;
        assert_eq!(TreeTables::from_named_tensors(named.clone(), 2)?, t);
        assert!(TreeTables::from_named_tensors(named.clone(), 3).is_err());
        let mut bad = named;
        bad.remove("trees.value");
        assert!(TreeTables::from_named_tensors(bad, 2).unwrap_err().contains("trees.value"));
        assert!(t.check(1).unwrap_err().contains("input 1"));
        Ok(())
    }
}
