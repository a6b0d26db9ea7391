//! The llmint8 / bitsandbytes int8 layer layout inside a state dict, and its validation.
//!
//! Per quantized linear layer with prefix `P`:
//! - `P.weight`         int8 `[out, in]`, row-major (the canonical layout)
//! - `P.SCB`            float32 `[out]`, the absmax of each weight row (finite, >= 0)
//! - `P.weight_format`  uint8, 0-dim, value 0 (= row-major; 1-3 were bitsandbytes' retired tiles)
//! - `P.bias`           optional, floating point `[out]`
//! - `P.outlier_cols`   optional int32 `[n]`: calibrated outlier columns, ascending, in `[0, in)`
//! - `P.outlier_counts` optional int64 `[in]`: per column, calibration batches it was an outlier in
//! - `P.outlier_batches` optional int64, 0-dim: the number of calibration batches (>= every count)

use safetensors::Dtype;

use crate::dtype;
use crate::error::{Error, Result};

pub const WEIGHT: &str = "weight";
pub const SCALES: &str = "SCB";
pub const WEIGHT_FORMAT: &str = "weight_format";
pub const BIAS: &str = "bias";
pub const OUTLIER_COLS: &str = "outlier_cols";
pub const OUTLIER_COUNTS: &str = "outlier_counts";
pub const OUTLIER_BATCHES: &str = "outlier_batches";

/// The only weight layout llmint8 reads and writes: row-major.
pub const ROW_MAJOR: u8 = 0;

