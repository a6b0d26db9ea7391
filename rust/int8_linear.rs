//! LLM.int8()'s forward on the CPU in one call: the activations' row-wise absmax quantization
//! with outlier columns taken out (found from a threshold, or given), the exact int8 product
//! and the scaling of its int32 sums (`scaled_product`), with the same float operations in the
//! same order as the CPU backend's PyTorch ops (so the same bits), then the outlier columns'
//! own product and the bias (`epilogue`), added to each range of output columns right after its
//! product, on the thread that made it, while the range's weight rows are in cache (the outlier
//! columns' weight values are read there).
//!
//! For X [rows, k] and the weight's int8 rows CB [n, k] with their absmax SCB [n]:
//! - outlier columns: with static columns those, else with `threshold > 0` every column holding
//!   an element with `|x| >= threshold` (such elements, not their columns, leave their row's
//!   absmax), else none;
//! - `absmax[i]`: the largest `|x[i][c]|` over the elements that count (NaN if any is NaN);
//! - `q[i][c] = clamp(round_half_even(x * (127 * (1 / absmax[i]))), -127, 127)` (0 where
//!   absmax is not positive; NaN to 0, infinities to +-127), 0 in the outlier columns;
//! - `scaled[i][j] = (sum_c q[i][c] * CB[j][c]) as f32 * (absmax[i] / 127) * (SCB[j] / 127)`;
//! - `out = scaled` plus, in the outlier columns (found in ascending order, static in the order
//!   given), `x[i][col]` times `CB[j][col] as f32 * (SCB[j] / 127)`, plus the bias, as
//!   `epilogue` adds them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::buffer_pool;
use crate::epilogue::{add_outliers_and_bias, add_to_columns, Columns};
use crate::error::{Error, Result};
use crate::int8_product::{in_ranges, scaled_product, Scales, Shared, FINISHED_IN_CACHE};
use crate::quantize::quantize_row;

/// Elements (rows * columns) from which the quantization and the scaling run in ranges of rows
/// on several threads.
const PARALLEL_ELEMENTS: usize = 1 << 18;
/// Found outlier columns up to 1 in FEW_COLUMNS of the input's have their codes zeroed one by
/// one; more, through a flag per column.
const FEW_COLUMNS: usize = 16;

/// The activations as they come: float32 values, or float16 / bfloat16 bit patterns.
#[derive(Clone, Copy, Debug)]
pub enum Activations<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    Bf16(&'a [u16]),
}

impl<'a> Activations<'a> {
    fn len(&self) -> usize {
        match self {
            Activations::F32(v) => v.len(),
            Activations::F16(v) | Activations::Bf16(v) => v.len(),
        }
    }

    /// The values widened to float32 (exact; float32 ones borrowed).
    pub fn to_f32(self) -> Cow<'a, [f32]> {
        match self {
            Activations::F32(v) => Cow::Borrowed(v),
            Activations::F16(v) => v
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect(),
            Activations::Bf16(v) => v
                .iter()
                .map(|&b| f32::from_bits(u32::from(b) << 16))
                .collect(),
        }
    }
}

/// Where the outlier columns come from.
#[derive(Clone, Copy, Debug)]
pub enum Outliers<'a> {
    /// Every column holding an element of at least this magnitude (none if not positive).
    Threshold(f32),
    /// These columns, whatever the values.
    Static(&'a [usize]),
}

/// The forward's output [rows, n] (float32, row-major) and the outlier columns found
/// (ascending; empty for static columns, which the caller has).
#[derive(Debug)]
pub struct Forward {
    pub out: Vec<f32>,
    pub outlier_cols: Vec<usize>,
}

