//! Test operands: reproducible pseudo-random values from a seed (xorshift), for the tests of
//! several modules.

/// `len` values in [-scale / 2, scale / 2) from `seed`.
pub(crate) fn values(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}
