//! The exact int8 product on Intel AMX (detected at run time, Linux on x86-64): `tdpbssd`
//! multiplies a tile of 16 x 64 signed bytes by one of 64 x 16 (4 bytes of each of 16 columns
//! per row) into 16 x 16 int32 sums, 16,384 products per instruction, exact (signed by signed,
//! no offset to take off).
//!
//! The weight's rows go in as they lie (a tile is 16 rows by 64 columns of `CB`, read with the
//! row stride k), the activations packed once per call as the second operand: per block of 16
//! rows and group of 4 columns, the 16 rows' 4 bytes side by side. So the product needs k to be
//! a multiple of 64 (`serves`); the rows past the last whole 16 of a range come from a copy
//! padded with zeros, the activations are padded with zero rows.

use crate::buffer_pool;
use crate::int8_product::{Scales, Shared};

/// Bytes per tile row (64 int8 columns of the weight; 16 activation rows' 4 bytes).
const TILE_BYTES: usize = 64;
/// Rows per tile.
const TILE_ROWS: usize = 16;
/// Weight tiles per chunk (an even number): 128 weight rows, at most 1 MiB for k <= 8192.
const CHUNK_TILES: usize = 8;

/// Whether the product can run here: the CPU has AMX-INT8, `cpu_features`'s cap allows it and
/// the kernel lets this process use the tiles (asked once).
pub(crate) fn available() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    crate::cpu_features::amx_allowed() && *READY.get_or_init(x86::enable)
}

/// Whether the AMX product takes rows of `k` columns.
pub(crate) fn serves(k: usize) -> bool {
    k > 0 && k.is_multiple_of(TILE_BYTES)
}

/// The activations `a` [rows, k] as `product` takes them: per block of 16 rows (zeros past the
/// last) and group g of 4 columns, 64 bytes: row r's columns 4g .. 4g + 4 at 4r.
/// The buffer comes from `buffer_pool::SCRATCH` (give it back when done).
pub(crate) fn pack_activations(a: &[i8], rows: usize, k: usize) -> Vec<i8> {
    let groups = k / 4;
    let block = groups * TILE_BYTES;
    let mut packed = buffer_pool::SCRATCH.take(rows.div_ceil(TILE_ROWS) * block);
    // The rows below write every byte of their blocks; the last block's padding rows are zeroed
    // (their sums are never stored, but stay defined).
    if !rows.is_multiple_of(TILE_ROWS) {
        packed[(rows / TILE_ROWS) * block..].fill(0);
    }
    for (i, row) in a.chunks(k.max(1)).take(rows).enumerate() {
        let base = (i / TILE_ROWS) * groups * TILE_BYTES + (i % TILE_ROWS) * 4;
        for (g, four) in row.chunks_exact(4).enumerate() {
            packed[base + g * TILE_BYTES..][..4].copy_from_slice(four);
        }
    }
    packed
}