/// What validation needs to know about one entry.
pub struct Entry<'a> {
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// Checks every quantized layer in a state dict. `lookup` returns the entry of a full name, or None.
/// Each error names the offending tensor.
pub fn validate<'a>(names: &[&str], lookup: impl Fn(&str) -> Option<Entry<'a>>) -> Result<()> {
    for name in names {
        let (prefix, leaf) = split(name);
        let Some(entry) = lookup(name) else {
            continue;
        };
        let sibling = |leaf: &str| lookup(&join(prefix, leaf));
        match leaf {
            SCALES => check_scales(name, &entry, sibling(WEIGHT), &join(prefix, WEIGHT))?,
            WEIGHT if entry.dtype == Dtype::I8 && sibling(SCALES).is_none() => {
                return Err(Error::format(
                    *name,
                    format!(
                        "int8 weight without its row scales {}",
                        join(prefix, SCALES)
                    ),
                ));
            }
            WEIGHT_FORMAT => check_weight_format(name, &entry)?,
            BIAS => {
                if let Some(weight) = int8_weight(&sibling) {
                    check_vector(name, &entry, weight.shape[0], "out_features")?;
                    if !dtype::is_float(entry.dtype) {
                        return Err(Error::format(
                            *name,
                            format!("bias must be floating point, got {:?}", entry.dtype),
                        ));
                    }
                }
            }
            OUTLIER_COLS | OUTLIER_COUNTS | OUTLIER_BATCHES => {
                let weight = int8_weight(&sibling).ok_or_else(|| {
                    Error::format(
                        *name,
                        "outlier statistics without an int8 weight beside them",
                    )
                })?;
                check_outliers(name, leaf, &entry, weight.shape[1], &sibling)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn split(name: &str) -> (&str, &str) {
    name.rsplit_once('.').unwrap_or(("", name))
}

fn join(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_string()
    } else {
        format!("{prefix}.{leaf}")
    }
}

fn int8_weight<'a>(sibling: &impl Fn(&str) -> Option<Entry<'a>>) -> Option<Entry<'a>> {
    sibling(WEIGHT).filter(|w| w.dtype == Dtype::I8 && w.shape.len() == 2)
}

fn check_scales(
    name: &str,
    scales: &Entry,
    weight: Option<Entry>,
    weight_name: &str,
) -> Result<()> {
    let weight = weight.ok_or_else(|| {
        Error::format(
            name,
            format!("row scales without their weight {weight_name}"),
        )
    })?;
    if weight.dtype != Dtype::I8 || weight.shape.len() != 2 {
        return Err(Error::format(
            weight_name,
            format!(
                "a weight with row scales must be int8 [out, in], got {:?} {:?}",
                weight.dtype, weight.shape
            ),
        ));
    }
    if scales.dtype != Dtype::F32 {
        return Err(Error::format(
            name,
            format!("row scales must be float32, got {:?}", scales.dtype),
        ));
    }
    check_vector(name, scales, weight.shape[0], "weight rows")?;
    for (row, bytes) in scales.data.chunks_exact(4).enumerate() {
        let value = f32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
        if !value.is_finite() || value < 0.0 {
            return Err(Error::format(
                name,
                format!("row scale {row} is {value}; scales must be finite and >= 0"),
            ));
        }
    }
    Ok(())
}

fn check_weight_format(name: &str, entry: &Entry) -> Result<()> {
    if entry.dtype != Dtype::U8 || !entry.shape.is_empty() {
        return Err(Error::format(
            name,
            format!(
                "weight_format must be a 0-dim uint8, got {:?} {:?}",
                entry.dtype, entry.shape
            ),
        ));
    }
    match entry.data.first().copied() {
        Some(ROW_MAJOR) => Ok(()),
        Some(other) => Err(Error::format(
            name,
            format!(
                "weight_format {other} is a tiled layout (col32/col_turing/col_ampere) that was \
                 retired; only 0 (row-major) is supported"
            ),
        )),
        None => Err(Error::format(name, "weight_format holds no value")),
    }
}

fn check_vector(name: &str, entry: &Entry, len: usize, what: &str) -> Result<()> {
    if entry.shape != [len] {
        return Err(Error::format(
            name,
            format!("expected shape [{len}] ({what}), got {:?}", entry.shape),
        ));
    }
    Ok(())
}

fn check_outliers<'a>(
    name: &str,
    leaf: &str,
    entry: &Entry,
    in_features: usize,
    sibling: &impl Fn(&str) -> Option<Entry<'a>>,
) -> Result<()> {
    match leaf {
        OUTLIER_COLS => {
            expect_dtype(name, entry, Dtype::I32)?;
            if entry.shape.len() != 1 {
                return Err(Error::format(
                    name,
                    format!("outlier columns must be 1-D, got {:?}", entry.shape),
                ));
            }
            let mut previous: Option<i32> = None;
            for bytes in entry.data.chunks_exact(4) {
                let col = i32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
                if col < 0 || col as usize >= in_features {
                    return Err(Error::format(
                        name,
                        format!("outlier column {col} is outside [0, {in_features})"),
                    ));
                }
                if previous.is_some_and(|p| p >= col) {
                    return Err(Error::format(
                        name,
                        "outlier columns must be strictly ascending",
                    ));
                }
                previous = Some(col);
            }
        }
        OUTLIER_COUNTS => {
            expect_dtype(name, entry, Dtype::I64)?;
            check_vector(name, entry, in_features, "in_features")?;
            let batches = sibling(OUTLIER_BATCHES)
                .filter(|b| b.dtype == Dtype::I64 && b.shape.is_empty())
                .map(|b| read_i64(b.data)[0])
                .ok_or_else(|| {
                    Error::format(name, "outlier counts without a 0-dim int64 outlier_batches")
                })?;
            if let Some(bad) = read_i64(entry.data)
                .into_iter()
                .find(|&c| c < 0 || c > batches)
            {
                return Err(Error::format(
                    name,
                    format!("outlier count {bad} is outside [0, {batches}] (batches observed)"),
                ));
            }
        }
        _ => {
            expect_dtype(name, entry, Dtype::I64)?;
            if !entry.shape.is_empty() || read_i64(entry.data)[0] < 0 {
                return Err(Error::format(name, "must be a 0-dim int64 >= 0"));
            }
        }
    }
    Ok(())
}

fn expect_dtype(name: &str, entry: &Entry, dtype: Dtype) -> Result<()> {
    if entry.dtype == dtype {
        Ok(())
    } else {
        Err(Error::format(
            name,
            format!("expected dtype {dtype:?}, got {:?}", entry.dtype),
        ))
    }
}

