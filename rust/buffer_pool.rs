//! Large buffers of the CPU forward kept for reuse. A fresh buffer's pages are mapped on first
//! write, one page fault per 4 KiB, and on a many-row call that costs more than the product: a
//! 6256 x 1536 float32 output (38 MB) takes 8-9 ms to write fresh on a 2-core machine and 0.9 ms
//! rewritten (benches/cpu.md). So a buffer of at least MIN_BYTES is kept once done with (up to
//! MAX_BUFFERS of them, MAX_BYTES in all, per pool) and handed to the next one of a size it fits:
//! `OUTPUTS` the forward's float32 outputs, back when their arrays are freed, and `SCRATCH` the
//! quantized and packed activations, back at the end of each call.
//!
//! A buffer taken from a pool holds stale values: the caller writes every one it reads. Test
//! builds fill it with a poison pattern first (NaN for floats), so that a value left unwritten
//! shows.

use std::sync::{Mutex, MutexGuard};

/// Bytes from which a buffer comes from, and goes back to, its pool.
pub const MIN_BYTES: usize = 1 << 20;
/// The most buffers, and bytes, a pool keeps.
const MAX_BUFFERS: usize = 8;
const MAX_BYTES: usize = 256 << 20;

/// Buffers of one element type.
pub struct Pool<T: 'static> {
    kept: Mutex<Vec<Vec<T>>>,
    /// What test builds fill reused buffers with.
    #[cfg_attr(not(test), allow(dead_code))]
    poison: T,
}

/// The forward's float32 outputs.
pub static OUTPUTS: Pool<f32> = Pool::new(f32::from_bits(0x7FC0_DEAD));
/// The activations quantized, and packed for the product.
pub static SCRATCH: Pool<i8> = Pool::new(0x5A);

/// Held by each test that takes large buffers, so that one sees the pools as it left them.
#[cfg(test)]
pub(crate) static TESTS: Mutex<()> = Mutex::new(());

impl<T: Copy + Default> Pool<T> {
    const fn new(poison: T) -> Self {
        Pool {
            kept: Mutex::new(Vec::new()),
            poison,
        }
    }

    fn kept(&self) -> MutexGuard<'_, Vec<Vec<T>>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes(len: usize) -> usize {
        len.saturating_mul(std::mem::size_of::<T>())
    }

    /// A buffer of `len` values whose every value the caller writes before reading it: a kept
    /// one whose capacity holds `len` without wasting more than its size, else a new one
    /// (zeros).
    pub fn take(&self, len: usize) -> Vec<T> {
        if Self::bytes(len) >= MIN_BYTES {
            let mut kept = self.kept();
            let fits = kept
                .iter()
                .position(|b| b.capacity() >= len && b.capacity() / 2 <= len);
            if let Some(index) = fits {
                let mut buffer = kept.swap_remove(index);
                drop(kept);
                buffer.resize(len, T::default());
                #[cfg(test)]
                buffer.fill(self.poison);
                return buffer;
            }
        }
        vec![T::default(); len]
    }

    /// Keeps `buffer` for a later `take` where it is large enough and the pool has room.
    pub fn give(&self, buffer: Vec<T>) {
        let bytes = Self::bytes(buffer.capacity());
        if bytes < MIN_BYTES {
            return;
        }
        let mut kept = self.kept();
        let held: usize = kept.iter().map(|b| Self::bytes(b.capacity())).sum();
        if kept.len() < MAX_BUFFERS && held + bytes <= MAX_BYTES {
            kept.push(buffer);
        }
    }

    /// Frees every kept buffer; returns the bytes freed.
    pub fn clear(&self) -> usize {
        let freed: Vec<Vec<T>> = std::mem::take(&mut *self.kept());
        freed.iter().map(|b| Self::bytes(b.capacity())).sum()
    }
}

/// `OUTPUTS.take` as int32 values (the sums the product stores before or instead of scaling
/// them).
pub fn take_i32(len: usize) -> Vec<i32> {
    let mut buffer = std::mem::ManuallyDrop::new(OUTPUTS.take(len));
    let (pointer, length, capacity) = (buffer.as_mut_ptr(), buffer.len(), buffer.capacity());
    // SAFETY: int32 has float32's size and alignment, and every bit pattern is a valid int32.
    unsafe { Vec::from_raw_parts(pointer as *mut i32, length, capacity) }
}

/// Frees the buffers both pools keep; returns the bytes freed.
pub fn clear() -> usize {
    OUTPUTS.clear() + SCRATCH.clear()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_for_sizes_they_fit_and_small_ones_do_not() {
        let _alone = TESTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clear();
        let len = MIN_BYTES / 4 + 10;
        let first = OUTPUTS.take(len);
        assert_eq!(first.len(), len);
        assert!(first.iter().all(|&v| v == 0.0));
        let address = first.as_ptr();
        OUTPUTS.give(first);
        // Too large for it: a new buffer.
        let larger = OUTPUTS.take(3 * len);
        assert_ne!(larger.as_ptr(), address);
        OUTPUTS.give(larger);
        // A size it fits: the kept buffer, its values poisoned in tests.
        let again = OUTPUTS.take(len - 5);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again.len(), len - 5);
        assert!(again.iter().all(|&v| v.to_bits() == 0x7FC0_DEAD));
        OUTPUTS.give(again);
        let sums = take_i32(len);
        assert_eq!(sums.as_ptr() as *const f32, address);
        drop(sums);
        // Small buffers are never kept; each element type has its pool.
        OUTPUTS.give(vec![0f32; 16]);
        let bytes = vec![0i8; MIN_BYTES];
        let scratch = bytes.as_ptr();
        SCRATCH.give(bytes);
        let reused = SCRATCH.take(MIN_BYTES);
        assert_eq!(reused.as_ptr(), scratch);
        assert!(reused.iter().all(|&v| v == 0x5A));
        SCRATCH.give(reused);
        assert!(clear() >= 3 * len * 4 + MIN_BYTES);
        assert_eq!(clear(), 0);
    }
}
