//! llmint8's own header metadata: the keys, the values each may hold, and the checksum that
//! covers all of the metadata.
//!
//! The values steer how a file is loaded (a layer's threshold decides which input columns run in
//! floating point), so they are validated on write and on read, and from format version 2 on the
//! whole `__metadata__` map is covered by [`METADATA_CHECKSUM_KEY`]: an edited threshold is
//! refused like an edited weight.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::error::{Error, Result};

/// The outlier threshold the file's layers were saved with: a number, or `"mixed"`.
pub const THRESHOLD_KEY: &str = "llmint8.threshold";
/// A JSON object: layer name → `{"threshold": number >= 0, "has_fp16_weights": bool}`.
pub const LAYERS_KEY: &str = "llmint8.layers";
/// The floating-point dtype the weights had before quantization (`""` when unknown or mixed).
pub const ORIGINAL_DTYPE_KEY: &str = "llmint8.original_dtype";
/// A JSON array of the names of linear layers left in floating point.
pub const SKIPPED_KEY: &str = "llmint8.skipped_modules";
/// CRC-32 of every other metadata entry ([`metadata_checksum`]).
pub const METADATA_CHECKSUM_KEY: &str = "llmint8.metadata_checksum";

const MIXED: &str = "mixed";
const ORIGINAL_DTYPES: &[&str] = &["", "float16", "bfloat16", "float32", "float64"];
const LAYER_SETTINGS: &[&str] = &["threshold", "has_fp16_weights"];

