//! Packing: int4 nibbles and tiled int8 layouts, each with its exact inverse.
//!
//! Row-major `[rows, cols]` stays the canonical (on-disk) layout; these are the layouts kernels may
//! want in memory.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Smallest and largest value a signed 4-bit nibble holds.
pub const INT4_MIN: i8 = -8;
pub const INT4_MAX: i8 = 7;

/// Packs signed 4-bit values two to a byte: element `2i` in the low nibble of byte `i`, element
/// `2i + 1` in its high nibble. An odd count leaves the last high nibble zero.
pub fn pack_int4(values: &[i8]) -> Result<Vec<u8>> {
    if let Some((index, value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(INT4_MIN..=INT4_MAX).contains(*v))
    {
        return Err(Error::Packing(format!(
            "value {value} at index {index} is outside the int4 range [{INT4_MIN}, {INT4_MAX}]"
        )));
    }
    Ok(values
        .chunks(2)
        .map(|pair| {
            let low = (pair[0] as u8) & 0x0f;
            let high = pair.get(1).map_or(0, |v| (*v as u8) & 0x0f);
            low | (high << 4)
        })
        .collect())
}

/// Inverse of [`pack_int4`]: `count` values from `packed`, which must hold exactly
/// `ceil(count / 2)` bytes (and, for an odd count, a zero padding nibble).
pub fn unpack_int4(packed: &[u8], count: usize) -> Result<Vec<i8>> {
    let expected = count.div_ceil(2);
    if packed.len() != expected {
        return Err(Error::Packing(format!(
            "{count} int4 values need {expected} bytes, got {}",
            packed.len()
        )));
    }
    if count % 2 == 1 && packed[expected - 1] >> 4 != 0 {
        return Err(Error::Packing(
            "the padding nibble after an odd number of values is not zero".into(),
        ));
    }
    // Shifting the nibble to the top of an i8 and back sign-extends it.
    let sign_extend = |nibble: u8| ((nibble << 4) as i8) >> 4;
    Ok(packed
        .iter()
        .flat_map(|byte| [sign_extend(byte & 0x0f), sign_extend(byte >> 4)])
        .take(count)
        .collect())
}

/// Shape of a matrix and of the tiles it is cut into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileShape {
    pub rows: usize,
    pub cols: usize,
    pub tile_rows: usize,
    pub tile_cols: usize,
}

impl TileShape {
    fn check(&self) -> Result<()> {
        if self.tile_rows == 0 || self.tile_cols == 0 {
            return Err(Error::Packing(format!(
                "tile shape {}x{} must be positive",
                self.tile_rows, self.tile_cols
            )));
        }
        self.padded_len()
            .map(|_| ())
            .ok_or_else(|| Error::Packing("tiled size overflows".into()))
    }

    /// Rows and columns rounded up to whole tiles.
    pub fn padded(&self) -> (usize, usize) {
        (
            self.rows.div_ceil(self.tile_rows) * self.tile_rows,
            self.cols.div_ceil(self.tile_cols) * self.tile_cols,
        )
    }

    fn padded_len(&self) -> Option<usize> {
        let rows = self
            .rows
            .div_ceil(self.tile_rows)
            .checked_mul(self.tile_rows)?;
        let cols = self
            .cols
            .div_ceil(self.tile_cols)
            .checked_mul(self.tile_cols)?;
        rows.checked_mul(cols)
    }
}

/// Re-lays a row-major `[rows, cols]` matrix as tiles of `[tile_rows, tile_cols]`: tiles in row-major
/// order of the tile grid, each tile contiguous and row-major inside, the matrix zero-padded up to
/// whole tiles. The result has `padded_rows * padded_cols` elements.
pub fn tile<T: Copy + Default + Send + Sync>(matrix: &[T], shape: TileShape) -> Result<Vec<T>> {
    shape.check()?;
    check_len(matrix.len(), shape.rows * shape.cols, "matrix")?;
    let (_, padded_cols) = shape.padded();
    let tile_len = shape.tile_rows * shape.tile_cols;
    let band_len = tile_len * (padded_cols / shape.tile_cols);
    let mut tiled = vec![T::default(); shape.padded_len().unwrap_or(0)];
    tiled
        .par_chunks_mut(band_len.max(1))
        .enumerate()
        .for_each(|(band, out)| {
            for (tile_col, tile_out) in out.chunks_mut(tile_len).enumerate() {
                for r in 0..shape.tile_rows {
                    let row = band * shape.tile_rows + r;
                    if row >= shape.rows {
                        break;
                    }
                    let col0 = tile_col * shape.tile_cols;
                    let width = shape.tile_cols.min(shape.cols.saturating_sub(col0));
                    let src = &matrix[row * shape.cols + col0..][..width];
                    tile_out[r * shape.tile_cols..][..width].copy_from_slice(src);
                }
            }
        });
    Ok(tiled)
}

