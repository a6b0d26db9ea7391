//! Exact int8 x int8 -> int32 products on the CPU, `out[i][j] = sum_k a[i][k] * b[j][k]`, for
//! a few rows of activations `a` [rows, k] against a weight `b` [n, k] (both row-major int8):
//! each weight row is read once and multiplied with every activation row, the weight's rows
//! divided among threads (rayon). On x86-64 CPUs with AVX2 (detected at run time) 16 int8
//! values at a time are sign-extended to int16 and multiplied in pairs into int32 (`vpmaddwd`:
//! exact, no saturation: a pair sums to at most 2 * 128 * 128); elsewhere a portable loop.
//! Sums wrap in int32 as the GPU's and torch's int32 accumulators do (only past k = 131072 at
//! int8's extremes). Where sharing is enabled (`openmp::share_threads`), the threads are those of
//! the OpenMP runtime the process has loaded instead of rayon's. Faster where the CPU has them:
//! AVX-512 VNNI (`vnni`: streamed tiles for a few rows, blocked tiles or packed panels beyond)
//! and AMX-INT8 (`amx`: from AMX_MIN_ROWS rows of whole 64-column tiles).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::{amx, buffer_pool, cpu_features, openmp};

thread_local! {
    /// `product_with`'s transposed sums of one chunk of activation rows, kept for the thread's
    /// next chunk.
    static CHUNK_SUMS: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The sums' rows (or the outputs' columns), written by threads each in its own range.
pub(crate) struct Shared<T>(pub(crate) *mut T);
// SAFETY: the threads write disjoint ranges (see `product`).
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Where value `start` lies.
    pub(crate) fn at(&self, start: usize) -> *mut T {
        self.0.wrapping_add(start)
    }
}

/// Weight rows one thread task takes: enough to amortise the task, few enough to balance.
const ROWS_PER_TASK: usize = 64;
/// Products (rows * n * k) from which the weight's rows are divided among threads; below, the
/// calling thread does them all. On the loaded OpenMP runtime's threads (`openmp`), from
/// 2^16: right after torch's ops its workers are still spinning, ready at once, and each core
/// reads its half of the weight into its own cache (a 1024 x 1024 weight at one row right after
/// an nn.Linear: 51 us -> 34 us, 2048 x 1024 116 -> 54; benches/cpu.md). On rayon's, from 2^25:
/// its threads then contend with torch's spinning ones (1024 x 1024 at one row: 84 us alone with
/// two threads, 290 us after an nn.Linear; 187 us on one thread).
const PARALLEL_PRODUCTS_OPENMP: usize = 1 << 16;
const PARALLEL_PRODUCTS_RAYON: usize = 1 << 25;
/// Weight rows multiplied at a time where a `Finish` reads them after: they stay in cache (AMX's
/// chunk: with 64, AMX streamed its activations twice as often, 1024 x 4096 at 128 rows with 6
/// outlier columns 802 -> 827 us).
const FINISHED_ROWS: usize = 128;
/// Weight bytes up to which a `Finish` runs after the whole range's product instead.
pub(crate) const FINISHED_IN_CACHE: usize = 1 << 18;
/// Activation rows multiplied together with one converted piece of a weight row.
const ROW_BLOCK: usize = 4;
/// Activation rows from which the products run in blocks of columns (AVX2: K_BLOCK columns and
/// tiles of two weight rows; VNNI: tiles or panels). Below, the few rows stay in cache while
/// each weight row streams once over all its columns (VNNI: four at a time, `vnni::streamed`,
/// 1024 x 1024 at one row 42 -> 23 us, 4096 x 11008 957 -> 830 us on one thread).
const BLOCKED_MIN_ROWS: usize = 16;
/// Activation rows from which the product runs on AMX's tiles where it can (`amx`): 16 rows
/// pass through each tile whatever their number. At 2 rows VNNI's streamed tiles are faster,
/// with both builds' calls alternating in one process over copies of the weight that the L3
/// holds (64 MB in turn; 512 x 512 13.0 -> 12.7 us, 1024 x 1024 37.2 -> 32.6, 4096 x 4096 496
/// -> 400) and from memory (4096 x 11008, 600 MB in turn: 1683 -> 1642); from 3 rows AMX is,
/// but for 4096 x 4096 from the L3 (3 / 4 rows: 512 x 512 14.7 / 15.7 against 16.0 / 18.7 us,
/// 4096 x 4096 417 / 418 against 372 / 391; benches/cpu.md, 2026-12-05 third).
const AMX_MIN_ROWS: usize = 3;
/// Columns per block of the blocked product: the activations' block (rows * K_BLOCK int16) stays
/// in the core's L2 while every weight row of the range passes over it.
const K_BLOCK: usize = 512;
/// Rows from which, or columns below which, the VNNI product packs the weight into panels (its
/// sums need no horizontal adds, but the packing is one more pass over the weight per call:
/// 4096 x 11008 at 32 rows 9 -> 24 ms, at 7168 rows of 384 columns 24.5 -> 6 ms; benches/cpu.md).
const PANEL_MIN_ROWS: usize = 384;
/// Rows from which AVX2's product runs in panels (`avx2::panels`), its weight packed per call
/// in 8 x 8 blocks transposed in registers: 512 x 512 / 4096 x 4096 at 128 rows 395 / 17596 ->
/// 366 / 15128 us, 384 x 1536 at 64 rows 428 -> 404; at 32 rows no gain (512 x 512, 1024 x
/// 4096). Packed one byte at a time, the panels lost below 384 rows (512 x 512 at 32 / 128 rows
/// 153 / 395 -> 265 / 437 us).
const AVX2_PANEL_MIN_ROWS: usize = 64;
const PANEL_SHORT_K: usize = 1024;

/// The instructions the blocked product runs on with this CPU: "amx" (AMX-INT8 tiles for rows
/// of whole tiles, AVX-512 VNNI for the rest), "avx512vnni", "avx2" or "portable".
pub fn blocked_kernel() -> &'static str {
    if vnni::available() && amx::available() {
        return "amx";
    }
    if vnni::available() {
        return "avx512vnni";
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cpu_features::avx2() {
            return "avx2";
        }
    }
    "portable"
}

/// `a` [rows, k] times `b` [n, k] transposed into `out` [rows, n], all row-major.
pub fn int8_product(a: &[i8], rows: usize, b: &[i8], n: usize, k: usize) -> Result<Vec<i32>> {
    product_with(a, rows, b, n, k, vnni::available(), None, None).map(|(sums, ..)| sums)
}

/// The scales of a scaled product: `out[i][j] = (sum as f32 * rows[i]) * columns[j]`.
pub struct Scales<'a> {
    pub rows: &'a [f32],
    pub columns: &'a [f32],
}

/// Activation rows times columns from which the scaling runs in ranges of rows on several
/// threads.
const PARALLEL_SCALING: usize = 1 << 18;

/// Activation rows whose sums a range of weight rows computes, scales and finishes at a time
/// (from 2 rows): the chunk's outputs are still in cache for the finish, and where the product
/// computes its sums transposed they take a buffer of the range's weight rows by the chunk.
/// 384 x 1536 at 4096 rows with 6 outlier columns: on AVX2 the whole [n, rows] sums, their
/// scaling and the finish reading the outputs back from memory took a third of the call (35.6
/// -> 26.0 ms); on AMX the finish's reads a fifth (9.6 -> 7.6), on VNNI's panels (400 x 1536)
/// a sixth (16.0 -> 13.6). A multiple of 32 (AMX's blocks of activation rows).
const SCALED_ROW_CHUNK: usize = 256;
const _: () = assert!(SCALED_ROW_CHUNK.is_multiple_of(32));

/// The work that ends a scaled product on a block of its output: `finish(rows, start, end,
/// out)`, with `out` [rows, n] final (scaled) in activation rows `rows`, columns start .. end,
/// which are this call's alone to change.
pub(crate) type Finish<'a> =
    &'a (dyn Fn(std::ops::Range<usize>, usize, usize, &Shared<f32>) + Sync);

/// `int8_product`'s sums scaled (`Scales`, in that order of float32 multiplications): by AMX's
/// and VNNI's panels as they are stored, elsewhere right after each range's product (from its
/// transposed sums: 1024 x 4096 at 2 rows with 6 outlier columns, the core call 145 -> 84 us
/// against a pass after the product and its transposition), then `finish` over the range's
/// output columns where given, the weight's rows still in cache. With no columns (k = 0), in a
/// pass after, and `finish` over every column then.
pub(crate) fn scaled_product(
    a: &[i8],
    rows: usize,
    b: &[i8],
    n: usize,
    k: usize,
    scales: &Scales,
    finish: Option<Finish>,
) -> Result<Vec<f32>> {
    scaled_product_on(vnni::available(), a, rows, b, n, k, scales, finish)
}

/// `scaled_product`, on AVX-512 VNNI (and AMX) where `vnni` and the CPU has them.
#[allow(clippy::too_many_arguments)]
fn scaled_product_on(
    vnni: bool,
    a: &[i8],
    rows: usize,
    b: &[i8],
    n: usize,
    k: usize,
    scales: &Scales,
    finish: Option<Finish>,
) -> Result<Vec<f32>> {
    if scales.rows.len() != rows || scales.columns.len() != n {
        return Err(Error::Shape(format!(
            "scaled product: {} row and {} column scales for [{rows}, {n}]",
            scales.rows.len(),
            scales.columns.len()
        )));
    }
    let (sums, scaled, finished) = product_with(a, rows, b, n, k, vnni, Some(scales), finish)?;
    let mut out = if scaled {
        // Stored as float32 values' bits: the same size and alignment as int32.
        let mut sums = std::mem::ManuallyDrop::new(sums);
        let (pointer, length, capacity) = (sums.as_mut_ptr(), sums.len(), sums.capacity());
        // SAFETY: the allocation is reused as float32 of the same length and capacity.
        unsafe { Vec::from_raw_parts(pointer as *mut f32, length, capacity) }
    } else {
        let mut out = buffer_pool::OUTPUTS.take(rows * n); // every value written below
        let scaled = Shared(out.as_mut_ptr());
        in_ranges(rows, rows * n >= PARALLEL_SCALING, &|start, end| {
            for i in start..end {
                // SAFETY: row i belongs to this range alone; `out` outlives the call.
                let out_row = unsafe { std::slice::from_raw_parts_mut(scaled.at(i * n), n) };
                let row_sums = &sums[i * n..(i + 1) * n];
                for ((o, &s), &column) in out_row.iter_mut().zip(row_sums).zip(scales.columns) {
                    *o = s as f32 * scales.rows[i] * column;
                }
            }
        });
        out
    };
    if let Some(finish) = finish.filter(|_| !finished) {
        let outs = Shared(out.as_mut_ptr());
        in_ranges(n, rows * n >= PARALLEL_SCALING, &|start, end| {
            finish(0..rows, start, end, &outs)
        });
    }
    Ok(out)
}