/// `out[i * n + col0 + j] = dot(activation row i, weight row j)` for the weight rows `weights`
/// [nr, k] and the activation rows `rows` (of `packed`, from `pack_activations`), as int32, or
/// scaled (`(sum as f32 * rows[i]) * columns[col0 + j]`) and stored as float32 bits.
///
/// # Safety
/// `available()` and `serves(k)`, called inside `with_tiles`; `rows` starts at a multiple of 32
/// and ends at or before the packed rows' end; `out` holds [rows.end, n] values or more, the
/// block of `rows` and columns col0 .. col0 + nr this call's alone.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    packed: &[i8],
    rows: std::ops::Range<usize>,
    weights: &[i8],
    k: usize,
    n: usize,
    out: &Shared<i32>,
    col0: usize,
    scales: Option<&Scales>,
) {
    let nr = weights.len() / k;
    let whole = nr / TILE_ROWS;
    // The rows past the last whole tile, padded with zero rows.
    let tail_rows = nr % TILE_ROWS;
    let mut tail = vec![0i8; if tail_rows > 0 { TILE_ROWS * k } else { 0 }];
    tail[..tail_rows * k].copy_from_slice(&weights[whole * TILE_ROWS * k..]);
    let weight_tile = |b: usize| {
        if b < whole {
            weights.as_ptr().wrapping_add(b * TILE_ROWS * k)
        } else {
            tail.as_ptr()
        }
    };
    let weight_blocks = nr.div_ceil(TILE_ROWS);
    let (first_block, activation_blocks) = (rows.start / TILE_ROWS, rows.end.div_ceil(TILE_ROWS));
    let block_bytes = k / 4 * TILE_BYTES;
    let mut sums = [0i32; 4 * TILE_ROWS * TILE_ROWS];
    // Per chunk of weight rows (they stay in L2), every block of activation rows, and in it the
    // chunk's weight tiles: each output row is written in runs of the chunk's columns.
    for c0 in (0..weight_blocks).step_by(CHUNK_TILES) {
        let end = (c0 + CHUNK_TILES).min(weight_blocks);
        for m in (first_block..activation_blocks).step_by(2) {
            for b in (c0..end).step_by(2) {
                let tiles = Tiles {
                    w: [weight_tile(b), weight_tile((b + 1).min(weight_blocks - 1))],
                    k,
                    x: packed.as_ptr().add(m * block_bytes),
                    block_bytes,
                    sums: &mut sums,
                };
                match (b + 1 < end, m + 1 < activation_blocks) {
                    (true, true) => x86::block::<2, 2>(tiles),
                    (true, false) => x86::block::<2, 1>(tiles),
                    (false, true) => x86::block::<1, 2>(tiles),
                    (false, false) => x86::block::<1, 1>(tiles),
                }
                let (first_row, first_column) = (m * TILE_ROWS, b * TILE_ROWS);
                let block = Block {
                    rows: first_row..(first_row + 2 * TILE_ROWS).min(rows.end),
                    columns: first_column..(first_column + 2 * TILE_ROWS).min(nr),
                };
                store(&sums, &block, out, n, col0, scales);
            }
        }
    }
}

/// `work()` with this thread's tiles configured for `product`, released after: once for all the
/// products of a range (set up per product, each of a 1024 x 4096 weight's 64 pieces of 64 rows
/// cost it again).
///
/// # Safety
/// `available()`.
pub(crate) unsafe fn with_tiles<R>(work: impl FnOnce() -> R) -> R {
    x86::configure();
    let result = work();
    x86::release();
    result
}

/// One block's operands: up to 2 weight tiles' first rows `w` (row stride k), the first of up
/// to 2 packed activation blocks `x` (`block_bytes` apart), the sums [32 weight rows][32
/// activation rows].
struct Tiles<'a> {
    w: [*const i8; 2],
    k: usize,
    x: *const i8,
    block_bytes: usize,
    sums: &'a mut [i32; 4 * 16 * 16],
}

/// The activation rows and the range's weight rows (output columns, from col0) of a block.
struct Block {
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
}

