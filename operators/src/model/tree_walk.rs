//! The stream's tree scorer: the ensemble's tables recompiled into the layout that scores a
//! batch fastest on a CPU, run as one candle custom op over the batch tensor.
//!
//! Every tree is laid out as a perfect binary tree of its depth `D` (missing levels below a
//! shallow leaf are padded, the leaf's value copied into every leaf slot under it, so whichever
//! way a row goes beneath it, it reaches that value), so a row
//! at split `i` goes to `2i + 1` or `2i + 2` — computed, not loaded, which takes one
//! dependent load off every level. Missing values need no test either: each row is copied
//! twice into a scratch block, once with NaN as −∞ and once as +∞, and a split whose missing
//! values go right reads the +∞ copy (`+∞ ≥ t`), the others the −∞ copy (`−∞ < t`). A level is
//! thus one 8-byte split load, one input load, one compare.
//!
//! Rows are walked [`LANES`] at a time, all through one tree before the next, so the
//! dependent load chains of different rows overlap; the block is column-major, so a lane's
//! input sits at a fixed offset from the split's column. Where the CPU has AVX2, the top four
//! levels are compared for all lanes at once (`avx2`); results are bit for bit the same
//! either way. Measured on the 1M quick-start run (300 trees of depth 6, docs/design.md).
//!
//! Invariants the unchecked loads rely on, established by [`PackedTrees::new`]: a tree has
//! `2^D − 1` splits and `2^D` leaves, `D` levels from the root end on a leaf slot, and every
//! split's `column + LANES` is at most the block's `2 · inputs · LANES` values.

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use crate::model::trees::TreeTables;

/// Rows walked together through one tree (16 measured fastest: 8 leaves the load units idle,
/// 32 spills the row positions).
const LANES: usize = 16;

/// The deepest trees the perfect layout takes: 2^12 leaves per tree. vigil's trainers stay
/// below (gbdt depth 6, or 8 on large sets; ECOD 7–8); `vigil train --max-depth` is capped here.
pub const MAX_DEPTH: usize = 12;

/// One split as the walk reads it.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Split {
    threshold: f32,
    /// Offset of the split's input in the scratch block: `(input + inputs·missing_right) ·
    /// LANES`, so the −∞ copy is read when missing values go left, the +∞ copy otherwise.
    column: u32,
}

/// The ensemble in walk layout (see the module docs).
#[derive(Debug, Clone)]
pub struct PackedTrees {
    splits: Vec<Split>,
    /// The expected output under each split (Saabas' attribution; a padded split under a
    /// shallow leaf carries the leaf's value, so it adds nothing).
    expected: Vec<f32>,
    leaves: Vec<f32>,
    trees: usize,
    depth: usize,
    inputs: usize,
    base: f32,
    /// Whether the top levels are walked with AVX2 (detected once, when built).
    avx2: bool,
}

