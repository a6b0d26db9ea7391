//! The float end of LLM.int8()'s forward on the CPU: the outlier columns' own product added to
//! the scaled int8 product, then the bias, in place.
//!
//! For the scaled product `out` [rows, n], the activations' outlier columns `x_cols` [rows, c]
//! and the weight's, dequantized and transposed, `weight_cols` [c, n] (each
//! `CB[j][col] as f32 * (SCB[j] / 127)`), all float32:
//! - `outlier[i][j]`: the sum over the columns, in their order, of
//!   `x_cols[i][col] * weight_cols[col][j]` in float64: each product exact (24 + 24
//!   significant bits), each sum rounded to float64, the total rounded once to float32;
//! - `out[i][j] = (out[i][j] + outlier[i][j]) + bias[j]` in float32 (no outlier addition where
//!   there are no columns, no bias addition without a bias).
//!
//! The same bits on every CPU and at any number of threads (a float32 BLAS product's bits depend
//! on its kernel and blocking), within a float32 rounding (plus float64's, far smaller) of the
//! exact sum of the outlier products.

use crate::cpu_features;
use crate::error::{Error, Result};
use crate::int8_product::{in_ranges, Shared};

/// Output columns whose outlier sums are held in registers while the columns pass (8 AVX-512
/// vectors of float64: enough independent sums to keep both multiply-add units busy).
const BLOCK: usize = 64;
/// Products (rows * n * c) from which the rows are divided among threads.
const PARALLEL_PRODUCTS: usize = 1 << 20;

/// `out` [rows, n] plus the product of the `c` outlier columns and the bias (see the module's
/// documentation); `bias`, widened to float32, has n values.
pub fn add_outliers_and_bias(
    out: &mut [f32],
    (rows, n, c): (usize, usize, usize),
    x_cols: &[f32],
    weight_cols: &[f32],
    bias: Option<&[f32]>,
) -> Result<()> {
    if out.len() != rows * n
        || x_cols.len() != rows * c
        || weight_cols.len() != c * n
        || bias.is_some_and(|b| b.len() != n)
    {
        return Err(Error::Shape(format!(
            "linear epilogue: {} outputs for [{rows}, {n}], {} activation and {} weight values \
             in the outlier columns, {} bias values",
            out.len(),
            x_cols.len(),
            weight_cols.len(),
            bias.map_or(0, <[f32]>::len)
        )));
    }
    if c == 0 && bias.is_none() {
        return Ok(());
    }
    let outs = Shared(out.as_mut_ptr());
    let shape = (n, c);
    in_ranges(
        rows,
        rows * n * c.max(1) >= PARALLEL_PRODUCTS,
        &|start, end| {
            // SAFETY: rows start .. end belong to this range alone; `out` outlives the call.
            let rows =
                unsafe { std::slice::from_raw_parts_mut(outs.at(start * n), (end - start) * n) };
            let x = &x_cols[start * c..end * c];
            add_to_rows(rows, shape, x, weight_cols, bias);
        },
    );
    Ok(())
}