/// LLM.int8()'s forward of `x` [rows, k] by `cb` [n, k] transposed, plus `bias` [n] where given
/// (see the module's documentation).
#[allow(clippy::too_many_arguments)]
pub fn int8_linear(
    x: Activations,
    rows: usize,
    k: usize,
    cb: &[i8],
    n: usize,
    scb: &[f32],
    outliers: Outliers,
    bias: Option<Activations>,
) -> Result<Forward> {
    let bias_len = bias.map_or(n, |b| b.len());
    if x.len() != rows * k || cb.len() != n * k || scb.len() != n || bias_len != n {
        return Err(Error::Shape(format!(
            "int8 linear: {} activation values for [{rows}, {k}], {} weight values, {} \
             scales and {bias_len} bias values for [{n}, {k}]",
            x.len(),
            cb.len(),
            scb.len()
        )));
    }
    let x = x.to_f32();
    let static_columns = match outliers {
        Outliers::Static(cols) => cols,
        Outliers::Threshold(_) => &[][..],
    };
    let mut is_static = vec![false; k];
    for &c in static_columns {
        *is_static
            .get_mut(c)
            .ok_or_else(|| Error::Outliers(format!("column {c} of an input with {k} columns")))? =
            true;
    }
    let threshold = match outliers {
        Outliers::Threshold(t) if t > 0.0 => Some(t),
        _ => None,
    };
    let parallel = rows * k >= PARALLEL_ELEMENTS;
    // Each row's absmax and codes in one pass (the row still in cache for its codes), and the
    // columns found (rows in ranges, possibly on several threads).
    let found: Vec<AtomicBool> = match threshold {
        Some(_) => (0..k).map(|_| AtomicBool::new(false)).collect(),
        None => Vec::new(),
    };
    let any_found = AtomicBool::new(false);
    let mut absmax = vec![0f32; rows];
    let maxima = Shared(absmax.as_mut_ptr());
    let static_flags = if static_columns.is_empty() {
        &[][..]
    } else {
        &is_static[..]
    };
    // NaN where no threshold applies: no magnitude is >= NaN.
    let limit = threshold.unwrap_or(f32::NAN);
    let mut q = buffer_pool::SCRATCH.take(rows * k); // every value written below
    let quantized = Shared(q.as_mut_ptr());
    in_ranges(rows, parallel, &|start, end| {
        // The range's columns found, a byte each (set without branches: vectorized), shared
        // at the end.
        let mut reached = Vec::new();
        for i in start..end {
            let row = &x[i * k..(i + 1) * k];
            let (max, over) = counted_absmax(row, static_flags, limit);
            if over {
                reached.resize(k, 0u8);
                for (flag, &v) in reached.iter_mut().zip(row) {
                    *flag |= u8::from(v.abs() >= limit);
                }
            }
            // SAFETY: row i belongs to this range alone; `absmax` outlives the call.
            unsafe { *maxima.at(i) = max };
            let inverse = if max > 0.0 { (1.0 / max) * 127.0 } else { 0.0 };
            // SAFETY: as for `absmax`, and `q` outlives the call.
            let q_row = unsafe { std::slice::from_raw_parts_mut(quantized.at(i * k), k) };
            quantize_row(row, inverse, q_row);
            for &col in static_columns {
                q_row[col] = 0;
            }
        }
        if !reached.is_empty() {
            any_found.store(true, Ordering::Relaxed);
            for (flag, &r) in found.iter().zip(&reached) {
                if r != 0 {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    let outlier_cols: Vec<usize> = match threshold {
        Some(_) if any_found.load(Ordering::Relaxed) => (0..k)
            .filter(|&c| found[c].load(Ordering::Relaxed))
            .collect(),
        _ => Vec::new(),
    };
    // The columns found: their codes zero in every row, one by one where they are few, else
    // through a flag per column (both loops vectorize, unlike one that mixed the flags with the
    // float values: benches/cpu.md).
    if !outlier_cols.is_empty() {
        let flags: Vec<u8> = match outlier_cols.len() * FEW_COLUMNS >= k {
            true => found
                .iter()
                .map(|f| u8::from(f.load(Ordering::Relaxed)))
                .collect(),
            false => Vec::new(),
        };
        let zero = &|start: usize, end: usize| {
            for i in start..end {
                // SAFETY: row i belongs to this range alone; `q` outlives the call.
                let q_row = unsafe { std::slice::from_raw_parts_mut(quantized.at(i * k), k) };
                if flags.is_empty() {
                    for &col in &outlier_cols {
                        q_row[col] = 0;
                    }
                } else {
                    for (q, &flag) in q_row.iter_mut().zip(&flags) {
                        *q &= (flag as i8).wrapping_sub(1); // flag 1: 0, flag 0: all bits
                    }
                }
            }
        };
        in_ranges(rows, parallel, zero);
    }
    // The outlier columns, found or static: their codes are zero, their products in float.
    let picked = if threshold.is_some() {
        &outlier_cols[..]
    } else {
        static_columns
    };
    let column_scales: Vec<f32> = scb.iter().map(|&s| s / 127.0).collect();
    let row_scales: Vec<f32> = absmax.iter().map(|&a| a / 127.0).collect();
    let scales = Scales {
        rows: &row_scales,
        columns: &column_scales,
    };
    let c = picked.len();
    // The activations' outlier columns [rows, c]; the weight's are read by `finish` from its
    // rows, right after their product (in cache).
    let x_cols: Vec<f32> = x
        .chunks(k.max(1))
        .take(if c > 0 { rows } else { 0 })
        .flat_map(|row| picked.iter().map(move |&col| row[col]))
        .collect();
    let bias = bias.map(Activations::to_f32);
    let finish = |rows: std::ops::Range<usize>, start: usize, end: usize, out: &Shared<f32>| {
        // SAFETY: `scaled_product` hands each block of rows and columns to one call, with `out`
        // [rows, n]; the columns lie below k (found here, or checked above).
        unsafe {
            add_to_columns(Columns {
                out,
                rows,
                n,
                k,
                columns: start..end,
                x_cols: &x_cols,
                weight_rows: &cb[start * k..end * k],
                cols: picked,
                column_scales: &column_scales[start..end],
                bias: bias.as_deref().map(|b| &b[start..end]),
            })
        }
    };
    // The outlier columns and the bias are added to each range of output columns right after
    // its product; a bias alone only on weights past FINISHED_IN_CACHE (1024 x 4096 at 128 rows
    // 649 -> 577 us), on smaller ones in a pass of its own after (in each range it took longer:
    // 512 x 512 at 8 rows, 11.3 -> 12.2 us).
    let finishing = c > 0 || (bias.is_some() && n * k > FINISHED_IN_CACHE);
    let mut out = scaled_product(&q, rows, cb, n, k, &scales, finishing.then_some(&finish))?;
    buffer_pool::SCRATCH.give(q);
    if !finishing {
        add_outliers_and_bias(&mut out, (rows, n, 0), &[], &[], bias.as_deref())?;
    }
    Ok(Forward { out, outlier_cols })
}

/// The row's absmax over the elements that count (not in a static column, magnitude below
/// `limit`; NaN if any is NaN, the first one's bits), and whether any magnitude reached `limit`.
/// `is_static`: a flag per column, or empty where there are no static columns.
fn counted_absmax(row: &[f32], is_static: &[bool], limit: f32) -> (f32, bool) {
    let (max, reached, maybe_nan) = if !is_static.is_empty() {
        lane_maxima::<true>(row, is_static, limit)
    } else {
        threshold_maxima(row, limit)
    };
    if maybe_nan {
        let first = row
            .iter()
            .enumerate()
            .map(|(c, &v)| (v.abs(), is_static.get(c) == Some(&true)))
            .find(|&(m, fixed)| m.is_nan() && !fixed);
        if let Some((nan, _)) = first {
            return (nan, reached);
        }
    }
    (max, reached)
}

/// `lane_maxima` without static columns on AVX2 where the CPU has it (detected at run time).
fn threshold_maxima(row: &[f32], limit: f32) -> (f32, bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu_features::avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2::threshold_maxima(row, limit) };
        }
    }
    lane_maxima::<false>(row, &[], limit)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `lane_maxima::<false>`: 8 magnitudes at a time, NaN found exactly (an unordered
    /// compare); the columns past the last 8 through `lane_maxima`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn threshold_maxima(row: &[f32], limit: f32) -> (f32, bool, bool) {
        let sign = _mm256_set1_ps(-0.0);
        let limits = _mm256_set1_ps(limit);
        let (mut counted, mut all, mut nan) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let pieces = row.chunks_exact(8);
        let rest = pieces.remainder();
        for piece in pieces {
            let magnitude = _mm256_andnot_ps(sign, _mm256_loadu_ps(piece.as_ptr()));
            all = _mm256_max_ps(magnitude, all); // `all` where the magnitude is NaN
            let reached = _mm256_cmp_ps::<_CMP_GE_OQ>(magnitude, limits);
            let kept = _mm256_andnot_ps(reached, magnitude);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(kept, kept));
            counted = _mm256_max_ps(kept, counted);
        }
        let (rest_max, rest_reached, rest_nan) = super::lane_maxima::<false>(rest, &[], limit);
        let lane_max = |lanes: __m256| {
            let mut values = [0f32; 8];
            _mm256_storeu_ps(values.as_mut_ptr(), lanes);
            super::largest(&values)
        };
        let counted = lane_max(counted);
        (
            super::largest(&[rest_max, counted]),
            rest_reached || lane_max(all) >= limit,
            rest_nan || _mm256_movemask_ps(nan) != 0,
        )
    }
}

/// `counted_absmax` in lanes of 8 with float selects only (vectorized): the largest counted
/// magnitude ignoring NaN, whether the largest magnitude reached `limit`, and whether a counted
/// one may be NaN (`0 * m` is NaN for NaN, also for infinity: a second look decides).
fn lane_maxima<const STATIC: bool>(
    row: &[f32],
    is_static: &[bool],
    limit: f32,
) -> (f32, bool, bool) {
    const LANES: usize = 8;
    let (mut counted, mut all, mut probe) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut lane = |l: usize, v: f32, fixed: bool| {
        let magnitude = v.abs();
        all[l] = if magnitude > all[l] {
            magnitude
        } else {
            all[l]
        };
        let dropped = magnitude >= limit || (STATIC && fixed);
        let kept = if dropped { 0.0 } else { magnitude };
        probe[l] += kept * 0.0;
        counted[l] = if kept > counted[l] { kept } else { counted[l] };
    };
    let values = row.chunks_exact(LANES);
    let rest = values.remainder();
    for (c, values) in values.enumerate() {
        for l in 0..LANES {
            lane(l, values[l], STATIC && is_static[c * LANES + l]);
        }
    }
    let whole = row.len() - rest.len();
    for (l, &v) in rest.iter().enumerate() {
        lane(l, v, STATIC && is_static[whole + l]);
    }
    let maybe_nan = probe.iter().any(|p| p.is_nan());
    (largest(&counted), largest(&all) >= limit, maybe_nan)
}

/// The largest of `values` and 0, NaN ignored.
fn largest(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |a, &b| if b > a { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::values;
    use proptest::prelude::*;

    /// The module's formulas, written out element by element (f64 where the result is exact,
    /// and for the outlier columns' sums).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        rows: usize,
        k: usize,
        cb: &[i8],
        n: usize,
        scb: &[f32],
        t: f32,
        bias: Option<&[f32]>,
    ) -> Forward {
        let mut cols = vec![false; k];
        for i in 0..rows {
            for c in 0..k {
                if t > 0.0 && x[i * k + c].abs() >= t {
                    cols[c] = true;
                }
            }
        }
        let mut out = vec![0f32; rows * n];
        for i in 0..rows {
            let row = &x[i * k..(i + 1) * k];
            let counted = row
                .iter()
                .filter(|v| !(t > 0.0 && v.abs() >= t))
                .map(|v| v.abs());
            let max = counted.fold(0f32, |m, a| {
                if m.is_nan() || a.is_nan() {
                    f32::NAN
                } else {
                    m.max(a)
                }
            });
            let inverse = if max > 0.0 { 127.0 * (1.0 / max) } else { 0.0 };
            for j in 0..n {
                let mut sum = 0i64;
                for c in 0..k {
                    if !cols[c] {
                        let v = row[c] * inverse;
                        let q = if v.is_nan() {
                            0
                        } else {
                            v.round_ties_even().clamp(-127.0, 127.0) as i8
                        };
                        sum += i64::from(q) * i64::from(cb[j * k + c]);
                    }
                }
                let mut value = sum as i32 as f32 * (max / 127.0) * (scb[j] / 127.0);
                if cols.contains(&true) {
                    let outliers = (0..k).filter(|&c| cols[c]).fold(0f64, |s, c| {
                        let w = f32::from(cb[j * k + c]) * (scb[j] / 127.0);
                        s + f64::from(row[c]) * f64::from(w)
                    });
                    value += outliers as f32;
                }
                out[i * n + j] = match bias {
                    Some(b) => value + b[j],
                    None => value,
                };
            }
        }
        let outlier_cols = (0..k).filter(|&c| cols[c]).collect();
        Forward { out, outlier_cols }
    }

    /// The forward of `x` [rows, k] at `threshold` by a weight [n, k] made from `seed`, against
    /// `reference`: the same outlier columns and the same output bits.
    fn against_formulas(
        x: &[f32],
        rows: usize,
        k: usize,
        n: usize,
        seed: u64,
        threshold: f32,
        bias: Option<&[f32]>,
    ) -> std::result::Result<(), String> {
        let cb: Vec<i8> = values(seed ^ 7, n * k, 254.0)
            .iter()
            .map(|&v| v as i8)
            .collect();
        let scb: Vec<f32> = values(seed ^ 9, n, 4.0)
            .iter()
            .map(|v| v.abs() + 0.01)
            .collect();
        let outliers = Outliers::Threshold(threshold);
        let got = int8_linear(
            Activations::F32(x),
            rows,
            k,
            &cb,
            n,
            &scb,
            outliers,
            bias.map(Activations::F32),
        )
        .map_err(|err| err.to_string())?;
        let expected = reference(x, rows, k, &cb, n, &scb, threshold, bias);
        if got.outlier_cols != expected.outlier_cols {
            return Err(format!(
                "outlier columns {:?}, the formulas' {:?}",
                got.outlier_cols, expected.outlier_cols
            ));
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        match bits(&got.out) == bits(&expected.out) {
            true => Ok(()),
            false => Err(format!(
                "outputs {:?}, the formulas' {:?}",
                got.out, expected.out
            )),
        }
    }

    proptest! {
        #[test]
        fn matches_the_formulas(
            rows in 0usize..6, n in 0usize..40, k in 0usize..70, seed in any::<u64>(),
            scale in 0.0f32..30.0, threshold in -1.0f32..8.0, with_bias in any::<bool>(),
        ) {
            let x = values(seed, rows * k, scale);
            let bias = with_bias.then(|| values(seed ^ 11, n, 3.0));
            against_formulas(&x, rows, k, n, seed, threshold, bias.as_deref())
                .map_err(TestCaseError::fail)?;
        }
    }

    proptest! {
        /// LLM.int8()'s case: activations under the threshold but for a few planted columns (at
        /// most 1 in 16 of them: their codes zeroed one by one) or many (through flags).
        #[test]
        fn matches_the_formulas_with_planted_columns(
            rows in 1usize..6, n in 1usize..40, k in 16usize..300, seed in any::<u64>(),
            planted in proptest::collection::vec(0usize..300, 0..40),
        ) {
            let mut x = values(seed, rows * k, 8.0); // |x| < 4
            for row in x.chunks_mut(k) {
                for &c in &planted {
                    row[c % k] *= 20.0;
                }
            }
            against_formulas(&x, rows, k, n, seed, 6.0, None).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn kept_scratch_buffers_are_written_whole() {
        // Activations of a MiB or more are quantized (and packed, on AMX) into kept buffers,
        // stale (poisoned in tests): successive calls, the last block of rows full or not, must
        // each give the formulas' bits.
        let _alone = crate::buffer_pool::TESTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (n, k) = (24, 4096);
        for (seed, rows) in [(1u64, 300), (2, 290), (3, 304), (4, 300)] {
            assert!(rows * k >= crate::buffer_pool::MIN_BYTES);
            let x = values(seed, rows * k, 16.0);
            if let Err(err) = against_formulas(&x, rows, k, n, seed, 7.5, None) {
                panic!("rows {rows}: {err}");
            }
        }
    }

    #[test]
    fn half_precision_inputs_widen_exactly() {
        let x: Vec<f32> = vec![0.5, -3.0, 7.25, 1.0 / 1024.0];
        let f16: Vec<u16> = x
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let bf16: Vec<u16> = x.iter().map(|&v| (v.to_bits() >> 16) as u16).collect();
        let cb = [1i8, -2, 3, 127, 5, 6, -7, 8];
        let scb = [2.0f32, 0.5];
        let outliers = Outliers::Threshold(6.0);
        let bias = [0.25f32, -1.5];
        let want = int8_linear(
            Activations::F32(&x),
            1,
            4,
            &cb,
            2,
            &scb,
            outliers,
            Some(Activations::F32(&bias)),
        )
        .unwrap();
        let (bias16, bias_bf16): (Vec<u16>, Vec<u16>) = bias
            .iter()
            .map(|&v| (half::f16::from_f32(v).to_bits(), (v.to_bits() >> 16) as u16))
            .unzip();
        for (input, bias) in [
            (Activations::F16(&f16), Activations::F16(&bias16)),
            (Activations::Bf16(&bf16), Activations::Bf16(&bias_bf16)),
        ] {
            let got = int8_linear(input, 1, 4, &cb, 2, &scb, outliers, Some(bias)).unwrap();
            assert_eq!(got.out, want.out);
            assert_eq!(got.outlier_cols, vec![2]);
        }
    }

    #[test]
    fn static_columns_are_left_out_and_not_reported() {
        let x = [100.0f32, 1.0, -2.0, 0.5];
        let (cb, scb) = ([1i8, 1, 1, 1], [127.0f32]);
        let got = int8_linear(
            Activations::F32(&x),
            1,
            4,
            &cb,
            1,
            &scb,
            Outliers::Static(&[0]),
            None,
        )
        .unwrap();
        assert!(got.outlier_cols.is_empty());
        // absmax 2 over the other columns: q = [0, 64 (63.5 to even), -127, 32 (31.75)]; the
        // static column 0 in float: 100 * (1 * 127 / 127).
        assert_eq!(
            got.out,
            vec![(64 - 127 + 32) as f32 * (2.0 / 127.0) + 100.0]
        );
        let err = int8_linear(
            Activations::F32(&x),
            1,
            4,
            &cb,
            1,
            &scb,
            Outliers::Static(&[4]),
            None,
        );
        assert!(err.unwrap_err().to_string().contains("column 4"));
    }

    #[test]
    fn non_finite_values_follow_the_backend() {
        // A NaN makes its row's absmax NaN: every q 0, every output NaN (0 * NaN).
        let x = [1.0f32, f32::NAN, 2.0, 3.0, f32::INFINITY, -1.0];
        let (cb, scb) = ([1i8, 2, 3], [127.0f32]);
        let got = int8_linear(
            Activations::F32(&x),
            2,
            3,
            &cb,
            1,
            &scb,
            Outliers::Threshold(0.0),
            None,
        )
        .unwrap();
        assert!(got.out[0].is_nan());
        // An infinity: absmax inf, 1 / inf = 0, every q 0 (inf * 0 is NaN -> 0), output 0 * inf.
        assert!(got.out[1].is_nan());
        let err = int8_linear(
            Activations::F32(&x),
            2,
            4,
            &cb,
            1,
            &scb,
            Outliers::Threshold(0.0),
            None,
        );
        assert!(err.unwrap_err().to_string().contains("int8 linear"));
        let err = int8_linear(
            Activations::F32(&x),
            2,
            3,
            &cb,
            1,
            &scb,
            Outliers::Threshold(0.0),
            Some(Activations::F32(&[1.0, 2.0])),
        );
        assert!(err.unwrap_err().to_string().contains("2 bias values"));
    }
}