impl PackedTrees {
    /// Recompiles `tables` for rows of `inputs` values; `Err` for tables that fail
    /// [`TreeTables::check`], trees deeper than [`MAX_DEPTH`] or than the tables declare, or a
    /// split that sends missing values to a third branch (the trainers never do).
    pub fn new(tables: &TreeTables, inputs: usize) -> Result<Self, String> {
        tables.check(inputs)?;
        let depth = tables.depth;
        if depth > MAX_DEPTH {
            return Err(format!("the trees are {depth} deep; at most {MAX_DEPTH} is supported"));
        }
        if inputs == 0 || 2 * inputs * LANES > u32::MAX as usize {
            return Err(format!("tree models need 1 to {} inputs, not {inputs}", u32::MAX as usize / (2 * LANES)));
        }
        let inner = (1usize << depth) - 1;
        let mut splits = vec![Split { threshold: f32::INFINITY, column: 0 }; tables.trees * inner];
        let mut expected = vec![0f32; tables.trees * inner];
        let mut leaves = vec![0f32; tables.trees * (inner + 1)];
        for tree in 0..tables.trees {
            let splits = &mut splits[tree * inner..(tree + 1) * inner];
            let expected = &mut expected[tree * inner..(tree + 1) * inner];
            let leaves = &mut leaves[tree * (inner + 1)..(tree + 1) * (inner + 1)];
            // (perfect slot, table node, level)
            let mut pending = vec![(0usize, 0u32, 0usize)];
            while let Some((slot, node, level)) = pending.pop() {
                let at = tree * tables.nodes + node as usize;
                let (left, right, missing) = (tables.left[at], tables.right[at], tables.missing[at]);
                if left == node {
                    // A leaf: its value in every slot under `slot`, padded splits and leaves.
                    for below in level..depth {
                        let first = ((slot + 1) << (below - level)) - 1;
                        expected[first..first + (1 << (below - level))].fill(tables.value[at]);
                    }
                    let first = ((slot + 1) << (depth - level)) - 1 - inner;
                    leaves[first..first + (1 << (depth - level))].fill(tables.value[at]);
                    continue;
                }
                if level == depth {
                    return Err(format!("tree {tree} is deeper than the {depth} levels its tables declare"));
                }
                if missing != left && missing != right {
                    return Err(format!("tree {tree}: a split sends missing values to a third branch"));
                }
                let input = tables.feature[at] as usize;
                if input >= inputs {
                    return Err(format!("a tree splits on input {input}, but the model has {inputs} inputs"));
                }
                let column = (input + usize::from(missing == right) * inputs) * LANES;
                splits[slot] = Split { threshold: tables.threshold[at], column: column as u32 };
                expected[slot] = tables.value[at];
                pending.push((2 * slot + 1, left, level + 1));
                pending.push((2 * slot + 2, right, level + 1));
            }
        }
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Ok(PackedTrees { splits, expected, leaves, trees: tables.trees, depth, inputs, base: tables.base, avx2 })
    }

    /// The same trees walked without AVX2 (the portable path), for tests on machines with it.
    #[cfg(test)]
    fn portable(self) -> Self {
        PackedTrees { avx2: false, ..self }
    }