/// `int8_product`, on AVX-512 VNNI where `vnni` (and the CPU has it), else AVX2 or portable
/// loops. With `scales` (and k > 0), the sums are stored scaled, as float32 bits: by AMX's and
/// VNNI's panels, elsewhere after each range's product (one row where it lies); `finish` then
/// runs on each range's columns. The second value says whether the sums were scaled, the third
/// whether `finish` ran.
#[allow(clippy::too_many_arguments)]
fn product_with(
    a: &[i8],
    rows: usize,
    b: &[i8],
    n: usize,
    k: usize,
    vnni: bool,
    scales: Option<&Scales>,
    finish: Option<Finish>,
) -> Result<(Vec<i32>, bool, bool)> {
    if a.len() != rows * k || b.len() != n * k {
        return Err(Error::Shape(format!(
            "int8 product: {} activation values for [{rows}, {k}] and {} weight values for \
             [{n}, {k}]",
            a.len(),
            b.len()
        )));
    }
    // Where the blocked product runs on AVX-512 VNNI: the activations as unsigned bytes
    // (x + 128), rows padded to whole pieces of 32.
    let stride = k.div_ceil(32) * 32;
    // On AMX (from AMX_MIN_ROWS rows of whole tiles), the activations packed for the tiles
    // instead.
    let tiled = (vnni && rows >= AMX_MIN_ROWS && amx::serves(k) && amx::available())
        .then(|| amx::pack_activations(a, rows, k));
    // Both from the pool (`padded_rows`): 6256 x 1536 on AVX2 41.2 -> 40.9 ms, 1540 x 384 on
    // VNNI's panels 20.3 -> 19.8.
    let shifted = (tiled.is_none() && rows > 0 && vnni && vnni::available())
        .then(|| padded_rows(a, rows, k, stride, i8::MIN));
    let shifted_bytes = shifted.as_deref().map(as_unsigned);
    // On AVX2 alone, activations in [-127, 127] (all of LLM.int8()'s) as they are, rows padded
    // to whole pieces of 32, for `vpmaddubsw` (`avx2`); a -128 would break its exactness.
    let narrow = (tiled.is_none() && shifted.is_none() && rows > 0 && avx2_bytes(a))
        .then(|| padded_rows(a, rows, k, stride, 0));
    // Elsewhere as int16, each row padded with zeros to whole pieces of 16.
    let padded = k.div_ceil(16) * 16;
    let converted = shifted.is_some() || tiled.is_some() || narrow.is_some();
    let mut wide = vec![0i16; if converted { 0 } else { rows * padded }];
    for (row, values) in wide.chunks_mut(padded.max(1)).zip(a.chunks(k.max(1))) {
        for (w, &v) in row.iter_mut().zip(values) {
            *w = i16::from(v);
        }
    }
    // With many rows or short ones, VNNI's panels written straight as [rows, n] (each range of
    // weight rows its own columns); elsewhere computed transposed ([n, rows]: each range writes
    // whole rows), then laid out: scaled into [rows, n] right after each chunk of the range's
    // product where there are scales, else in a pass after.
    let panels = rows >= BLOCKED_MIN_ROWS && (rows >= PANEL_MIN_ROWS || k < PANEL_SHORT_K);
    let direct = tiled.is_some()
        || (shifted.is_some() && panels)
        || (narrow.is_some() && rows >= AVX2_PANEL_MIN_ROWS);
    let scaled = scales.is_some() && (direct || k > 0);
    let finished = scaled && finish.is_some() && k > 0;
    // One row's sums are scaled where they lie ([n, 1] is [1, n]).
    let in_place = !direct && rows == 1;
    // Every value of a direct or scaled output is written where k > 0 (a pooled buffer's are
    // stale).
    let mut out = match (direct || scaled) && !in_place {
        true if k > 0 => buffer_pool::take_i32(rows * n),
        true => vec![0i32; rows * n],
        false => Vec::new(),
    };
    // Scaled transposed sums go straight into [rows, n] a chunk of activation rows at a time
    // (SCALED_ROW_CHUNK), through a buffer of their own; unscaled ones, and one row's, into
    // `transposed` [n, rows].
    let chunked = scaled && !direct && !in_place;
    let mut transposed = vec![0i32; if direct || chunked { 0 } else { n * rows }];
    let sums = Shared(transposed.as_mut_ptr());
    let outs = Shared(if in_place { sums.0 } else { out.as_mut_ptr() });
    let scaled_outs = Shared(outs.0 as *mut f32);
    // The sums of weight rows `weights` by activation rows first .. first + count into `sums`
    // [weights' rows, count], on the instructions picked above.
    let transposed_sums = |weights: &[i8], first: usize, count: usize, sums: &mut [i32]| {
        match (shifted_bytes, &narrow) {
            // SAFETY: the CPU has AVX-512 VNNI (`shifted` is made only then).
            (Some(bytes), _) => unsafe {
                let bytes = &bytes[first * stride..(first + count) * stride];
                if count < BLOCKED_MIN_ROWS {
                    vnni::streamed(bytes, stride, count, weights, k, sums)
                } else {
                    vnni::blocked(bytes, stride, count, weights, k, sums)
                }
            },
            // SAFETY: the CPU has AVX2 and no activation is -128 (`narrow` is made only then).
            #[cfg(target_arch = "x86_64")]
            (None, Some(bytes)) => unsafe {
                let bytes = &bytes[first * stride..(first + count) * stride];
                avx2::bytes_blocked(bytes, stride, count, weights, k, sums)
            },
            _ => {
                let wide = &wide[first * padded..(first + count) * padded];
                weight_rows_times_activations(wide, padded, count, weights, k, sums)
            }
        }
    };
    // Weight rows start .. end: their sums (scaled where `scaled`), then `finish` on them.
    let range = |start: usize, end: usize| {
        let weights = &b[start * k..end * k];
        // `finish` on a chunk of activation rows in this range's columns, once its product is
        // stored (columns start .. end of `out` are this range's alone).
        let finish_chunk = |chunk: std::ops::Range<usize>| {
            if let Some(finish) = finish.filter(|_| finished) {
                finish(chunk, start, end, &scaled_outs);
            }
        };
        if let Some(packed) = &tiled {
            in_row_chunks(
                rows,
                |chunk| {
                    // SAFETY: the CPU has AMX and the process its tiles (`tiled` is made only
                    // then), configured by `in_pieces`; k is a whole number of tiles; the chunk
                    // starts at a multiple of 32.
                    unsafe { amx::product(packed, chunk, weights, k, n, &outs, start, scales) }
                },
                finish_chunk,
            );
        } else if let (Some(bytes), true) = (shifted_bytes, direct) {
            // SAFETY: the CPU has AVX-512 VNNI (`shifted` is made only then).
            let packed = unsafe { vnni::pack_panels(weights, k) };
            in_row_chunks(
                rows,
                |chunk| {
                    // SAFETY: as above.
                    unsafe { vnni::panels(bytes, stride, chunk, &packed, n, &outs, start, scales) }
                },
                finish_chunk,
            );
        } else if let (Some(bytes), true) = (&narrow, direct) {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: the CPU has AVX2 (`narrow` is made only then).
                let packed = unsafe { avx2::pack_panels(weights, k) };
                in_row_chunks(
                    rows,
                    |chunk| {
                        // SAFETY: the CPU has AVX2 and no activation is -128 (`narrow` is made
                        // only then).
                        unsafe {
                            avx2::panels(bytes, stride, chunk, &packed, n, &outs, start, scales)
                        }
                    },
                    finish_chunk,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("AVX2 is x86-64's: {}", bytes.len());
        } else if chunked {
            let s = scales.expect("chunked sums are scaled");
            let columns = &s.columns[start..end];
            let mut buffer = CHUNK_SUMS.take();
            in_row_chunks(
                rows,
                |chunk| {
                    let (first, count) = (chunk.start, chunk.len());
                    buffer.resize((end - start) * count, 0);
                    transposed_sums(weights, first, count, &mut buffer);
                    for (i, &row_scale) in s.rows[chunk].iter().enumerate() {
                        // SAFETY: columns start .. end of `out` ([rows, n]) are this range's alone.
                        let out = unsafe {
                            std::slice::from_raw_parts_mut(
                                outs.at((first + i) * n + start),
                                end - start,
                            )
                        };
                        for ((o, sums), &column) in
                            out.iter_mut().zip(buffer.chunks_exact(count)).zip(columns)
                        {
                            *o = (sums[i] as f32 * row_scale * column).to_bits() as i32;
                        }
                    }
                },
                finish_chunk,
            );
            CHUNK_SUMS.set(buffer);
        } else {
            // One row's sums (in place), or unscaled ones, into `transposed`.
            if rows > 0 && k > 0 {
                // SAFETY: rows start .. end of `transposed` are this range's alone.
                let range_sums = unsafe {
                    std::slice::from_raw_parts_mut(sums.at(start * rows), (end - start) * rows)
                };
                transposed_sums(weights, 0, rows, range_sums);
                if let (Some(s), true) = (scales.filter(|_| scaled), in_place) {
                    let row_scale = s.rows[0]; // read once: the loop vectorizes
                    for (v, &column) in range_sums.iter_mut().zip(&s.columns[start..end]) {
                        *v = (*v as f32 * row_scale * column).to_bits() as i32;
                    }
                }
            }
            finish_chunk(0..rows);
        }
    };
    // With a finish, a range's rows go through in pieces, finished right after their product
    // while they are still in cache (the outlier columns picked so, 1024 x 4096 at one row, 6
    // columns: 90 -> 79 us); on a weight of FINISHED_IN_CACHE bytes or fewer, which stays in the
    // core's L2, after the whole range (512 x 512 at 4 / 32 rows, 6 columns, 21.2 -> 18.9, 46.9
    // -> 41.0 us).
    let in_pieces = |start: usize, end: usize| {
        let piece = if finished && n * k > FINISHED_IN_CACHE {
            FINISHED_ROWS
        } else {
            end - start
        };
        let pieces = || {
            for first in (start..end).step_by(piece.max(1)) {
                range(first, (first + piece).min(end));
            }
        };
        match &tiled {
            // SAFETY: the CPU has AMX and the process its tiles (`tiled` is made only then).
            Some(_) => unsafe { amx::with_tiles(pieces) },
            None => pieces(),
        }
    };
    if k > 0 {
        in_ranges(n, rows * n * k >= parallel_products(), &in_pieces);
    }
    for buffer in [tiled, shifted, narrow].into_iter().flatten() {
        buffer_pool::SCRATCH.give(buffer);
    }
    if in_place {
        return Ok((transposed, scaled, finished)); // [n, 1] is [1, n]
    }
    if direct || scaled {
        return Ok((out, scaled, finished));
    }
    Ok((transpose(&transposed, n, rows), false, false))
}

/// `product(chunk)`, then `then(chunk)`, for each chunk of SCALED_ROW_CHUNK of `rows` rows in
/// turn.
fn in_row_chunks(
    rows: usize,
    mut product: impl FnMut(std::ops::Range<usize>),
    then: impl Fn(std::ops::Range<usize>),
) {
    for first in (0..rows).step_by(SCALED_ROW_CHUNK) {
        let chunk = first..(first + SCALED_ROW_CHUNK).min(rows);
        product(chunk.clone());
        then(chunk);
    }
}

/// The activations `a` [rows, k] with each value's bits flipped by `flip` (i8::MIN: as unsigned
/// bytes x + 128), each row padded with zeros to `stride`, in a buffer from
/// `buffer_pool::SCRATCH`.
fn padded_rows(a: &[i8], rows: usize, k: usize, stride: usize, flip: i8) -> Vec<i8> {
    let mut bytes = buffer_pool::SCRATCH.take(rows * stride); // every value written below
    for (row, values) in bytes.chunks_mut(stride.max(1)).zip(a.chunks(k.max(1))) {
        let (head, padding) = row.split_at_mut(values.len());
        for (b, &v) in head.iter_mut().zip(values) {
            *b = v ^ flip;
        }
        padding.fill(0);
    }
    bytes
}

/// `bytes` as unsigned bytes, bit for bit.
fn as_unsigned(bytes: &[i8]) -> &[u8] {
    // SAFETY: u8 has i8's size and alignment, and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const u8, bytes.len()) }
}

/// Products from which `product_with` divides the weight's rows among threads, for the pool it
/// would take.
fn parallel_products() -> usize {
    match openmp::runtime().filter(|omp| omp.max_threads() > 1) {
        Some(_) => PARALLEL_PRODUCTS_OPENMP,
        None => PARALLEL_PRODUCTS_RAYON,
    }
}

/// `work(start, end)` over 0 .. count in contiguous ranges: with `parallel`, one range per
/// thread of the loaded OpenMP runtime's region where sharing is on (`openmp`), else ranges of
/// ROWS_PER_TASK on rayon's threads; otherwise all on the calling thread.
pub(crate) fn in_ranges(count: usize, parallel: bool, work: &(dyn Fn(usize, usize) + Sync)) {
    if !parallel {
        work(0, count);
        return;
    }
    match openmp::runtime().filter(|omp| omp.max_threads() > 1) {
        Some(omp) => omp.parallel(&|thread, threads| {
            let per = count.div_ceil(threads);
            let start = (thread * per).min(count);
            work(start, (start + per).min(count));
        }),
        None => (0..count.div_ceil(ROWS_PER_TASK))
            .into_par_iter()
            .for_each(|task| {
                work(
                    task * ROWS_PER_TASK,
                    ((task + 1) * ROWS_PER_TASK).min(count),
                )
            }),
    }
}

/// A blocked product's tile: the activations [rows, stride] (u8 for VNNI, i16 for AVX2) and their
/// stride, the weight rows and k, the sums [n, rows] and rows, the tile's first weight row j and
/// activation row i, its columns k0 .. k1.
type TileArgs<'a, X> = (
    &'a [X],
    usize,
    &'a [i8],
    usize,
    &'a mut [i32],
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// The panel products' loops (`vnni::panels`, `avx2::panels`): per block of `$block` activation
/// rows of `$rows`, every pair of the `$count` panels, tiles of up to 2 panels by 4 rows through
/// `$tiles.tile::<P, R>(p, i)`.
macro_rules! panel_tiles {
    ($tiles:expr, $rows:expr, $count:expr, $block:expr) => {{
        let (rows, count) = ($rows, $count);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let i1 = (i0 + $block).min(rows.end);
            let mut p = 0;
            while p < count {
                let mut i = i0;
                while i < i1 {
                    match ((count - p).min(2), (i1 - i).min(4)) {
                        (2, 4) => $tiles.tile::<2, 4>(p, i),
                        (2, 3) => $tiles.tile::<2, 3>(p, i),
                        (2, 2) => $tiles.tile::<2, 2>(p, i),
                        (2, _) => $tiles.tile::<2, 1>(p, i),
                        (_, 4) => $tiles.tile::<1, 4>(p, i),
                        (_, 3) => $tiles.tile::<1, 3>(p, i),
                        (_, 2) => $tiles.tile::<1, 2>(p, i),
                        _ => $tiles.tile::<1, 1>(p, i),
                    }
                    i += 4;
                }
                p += 2;
            }
            i0 = i1;
        }
    }};
}
use panel_tiles;

