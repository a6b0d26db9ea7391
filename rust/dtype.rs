//! Element types by name. Names follow PyTorch's (`"int8"`, `"bfloat16"`, …) so that the Python
//! side can map them without a table of its own beyond `getattr(torch, name)`.

use safetensors::Dtype;

use crate::error::{Error, Result};

const NAMES: &[(&str, Dtype)] = &[
    ("bool", Dtype::BOOL),
    ("uint8", Dtype::U8),
    ("int8", Dtype::I8),
    ("int16", Dtype::I16),
    ("uint16", Dtype::U16),
    ("int32", Dtype::I32),
    ("uint32", Dtype::U32),
    ("int64", Dtype::I64),
    ("uint64", Dtype::U64),
    ("float16", Dtype::F16),
    ("bfloat16", Dtype::BF16),
    ("float32", Dtype::F32),
    ("float64", Dtype::F64),
    ("float8_e4m3fn", Dtype::F8_E4M3),
    ("float8_e5m2", Dtype::F8_E5M2),
];

/// The safetensors dtype for a name, or a format error naming `tensor`.
pub fn from_name(name: &str, tensor: &str) -> Result<Dtype> {
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .ok_or_else(|| Error::format(tensor, format!("unsupported dtype {name:?}")))
}

/// The name of a safetensors dtype, or a format error naming `tensor` for one llmint8 does not read.
pub fn name_of(dtype: Dtype, tensor: &str) -> Result<&'static str> {
    NAMES
        .iter()
        .find(|(_, d)| *d == dtype)
        .map(|(n, _)| *n)
        .ok_or_else(|| Error::format(tensor, format!("unsupported dtype {dtype:?}")))
}

/// Bytes per element (every dtype in the table is whole bytes).
pub fn size_of(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

pub fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, dtype) in NAMES {
            assert_eq!(from_name(name, "t").unwrap(), *dtype);
            assert_eq!(name_of(*dtype, "t").unwrap(), *name);
        }
        assert!(matches!(
            from_name("complex32", "t"),
            Err(Error::Format { .. })
        ));
    }
}
