//! Outlier column bookkeeping for LLM.int8(): which input feature dimensions held |x| >= threshold,
//! batch after batch, and the static column set a calibration run derives from those counts.

use crate::error::{Error, Result};

/// Indices of the set entries of a per-column mask, ascending.
pub fn mask_to_indices(mask: &[bool]) -> Vec<u32> {
    mask.iter()
        .enumerate()
        .filter_map(|(i, &set)| set.then_some(i as u32))
        .collect()
}

/// Sorted, de-duplicated column indices, each checked to lie in `[0, n_cols)`.
pub fn sorted_unique(indices: &[i64], n_cols: usize) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(indices.len());
    for &index in indices {
        if index < 0 || index as u64 >= n_cols as u64 {
            return Err(Error::Outliers(format!(
                "column index {index} is outside [0, {n_cols})"
            )));
        }
        out.push(index as u32);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Union of two sorted unique index sets, itself sorted and unique.
pub fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let next = a[i].min(b[j]);
        out.push(next);
        i += usize::from(a[i] == next);
        j += usize::from(b[j] == next);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// How often each column of one layer's input was an outlier column, over the batches observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierStats {
    counts: Vec<u64>,
    batches: u64,
}

impl OutlierStats {
    pub fn new(n_cols: usize) -> Self {
        Self {
            counts: vec![0; n_cols],
            batches: 0,
        }
    }

    pub fn n_cols(&self) -> usize {
        self.counts.len()
    }

    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Per column, the number of batches in which it was an outlier column.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Records one batch given its outlier column indices (any order, repeats allowed).
    pub fn observe_indices(&mut self, indices: &[i64]) -> Result<()> {
        let columns = sorted_unique(indices, self.n_cols())?;
        for column in columns {
            self.counts[column as usize] += 1;
        }
        self.batches += 1;
        Ok(())
    }

    /// Records one batch given its per-column outlier mask.
    pub fn observe_mask(&mut self, mask: &[bool]) -> Result<()> {
        if mask.len() != self.n_cols() {
            return Err(Error::Outliers(format!(
                "mask has {} columns, the layer has {}",
                mask.len(),
                self.n_cols()
            )));
        }
        for column in mask_to_indices(mask) {
            self.counts[column as usize] += 1;
        }
        self.batches += 1;
        Ok(())
    }

    /// Adds the observations of `other` (e.g. from another process or data shard) to these.
    pub fn merge(&mut self, other: &OutlierStats) -> Result<()> {
        if other.n_cols() != self.n_cols() {
            return Err(Error::Outliers(format!(
                "cannot merge statistics over {} columns into statistics over {}",
                other.n_cols(),
                self.n_cols()
            )));
        }
        for (count, add) in self.counts.iter_mut().zip(&other.counts) {
            *count += add;
        }
        self.batches += other.batches;
        Ok(())
    }

    /// Every column seen as an outlier in at least `min_fraction` of the batches (and at least once).
    /// `min_fraction` must lie in `[0, 1]`; with no batches observed the set is empty.
    pub fn static_columns(&self, min_fraction: f64) -> Result<Vec<u32>> {
        if !(0.0..=1.0).contains(&min_fraction) {
            return Err(Error::Outliers(format!(
                "min_fraction {min_fraction} is outside [0, 1]"
            )));
        }
        let needed = ((min_fraction * self.batches as f64).ceil() as u64).max(1);
        Ok(self
            .counts
            .iter()
            .enumerate()
            .filter_map(|(i, &count)| (count >= needed).then_some(i as u32))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorted_unique_sorts_dedups_and_bounds() {
        assert_eq!(sorted_unique(&[5, 1, 5, 3], 6).unwrap(), vec![1, 3, 5]);
        assert!(matches!(sorted_unique(&[6], 6), Err(Error::Outliers(_))));
        assert!(matches!(sorted_unique(&[-1], 6), Err(Error::Outliers(_))));
    }

    #[test]
    fn static_columns_follow_the_fraction() {
        let mut stats = OutlierStats::new(4);
        stats.observe_indices(&[0, 1]).unwrap();
        stats.observe_mask(&[true, false, false, false]).unwrap();
        stats.observe_indices(&[0, 2]).unwrap();
        stats.observe_indices(&[]).unwrap();
        assert_eq!(stats.counts(), &[3, 1, 1, 0]);
        assert_eq!(stats.batches(), 4);
        assert_eq!(stats.static_columns(0.5).unwrap(), vec![0]);
        assert_eq!(stats.static_columns(0.0).unwrap(), vec![0, 1, 2]);
        assert_eq!(stats.static_columns(1.0).unwrap(), Vec::<u32>::new());
        assert!(stats.static_columns(1.5).is_err());
        assert!(stats.observe_mask(&[true]).is_err());
    }

    #[test]
    fn merge_adds_counts_and_rejects_other_widths() {
        let mut a = OutlierStats::new(3);
        a.observe_indices(&[1]).unwrap();
        let mut b = OutlierStats::new(3);
        b.observe_indices(&[1, 2]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.counts(), &[0, 2, 1]);
        assert_eq!(a.batches(), 2);
        assert!(a.merge(&OutlierStats::new(4)).is_err());
    }

    proptest! {
        #[test]
        fn union_is_the_set_union(a in prop::collection::btree_set(0u32..200, 0..50),
                                  b in prop::collection::btree_set(0u32..200, 0..50)) {
            let av: Vec<u32> = a.iter().copied().collect();
            let bv: Vec<u32> = b.iter().copied().collect();
            let expected: Vec<u32> = a.union(&b).copied().collect();
            prop_assert_eq!(union(&av, &bv), expected);
        }

        #[test]
        fn mask_and_indices_agree(mask in prop::collection::vec(any::<bool>(), 0..200)) {
            let idx = mask_to_indices(&mask);
            let as_i64: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
            prop_assert_eq!(sorted_unique(&as_i64, mask.len()).unwrap(), idx.clone());
            let mut by_mask = OutlierStats::new(mask.len());
            by_mask.observe_mask(&mask).unwrap();
            let mut by_index = OutlierStats::new(mask.len());
            by_index.observe_indices(&as_i64).unwrap();
            prop_assert_eq!(by_mask, by_index);
        }
    }
}