/// Inverse of [`tile`]: recovers the row-major `[rows, cols]` matrix, dropping the padding.
pub fn untile<T: Copy + Default + Send + Sync>(tiled: &[T], shape: TileShape) -> Result<Vec<T>> {
    shape.check()?;
    let (padded_rows, padded_cols) = shape.padded();
    check_len(tiled.len(), padded_rows * padded_cols, "tiled matrix")?;
    let tile_len = shape.tile_rows * shape.tile_cols;
    let tiles_per_band = padded_cols / shape.tile_cols;
    let mut matrix = vec![T::default(); shape.rows * shape.cols];
    matrix
        .par_chunks_mut(shape.cols.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let (band, r) = (row / shape.tile_rows, row % shape.tile_rows);
            for (tile_col, dst) in out.chunks_mut(shape.tile_cols).enumerate() {
                let tile_start = (band * tiles_per_band + tile_col) * tile_len;
                let src = &tiled[tile_start + r * shape.tile_cols..][..dst.len()];
                dst.copy_from_slice(src);
            }
        });
    Ok(matrix)
}

fn check_len(actual: usize, expected: usize, what: &str) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::Packing(format!(
            "{what} has {actual} elements, the shape needs {expected}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn int4_packs_low_nibble_first() {
        assert_eq!(pack_int4(&[1, -1, 7]).unwrap(), vec![0xf1, 0x07]);
        assert_eq!(unpack_int4(&[0xf1, 0x07], 3).unwrap(), vec![1, -1, 7]);
    }

    #[test]
    fn int4_rejects_out_of_range_and_bad_lengths() {
        assert!(matches!(pack_int4(&[0, 8]), Err(Error::Packing(_))));
        assert!(matches!(pack_int4(&[-9]), Err(Error::Packing(_))));
        assert!(matches!(unpack_int4(&[0x11], 3), Err(Error::Packing(_))));
        assert!(matches!(unpack_int4(&[0x10], 1), Err(Error::Packing(_))));
    }

    #[test]
    fn tile_pads_with_zeros_in_tile_order() {
        // 3x3 into 2x2 tiles: padded to 4x4, four tiles.
        let m: Vec<i8> = (1..=9).collect();
        let shape = TileShape {
            rows: 3,
            cols: 3,
            tile_rows: 2,
            tile_cols: 2,
        };
        let t = tile(&m, shape).unwrap();
        assert_eq!(t, vec![1, 2, 4, 5, 3, 0, 6, 0, 7, 8, 0, 0, 9, 0, 0, 0]);
        assert_eq!(untile(&t, shape).unwrap(), m);
    }

    #[test]
    fn tile_rejects_zero_tiles_and_wrong_lengths() {
        let shape = TileShape {
            rows: 2,
            cols: 2,
            tile_rows: 0,
            tile_cols: 2,
        };
        assert!(tile(&[0i8; 4], shape).is_err());
        let shape = TileShape {
            tile_rows: 2,
            ..shape
        };
        assert!(tile(&[0i8; 3], shape).is_err());
        assert!(untile(&[0i8; 3], shape).is_err());
    }

    proptest! {
        #[test]
        fn int4_round_trips(values in prop::collection::vec(INT4_MIN..=INT4_MAX, 0..300)) {
            let packed = pack_int4(&values).unwrap();
            prop_assert_eq!(packed.len(), values.len().div_ceil(2));
            prop_assert_eq!(unpack_int4(&packed, values.len()).unwrap(), values);
        }

        #[test]
        fn tile_round_trips(rows in 0usize..40, cols in 0usize..40, tr in 1usize..9, tc in 1usize..9, seed in any::<u64>()) {
            let m: Vec<i8> = (0..rows * cols).map(|i| (i as u64).wrapping_mul(seed | 1) as i8).collect();
            let shape = TileShape { rows, cols, tile_rows: tr, tile_cols: tc };
            let t = tile(&m, shape).unwrap();
            let (pr, pc) = shape.padded();
            prop_assert_eq!(t.len(), pr * pc);
            prop_assert_eq!(untile(&t, shape).unwrap(), m);
        }
    }
}