fn read_i64(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Dict(HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>);

    impl Dict {
        fn layer(rows: usize, cols: usize) -> Self {
            let mut d = HashMap::new();
            d.insert(
                "l.weight".into(),
                (Dtype::I8, vec![rows, cols], vec![1; rows * cols]),
            );
            let scb: Vec<u8> = (0..rows).flat_map(|_| 2.0f32.to_le_bytes()).collect();
            d.insert("l.SCB".into(), (Dtype::F32, vec![rows], scb));
            d.insert("l.weight_format".into(), (Dtype::U8, vec![], vec![0]));
            Dict(d)
        }

        fn with(mut self, name: &str, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Self {
            self.0.insert(name.into(), (dtype, shape, data));
            self
        }

        fn without(mut self, name: &str) -> Self {
            self.0.remove(name);
            self
        }

        fn check(&self) -> Result<()> {
            let names: Vec<&str> = self.0.keys().map(String::as_str).collect();
            validate(&names, |n| {
                self.0.get(n).map(|(dtype, shape, data)| Entry {
                    dtype: *dtype,
                    shape,
                    data,
                })
            })
        }
    }

    fn offending(result: Result<()>) -> String {
        match result {
            Err(Error::Format { tensor, .. }) => tensor,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_layer_passes() {
        let cols: Vec<u8> = [0i32, 2].iter().flat_map(|c| c.to_le_bytes()).collect();
        let counts: Vec<u8> = [3i64, 0, 1].iter().flat_map(|c| c.to_le_bytes()).collect();
        Dict::layer(2, 3)
            .with("l.bias", Dtype::F16, vec![2], vec![0; 4])
            .with("l.outlier_cols", Dtype::I32, vec![2], cols)
            .with("l.outlier_counts", Dtype::I64, vec![3], counts)
            .with(
                "l.outlier_batches",
                Dtype::I64,
                vec![],
                3i64.to_le_bytes().to_vec(),
            )
            .check()
            .unwrap();
    }

    #[test]
    fn each_fault_names_its_tensor() {
        assert_eq!(
            offending(Dict::layer(2, 3).without("l.SCB").check()),
            "l.weight"
        );
        let short = Dict::layer(2, 3).with("l.SCB", Dtype::F32, vec![1], vec![0; 4]);
        assert_eq!(offending(short.check()), "l.SCB");
        let nan = Dict::layer(1, 3).with(
            "l.SCB",
            Dtype::F32,
            vec![1],
            f32::NAN.to_le_bytes().to_vec(),
        );
        assert_eq!(offending(nan.check()), "l.SCB");
        let tiled = Dict::layer(2, 3).with("l.weight_format", Dtype::U8, vec![], vec![2]);
        assert_eq!(offending(tiled.check()), "l.weight_format");
        let bias = Dict::layer(2, 3).with("l.bias", Dtype::F16, vec![3], vec![0; 6]);
        assert_eq!(offending(bias.check()), "l.bias");
        let cols: Vec<u8> = [2i32, 1].iter().flat_map(|c| c.to_le_bytes()).collect();
        let unsorted = Dict::layer(2, 3).with("l.outlier_cols", Dtype::I32, vec![2], cols);
        assert_eq!(offending(unsorted.check()), "l.outlier_cols");
        let cols = 3i32.to_le_bytes().to_vec();
        let outside = Dict::layer(2, 3).with("l.outlier_cols", Dtype::I32, vec![1], cols);
        assert_eq!(offending(outside.check()), "l.outlier_cols");
        let fp_weight = Dict::layer(2, 3).with("l.weight", Dtype::F16, vec![2, 3], vec![0; 12]);
        assert_eq!(offending(fp_weight.check()), "l.weight");
    }

    #[test]
    fn plain_tensors_are_not_layers() {
        Dict(HashMap::new())
            .with("norm.weight", Dtype::F32, vec![4], vec![0; 16])
            .with("norm.bias", Dtype::F32, vec![4], vec![0; 16])
            .check()
            .unwrap();
    }
}