    /// The logits of `rows` (row-major, `inputs` columns, NaN = missing), appended to `out`.
    pub fn logits(&self, rows: &[f32], out: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 was detected in `new`.
            return unsafe { self.logits_avx2(rows, out) };
        }
        self.walk(rows, out, |_, _, _| 0);
    }

    /// [`PackedTrees::logits`] compiled for AVX2 as a whole, so that the top levels inline
    /// into the walk and its loops may use AVX2 too.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn logits_avx2(&self, rows: &[f32], out: &mut Vec<f32>) {
        let deep_enough = self.depth >= avx2::LEVELS;
        self.walk(rows, out, |splits, block, at| {
            if !deep_enough {
                return 0;
            }
            // SAFETY: AVX2 is enabled here; with `depth ≥ LEVELS` the tree has the 15 splits
            // the top levels read, and every column + 16 lanes lies within the block.
            unsafe { avx2::top_levels(splits, block, at) };
            avx2::LEVELS
        });
    }

    /// The walk; `top` may take the first levels of a tree for all lanes at once (it sets
    /// `at` and returns the levels it walked).
    #[inline(always)]
    fn walk(&self, rows: &[f32], out: &mut Vec<f32>, top: impl Fn(&[Split], &[f32], &mut [u32; LANES]) -> usize) {
        let inputs = self.inputs;
        let inner = (1usize << self.depth) - 1;
        let mut block = vec![0f32; 2 * inputs * LANES];
        for chunk in rows.chunks(inputs * LANES) {
            let lanes = chunk.len() / inputs;
            self.fill_block(chunk, &mut block);
            let mut sums = [self.base; LANES];
            for tree in 0..self.trees {
                let splits = &self.splits[tree * inner..(tree + 1) * inner];
                let mut at = [0u32; LANES];
                for _ in top(splits, &block, &mut at)..self.depth {
                    for (lane, at) in at.iter_mut().enumerate() {
                        // SAFETY (module docs): after fewer than `depth` levels `*at < inner =
                        // splits.len()`, and `column + lane < 2 · inputs · LANES = block.len()`.
                        let split = unsafe { *splits.get_unchecked(*at as usize) };
                        let x = unsafe { *block.get_unchecked(split.column as usize + lane) };
                        *at = 2 * *at + 1 + u32::from(x >= split.threshold);
                    }
                }
                let leaves = &self.leaves[tree * (inner + 1)..(tree + 1) * (inner + 1)];
                for (sum, &at) in sums.iter_mut().zip(&at) {
                    // SAFETY: after `depth` levels `inner ≤ at < 2 · inner + 1`, and a tree has
                    // `inner + 1` leaves.
                    *sum += unsafe { *leaves.get_unchecked(at as usize - inner) };
                }
            }
            out.extend_from_slice(&sums[..lanes]);
        }
    }

    /// Saabas' attribution of one row (as `TreeTables::path_contributions`, which is the
    /// reference): adds to `out[j]` the change of the expected output at every split on input
    /// j along the row's path in every tree. Branch-free like the walk, for the rows a job
    /// explains.
    pub fn path_contributions(&self, row: &[f32], out: &mut [f32]) {
        let inner = (1usize << self.depth) - 1;
        for tree in 0..self.trees {
            let splits = &self.splits[tree * inner..(tree + 1) * inner];
            let expected = &self.expected[tree * inner..(tree + 1) * inner];
            let leaves = &self.leaves[tree * (inner + 1)..(tree + 1) * (inner + 1)];
            let mut at = 0;
            for level in 0..self.depth {
                let split = splits[at];
                let (input, missing_right) = self.input_of(split);
                let x = row[input];
                let right = if x.is_nan() { missing_right } else { x >= split.threshold };
                let child = 2 * at + 1 + usize::from(right);
                let below = if level + 1 == self.depth { leaves[child - inner] } else { expected[child] };
                out[input] += below - expected[at];
                at = child;
            }
        }
    }

    /// The input a split reads and whether its missing values go right (no division: this
    /// is on the explained rows' dependency chain).
    fn input_of(&self, split: Split) -> (usize, bool) {
        let column = split.column as usize / LANES;
        let missing_right = column >= self.inputs;
        (column - usize::from(missing_right) * self.inputs, missing_right)
    }

    /// Copies up to [`LANES`] rows into the column-major block, NaN as −∞ in the first half
    /// and as +∞ in the second; lanes without a row get zeros (scored, then dropped).
    fn fill_block(&self, chunk: &[f32], block: &mut [f32]) {
        block.fill(0.0);
        let plus = self.inputs * LANES;
        for (lane, row) in chunk.chunks_exact(self.inputs).enumerate() {
            for (input, &x) in row.iter().enumerate() {
                let at = input * LANES + lane;
                block[at] = if x.is_nan() { f32::NEG_INFINITY } else { x };
                block[plus + at] = if x.is_nan() { f32::INFINITY } else { x };
            }
        }
    }

    /// Scores a batch tensor (`n × inputs`, f32, NaN = missing) as one candle op: `n` logits.
    pub fn logits_tensor(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(&Walk(self))
    }
}