/// A block's sums (`sums[wr * 32 + ar]`: its weight row wr by its activation row ar) written
/// into `out` along the output's rows, scaled where `scales` are given.
///
/// # Safety
/// `out` holds [rows, n] values; the block's columns col0 + j are the caller's alone.
unsafe fn store(
    sums: &[i32],
    block: &Block,
    out: &Shared<i32>,
    n: usize,
    col0: usize,
    scales: Option<&Scales>,
) {
    for i in block.rows.clone() {
        let ar = i - block.rows.start;
        for j in block.columns.clone() {
            let sum = sums[(j - block.columns.start) * 2 * TILE_ROWS + ar];
            let value = match scales {
                Some(s) => ((sum as f32 * s.rows[i]) * s.columns[col0 + j]).to_bits() as i32,
                None => sum,
            };
            *out.at(i * n + col0 + j) = value;
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86 {
    use std::arch::asm;

    /// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`) where the CPU has AMX-TILE and AMX-INT8; whether it was granted.
    pub(super) fn enable() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // Leaf 7 is read only where the CPU has it.
        let (max_leaf, _) = std::arch::x86_64::__get_cpuid_max(0);
        if max_leaf < 7 {
            return false;
        }
        let features = std::arch::x86_64::__cpuid_count(7, 0).edx;
        if features & (1 << 24) == 0 || features & (1 << 25) == 0 {
            return false;
        }
        // SAFETY: a request for a CPU state component; it changes nothing else.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }

    /// The tile configuration: palette 1, the 8 tiles 16 rows of 64 bytes (tmm0-3 the sums,
    /// tmm4-5 weight tiles, tmm6-7 activation tiles).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    /// Loads the tile configuration on this thread.
    pub(super) unsafe fn configure() {
        let mut config = Config([0; 64]);
        config.0[0] = 1;
        for t in 0..8 {
            config.0[16 + 2 * t] = super::TILE_BYTES as u8;
            config.0[48 + t] = super::TILE_ROWS as u8;
        }
        asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack));
    }

    /// Releases this thread's tiles.
    pub(super) unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// `tileloadd $tile, [$at + $stride]`: 16 rows of 64 bytes, `$stride` bytes apart.
    macro_rules! load {
        ($tile:literal, $at:expr, $stride:expr) => {
            asm!(
                concat!("tileloadd ", $tile, ", [{0} + {1}*1]"),
                in(reg) $at, in(reg) $stride, options(nostack, readonly)
            )
        };
    }

    /// `tilestored [$at + $stride], $tile`.
    macro_rules! store {
        ($tile:literal, $at:expr, $stride:expr) => {
            asm!(
                concat!("tilestored [{0} + {1}*1], ", $tile),
                in(reg) $at, in(reg) $stride, options(nostack)
            )
        };
    }

    /// W weight tiles by A activation blocks over all k columns: W * A tiles of sums, stored.
    pub(super) unsafe fn block<const W: usize, const A: usize>(tiles: super::Tiles) {
        let super::Tiles {
            w,
            k,
            x,
            block_bytes,
            sums,
        } = tiles;
        let bytes = super::TILE_BYTES;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let mut kk = 0;
        while kk < k {
            // Columns kk .. kk + 64 of the weight rows; groups kk / 4 .. + 16 of the activations.
            let x0 = x.add(kk / 4 * bytes);
            load!("tmm4", w[0].add(kk), k);
            load!("tmm6", x0, bytes);
            asm!("tdpbssd tmm0, tmm4, tmm6", options(nostack, nomem));
            if A == 2 {
                load!("tmm7", x0.add(block_bytes), bytes);
                asm!("tdpbssd tmm1, tmm4, tmm7", options(nostack, nomem));
            }
            if W == 2 {
                load!("tmm5", w[1].add(kk), k);
                asm!("tdpbssd tmm2, tmm5, tmm6", options(nostack, nomem));
                if A == 2 {
                    asm!("tdpbssd tmm3, tmm5, tmm7", options(nostack, nomem));
                }
            }
            kk += bytes;
        }
        // Tile (weight t, activations a) at sums[t * 16 * 32 + a * 16], rows 32 int32 apart.
        let s = sums.as_mut_ptr();
        let stride: usize = 2 * 16 * 4;
        store!("tmm0", s, stride);
        if A == 2 {
            store!("tmm1", s.add(16), stride);
        }
        if W == 2 {
            store!("tmm2", s.add(16 * 32), stride);
            if A == 2 {
                store!("tmm3", s.add(16 * 32 + 16), stride);
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod x86 {
    pub(super) fn enable() -> bool {
        false
    }
    pub(super) unsafe fn configure() {
        unreachable!("AMX is enabled on x86-64 Linux only")
    }
    pub(super) unsafe fn release() {}
    pub(super) unsafe fn block<const W: usize, const A: usize>(_: super::Tiles) {}
}
