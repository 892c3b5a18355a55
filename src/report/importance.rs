//! Permutation importance: how much PR-AUC drops when one input column is shuffled across
//! the evaluation rows, breaking its link to the label while keeping its distribution.
//!
//! The scorer is a parameter so the computation can be checked against hand-made score
//! functions; `vigil eval` passes the real candle model. Shuffles use a fixed seed per column,
//! so a report is reproducible.

use learning::evaluation::evaluate;

/// Rows scored per call, bounding the memory of one forward pass.
const CHUNK_ROWS: usize = 8192;

/// One input's importance.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureImportance {
    pub name: String,
    /// PR-AUC of the intact rows minus PR-AUC with this column shuffled (can be slightly
    /// negative for an input the model does not use).
    pub pr_auc_drop: f64,
}

/// The rows to permute: row-major values, their labels and the column names.
pub struct Table<'a> {
    pub rows: &'a [f32],
    pub labels: &'a [u8],
    pub names: &'a [String],
}

/// Computes the importance of every column of `table`. `score` appends one score per row of
/// its argument; `done(j)` is called after column `j` (for progress).
pub fn permutation_importance<E>(
    table: &Table,
    seed: u64,
    mut score: impl FnMut(&[f32], &mut Vec<f32>) -> Result<(), E>,
    mut done: impl FnMut(usize),
) -> Result<Vec<FeatureImportance>, E> {
    let d = table.names.len();
    let base = pr_auc(table.rows, table.labels, &mut score)?;
    let mut work = table.rows.to_vec();
    let mut column = Vec::with_capacity(table.labels.len());
    let mut result = Vec::with_capacity(d);
    for (j, name) in table.names.iter().enumerate() {
        column_of(table.rows, d, j, &mut column);
        shuffle(&mut column, seed ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        set_column(&mut work, d, j, &column);
        let permuted = pr_auc(&work, table.labels, &mut score)?;
        column_of(table.rows, d, j, &mut column);
        set_column(&mut work, d, j, &column);
        result.push(FeatureImportance { name: name.clone(), pr_auc_drop: base - permuted });
        done(j);
    }
    Ok(result)
}

fn pr_auc<E>(
    rows: &[f32],
    labels: &[u8],
    score: &mut impl FnMut(&[f32], &mut Vec<f32>) -> Result<(), E>,
) -> Result<f64, E> {
    let d = rows.len() / labels.len().max(1);
    let mut scores = Vec::with_capacity(labels.len());
    for chunk in rows.chunks(CHUNK_ROWS * d.max(1)) {
        score(chunk, &mut scores)?;
    }
    Ok(evaluate(&scores, labels, 0.5).pr_auc)
}

fn column_of(rows: &[f32], d: usize, j: usize, out: &mut Vec<f32>) {
    out.clear();
    out.extend(rows.chunks_exact(d).map(|row| row[j]));
}

fn set_column(rows: &mut [f32], d: usize, j: usize, values: &[f32]) {
    for (row, &v) in rows.chunks_exact_mut(d).zip(values) {
        row[j] = v;
    }
}

/// Fisher–Yates with SplitMix64: reproducible for a seed on every platform, no dependency.
fn shuffle(values: &mut [f32], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..values.len()).rev() {
        let k = (next() % (i as u64 + 1)) as usize;
        values.swap(i, k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_column_the_score_uses_matters() {
        // Column 1 decides the label; the score reads only column 1.
        let n = 400;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let signal = if i % 10 == 0 { 5.0 + i as f32 * 0.001 } else { (i % 7) as f32 * 0.1 };
            rows.extend([(i % 13) as f32, signal, (i * 31 % 17) as f32]);
            labels.push(u8::from(i % 10 == 0));
        }
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let table = Table { rows: &rows, labels: &labels, names: &names };
        let mut calls = Vec::new();
        let score = |chunk: &[f32], out: &mut Vec<f32>| -> Result<(), ()> {
            out.extend(chunk.chunks(3).map(|r| r[1] / 10.0));
            Ok(())
        };
        let result = permutation_importance(&table, 7, score, |j| calls.push(j)).unwrap();
        assert_eq!(calls, [0, 1, 2]);
        assert_eq!(result[0], FeatureImportance { name: "a".into(), pr_auc_drop: 0.0 });
        assert_eq!(result[2].pr_auc_drop, 0.0);
        // Intact: perfect ranking (AP 1). Shuffled: the 40 high values land on random rows,
        // so AP falls to about the fraud rate — far below 1.
        assert!(result[1].pr_auc_drop > 0.5, "{result:?}");
        // Same seed, same shuffle.
        let again = permutation_importance(&table, 7, score, |_| ()).unwrap();
        assert_eq!(again, result);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<f32> = (0..100).map(|i| i as f32).collect();
        shuffle(&mut v, 3);
        assert_ne!(v, (0..100).map(|i| i as f32).collect::<Vec<_>>());
        v.sort_by(f32::total_cmp);
        assert_eq!(v, (0..100).map(|i| i as f32).collect::<Vec<_>>());
    }
}