/// `tile(j, i, k0, k1, w, r)` for every tile of up to `tile_w` of the `n` weight rows by up to
/// `tile_r` of the `rows` activation rows, per block of `k_block` columns of 0 .. `whole`
/// (blocks outermost, then weight rows, then activation rows: a block's activations stay in
/// cache for every weight row, a tile's weight rows for every activation row).
fn for_each_tile(
    (n, rows, whole, k_block): (usize, usize, usize, usize),
    (tile_w, tile_r): (usize, usize),
    mut tile: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    for k0 in (0..whole).step_by(k_block.max(1)) {
        let k1 = (k0 + k_block).min(whole);
        for j in (0..n).step_by(tile_w) {
            for i in (0..rows).step_by(tile_r) {
                tile(j, i, k0, k1, (n - j).min(tile_w), (rows - i).min(tile_r));
            }
        }
    }
}

/// `values` [r, c] row-major, transposed to [c, r], in tiles that stay in cache.
fn transpose(values: &[i32], r: usize, c: usize) -> Vec<i32> {
    const TILE: usize = 32;
    let mut out = vec![0i32; r * c];
    for r0 in (0..r).step_by(TILE) {
        for c0 in (0..c).step_by(TILE) {
            for i in r0..(r0 + TILE).min(r) {
                for j in c0..(c0 + TILE).min(c) {
                    out[j * r + i] = values[i * c + j];
                }
            }
        }
    }
    out
}

/// Whether the activations `a` go to AVX2's byte products: the CPU has AVX2 (and no VNNI took
/// them) and no value is -128.
fn avx2_bytes(a: &[i8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cpu_features::avx2() && !a.contains(&i8::MIN)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = a;
        false
    }
}

/// `sums[j * rows + i] = dot(activation row i, weight row j)` for the weight rows `weights`
/// [.., k] and every activation row: from BLOCKED_MIN_ROWS rows on AVX2 in blocks of K (the
/// activations' block stays in cache for every weight row) and tiles of two weight rows by four
/// activation rows; else one weight row at a time.
fn weight_rows_times_activations(
    wide: &[i16],
    padded: usize,
    rows: usize,
    weights: &[i8],
    k: usize,
    sums: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if rows >= BLOCKED_MIN_ROWS && cpu_features::avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::blocked(wide, padded, rows, weights, k, sums) };
            return;
        }
    }
    for (weight_row, sums) in weights.chunks(k).zip(sums.chunks_mut(rows)) {
        weight_row_times_activations(wide, padded, weight_row, sums);
    }
}

/// `sums[i] = dot(activation row i, weight_row)` for every activation row.
fn weight_row_times_activations(wide: &[i16], padded: usize, weight_row: &[i8], sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if cpu_features::avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::weight_row_times_activations(wide, padded, weight_row, sums) };
            return;
        }
    }
    portable(wide, padded, weight_row, sums);
}

fn portable(wide: &[i16], padded: usize, weight_row: &[i8], sums: &mut [i32]) {
    for (i, sum) in sums.iter_mut().enumerate() {
        let row = &wide[i * padded..i * padded + weight_row.len()];
        *sum = row.iter().zip(weight_row).fold(0i32, |acc, (&x, &w)| {
            acc.wrapping_add(i32::from(x) * i32::from(w))
        });
    }
}