/// `add_outliers_and_bias` for whole rows `out` [rows, n] with their `x` [rows, c], in
/// AVX-512's or AVX2's lanes with fused multiply-adds where the CPU has them (the same bits
/// whatever the lanes: each product is exact, so fusing it with its sum rounds once either way).
fn add_to_rows(out: &mut [f32], shape: (usize, usize), x: &[f32], w: &[f32], bias: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    {
        if cpu_features::avx512f_fma() {
            // SAFETY: the CPU has AVX-512F and FMA (checked just above).
            return unsafe { add_to_rows_avx512(out, shape, x, w, bias) };
        }
        if cpu_features::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { add_to_rows_avx2(out, shape, x, w, bias) };
        }
    }
    add_to_rows_in_blocks::<false>(out, shape, x, w, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn add_to_rows_avx512(
    out: &mut [f32],
    shape: (usize, usize),
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) {
    add_to_rows_in_blocks::<true>(out, shape, x, w, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_to_rows_avx2(
    out: &mut [f32],
    shape: (usize, usize),
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) {
    add_to_rows_in_blocks::<true>(out, shape, x, w, bias)
}

/// `add_outliers_and_bias` on the activation rows `rows` and output columns `columns` of `out`
/// alone (see `Columns`): the same bits. For a range of weight rows right after their product,
/// while they are in cache (`Finish`).
///
/// # Safety
/// `out` holds [rows.end, n] values or more, the block of `rows` and `columns` this call's
/// alone; `x_cols` has rows.end * c values or more, `weight_rows` columns.len() * k,
/// `column_scales` (and `bias`) columns.len(), and every column of `cols` lies below k.
pub(crate) unsafe fn add_to_columns(operands: Columns) {
    #[cfg(target_arch = "x86_64")]
    {
        if cpu_features::avx512f_fma() {
            // SAFETY: the CPU has AVX-512F and FMA (checked just above); the caller's contract.
            return unsafe { columns_avx512(operands) };
        }
        if cpu_features::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the caller's contract.
            return unsafe { columns_avx2(operands) };
        }
    }
    // SAFETY: the caller's contract.
    unsafe { columns_in_blocks::<false>(operands) }
}

/// `add_to_columns`'s operands: the output `out` [.., n] and its activation rows `rows` to add
/// to, the activations' outlier columns `x_cols` [.., c], the weight's rows of the output
/// columns `columns` (`weight_rows` [columns.len(), k], int8 codes) with their scales
/// `column_scales` and `bias`, and the outlier columns `cols` (c of them), read from those rows
/// and dequantized (`code as f32 * scale`, the values `add_outliers_and_bias`'s `weight_cols`
/// holds).
pub(crate) struct Columns<'a> {
    pub out: &'a Shared<f32>,
    pub rows: std::ops::Range<usize>,
    pub n: usize,
    pub k: usize,
    pub columns: std::ops::Range<usize>,
    pub x_cols: &'a [f32],
    pub weight_rows: &'a [i8],
    pub cols: &'a [usize],
    pub column_scales: &'a [f32],
    pub bias: Option<&'a [f32]>,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn columns_avx512(operands: Columns) {
    // SAFETY: `add_to_columns`'s contract.
    unsafe { columns_in_blocks::<true>(operands) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_avx2(operands: Columns) {
    // SAFETY: `add_to_columns`'s contract.
    unsafe { columns_in_blocks::<true>(operands) }
}

thread_local! {
    /// `add_to_columns`'s widened weight values, kept for the thread's next call (one per range
    /// of weight rows); values past the last block's columns are left from earlier ones.
    static WIDENED: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The int8 codes it widens, [c, BLOCK] as picked.
    static CODES: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `add_to_columns` in blocks of BLOCK output columns, as `add_to_rows_in_blocks`: each block's
/// weight values dequantized and widened once (column by column: the block's weight rows are in
/// cache), then every row's sums for the block in registers over every outlier column.
///
/// # Safety
/// `add_to_columns`'s contract.
#[inline(always)]
unsafe fn columns_in_blocks<const FUSED: bool>(operands: Columns) {
    let Columns {
        out,
        rows,
        n,
        k,
        columns,
        x_cols,
        weight_rows,
        cols,
        column_scales,
        bias,
    } = operands;
    let c = cols.len();
    // Taken out and put back (no closure: one would not be compiled for the caller's
    // instructions, and FUSED's multiply-adds would be calls).
    let (mut kept, mut kept_codes) = (WIDENED.take(), CODES.take());
    if kept.len() < c * BLOCK {
        kept.resize(c * BLOCK, 0f64);
        kept_codes.resize(c * BLOCK, 0i8);
    }
    let (widened, codes) = (&mut kept[..c * BLOCK], &mut kept_codes[..c * BLOCK]);
    for first in (0..columns.len()).step_by(BLOCK) {
        let len = BLOCK.min(columns.len() - first);
        let block_rows = &weight_rows[first * k..(first + len) * k];
        let scales = &column_scales[first..first + len];
        // Row by row (a row's columns read together), then converted column by column (in
        // lanes): 512 x 512 at 1 / 2 rows with 6 columns, the core call 8.7 / 11.5 -> 8.1 /
        // 10.9 us.
        for (l, row) in block_rows.chunks_exact(k).enumerate() {
            for (code, &col) in codes.iter_mut().skip(l).step_by(BLOCK).zip(cols) {
                // SAFETY: every column lies below k (the caller's contract).
                *code = unsafe { *row.get_unchecked(col) };
            }
        }
        for (block, codes) in widened.chunks_mut(BLOCK).zip(codes.chunks(BLOCK)) {
            for ((wide, &code), &scale) in block.iter_mut().zip(codes).zip(scales) {
                *wide = f64::from(f32::from(code) * scale);
            }
        }
        let bias = bias.map(|b| &b[first..first + len]);
        for i in rows.clone() {
            // SAFETY: the block is this call's alone; `out` holds [rows.end, n] values.
            let out = unsafe {
                std::slice::from_raw_parts_mut(out.at(i * n + columns.start + first), len)
            };
            add_to_block::<FUSED>(out, &x_cols[i * c..(i + 1) * c], widened, bias);
        }
    }
    WIDENED.set(kept);
    CODES.set(kept_codes);
}

/// The rows in blocks of BLOCK output columns: each block's weight values widened to float64
/// once (past n, in the last block, values of the one before: their sums are not stored), then
/// every row's sums for the block kept in registers over every outlier column (vectorized by the
/// compiler for the enclosing function's instructions; `FUSED`: multiply-adds as one
/// instruction, where the CPU has them).
#[inline(always)]
fn add_to_rows_in_blocks<const FUSED: bool>(
    out: &mut [f32],
    (n, c): (usize, usize),
    x: &[f32],
    weight_cols: &[f32],
    bias: Option<&[f32]>,
) {
    let mut widened = vec![0f64; c * BLOCK];
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        for (block, column) in widened.chunks_mut(BLOCK).zip(weight_cols.chunks(n)) {
            for (wide, &w) in block.iter_mut().zip(&column[start..start + len]) {
                *wide = f64::from(w);
            }
        }
        let bias = bias.map(|b| &b[start..start + len]);
        for (i, row) in out.chunks_mut(n).enumerate() {
            let out = &mut row[start..start + len];
            add_to_block::<FUSED>(out, &x[i * c..(i + 1) * c], &widened, bias);
        }
    }
}

/// One row's block of outputs `out` (up to BLOCK columns) plus its outlier sums (`x` [c], none
/// where c = 0, over the widened weight columns [c, BLOCK]), then plus `bias`.
#[inline(always)]
fn add_to_block<const FUSED: bool>(
    out: &mut [f32],
    x: &[f32],
    widened: &[f64],
    bias: Option<&[f32]>,
) {
    if !x.is_empty() {
        let sums = block_sums::<FUSED>(x, widened);
        for (o, &sum) in out.iter_mut().zip(&sums) {
            *o += sum as f32;
        }
    }
    if let Some(bias) = bias {
        for (o, &b) in out.iter_mut().zip(bias) {
            *o += b;
        }
    }
}

/// The float64 sums of one block for one row (`x` [c]) over the widened weight columns
/// [c, BLOCK], each column's products added in order.
#[inline(always)]
fn block_sums<const FUSED: bool>(x: &[f32], widened: &[f64]) -> [f64; BLOCK] {
    let mut sums = [0f64; BLOCK];
    for (&value, weights) in x.iter().zip(widened.chunks_exact(BLOCK)) {
        let weights: &[f64; BLOCK] = weights.try_into().expect("BLOCK values");
        let value = f64::from(value);
        for l in 0..BLOCK {
            sums[l] = if FUSED {
                value.mul_add(weights[l], sums[l])
            } else {
                sums[l] + value * weights[l]
            };
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::values;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_formulas(
            rows in 0usize..5, n in 0usize..80, c in 0usize..9, seed in any::<u64>(),
            with_bias in any::<bool>(),
        ) {
            let scaled = values(seed, rows * n, 10.0);
            let x = values(seed ^ 3, rows * c, 60.0);
            let w = values(seed ^ 5, c * n, 0.3);
            let bias = with_bias.then(|| values(seed ^ 7, n, 2.0));
            let mut got = scaled.clone();
            add_outliers_and_bias(&mut got, (rows, n, c), &x, &w, bias.as_deref()).unwrap();
            for i in 0..rows {
                for j in 0..n {
                    let mut want = scaled[i * n + j];
                    if c > 0 {
                        let sum = (0..c).fold(0f64, |s, col| {
                            s + f64::from(x[i * c + col]) * f64::from(w[col * n + j])
                        });
                        want += sum as f32;
                    }
                    if let Some(b) = &bias {
                        want += b[j];
                    }
                    prop_assert_eq!(got[i * n + j].to_bits(), want.to_bits(), "{} {}", i, j);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn columns_alone_give_the_bits_of_the_whole(
            rows in 0usize..5, n in 1usize..200, k in 1usize..90, c in 0usize..9,
            cut in any::<prop::sample::Index>(), seed in any::<u64>(), with_bias in any::<bool>(),
        ) {
            // add_to_columns on two ranges of columns, dequantizing the int8 weight rows itself,
            // against add_outliers_and_bias given the dequantized columns.
            let scaled = values(seed, rows * n, 10.0);
            let x = values(seed ^ 3, rows * c, 60.0);
            let codes: Vec<i8> = values(seed ^ 5, n * k, 127.0).iter().map(|&v| v as i8).collect();
            let column_scales = values(seed ^ 9, n, 0.02);
            let cols: Vec<usize> = (0..c).map(|p| (p * 7 + seed as usize) % k).collect();
            let dequantized = |col: usize| -> Vec<f32> {
                (0..n).map(|j| f32::from(codes[j * k + col]) * column_scales[j]).collect()
            };
            let weight_cols: Vec<f32> = cols.iter().flat_map(|&col| dequantized(col)).collect();
            let bias = with_bias.then(|| values(seed ^ 7, n, 2.0));
            let mut want = scaled.clone();
            let shape = (rows, n, c);
            add_outliers_and_bias(&mut want, shape, &x, &weight_cols, bias.as_deref()).unwrap();
            let mut got = scaled.clone();
            let out = Shared(got.as_mut_ptr());
            let split = cut.index(n + 1);
            for columns in [0..split, split..n] {
                let (start, end) = (columns.start, columns.end);
                // SAFETY: [rows, n] values; the two ranges are disjoint; the columns lie below k.
                unsafe {
                    add_to_columns(Columns {
                        out: &out, rows: 0..rows, n, k, columns, x_cols: &x,
                        weight_rows: &codes[start * k..end * k], cols: &cols,
                        column_scales: &column_scales[start..end],
                        bias: bias.as_ref().map(|b| &b[start..end]),
                    })
                };
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), bits(&want));
        }
    }

    #[test]
    fn nothing_to_add_leaves_the_bits() {
        let mut out = vec![-0.0f32, f32::NAN, 1.5];
        add_outliers_and_bias(&mut out, (1, 3, 0), &[], &[], None).unwrap();
        assert_eq!(out[0].to_bits(), (-0.0f32).to_bits());
        assert!(out[1].is_nan());
    }

    #[test]
    fn wrong_lengths_are_a_shape_error() {
        let mut out = vec![0f32; 6];
        let err = add_outliers_and_bias(&mut out, (2, 3, 2), &[1.0; 4], &[1.0; 5], None);
        assert!(err.unwrap_err().to_string().contains("linear epilogue"));
        let err = add_outliers_and_bias(&mut out, (2, 3, 0), &[], &[], Some(&[1.0; 2]));
        assert!(err.unwrap_err().to_string().contains("2 bias values"));
    }
}