/// The top levels of a tree for all 16 lanes at once, without gathers: at level `k` every one
/// of its `2^k` splits is compared for all lanes (its input is 16 contiguous values of the
/// block), and each lane keeps the comparison of the split it is at, chosen by blends on the
/// lane's earlier outcomes. 1 + 2 + 4 + 8 splits for the top four levels cost less than the
/// 64 single-lane steps they replace (measured 1.3× faster for the whole walk, depth 6).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Split, LANES};

    /// Levels walked here; the rest are the scalar loop's.
    pub const LEVELS: usize = 4;

    /// Sets `at` to each lane's split slot after the top [`LEVELS`] levels (`15..31`).
    ///
    /// # Safety
    /// AVX2 must be available; `splits` must hold the 15 splits of levels 0–3 and every one
    /// of their `column + LANES` must be within `block`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn top_levels(splits: &[Split], block: &[f32], at: &mut [u32; LANES]) {
        debug_assert!(splits.len() >= 15 && splits[..15].iter().all(|s| s.column as usize + LANES <= block.len()));
        for half in 0..LANES / 8 {
            // `x ≥ threshold` of split `slot` for the half's 8 lanes (all ones where true).
            let go_right = |slot: usize| {
                // SAFETY: per the function's contract.
                let split = unsafe { *splits.get_unchecked(slot) };
                let x = unsafe { _mm256_loadu_ps(block.as_ptr().add(split.column as usize + 8 * half)) };
                _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(split.threshold))
            };
            // A lane at level k is at slot 2^k − 1 + (r0 r1 … r(k−1) in binary).
            let pick = |left: __m256, right: __m256, r: __m256| _mm256_blendv_ps(left, right, r);
            let r0 = go_right(0);
            let r1 = pick(go_right(1), go_right(2), r0);
            let r2 = pick(pick(go_right(3), go_right(4), r1), pick(go_right(5), go_right(6), r1), r0);
            let r3 = pick(
                pick(pick(go_right(7), go_right(8), r2), pick(go_right(9), go_right(10), r2), r1),
                pick(pick(go_right(11), go_right(12), r2), pick(go_right(13), go_right(14), r2), r1),
                r0,
            );
            let bit = |r: __m256, weight: i32| _mm256_and_si256(_mm256_castps_si256(r), _mm256_set1_epi32(weight));
            let path =
                _mm256_add_epi32(_mm256_add_epi32(bit(r0, 8), bit(r1, 4)), _mm256_add_epi32(bit(r2, 2), bit(r3, 1)));
            let slot = _mm256_add_epi32(path, _mm256_set1_epi32(15));
            // SAFETY: `at` has 8 · (LANES / 8) values.
            unsafe { _mm256_storeu_si256(at.as_mut_ptr().add(8 * half).cast(), slot) };
        }
    }
}

/// The candle op that walks the packed trees for every row of its input.
struct Walk<'t>(&'t PackedTrees);

impl candle_core::CustomOp1 for Walk<'_> {
    fn name(&self) -> &'static str {
        "tree-walk"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, inputs) = layout.shape().dims2()?;
        if inputs != self.0.inputs {
            candle_core::bail!("tree-walk: rows of {inputs} inputs, the trees take {}", self.0.inputs);
        }
        let rows = contiguous_f32(storage, layout, self.name())?;
        let mut out = Vec::with_capacity(n);
        self.0.logits(rows, &mut out);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// The values of a custom op's input, which must be a contiguous f32 tensor (the batch