/// The blocked product on AVX-512 VNNI (256-bit registers): `vpdpbusd` multiplies
/// 32 unsigned bytes by 32 signed ones and adds each 4 products into an int32 lane, so the
/// activations go in as x + 128 and each sum then loses 128 times its weight row's sum over the
/// same columns (exact in wrapping int32: sum (x + 128) w - 128 sum w = sum x w).
mod vnni {
    /// Whether this CPU runs it (detected at run time, within `cpu_features`'s cap).
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            crate::cpu_features::avx512_vnni()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `$tile::<W, R>(args)` for the tile's shape: up to 4 weight rows by up to 4 activation
    /// rows (the const generics the registers are laid out by).
    macro_rules! tile_shapes {
        ($tile:ident, $w:expr, $r:expr, $args:expr) => {
            match ($w, $r) {
                (4, 4) => $tile::<4, 4>($args),
                (4, 3) => $tile::<4, 3>($args),
                (4, 2) => $tile::<4, 2>($args),
                (4, _) => $tile::<4, 1>($args),
                (3, 4) => $tile::<3, 4>($args),
                (3, 3) => $tile::<3, 3>($args),
                (3, 2) => $tile::<3, 2>($args),
                (3, _) => $tile::<3, 1>($args),
                (2, 4) => $tile::<2, 4>($args),
                (2, 3) => $tile::<2, 3>($args),
                (2, 2) => $tile::<2, 2>($args),
                (2, _) => $tile::<2, 1>($args),
                (_, 4) => $tile::<1, 4>($args),
                (_, 3) => $tile::<1, 3>($args),
                (_, 2) => $tile::<1, 2>($args),
                _ => $tile::<1, 1>($args),
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) use x86::{blocked, pack_panels, panels, streamed};

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn blocked(_: &[u8], _: usize, _: usize, _: &[i8], _: usize, _: &mut [i32]) {
        unreachable!("AVX-512 VNNI is x86-64's")
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn streamed(_: &[u8], _: usize, _: usize, _: &[i8], _: usize, _: &mut [i32]) {
        unreachable!("AVX-512 VNNI is x86-64's")
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) struct PanelWeights;

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn pack_panels(_: &[i8], _: usize) -> PanelWeights {
        unreachable!("AVX-512 VNNI is x86-64's")
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panels(
        _: &[u8],
        _: usize,
        _: std::ops::Range<usize>,
        _: &PanelWeights,
        _: usize,
        _: &super::Shared<i32>,
        _: usize,
        _: Option<&super::Scales>,
    ) {
        unreachable!("AVX-512 VNNI is x86-64's")
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        /// Columns per block: 128 activation rows' block (128 KB) stays in L2 while every
        /// weight row of the range passes over it.
        const K_BLOCK: usize = 1024;
        /// Weight rows and activation rows per tile: 16 accumulators, 4 weight pieces and an
        /// activation piece in the 32 registers.
        const TILE_W: usize = 4;
        const TILE_R: usize = 4;

        /// `sums[j * rows + i] = dot(activation row i, weight row j)` for the weight rows
        /// `weights` [.., k] and every activation row, from the activations as unsigned bytes
        /// `shifted` [rows, stride] (x + 128): per block of K_BLOCK columns, tiles of up to 4 x 4,
        /// then the 128 * (weight row sums) taken off and the columns past the last whole piece
        /// of 32 added one by one.
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        pub(in super::super) unsafe fn blocked(
            shifted: &[u8],
            stride: usize,
            rows: usize,
            weights: &[i8],
            k: usize,
            sums: &mut [i32],
        ) {
            let n = weights.len() / k;
            let whole = k / 32 * 32;
            sums.fill(0);
            let shape = (n, rows, whole, K_BLOCK);
            super::super::for_each_tile(shape, (TILE_W, TILE_R), |j, i, k0, k1, w, r| {
                let args = (shifted, stride, weights, k, &mut *sums, rows, j, i, k0, k1);
                // SAFETY: the CPU has AVX-512 VNNI (the caller's contract); the tile lies inside.
                unsafe { tile_shapes!(tile, w, r, args) }
            });
            let ones = _mm256_set1_epi8(1);
            for (weight_row, sums) in weights.chunks(k).zip(sums.chunks_mut(rows)) {
                let mut lanes = _mm256_setzero_si256();
                let mut kk = 0;
                while kk < whole {
                    let w = _mm256_loadu_si256(weight_row.as_ptr().add(kk) as *const __m256i);
                    lanes = _mm256_dpbusd_epi32(lanes, ones, w);
                    kk += 32;
                }
                let correction = super::super::avx2::horizontal_sum(lanes).wrapping_mul(128);
                for (i, sum) in sums.iter_mut().enumerate() {
                    let mut s = sum.wrapping_sub(correction);
                    let row = &shifted[i * stride..];
                    for (&u, &w) in row[whole..k].iter().zip(&weight_row[whole..]) {
                        s = s.wrapping_add(i32::from((u ^ 0x80) as i8) * i32::from(w));
                    }
                    *sum = s;
                }
            }
        }

        /// Weight rows j .. j + W by activation rows i .. i + R over columns k0 .. k1 (whole
        /// pieces of 32): W * R accumulators, each piece loaded once.
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        unsafe fn tile<const W: usize, const R: usize>(args: super::super::TileArgs<u8>) {
            let (shifted, stride, weights, k, sums, rows, j, i, k0, k1) = args;
            let mut acc = [[_mm256_setzero_si256(); R]; W];
            let w = weights.as_ptr().add(j * k);
            let x = shifted.as_ptr().add(i * stride);
            let mut kk = k0;
            while kk < k1 {
                let mut pieces = [_mm256_setzero_si256(); W];
                for (t, piece) in pieces.iter_mut().enumerate() {
                    // SAFETY: kk + 32 <= k1 <= k (weight rows j .. j + W exist).
                    *piece = _mm256_loadu_si256(w.add(t * k + kk) as *const __m256i);
                }
                #[allow(clippy::needless_range_loop)] // acc[t][r]: rows inside, weights outside
                for r in 0..R {
                    // SAFETY: kk + 32 <= stride (activation rows i .. i + R exist).
                    let xs = _mm256_loadu_si256(x.add(r * stride + kk) as *const __m256i);
                    for (acc, piece) in acc.iter_mut().zip(&pieces) {
                        acc[r] = _mm256_dpbusd_epi32(acc[r], xs, *piece);
                    }
                }
                kk += 32;
            }
            for (t, acc) in acc.iter().enumerate() {
                let at = (j + t) * rows + i;
                if R == 4 {
                    // The four rows' lanes summed at once: sums[at .. at + 4] in order.
                    let four = four_sums([acc[0], acc[1], acc[2], acc[3]]);
                    let target = sums[at..at + 4].as_mut_ptr() as *mut __m128i;
                    _mm_storeu_si128(target, _mm_add_epi32(_mm_loadu_si128(target), four));
                    continue;
                }
                for (r, acc) in acc.iter().enumerate() {
                    let sum = &mut sums[at + r];
                    *sum = sum.wrapping_add(super::super::avx2::horizontal_sum(*acc));
                }
            }
        }

        /// The four registers' wrapping lane sums, in order.
        #[target_feature(enable = "avx2")]
        unsafe fn four_sums(lanes: [__m256i; 4]) -> __m128i {
            let pairs = _mm256_hadd_epi32(
                _mm256_hadd_epi32(lanes[0], lanes[1]),
                _mm256_hadd_epi32(lanes[2], lanes[3]),
            );
            _mm_add_epi32(
                _mm256_castsi256_si128(pairs),
                _mm256_extracti128_si256::<1>(pairs),
            )
        }

        /// `blocked` for a few activation rows (below `BLOCKED_MIN_ROWS`): each tile of up to
        /// 4 weight rows streams once over all its columns, one tile per 4 activation rows (the
        /// few rows' bytes stay in L1), and sums its weight rows as it goes (`vpdpbusd` of
        /// ones) for the 128 * (weight row sums) to take off: the weight is read once, in order.
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        pub(in super::super) unsafe fn streamed(
            shifted: &[u8],
            stride: usize,
            rows: usize,
            weights: &[i8],
            k: usize,
            sums: &mut [i32],
        ) {
            let n = weights.len() / k;
            // One block of every column: each tile's weight rows stream once.
            super::super::for_each_tile((n, rows, k, k), (TILE_W, TILE_R), |j, i, _, _, w, r| {
                let args = (shifted, stride, weights, k, &mut *sums, rows, j, i, 0, k);
                // SAFETY: the CPU has AVX-512 VNNI (the caller's contract); the tile lies inside.
                unsafe { tile_shapes!(streamed_tile, w, r, args) }
            });
        }

        /// Weight rows j .. j + W by activation rows i .. i + R over every column: the whole
        /// pieces of 32 through `vpdpbusd`, with the weight rows' sums over them, the columns
        /// past them one by one; the sums stored.
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        unsafe fn streamed_tile<const W: usize, const R: usize>(args: super::super::TileArgs<u8>) {
            let (shifted, stride, weights, k, sums, rows, j, i, _, _) = args;
            let whole = k / 32 * 32;
            let ones = _mm256_set1_epi8(1);
            let mut acc = [[_mm256_setzero_si256(); W]; R];
            let mut weight_sums = [_mm256_setzero_si256(); 4];
            let w = weights.as_ptr().add(j * k);
            let x = shifted.as_ptr().add(i * stride);
            let mut kk = 0;
            while kk < whole {
                let mut pieces = [_mm256_setzero_si256(); W];
                for (t, piece) in pieces.iter_mut().enumerate() {
                    // SAFETY: kk + 32 <= whole <= k (weight rows j .. j + W exist).
                    *piece = _mm256_loadu_si256(w.add(t * k + kk) as *const __m256i);
                    weight_sums[t] = _mm256_dpbusd_epi32(weight_sums[t], ones, *piece);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: kk + 32 <= stride (activation rows i .. i + R exist).
                    let xs = _mm256_loadu_si256(x.add(r * stride + kk) as *const __m256i);
                    for (acc, piece) in acc.iter_mut().zip(&pieces) {
                        *acc = _mm256_dpbusd_epi32(*acc, xs, *piece);
                    }
                }
                kk += 32;
            }
            let corrections = _mm_slli_epi32::<7>(four_sums(weight_sums));
            for (r, acc) in acc.iter().enumerate() {
                let mut lanes = [_mm256_setzero_si256(); 4];
                lanes[..W].copy_from_slice(acc);
                let mut totals = [0i32; 4];
                let four = _mm_sub_epi32(four_sums(lanes), corrections);
                _mm_storeu_si128(totals.as_mut_ptr() as *mut __m128i, four);
                let row = &shifted[(i + r) * stride..];
                for (t, &total) in totals[..W].iter().enumerate() {
                    let weight_row = &weights[(j + t) * k..(j + t + 1) * k];
                    let mut sum = total;
                    for (&u, &wv) in row[whole..k].iter().zip(&weight_row[whole..]) {
                        sum = sum.wrapping_add(i32::from((u ^ 0x80) as i8) * i32::from(wv));
                    }
                    sums[(j + t) * rows + i + r] = sum;
                }
            }
        }

        /// Activation rows per block of the panel product: their bytes stay in cache while
        /// every panel of the range passes over them.
        const PANEL_ROW_BLOCK: usize = 64;

        /// The weight rows [nr, k] packed for `panels` (`avx2::panel_values`), with 128 times
        /// each row's sum.
        pub(in super::super) struct PanelWeights {
            packed: Vec<i8>,
            corrections: Vec<__m256i>,
            groups: usize,
            nr: usize,
        }

        /// `weights` [nr, k] packed into panels (`PanelWeights`), once per range of weight rows.
        #[target_feature(enable = "avx2")]
        pub(in super::super) unsafe fn pack_panels(weights: &[i8], k: usize) -> PanelWeights {
            let nr = weights.len() / k;
            let groups = k.div_ceil(4);
            let packed = super::super::avx2::panel_values(weights, k);
            let mut row_sums = vec![0i32; nr.div_ceil(8) * 8];
            for (sum, row) in row_sums.iter_mut().zip(weights.chunks(k)) {
                *sum = row.iter().fold(0i32, |s, &w| s.wrapping_add(i32::from(w)));
            }
            let corrections = row_sums
                .chunks(8)
                .map(|s| {
                    let v = _mm256_loadu_si256(s.as_ptr() as *const __m256i);
                    _mm256_slli_epi32::<7>(v)
                })
                .collect();
            PanelWeights {
                packed,
                corrections,
                groups,
                nr,
            }
        }

        /// `out[i * n + col0 + j] = dot(activation row i, weight row j)` for the packed weight
        /// rows `weights` and the activation rows `rows`, from the activations as unsigned
        /// bytes (x + 128): a panel's piece times an activation row's 4 bytes broadcast
        /// (`vpdpbusd`) adds a group to the 8 rows' sums in their own lanes: no horizontal
        /// sums, the outputs stored as they are, less 128 times each row's sum.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        pub(in super::super) unsafe fn panels(
            shifted: &[u8],
            stride: usize,
            rows: std::ops::Range<usize>,
            weights: &PanelWeights,
            n: usize,
            out: &super::super::Shared<i32>,
            col0: usize,
            scales: Option<&super::super::Scales>,
        ) {
            let count = weights.nr.div_ceil(8);
            let panel = Panels {
                shifted,
                stride,
                packed: &weights.packed,
                groups: weights.groups,
                corrections: &weights.corrections,
                out,
                scales,
                n,
                col0,
                nr: weights.nr,
            };
            super::super::panel_tiles!(panel, rows, count, PANEL_ROW_BLOCK);
        }

        /// The operands of `panels`' tiles.
        struct Panels<'a> {
            shifted: &'a [u8],
            stride: usize,
            packed: &'a [i8],
            groups: usize,
            corrections: &'a [__m256i],
            out: &'a super::super::Shared<i32>,
            scales: Option<&'a super::super::Scales<'a>>,
            n: usize,
            col0: usize,
            nr: usize,
        }

        impl Panels<'_> {
            /// Panels p .. p + P (8 weight rows each) by activation rows i .. i + R over every
            /// group of 4 columns: R * P accumulators of 8 rows' sums.
            #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
            unsafe fn tile<const P: usize, const R: usize>(&self, p: usize, i: usize) {
                let mut acc = [[_mm256_setzero_si256(); P]; R];
                let panel = self.packed.as_ptr().add(p * self.groups * 32);
                let x = self.shifted.as_ptr().add(i * self.stride);
                for g in 0..self.groups {
                    let mut pieces = [_mm256_setzero_si256(); P];
                    for (q, piece) in pieces.iter_mut().enumerate() {
                        // SAFETY: panel p + q exists; group g lies inside it.
                        let at = panel.add((q * self.groups + g) * 32);
                        *piece = _mm256_loadu_si256(at as *const __m256i);
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: 4 * g + 4 <= stride (k rounded up to 32) in row i + r.
                        let bytes = (x.add(r * self.stride + 4 * g) as *const i32).read_unaligned();
                        let broadcast = _mm256_set1_epi32(bytes);
                        for (acc, piece) in acc.iter_mut().zip(&pieces) {
                            *acc = _mm256_dpbusd_epi32(*acc, broadcast, *piece);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (q, acc) in acc.iter().enumerate() {
                        let sums = _mm256_sub_epi32(*acc, self.corrections[p + q]);
                        let at = (i + r, (p + q) * 8);
                        let place = (self.out, self.n, self.col0, self.nr);
                        super::super::avx2::store_panel_sums(sums, at, place, self.scales);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCKED_MIN_ROWS, K_BLOCK, ROW_BLOCK};

    /// Activation rows per chunk of the blocked product: each chunk's block of K (256 KiB of
    /// int16) stays in L2 while the weight rows pass (4096 x 4096 at 512 rows, AVX2 alone: 157
    /// -> 104 ms; 128 and 192 rows per chunk within the host's spread of 256).
    const ROW_CHUNK: usize = 256;

    /// Each accumulator's 8 lanes summed and added to `sums` (wrapping), `acc[t][r]` to
    /// `sums[t * rows + r]`: a weight row's R sums from three horizontal adds and one add of
    /// the halves (in a short K, one sum at a time took a fifth of the tile's instructions).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn add_tile_sums<const W: usize, const R: usize>(
        acc: &[[__m256i; R]; W],
        sums: &mut [i32],
        rows: usize,
    ) {
        for (t, acc) in acc.iter().enumerate() {
            let mut lanes = [_mm256_setzero_si256(); 4]; // no closure: it would lack AVX2
            lanes[..R].copy_from_slice(acc);
            let pairs = _mm256_hadd_epi32(lanes[0], lanes[1]);
            let pairs = _mm256_hadd_epi32(pairs, _mm256_hadd_epi32(lanes[2], lanes[3]));
            let halves = _mm_add_epi32(
                _mm256_castsi256_si128(pairs),
                _mm256_extracti128_si256::<1>(pairs),
            );
            let mut four = [0i32; 4];
            _mm_storeu_si128(four.as_mut_ptr() as *mut __m128i, halves);
            for (sum, value) in sums[t * rows..][..R].iter_mut().zip(four) {
                *sum = sum.wrapping_add(value);
            }
        }
    }

    /// The weight rows [nr, k] packed for `panels`: panels of 8 rows, each 4 columns (a group)
    /// of the 8 rows one 32-byte piece (row j's columns at 4 j), zeros past the rows and
    /// columns; the magnitudes (|w| as unsigned bytes) and the values themselves (their signs).
    pub(super) struct Panels {
        magnitudes: Vec<i8>,
        values: Vec<i8>,
        groups: usize,
        nr: usize,
    }

    /// `weights` [nr, k] packed into `Panels`, once per range of weight rows.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_panels(weights: &[i8], k: usize) -> Panels {
        let values = panel_values(weights, k);
        let magnitudes = values.iter().map(|w| w.unsigned_abs() as i8).collect();
        Panels {
            magnitudes,
            values,
            groups: k.div_ceil(4),
            nr: weights.len() / k,
        }
    }

    /// The weight rows `weights` [nr, k] as panels of 8 rows, each 4 columns (a group) of the 8
    /// rows one 32-byte piece (row j's columns at 4 j), zeros past the rows and columns: the
    /// layout of `Panels` and of VNNI's panels.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn panel_values(weights: &[i8], k: usize) -> Vec<i8> {
        let nr = weights.len() / k;
        let groups = k.div_ceil(4);
        let mut values = vec![0i8; nr.div_ceil(8) * groups * 32];
        // Whole panels, 8 groups (32 columns) at a time: the 8 rows' pieces as 8 x 8 int32
        // transposed in registers (one value per row and group); the rest one by one.
        let (whole_rows, whole_columns) = (nr / 8 * 8, k / 32 * 32);
        for j0 in (0..whole_rows).step_by(8) {
            let panel = values.as_mut_ptr().add((j0 / 8) * groups * 32);
            for c0 in (0..whole_columns).step_by(32) {
                let mut rows = [_mm256_setzero_si256(); 8];
                for (r, row) in rows.iter_mut().enumerate() {
                    // SAFETY: columns c0 .. c0 + 32 of weight row j0 + r lie inside.
                    let at = weights.as_ptr().add((j0 + r) * k + c0);
                    *row = _mm256_loadu_si256(at as *const __m256i);
                }
                for (g, piece) in transpose8(rows).iter().enumerate() {
                    // SAFETY: group c0 / 4 + g of the panel lies inside.
                    let at = panel.add((c0 / 4 + g) * 32);
                    _mm256_storeu_si256(at as *mut __m256i, *piece);
                }
            }
        }
        for (j, row) in weights.chunks(k).enumerate() {
            let base = (j / 8) * groups * 32 + (j % 8) * 4;
            let first = if j < whole_rows { whole_columns } else { 0 };
            for (c, &w) in row.iter().enumerate().skip(first) {
                values[base + (c / 4) * 32 + c % 4] = w;
            }
        }
        values
    }

    /// `out[i * n + col0 + j] = dot(activation row i, weight row j)` for the packed weight rows
    /// `weights` and the activation rows `rows` of `narrow` [.., stride] (values in [-127, 127],
    /// rows padded with zeros), as int32 or scaled as float32 bits (as `vnni::panels`): an
    /// activation row's 4 bytes broadcast, given each weight's sign (`vpsignb`), times the
    /// panel's magnitudes (`vpmaddubsw`, exact as in `bytes_blocked`), add a group to the 8
    /// weight rows' sums in their own lanes: no horizontal sums, no transposition.
    ///
    /// # Safety
    /// The CPU has AVX2; `narrow` holds the rows, each of `stride` >= 4 * groups bytes; `out`
    /// holds [rows.end, n] values, the block of `rows` and columns col0 .. col0 + nr this
    /// call's alone.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn panels(
        narrow: &[i8],
        stride: usize,
        rows: std::ops::Range<usize>,
        weights: &Panels,
        n: usize,
        out: &super::Shared<i32>,
        col0: usize,
        scales: Option<&super::Scales>,
    ) {
        let count = weights.nr.div_ceil(8);
        let tiles = PanelTiles {
            narrow,
            stride,
            weights,
            out,
            scales,
            n,
            col0,
        };
        super::panel_tiles!(tiles, rows, count, PANEL_ROW_BLOCK);
    }

    /// Activation rows per block of `panels`: their bytes stay in cache while every panel of
    /// the range passes over them.
    const PANEL_ROW_BLOCK: usize = 64;

    /// The operands of `panels`' tiles.
    struct PanelTiles<'a> {
        narrow: &'a [i8],
        stride: usize,
        weights: &'a Panels,
        out: &'a super::Shared<i32>,
        scales: Option<&'a super::Scales<'a>>,
        n: usize,
        col0: usize,
    }

    impl PanelTiles<'_> {
        /// Panels p .. p + P (8 weight rows each) by activation rows i .. i + R over every
        /// group of 4 columns: R * P accumulators of 8 rows' sums.
        #[target_feature(enable = "avx2")]
        unsafe fn tile<const P: usize, const R: usize>(&self, p: usize, i: usize) {
            let ones = _mm256_set1_epi16(1);
            let groups = self.weights.groups;
            let mut acc = [[_mm256_setzero_si256(); P]; R];
            let magnitudes = self.weights.magnitudes.as_ptr().add(p * groups * 32);
            let values = self.weights.values.as_ptr().add(p * groups * 32);
            let x = self.narrow.as_ptr().add(i * self.stride);
            for g in 0..groups {
                let mut pieces = [_mm256_setzero_si256(); P];
                let mut signs = [_mm256_setzero_si256(); P];
                for q in 0..P {
                    // SAFETY: panel p + q exists; group g lies inside it.
                    let at = (q * groups + g) * 32;
                    pieces[q] = _mm256_loadu_si256(magnitudes.add(at) as *const __m256i);
                    signs[q] = _mm256_loadu_si256(values.add(at) as *const __m256i);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: 4 * g + 4 <= stride in row i + r.
                    let bytes = (x.add(r * self.stride + 4 * g) as *const i32).read_unaligned();
                    let broadcast = _mm256_set1_epi32(bytes);
                    for q in 0..P {
                        let signed = _mm256_sign_epi8(broadcast, signs[q]);
                        let pairs = _mm256_maddubs_epi16(pieces[q], signed);
                        acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (q, &sums) in acc.iter().enumerate() {
                    let place = (self.out, self.n, self.col0, self.weights.nr);
                    store_panel_sums(sums, (i + r, (p + q) * 8), place, self.scales);
                }
            }
        }
    }

    /// A panel's 8 sums for activation row i, weight rows j0 .. j0 + 8 (those below nr), into
    /// `out[i * n + col0 + j]`: as they are, or scaled (`(sum as f32 * rows[i]) *
    /// columns[col0 + j]`) and stored as float32 bits.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn store_panel_sums(
        sums: __m256i,
        (i, j0): (usize, usize),
        (out, n, col0, nr): (&super::Shared<i32>, usize, usize, usize),
        scales: Option<&super::Scales>,
    ) {
        let valid = (nr - j0).min(8);
        let mut sums = sums;
        if let Some(scales) = scales {
            let mut columns = [0f32; 8];
            let first = col0 + j0;
            columns[..valid].copy_from_slice(&scales.columns[first..first + valid]);
            let row = _mm256_set1_ps(scales.rows[i]);
            let values = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), row);
            let values = _mm256_mul_ps(values, _mm256_loadu_ps(columns.as_ptr()));
            sums = _mm256_castps_si256(values);
        }
        let target = out.at(i * n + col0 + j0);
        if valid == 8 {
            _mm256_storeu_si256(target as *mut __m256i, sums);
        } else {
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums);
            std::ptr::copy_nonoverlapping(lanes.as_ptr(), target, valid);
        }
    }

    /// Rows of `v` as columns: `out[c]` lane r is `v[r]` lane c (8 x 8 int32).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
        let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
        let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
        let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
        let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
        let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
        let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
        let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
        let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    /// The wrapping int32 sum of the 8 lanes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_sum(lanes: __m256i) -> i32 {
        let mut values = [0i32; 8];
        _mm256_storeu_si256(values.as_mut_ptr() as *mut __m256i, lanes);
        values.iter().fold(0i32, |s, &v| s.wrapping_add(v))
    }

    /// The blocked product (see `weight_rows_times_activations`): per block of K_BLOCK
    /// columns, tiles of W <= 2 weight rows by R <= 4 activation rows, their partial sums added
    /// to `sums` (wrapping); the columns past the last whole piece of 16 one by one at the end.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blocked(
        wide: &[i16],
        padded: usize,
        rows: usize,
        weights: &[i8],
        k: usize,
        sums: &mut [i32],
    ) {
        let blocks = (k / 16 * 16, K_BLOCK);
        // SAFETY: the CPU has AVX2 (the caller's contract); `in_tiles` passes tiles inside.
        in_tiles(
            wide,
            padded,
            rows,
            weights,
            k,
            sums,
            blocks,
            |args, w, r| unsafe { by_shape!(tile, args, w, r) },
        );
    }

    /// `tile::<W, R>(args)` for a tile of w weight rows by r activation rows.
    macro_rules! by_shape {
        ($tile:ident, $args:expr, $w:expr, $r:expr) => {
            match ($w, $r) {
                (1, 1) => $tile::<1, 1>($args),
                (1, 2) => $tile::<1, 2>($args),
                (1, 3) => $tile::<1, 3>($args),
                (1, _) => $tile::<1, 4>($args),
                (_, 1) => $tile::<2, 1>($args),
                (_, 2) => $tile::<2, 2>($args),
                (_, 3) => $tile::<2, 3>($args),
                _ => $tile::<2, 4>($args),
            }
        };
    }
    use by_shape;

    /// The blocked products' loops: per chunk of ROW_CHUNK activation rows (their block of K
    /// stays in L2), per block of `k_block` columns of 0 .. `whole`, tiles of up to 2 weight
    /// rows by ROW_BLOCK activation rows (`tile(args, w, r)`); then the columns from `whole`
    /// one by one. `activations` [rows, stride].
    #[allow(clippy::too_many_arguments)]
    fn in_tiles<X: Copy + Into<i32>>(
        activations: &[X],
        stride: usize,
        rows: usize,
        weights: &[i8],
        k: usize,
        sums: &mut [i32],
        (whole, k_block): (usize, usize),
        tile: impl Fn(super::TileArgs<X>, usize, usize),
    ) {
        let n = weights.len() / k;
        sums.fill(0);
        for first in (0..rows).step_by(ROW_CHUNK) {
            let shape = (n, ROW_CHUNK.min(rows - first), whole, k_block);
            super::for_each_tile(shape, (2, ROW_BLOCK), |j, i, k0, k1, w, r| {
                let args = (
                    activations,
                    stride,
                    weights,
                    k,
                    &mut *sums,
                    rows,
                    j,
                    first + i,
                    k0,
                    k1,
                );
                tile(args, w, r);
            });
        }
        if whole < k {
            for (weight_row, sums) in weights.chunks(k).zip(sums.chunks_mut(rows)) {
                for (i, sum) in sums.iter_mut().enumerate() {
                    let row = &activations[i * stride..];
                    for (&xv, &wv) in row[whole..k].iter().zip(&weight_row[whole..]) {
                        *sum = sum.wrapping_add(xv.into() * i32::from(wv));
                    }
                }
            }
        }
    }

    /// Weight rows j .. j + W by activation rows i .. i + R over columns k0 .. k1 (whole pieces
    /// of 16): W * R int32 accumulators of 8 lanes, each weight piece converted once for the R
    /// rows, each activation piece loaded once for the W weight rows.
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const W: usize, const R: usize>(args: super::TileArgs<i16>) {
        let (wide, padded, weights, k, sums, rows, j, i, k0, k1) = args;
        let mut acc = [[_mm256_setzero_si256(); R]; W];
        let w = weights.as_ptr().add(j * k);
        let x = wide.as_ptr().add(i * padded);
        let mut kk = k0;
        while kk < k1 {
            let mut pieces = [_mm256_setzero_si256(); W];
            for (t, piece) in pieces.iter_mut().enumerate() {
                // SAFETY: kk + 16 <= k1 <= whole <= k (weight rows j .. j + W exist).
                *piece = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(t * k + kk) as *const __m128i));
            }
            #[allow(clippy::needless_range_loop)] // acc[t][r]: rows inside, weight rows outside
            for r in 0..R {
                // SAFETY: kk + 16 <= padded (activation rows i .. i + R exist).
                let xs = _mm256_loadu_si256(x.add(r * padded + kk) as *const __m256i);
                for (acc, piece) in acc.iter_mut().zip(&pieces) {
                    acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xs, *piece));
                }
            }
            kk += 16;
        }
        add_tile_sums(&acc, &mut sums[j * rows + i..], rows);
    }

    /// The product on bytes, as `blocked` (tiles of W <= 2 weight rows by R <= 4 activation
    /// rows in blocks of K_BLOCK columns, chunks of ROW_CHUNK rows), for every row count:
    /// `vpmaddubsw` multiplies 32 unsigned bytes by 32 signed ones and adds each pair into int16
    /// (saturating), so each weight piece goes in as |w| and the activations as sign(w) * x:
    /// with |x| <= 127 a pair sums to at most 2 * 128 * 127 = 32512, exact; `vpmaddwd` by ones
    /// then widens the pairs into int32. 32 products per three instructions, against 16 per two
    /// with int16 multiply-adds. `narrow` [rows, stride]: activations in [-127, 127], each row
    /// padded with zeros to whole pieces of 32; the columns past the last whole piece of 32 one
    /// by one at the end.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bytes_blocked(
        narrow: &[i8],
        stride: usize,
        rows: usize,
        weights: &[i8],
        k: usize,
        sums: &mut [i32],
    ) {
        let whole = k / 32 * 32;
        // Below BLOCKED_MIN_ROWS rows the activations stay in cache whole: one block of K, so
        // each tile's sums are added up once.
        let k_block = if rows < BLOCKED_MIN_ROWS {
            whole
        } else {
            K_BLOCK
        };
        let blocks = (whole, k_block);
        // SAFETY: the CPU has AVX2 and no activation is -128 (the caller's contract);
        // `in_tiles` passes tiles inside.
        in_tiles(
            narrow,
            stride,
            rows,
            weights,
            k,
            sums,
            blocks,
            |args, w, r| unsafe { by_shape!(bytes_tile, args, w, r) },
        );
    }

    /// `bytes_blocked`'s tile: weight rows j .. j + W by activation rows i .. i + R over
    /// columns k0 .. k1 (whole pieces of 32).
    #[target_feature(enable = "avx2")]
    unsafe fn bytes_tile<const W: usize, const R: usize>(args: super::TileArgs<i8>) {
        let (narrow, stride, weights, k, sums, rows, j, i, k0, k1) = args;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); R]; W];
        let w = weights.as_ptr().add(j * k);
        let x = narrow.as_ptr().add(i * stride);
        let mut kk = k0;
        while kk < k1 {
            let mut pieces = [_mm256_setzero_si256(); W];
            let mut magnitudes = [_mm256_setzero_si256(); W];
            for t in 0..W {
                // SAFETY: kk + 32 <= k1 <= whole <= k (weight rows j .. j + W exist).
                pieces[t] = _mm256_loadu_si256(w.add(t * k + kk) as *const __m256i);
                magnitudes[t] = _mm256_abs_epi8(pieces[t]);
            }
            #[allow(clippy::needless_range_loop)] // acc[t][r]: rows inside, weight rows outside
            for r in 0..R {
                // SAFETY: kk + 32 <= stride (activation rows i .. i + R exist).
                let xs = _mm256_loadu_si256(x.add(r * stride + kk) as *const __m256i);
                for t in 0..W {
                    let signed = _mm256_sign_epi8(xs, pieces[t]);
                    let pairs = _mm256_maddubs_epi16(magnitudes[t], signed);
                    acc[t][r] = _mm256_add_epi32(acc[t][r], _mm256_madd_epi16(pairs, ones));
                }
            }
            kk += 32;
        }
        add_tile_sums(&acc, &mut sums[j * rows + i..], rows);
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn weight_row_times_activations(
        wide: &[i16],
        padded: usize,
        weight_row: &[i8],
        sums: &mut [i32],
    ) {
        let rows = sums.len();
        let mut first = 0;
        while first < rows {
            match rows - first {
                1 => block::<1>(wide, padded, weight_row, first, sums),
                2 => block::<2>(wide, padded, weight_row, first, sums),
                3 => block::<3>(wide, padded, weight_row, first, sums),
                _ => block::<ROW_BLOCK>(wide, padded, weight_row, first, sums),
            }
            first += ROW_BLOCK.min(rows - first);
        }
    }

    /// Activation rows first .. first + R times one weight row: R int32 accumulators of 8 lanes,
    /// each piece of 16 weights converted once for the R rows.
    #[target_feature(enable = "avx2")]
    unsafe fn block<const R: usize>(
        wide: &[i16],
        padded: usize,
        weight_row: &[i8],
        first: usize,
        sums: &mut [i32],
    ) {
        let k = weight_row.len();
        let whole = k / 16 * 16;
        let mut acc = [_mm256_setzero_si256(); R];
        let w = weight_row.as_ptr();
        let x = wide.as_ptr().add(first * padded);
        let mut kk = 0;
        while kk < whole {
            // SAFETY: kk + 16 <= k (weight row) and <= padded (each activation row).
            let piece = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(kk) as *const __m128i));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xs = _mm256_loadu_si256(x.add(r * padded + kk) as *const __m256i);
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(xs, piece));
            }
            kk += 16;
        }
        for (r, acc) in acc.iter().enumerate() {
            let mut sum = horizontal_sum(*acc);
            let row = &wide[(first + r) * padded..];
            for (&xv, &wv) in row[whole..k].iter().zip(&weight_row[whole..]) {
                sum = sum.wrapping_add(i32::from(xv) * i32::from(wv));
            }
            sums[first + r] = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(a: &[i8], rows: usize, b: &[i8], n: usize, k: usize) -> Vec<i32> {
        let mut out = vec![0i32; rows * n];
        for i in 0..rows {
            for j in 0..n {
                let s: i64 = (0..k)
                    .map(|kk| i64::from(a[i * k + kk]) * i64::from(b[j * k + kk]))
                    .sum();
                out[i * n + j] = s as i32;
            }
        }
        out
    }

    /// Pseudo-random activations [rows, k] and weight [n, k] (xorshift).
    fn operands(seed: u64, rows: usize, n: usize, k: usize) -> (Vec<i8>, Vec<i8>) {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as i8
        };
        let a: Vec<i8> = (0..rows * k).map(|_| next()).collect();
        let b: Vec<i8> = (0..n * k).map(|_| next()).collect();
        (a, b)
    }

    /// Scales for [rows, n] outputs, and the scaled products' bits (`sums` [rows, n]).
    fn scales_and_bits(sums: &[i32], rows: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let row_scales: Vec<f32> = (0..rows).map(|i| 0.37 + i as f32 / 7.0).collect();
        let column_scales: Vec<f32> = (0..n).map(|j| 1.9 - j as f32 / 11.0).collect();
        let bits = sums
            .iter()
            .enumerate()
            .map(|(e, &s)| (s as f32 * row_scales[e / n] * column_scales[e % n]).to_bits())
            .collect();
        (row_scales, column_scales, bits)
    }

    /// The exact sums of `a` [rows, k] by `b` [n, k], after asserting that `scaled_product`
    /// gives their scaled bits, with and without a `finish` (`assert_finished`).
    fn scaled_and_finished(a: &[i8], rows: usize, b: &[i8], n: usize, k: usize) -> Vec<i32> {
        let expected = reference(a, rows, b, n, k);
        let (row_scales, column_scales, want) = scales_and_bits(&expected, rows, n);
        let scales = Scales {
            rows: &row_scales,
            columns: &column_scales,
        };
        let scaled = scaled_product(a, rows, b, n, k, &scales, None).unwrap();
        assert_eq!(scaled.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
        assert_finished(a, rows, b, n, k, &scales);
        expected
    }

    /// `scaled_product` with a `finish` that checks that its block holds its scaled values
    /// (`scaled`'s bits) when it runs, then adds each column's index to them. Asserts that every
    /// output was finished once and holds that sum, and that no finish came early.
    fn assert_finished(a: &[i8], rows: usize, b: &[i8], n: usize, k: usize, scales: &Scales) {
        assert_finished_on(vnni::available(), a, rows, b, n, k, scales);
    }

    /// `assert_finished` on AVX-512 VNNI (and AMX) where `vnni` and the CPU has them.
    fn assert_finished_on(
        vnni: bool,
        a: &[i8],
        rows: usize,
        b: &[i8],
        n: usize,
        k: usize,
        scales: &Scales,
    ) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
        let sums = reference(a, rows, b, n, k);
        let scaled: Vec<u32> = sums
            .iter()
            .enumerate()
            .map(|(e, &s)| (s as f32 * scales.rows[e / n] * scales.columns[e % n]).to_bits())
            .collect();
        let visits: Vec<AtomicUsize> = (0..rows * n).map(|_| AtomicUsize::new(0)).collect();
        let early = AtomicBool::new(false);
        let finish =
            |block: std::ops::Range<usize>, start: usize, end: usize, out: &Shared<f32>| {
                for j in start..end {
                    for i in block.clone() {
                        visits[i * n + j].fetch_add(1, Relaxed);
                        // SAFETY: this block is this call's alone, of [rows, n] values.
                        let value = unsafe { &mut *out.at(i * n + j) };
                        if value.to_bits() != scaled[i * n + j] {
                            early.store(true, Relaxed);
                        }
                        *value += j as f32;
                    }
                }
            };
        let out = scaled_product_on(vnni, a, rows, b, n, k, scales, Some(&finish)).unwrap();
        assert!(
            !early.load(Relaxed),
            "a finish ran before its columns were scaled"
        );
        assert!(visits.iter().all(|v| v.load(Relaxed) == 1), "{visits:?}");
        for (e, (&got, &bits)) in out.iter().zip(&scaled).enumerate() {
            let want = f32::from_bits(bits) + (e % n) as f32;
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "row {} column {}",
                e / n,
                e % n
            );
        }
    }

    proptest! {
        #[test]
        fn matches_the_exact_sums(
            rows in 0usize..11, n in 0usize..150, k in 0usize..90, seed in any::<u64>()
        ) {
            let (a, b) = operands(seed, rows, n, k);
            let got = int8_product(&a, rows, &b, n, k).unwrap();
            prop_assert_eq!(got, reference(&a, rows, &b, n, k));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn the_blocked_product_matches_the_exact_sums(
            rows in BLOCKED_MIN_ROWS..40, n in 0usize..9, k in 0usize..1300, seed in any::<u64>()
        ) {
            let (a, b) = operands(seed, rows, n, k);
            let expected = scaled_and_finished(&a, rows, &b, n, k);
            for vnni in [true, false] {
                let (got, ..) = product_with(&a, rows, &b, n, k, vnni, None, None).unwrap();
                prop_assert_eq!(&got, &expected, "vnni {}", vnni);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn few_rows_match_the_exact_sums_and_finish_every_column(
            rows in 1usize..BLOCKED_MIN_ROWS, n in 0usize..150, k in 1usize..1300,
            seed in any::<u64>(),
        ) {
            // VNNI's streamed tiles (or AVX2's rows); scaled and finished in each range at one
            // row, else after.
            let (a, b) = operands(seed, rows, n, k);
            let expected = scaled_and_finished(&a, rows, &b, n, k);
            for vnni in [true, false] {
                let (got, ..) = product_with(&a, rows, &b, n, k, vnni, None, None).unwrap();
                prop_assert_eq!(&got, &expected, "vnni {}", vnni);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        #[test]
        fn large_weights_are_finished_in_pieces(
            rows in 1usize..20, n in 300usize..500, tiles in 20usize..24, whole in any::<bool>(),
            seed in any::<u64>(),
        ) {
            // Weights past FINISHED_IN_CACHE: finished FINISHED_ROWS rows at a time (on AMX's
            // tiles where k is a multiple of 64 and the CPU has them).
            let k = tiles * 64 + if whole { 0 } else { 13 };
            prop_assert!(n * k > FINISHED_IN_CACHE && n > 2 * FINISHED_ROWS);
            let (a, b) = operands(seed, rows, n, k);
            let expected = reference(&a, rows, &b, n, k);
            let (row_scales, column_scales, _) = scales_and_bits(&expected, rows, n);
            let scales = Scales { rows: &row_scales, columns: &column_scales };
            assert_finished(&a, rows, &b, n, k, &scales);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        #[test]
        fn chunks_of_rows_are_scaled_and_finished_each(
            rows in SCALED_ROW_CHUNK + 1..2 * PANEL_MIN_ROWS, n in 1usize..40,
            extra in 1usize..64, whole in any::<bool>(), seed in any::<u64>(),
        ) {
            // More rows than a chunk of SCALED_ROW_CHUNK: where the CPU has them, on AMX's tiles
            // (k a multiple of 64), else on VNNI's panels (from PANEL_MIN_ROWS rows) or its
            // blocked tiles and transposed sums; AVX2's or the portable ones elsewhere.
            let k = 16 * 64 + if whole { 0 } else { extra };
            let (a, b) = operands(seed, rows, n, k);
            scaled_and_finished(&a, rows, &b, n, k);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn whole_tiles_match_the_exact_sums(
            rows in 1usize..80, n in 0usize..80, tiles in 1usize..20, seed in any::<u64>(),
        ) {
            // AMX's tiles where the CPU has them (k a multiple of 64), VNNI's or AVX2's elsewhere.
            let k = tiles * 64;
            let (a, b) = operands(seed, rows, n, k);
            let expected = scaled_and_finished(&a, rows, &b, n, k);
            for vnni in [true, false] {
                let (got, ..) = product_with(&a, rows, &b, n, k, vnni, None, None).unwrap();
                prop_assert_eq!(&got, &expected, "vnni {}", vnni);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn activations_without_minus_128_match_the_exact_sums(
            rows in 1usize..600, n in 0usize..40, k in 1usize..1300, seed in any::<u64>(),
        ) {
            // AVX2's byte products (activations in [-127, 127], the weight's full range) where
            // the CPU has AVX2 and VNNI is not taken; more rows than a chunk of ROW_CHUNK, and
            // from AVX2_PANEL_MIN_ROWS rows its panels.
            let (mut a, b) = operands(seed, rows, n, k);
            for v in &mut a {
                *v = (*v).max(-127);
            }
            let (got, ..) = product_with(&a, rows, &b, n, k, false, None, None).unwrap();
            prop_assert_eq!(got, reference(&a, rows, &b, n, k));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn byte_panels_are_scaled_and_finished(
            rows in AVX2_PANEL_MIN_ROWS..700, n in 1usize..40, k in 1usize..600,
            seed in any::<u64>(),
        ) {
            // AVX2's panels where the CPU has AVX2 (VNNI not taken; activations in [-127,
            // 127]), over more rows than a chunk of SCALED_ROW_CHUNK; the portable sums
            // elsewhere.
            let (mut a, b) = operands(seed, rows, n, k);
            for v in &mut a {
                *v = (*v).max(-127);
            }
            let expected = reference(&a, rows, &b, n, k);
            let (row_scales, column_scales, want) = scales_and_bits(&expected, rows, n);
            let scales = Scales { rows: &row_scales, columns: &column_scales };
            let scaled = scaled_product_on(false, &a, rows, &b, n, k, &scales, None).unwrap();
            prop_assert_eq!(scaled.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
            assert_finished_on(false, &a, rows, &b, n, k, &scales);
        }
    }

    #[test]
    fn the_byte_products_take_their_extremes() {
        // |w| = 128 against |x| = 127 in every pair: 2 * 128 * 127, the largest sum vpmaddubsw
        // sees; both signs of each, and columns past the last whole piece of 32.
        for (rows, n, k) in [(1, 3, 64), (5, 9, 1100), (300, 3, 96)] {
            let a: Vec<i8> = (0..rows * k)
                .map(|i| if i % 3 == 0 { -127 } else { 127 })
                .collect();
            let b: Vec<i8> = (0..n * k)
                .map(|i| if i % 5 == 0 { 127 } else { -128 })
                .collect();
            let (got, ..) = product_with(&a, rows, &b, n, k, false, None, None).unwrap();
            assert_eq!(got, reference(&a, rows, &b, n, k), "{rows} x {k}");
        }
    }

    #[test]
    fn the_blocked_products_take_int8_extremes() {
        // VNNI's tiles (1100 columns) and panels (1000 columns, or many rows), and AVX2's.
        for (rows, n, k) in [
            (40, 37, 1024),
            (20, 9, 1100),
            (20, 9, 1000),
            (PANEL_MIN_ROWS + 16, 17, 1100),
        ] {
            let a: Vec<i8> = (0..rows * k)
                .map(|i| if i % 3 == 0 { -128 } else { 127 })
                .collect();
            let b: Vec<i8> = (0..n * k)
                .map(|i| if i % 5 == 0 { -128 } else { 127 })
                .collect();
            let expected = reference(&a, rows, &b, n, k);
            for vnni in [true, false] {
                let (got, _, _) = product_with(&a, rows, &b, n, k, vnni, None, None).unwrap();
                assert_eq!(got, expected, "{rows} x {k}, vnni {vnni}");
            }
        }
    }

    #[test]
    fn extremes_and_the_portable_loop_agree() {
        let (rows, n, k) = (5, 70, 1000);
        let a: Vec<i8> = (0..rows * k)
            .map(|i| if i % 3 == 0 { -128 } else { 127 })
            .collect();
        let b: Vec<i8> = (0..n * k)
            .map(|i| if i % 5 == 0 { -128 } else { -127 })
            .collect();
        let expected = reference(&a, rows, &b, n, k);
        assert_eq!(int8_product(&a, rows, &b, n, k).unwrap(), expected);
        let padded = k.div_ceil(16) * 16;
        let mut wide = vec![0i16; rows * padded];
        for i in 0..rows {
            for kk in 0..k {
                wide[i * padded + kk] = i16::from(a[i * k + kk]);
            }
        }
        for j in 0..n {
            let mut sums = vec![0i32; rows];
            portable(&wide, padded, &b[j * k..(j + 1) * k], &mut sums);
            let column: Vec<i32> = (0..rows).map(|i| expected[i * n + j]).collect();
            assert_eq!(sums, column);
        }
    }

    #[test]
    fn the_threaded_path_matches_the_exact_sums() {
        let (rows, n, k) = (2, 2048, 8200);
        assert!(rows * n * k >= PARALLEL_PRODUCTS_RAYON);
        let a: Vec<i8> = (0..rows * k).map(|i| (i * 7 % 255) as i8).collect();
        let b: Vec<i8> = (0..n * k).map(|i| (i * 13 % 251) as i8).collect();
        assert_eq!(
            int8_product(&a, rows, &b, n, k).unwrap(),
            reference(&a, rows, &b, n, k)
        );
    }

    #[test]
    fn pooled_outputs_are_written_whole() {
        // Outputs past buffer_pool::MIN_BYTES come from the pool, stale (poisoned in tests):
        // every value must be written again, on every path this CPU takes (AMX's tiles, VNNI's
        // panels, sums scaled in each range from their transposed layout: rows of 65 columns,
        // or the scaling pass), with and without a finish.
        let _alone = buffer_pool::TESTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cases = [
            (300, 1000, 128),
            (300, 1000, 128),
            (290, 1000, 128),
            (15, 17500, 65),
        ];
        for (round, (rows, n, k)) in (0u64..).zip(cases.into_iter().chain(cases)) {
            assert!(rows * n * 4 >= buffer_pool::MIN_BYTES);
            let (a, b) = operands(round, rows, n, k);
            let row_scales: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32 / 300.0).collect();
            let column_scales: Vec<f32> = (0..n).map(|j| 1.5 - j as f32 / n as f32).collect();
            let scales = Scales {
                rows: &row_scales,
                columns: &column_scales,
            };
            let scaled = scaled_product(&a, rows, &b, n, k, &scales, None).unwrap();
            let want: Vec<u32> = reference(&a, rows, &b, n, k)
                .iter()
                .enumerate()
                .map(|(e, &s)| (s as f32 * row_scales[e / n] * column_scales[e % n]).to_bits())
                .collect();
            assert!(scaled.iter().map(|v| v.to_bits()).eq(want), "round {round}");
            buffer_pool::OUTPUTS.give(scaled);
            if round % 2 == 1 {
                assert_finished(&a, rows, &b, n, k, &scales);
            }
            let sums = int8_product(&a, rows, &b, n, k).unwrap();
            assert_eq!(sums, reference(&a, rows, &b, n, k), "round {round}");
        }
    }

    #[test]
    fn wrong_lengths_are_a_shape_error() {
        let err = int8_product(&[1, 2, 3], 2, &[1, 2], 1, 2).unwrap_err();
        assert!(err.to_string().contains("int8 product"), "{err}");
    }
}
