//! Output buffers of the CPU forward kept for reuse. A fresh buffer's pages are mapped on first
//! write, one page fault per 4 KiB, and on a many-row call that costs more than the product: a
//! 6256 x 1536 float32 output (38 MB) takes 8-9 ms to write fresh on a 2-core machine and 0.9 ms
//! rewritten (benches/cpu.md). So a buffer of at least MIN_BYTES, once its array is freed, is
//! kept (up to MAX_BUFFERS of them, MAX_BYTES in all) and handed to the next output of a size it
//! fits.
//!
//! A buffer taken from the pool holds stale values: the caller writes every one. Test builds
//! fill it with a NaN pattern first, so that a value left unwritten shows.

use std::sync::Mutex;

/// Bytes from which an output buffer comes from, and goes back to, the pool.
pub const MIN_BYTES: usize = 1 << 20;
/// The most buffers, and bytes, the pool keeps.
const MAX_BUFFERS: usize = 8;
const MAX_BYTES: usize = 256 << 20;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// The NaN pattern test builds fill reused buffers with.
#[cfg(test)]
pub(crate) const POISON: u32 = 0x7FC0_DEAD;

/// Held by each test that takes large buffers, so that one sees the pool as it left it.
#[cfg(test)]
pub(crate) static TESTS: Mutex<()> = Mutex::new(());

fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A buffer of `len` float32 values whose every value the caller writes: a kept one whose
/// capacity holds `len` without wasting more than its size, else a new one (zeros).
pub fn take(len: usize) -> Vec<f32> {
    if len.saturating_mul(4) >= MIN_BYTES {
        let mut kept = pool();
        let fits = kept
            .iter()
            .position(|b| b.capacity() >= len && b.capacity() / 2 <= len);
        if let Some(index) = fits {
            let mut buffer = kept.swap_remove(index);
            drop(kept);
            buffer.resize(len, 0.0);
            #[cfg(test)]
            buffer.fill(f32::from_bits(POISON));
            return buffer;
        }
    }
    vec![0f32; len]
}

/// `take` as int32 values (the sums the product stores before or instead of scaling them).
pub fn take_i32(len: usize) -> Vec<i32> {
    let mut buffer = std::mem::ManuallyDrop::new(take(len));
    let (pointer, length, capacity) = (buffer.as_mut_ptr(), buffer.len(), buffer.capacity());
    // SAFETY: int32 has float32's size and alignment, and every bit pattern is a valid int32.
    unsafe { Vec::from_raw_parts(pointer as *mut i32, length, capacity) }
}

/// Keeps `buffer` for a later `take` where it is large enough and the pool has room.
pub fn give(buffer: Vec<f32>) {
    let bytes = buffer.capacity().saturating_mul(4);
    if bytes < MIN_BYTES {
        return;
    }
    let mut kept = pool();
    let held: usize = kept.iter().map(|b| b.capacity() * 4).sum();
    if kept.len() < MAX_BUFFERS && held + bytes <= MAX_BYTES {
        kept.push(buffer);
    }
}

/// Frees every kept buffer; returns the bytes freed.
pub fn clear() -> usize {
    let freed: Vec<Vec<f32>> = std::mem::take(&mut *pool());
    freed.iter().map(|b| b.capacity() * 4).sum()
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
        let first = take(len);
        assert_eq!(first.len(), len);
        assert!(first.iter().all(|&v| v == 0.0));
        let address = first.as_ptr();
        give(first);
        // Too large for it: a new buffer.
        let larger = take(3 * len);
        assert_ne!(larger.as_ptr(), address);
        give(larger);
        // A size it fits: the kept buffer, its values poisoned in tests.
        let again = take(len - 5);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again.len(), len - 5);
        assert!(again.iter().all(|&v| v.to_bits() == POISON));
        give(again);
        let sums = take_i32(len);
        assert_eq!(sums.as_ptr() as *const f32, address);
        drop(sums);
        // Small buffers are never kept.
        give(vec![0f32; 16]);
        assert!(clear() >= 3 * len * 4);
        assert_eq!(clear(), 0);
    }
}
