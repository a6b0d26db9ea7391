//! The instructions the core's products and passes use on this CPU: those it has (detected at
//! run time), capped where `cap` says so, so that one machine can measure and test the paths
//! another CPU takes (benches/cpu.md). A cap never adds an instruction the CPU lacks.

use std::sync::atomic::{AtomicU8, Ordering};

/// How far the instructions used may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cap {
    /// No vector instructions past x86-64's baseline (SSE2): the portable loops.
    Portable = 0,
    /// AVX2 and FMA at most: no AVX-512, VNNI or AMX.
    Avx2 = 1,
    /// Everything the CPU has.
    Native = 2,
}

impl Cap {
    /// The cap's name: "portable", "avx2" or "native".
    pub fn name(self) -> &'static str {
        match self {
            Cap::Portable => "portable",
            Cap::Avx2 => "avx2",
            Cap::Native => "native",
        }
    }

    /// The cap named `name`, if any.
    pub fn from_name(name: &str) -> Option<Cap> {
        [Cap::Portable, Cap::Avx2, Cap::Native]
            .into_iter()
            .find(|cap| cap.name() == name)
    }
}

static CAP: AtomicU8 = AtomicU8::new(Cap::Native as u8);

/// Caps the instructions used from now on.
pub fn cap(cap: Cap) {
    CAP.store(cap as u8, Ordering::Relaxed);
}

/// The cap in force.
pub fn capped() -> Cap {
    match CAP.load(Ordering::Relaxed) {
        0 => Cap::Portable,
        1 => Cap::Avx2,
        _ => Cap::Native,
    }
}

/// Whether AVX2 may be used: the CPU has it and the cap allows it.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2() -> bool {
    capped() >= Cap::Avx2 && std::is_x86_feature_detected!("avx2")
}

/// Whether AVX2 and FMA may be used together.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    avx2() && std::is_x86_feature_detected!("fma")
}

/// Whether AVX-512F may be used.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512f() -> bool {
    capped() == Cap::Native && std::is_x86_feature_detected!("avx512f")
}

/// Whether AVX-512F and FMA may be used together.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512f_fma() -> bool {
    avx512f() && std::is_x86_feature_detected!("fma")
}

/// Whether AVX-512 VNNI may be used (with AVX-512VL's 256-bit forms).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_vnni() -> bool {
    capped() == Cap::Native
        && std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx512vl")
}

/// Whether AMX may be used, where the CPU and the kernel allow it (`amx::available`).
pub(crate) fn amx_allowed() -> bool {
    capped() == Cap::Native
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for cap in [Cap::Portable, Cap::Avx2, Cap::Native] {
            assert_eq!(Cap::from_name(cap.name()), Some(cap));
        }
        assert_eq!(Cap::from_name("avx512"), None);
    }
}