/// CRC-32 over every metadata entry except the metadata checksum itself, in key order, each key
/// and value preceded by its length (so no two maps hash the same bytes), as 8 hex digits.
pub fn metadata_checksum(metadata: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = metadata
        .iter()
        .filter(|(key, _)| key.as_str() != METADATA_CHECKSUM_KEY)
        .collect();
    let mut hasher = crc32fast::Hasher::new();
    for (key, value) in sorted {
        for part in [key, value] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    format!("{:08x}", hasher.finalize())
}

/// Checks the values of llmint8's metadata keys that are present; each error names the key.
pub fn validate(metadata: &HashMap<String, String>) -> Result<()> {
    if let Some(value) = metadata.get(THRESHOLD_KEY) {
        if value != MIXED {
            let parsed = value.trim().parse::<f64>().ok();
            check_threshold(THRESHOLD_KEY, parsed, value)?;
        }
    }
    if let Some(value) = metadata.get(LAYERS_KEY) {
        validate_layers(value)?;
    }
    if let Some(value) = metadata.get(ORIGINAL_DTYPE_KEY) {
        if !ORIGINAL_DTYPES.contains(&value.as_str()) {
            return Err(Error::format(
                ORIGINAL_DTYPE_KEY,
                format!(
                    "{value:?} is not a floating-point dtype (expected one of {ORIGINAL_DTYPES:?})"
                ),
            ));
        }
    }
    if let Some(value) = metadata.get(SKIPPED_KEY) {
        let names = parse_json(SKIPPED_KEY, value)?;
        let all_strings = names
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !all_strings {
            return Err(Error::format(
                SKIPPED_KEY,
                "must be a JSON array of module names (strings)",
            ));
        }
    }
    Ok(())
}

fn check_threshold(key: &str, parsed: Option<f64>, shown: &str) -> Result<()> {
    match parsed {
        Some(t) if t.is_finite() && t >= 0.0 => Ok(()),
        _ => Err(Error::format(
            key,
            format!("threshold {shown} is not a finite number >= 0"),
        )),
    }
}

fn parse_json(key: &str, value: &str) -> Result<Value> {
    serde_json::from_str(value).map_err(|e| Error::format(key, format!("is not valid JSON: {e}")))
}

fn validate_layers(value: &str) -> Result<()> {
    let layers = parse_json(LAYERS_KEY, value)?;
    let layers = layers
        .as_object()
        .ok_or_else(|| Error::format(LAYERS_KEY, "must be a JSON object of layer settings"))?;
    for (name, settings) in layers {
        let at = |reason: String| Error::format(LAYERS_KEY, format!("layer {name:?}: {reason}"));
        if name.is_empty() && layers.len() > 1 {
            return Err(at("an empty layer name beside others".into()));
        }
        let settings = settings
            .as_object()
            .ok_or_else(|| at("settings must be a JSON object".into()))?;
        if let Some(unknown) = settings
            .keys()
            .find(|k| !LAYER_SETTINGS.contains(&k.as_str()))
        {
            return Err(at(format!(
                "unknown setting {unknown:?} (known: {LAYER_SETTINGS:?})"
            )));
        }
        if let Some(threshold) = settings.get("threshold") {
            check_threshold(LAYERS_KEY, threshold.as_f64(), &threshold.to_string())
                .map_err(|_| at(format!("threshold {threshold} is not a finite number >= 0")))?;
        }
        if let Some(flag) = settings.get("has_fp16_weights") {
            if !flag.is_boolean() {
                return Err(at(format!("has_fp16_weights {flag} is not true or false")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> HashMap<String, String> {
        HashMap::from([(key.to_string(), value.to_string())])
    }

    fn refused_key(key: &str, value: &str) -> String {
        match validate(&with(key, value)) {
            Err(Error::Format { tensor, .. }) => tensor,
            other => panic!("{key}={value:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn good_values_pass() {
        for (key, value) in [
            (THRESHOLD_KEY, "6.0"),
            (THRESHOLD_KEY, "0"),
            (THRESHOLD_KEY, "mixed"),
            (
                LAYERS_KEY,
                r#"{"a.b": {"threshold": 6.0, "has_fp16_weights": false}, "c": {}}"#,
            ),
            (ORIGINAL_DTYPE_KEY, "bfloat16"),
            (ORIGINAL_DTYPE_KEY, ""),
            (SKIPPED_KEY, r#"["lm_head"]"#),
        ] {
            validate(&with(key, value)).unwrap();
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (key, value) in [
            (THRESHOLD_KEY, "nan"),
            (THRESHOLD_KEY, "NaN"),
            (THRESHOLD_KEY, "inf"),
            (THRESHOLD_KEY, "-1"),
            (THRESHOLD_KEY, "six"),
            (LAYERS_KEY, r#"{"a": {"threshold": NaN}}"#),
            (LAYERS_KEY, r#"{"a": {"threshold": -0.5}}"#),
            (LAYERS_KEY, r#"{"a": {"threshold": "6"}}"#),
            (LAYERS_KEY, r#"{"a": {"has_fp16_weights": 1}}"#),
            (LAYERS_KEY, r#"{"a": {"treshold": 6}}"#),
            (LAYERS_KEY, r#"{"a": 6}"#),
            (LAYERS_KEY, "[1, 2]"),
            (LAYERS_KEY, &("[".repeat(5000) + &"]".repeat(5000))),
            (ORIGINAL_DTYPE_KEY, "int8"),
            (SKIPPED_KEY, r#"[1]"#),
            (SKIPPED_KEY, r#"{"a": 1}"#),
        ] {
            assert_eq!(refused_key(key, value), key, "{value}");
        }
    }

    #[test]
    fn the_checksum_covers_every_other_entry() {
        let mut meta = with(THRESHOLD_KEY, "6.0");
        meta.insert("k".into(), "v".into());
        let sum = metadata_checksum(&meta);
        meta.insert(METADATA_CHECKSUM_KEY.into(), sum.clone());
        assert_eq!(metadata_checksum(&meta), sum);
        meta.insert(THRESHOLD_KEY.into(), "0.0".into());
        assert_ne!(metadata_checksum(&meta), sum);
        // Moving a byte from a key to its value changes the sum.
        let a = HashMap::from([("ab".to_string(), "c".to_string())]);
        let b = HashMap::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(metadata_checksum(&a), metadata_checksum(&b));
    }
}