/// tensors the model builds always are).
pub(crate) fn contiguous_f32<'s>(storage: &'s CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'s [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(all), Some((from, to))) => Ok(&all[from..to]),
        _ => candle_core::bail!("{op} takes a contiguous f32 tensor"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::trees::tests::small;
    use crate::model::trees::Node;

    /// A random tree over `inputs` inputs, built top-down: uneven (any node may stop early),
    /// random thresholds from a small set (so rows hit them exactly) and random missing
    /// directions.
    fn random_tree(seed: &mut u64, inputs: usize, max_depth: usize) -> Vec<Node> {
        fn next(seed: &mut u64) -> u64 {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *seed >> 33
        }
        fn grow(seed: &mut u64, nodes: &mut Vec<Node>, at: usize, inputs: usize, depth_left: usize) {
            if depth_left == 0 || next(seed).is_multiple_of(5) {
                nodes[at] = Node::Leaf { value: (next(seed) % 1000) as f64 / 64.0 - 7.0 };
                return;
            }
            let (left, right) = (nodes.len(), nodes.len() + 1);
            nodes.extend([Node::Leaf { value: 0.0 }, Node::Leaf { value: 0.0 }]);
            let missing = if next(seed).is_multiple_of(2) { left } else { right };
            let threshold = (next(seed) % 9) as f64 - 4.0;
            let feature = (next(seed) as usize) % inputs;
            let value = (next(seed) % 1000) as f64 / 64.0 - 7.0;
            nodes[at] = Node::Split { feature, threshold, left, right, missing, value };
            grow(seed, nodes, left, inputs, depth_left - 1);
            grow(seed, nodes, right, inputs, depth_left - 1);
        }
        let mut nodes = vec![Node::Leaf { value: 0.0 }];
        grow(seed, &mut nodes, 0, inputs, max_depth);
        nodes
    }

    proptest! {
        /// The recompiled walk gives bit for bit the reference walk's logits, for uneven trees
        /// of any depth, missing and infinite inputs, and any batch length (full and partial
        /// lane blocks); and the same path contributions.
        #[test]
        fn the_walk_equals_the_reference_walk(
            seed in any::<u64>(),
            trees in 1usize..12,
            max_depth in 0usize..8,
            inputs in 1usize..6,
            cells in proptest::collection::vec(prop_oneof![
                (-5i32..5).prop_map(|v| v as f32),
                (-50i32..50).prop_map(|v| v as f32 / 10.0),
                Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY),
            ], 0..200),
        ) {
            let mut seed = seed;
            let forest: Vec<Vec<Node>> = (0..trees).map(|_| random_tree(&mut seed, inputs, max_depth)).collect();
            let tables = TreeTables::from_nodes(&forest, 0.125, 1.0).map_err(TestCaseError::fail)?;
            let rows = &cells[..cells.len() / inputs * inputs];
            let mut want = Vec::new();
            tables.logits(rows, inputs, &mut want);
            let packed = PackedTrees::new(&tables, inputs).map_err(TestCaseError::fail)?;
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut got = Vec::new();
            packed.clone().logits(rows, &mut got);
            prop_assert_eq!(bits(&got), bits(&want));
            got.clear();
            packed.clone().portable().logits(rows, &mut got);
            prop_assert_eq!(bits(&got), bits(&want));
            for row in rows.chunks_exact(inputs) {
                let (mut want, mut got) = (vec![0f32; inputs], vec![0f32; inputs]);
                tables.path_contributions(row, &mut want);
                packed.path_contributions(row, &mut got);
                prop_assert_eq!(&got, &want, "row {:?}", row);
            }
        }
    }

    #[test]
    fn the_candle_op_scores_every_row_of_the_tensor() -> candle_core::Result<()> {
        let tables = TreeTables::from_nodes(&[small(), small(), small()], 0.1, 1.0).map_err(candle_core::Error::msg)?;
        let rows: Vec<f32> = (0..40).map(|i| if i % 7 == 3 { f32::NAN } else { (i % 11) as f32 * 0.7 }).collect();
        let mut want = Vec::new();
        tables.logits(&rows, 2, &mut want);
        let packed = PackedTrees::new(&tables, 2).map_err(candle_core::Error::msg)?;
        let x = Tensor::from_slice(&rows, (20, 2), &candle_core::Device::Cpu)?;
        assert_eq!(packed.logits_tensor(&x)?.to_vec1::<f32>()?, want);
        let wrong = Tensor::from_slice(&rows, (10, 4), &candle_core::Device::Cpu)?;
        assert!(packed.logits_tensor(&wrong).is_err());
        Ok(())
    }

    #[test]
    fn refuses_trees_it_cannot_walk() -> Result<(), String> {
        let tables = TreeTables::from_nodes(&[small()], 0.0, 1.0)?;
        assert!(PackedTrees::new(&tables, 1).unwrap_err().contains("input 1"));
        let mut deep = tables.clone();
        deep.depth = MAX_DEPTH + 1;
        assert!(PackedTrees::new(&deep, 2).unwrap_err().contains("deep"));
        let mut shallow = tables;
        shallow.depth = 1;
        assert!(PackedTrees::new(&shallow, 2).unwrap_err().contains("deeper"));
        Ok(())
    }
}
