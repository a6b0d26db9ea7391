//! Hostile and damaged files against the reader: property tests over arbitrary bytes and over
//! valid files mutated anywhere (bounded: `PROPTEST_CASES`, default 400 per property), and a
//! corpus of hand-minimised cases kept as regression tests. Every input must give a format or I/O
//! error, or load to exactly the tensors that were written — never a panic, a hang or an
//! allocation sized by a lying header.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use safetensors::Dtype;

use crate::error::Error;
use crate::format::{write, TensorRef, VERSION_KEY};
use crate::metadata::METADATA_CHECKSUM_KEY;
use crate::reader::Checkpoint;

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// A valid llmint8 file's tensors: one int8 layer with bias and outlier statistics, and a
/// floating-point tensor.
fn valid_tensors() -> Tensors {
    let scb: Vec<u8> = [1.5f32, 0.25, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bias: Vec<u8> = [0.5f32, -1.0, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let cols: Vec<u8> = [1i32, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let counts: Vec<u8> = [0i64, 4, 0, 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![
        (
            "l.weight".into(),
            Dtype::I8,
            vec![3, 4],
            (0u8..12).map(|i| i.wrapping_mul(37)).collect(),
        ),
        ("l.SCB".into(), Dtype::F32, vec![3], scb),
        ("l.weight_format".into(), Dtype::U8, vec![], vec![0]),
        ("l.bias".into(), Dtype::F32, vec![3], bias),
        ("l.outlier_cols".into(), Dtype::I32, vec![2], cols),
        ("l.outlier_counts".into(), Dtype::I64, vec![4], counts),
        (
            "l.outlier_batches".into(),
            Dtype::I64,
            vec![],
            5i64.to_le_bytes().to_vec(),
        ),
        (
            "norm.weight".into(),
            Dtype::F16,
            vec![2],
            vec![0, 60, 0, 188],
        ),
        (
            "emb.table".into(),
            Dtype::F32,
            vec![2, 3],
            (0u8..24).collect(),
        ),
    ]
}

fn valid_file(path: &Path) -> Tensors {
    let tensors = valid_tensors();
    let refs: Vec<TensorRef> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| TensorRef {
            name: name.clone(),
            dtype: *dtype,
            shape: shape.clone(),
            data,
        })
        .collect();
    let meta = HashMap::from([("llmint8.threshold".to_string(), "6.0".to_string())]);
    write(path, &refs, &meta).unwrap();
    tensors
}

/// Opens and reads every tensor; `Ok` with the tensors (sorted by name) when all of it loads.
fn load_all(path: &Path) -> Result<Tensors, Error> {
    let ckpt = Checkpoint::open(path, true)?;
    let mut out = Vec::new();
    for name in ckpt.names() {
        let t = ckpt.tensor(&name)?;
        out.push((name, t.dtype, t.shape.to_vec(), t.data.to_vec()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The header metadata of a file that opens.
fn metadata_of(path: &Path) -> HashMap<String, String> {
    Checkpoint::open(path, true).unwrap().metadata().clone()
}

fn assert_refused_or_same(path: &Path, expected: &Tensors, metadata: &HashMap<String, String>) {
    if let Ok(ckpt) = Checkpoint::open(path, true) {
        assert_eq!(
            ckpt.metadata(),
            metadata,
            "a damaged file opened with different metadata"
        );
    }
    match load_all(path) {
        Err(Error::Format { .. }) | Err(Error::Io { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
        Ok(mut loaded) => {
            let mut expected = expected.clone();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            loaded.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                loaded, expected,
                "a damaged file loaded to different tensors"
            );
        }
    }
}

/// A safetensors file from a header (JSON text) and data bytes, the header length as given.
fn raw_file(header_len: u64, header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = header_len.to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// `refused` for a file whose header length is the true one.
fn refused_header(header: &str, data: &[u8]) -> String {
    refused(&raw_file(header.len() as u64, header, data))
}

fn refused(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    std::fs::write(&path, bytes).unwrap();
    match load_all(&path) {
        Err(Error::Format { tensor, .. }) => tensor,
        Err(other) => panic!("expected a format error, got {other:?}"),
        Ok(_) => panic!("a hostile file loaded"),
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let _ = load_all(&path);
    }

    #[test]
    fn arbitrary_headers_never_panic(
        header in "\\{[ -~]{0,200}\\}",
        claimed in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let len = claimed.unwrap_or(header.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        std::fs::write(&path, raw_file(len, &header, &data)).unwrap();
        let _ = load_all(&path);
    }

    #[test]
    fn mutated_valid_files_are_refused_or_load_the_same(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        truncate in prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        let expected = valid_file(&path);
        let metadata = metadata_of(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, mask) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(at) = truncate {
            bytes.truncate(at.index(bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_refused_or_same(&path, &expected, &metadata);
    }

    /// Damage to the header and to the data together: the data change alone makes the tensors
    /// differ, so whatever the header damage did (a marker, a checksum, free metadata), the file
    /// must be refused. (A damaged `llmint8.format` key once made the file read as foreign.)
    #[test]
    fn header_and_data_damaged_together_are_refused(
        header_flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..3),
        data_flip in (any::<prop::sample::Index>(), 1u8..=255),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        valid_file(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for (at, mask) in &header_flips {
            bytes[8 + at.index(header_end - 8)] ^= mask;
        }
        let (at, mask) = data_flip;
        let data_len = bytes.len() - header_end;
        bytes[header_end + at.index(data_len)] ^= mask;
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(matches!(load_all(&path), Err(Error::Format { .. })), "damaged file loaded");
    }
}

// ---- the corpus: minimised hostile inputs, one test each ----

#[test]
fn huge_header_length_is_refused_without_allocating_it() {
    // Claims an 2^63-byte header: refused before any allocation of that size.
    assert_eq!(refused(&raw_file(1 << 63, "{}", &[])), "<header>");
    assert_eq!(refused(&raw_file(u64::MAX, "{}", &[])), "<header>");
    assert_eq!(refused(&raw_file(90_000_000, "{}", &[])), "<header>");
}

#[test]
fn header_longer_than_the_file_is_refused() {
    assert_eq!(refused(&raw_file(100, "{}", &[])), "<header>");
}

#[test]
fn offsets_past_the_end_are_refused() {
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert_eq!(refused_header(header, &[0; 8]), "<header>");
}

#[test]
fn overlapping_tensors_are_refused() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert_eq!(refused_header(header, &[0; 12]), "<header>");
}

#[test]
fn dtype_and_shape_that_disagree_with_the_offsets_are_refused() {
    let header = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert_eq!(refused_header(header, &[0; 8]), "<header>");
}

#[test]
fn unknown_dtypes_and_deep_json_are_refused() {
    let header = r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#;
    assert_eq!(refused_header(header, &[0]), "<header>");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(refused_header(&deep, &[]), "<header>");
    let mut not_utf8 = 2u64.to_le_bytes().to_vec();
    not_utf8.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(refused(&not_utf8), "<header>");
}

fn layer_header(scb_shape: &str, scb_dtype: &str) -> String {
    format!(
        r#"{{"l.weight":{{"dtype":"I8","shape":[2,2],"data_offsets":[0,4]}},"l.SCB":{{"dtype":"{scb_dtype}","shape":{scb_shape},"data_offsets":[4,12]}}}}"#
    )
}

#[test]
fn scales_of_the_wrong_length_or_dtype_are_refused() {
    let scb = [1.0f32, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>();
    let data = [&[1u8, 2, 3, 4][..], &scb].concat();
    let header = layer_header("[1,2]", "F32");
    assert_eq!(refused_header(&header, &data), "l.SCB");
    let header = layer_header("[4]", "F16");
    assert_eq!(refused_header(&header, &data), "l.SCB");
}

#[test]
fn nan_inf_and_negative_scales_are_refused() {
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let scb = [1.0f32, bad]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        let data = [&[1u8, 2, 3, 4][..], &scb].concat();
        let header = layer_header("[2]", "F32");
        assert_eq!(refused_header(&header, &data), "l.SCB");
    }
}

#[test]
fn a_changed_shape_with_the_same_size_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    valid_file(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // emb.table [2,3] -> [3,2]: same bytes and offsets, another tensor; only the checksum knows.
    let shape = br#""shape":[2,3]"#;
    let at = bytes.windows(shape.len()).position(|w| w == shape).unwrap();
    bytes[at..at + shape.len()].copy_from_slice(br#""shape":[3,2]"#);
    std::fs::write(&path, &bytes).unwrap();
    match load_all(&path) {
        Err(Error::Format { tensor, reason }) => {
            assert_eq!(tensor, "emb.table");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

/// Rewrites the header of the file at `path` through `edit` (the parsed JSON), keeping the data;
/// with `reseal`, the metadata checksum is recomputed, as a forger would.
fn rewrite_header(path: &Path, reseal: bool, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end]).unwrap();
    edit(&mut header);
    if reseal {
        let meta = header["__metadata__"].as_object_mut().unwrap();
        let plain: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let sum = crate::metadata::metadata_checksum(&plain);
        meta.insert(METADATA_CHECKSUM_KEY.into(), sum.into());
    }
    let text = header.to_string();
    std::fs::write(
        path,
        raw_file(text.len() as u64, &text, &bytes[header_end..]),
    )
    .unwrap();
}

fn set_metadata(header: &mut serde_json::Value, key: &str, value: Option<&str>) {
    let meta = header["__metadata__"].as_object_mut().unwrap();
    match value {
        Some(v) => meta.insert(key.into(), v.into()),
        None => meta.remove(key),
    };
}

fn refused_file(path: &Path) -> String {
    match load_all(path) {
        Err(Error::Format { tensor, .. }) => tensor,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn an_edited_threshold_is_caught_by_the_metadata_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    valid_file(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let value = br#""llmint8.threshold":"6.0""#;
    let at = bytes.windows(value.len()).position(|w| w == value).unwrap();
    bytes[at + value.len() - 4] = b'0'; // 6.0 -> 0.0, same length
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(refused_file(&path), METADATA_CHECKSUM_KEY);
}

#[test]
fn forged_metadata_values_are_refused_naming_the_key() {
    for (key, value) in [
        ("llmint8.threshold", "nan"),
        ("llmint8.layers", r#"{"l": {"threshold": -1}}"#),
        ("llmint8.layers", "{\"l\": "),
        ("llmint8.original_dtype", "int8"),
        ("llmint8.skipped_modules", "[[[[1]]]]"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        valid_file(&path);
        rewrite_header(&path, true, |h| set_metadata(h, key, Some(value)));
        assert_eq!(refused_file(&path), key, "{key}={value}");
    }
}

#[test]
fn version_1_files_without_the_metadata_checksum_load_with_their_values_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    let expected = valid_file(&path);
    rewrite_header(&path, false, |h| {
        set_metadata(h, VERSION_KEY, Some("1"));
        set_metadata(h, METADATA_CHECKSUM_KEY, None);
    });
    assert_eq!(load_all(&path).unwrap().len(), expected.len());
    rewrite_header(&path, false, |h| {
        set_metadata(h, "llmint8.threshold", Some("NaN"))
    });
    assert_eq!(refused_file(&path), "llmint8.threshold");
    // Version 2 requires the metadata checksum.
    let path2 = dir.path().join("g.safetensors");
    valid_file(&path2);
    rewrite_header(&path2, false, |h| {
        set_metadata(h, METADATA_CHECKSUM_KEY, None)
    });
    assert_eq!(refused_file(&path2), "<header>");
}

#[test]
fn repeated_keys_and_empty_names_are_refused() {
    // Two entries for one tensor name (serde_json alone would keep the second).
    let entry = r#"{"dtype":"U8","shape":[1],"data_offsets":[0,1]}"#;
    let twice = format!(r#"{{"a":{entry},"a":{entry}}}"#);
    assert_eq!(refused_header(&twice, &[7]), "<header>");
    let meta =
        r#"{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    assert_eq!(refused_header(meta, &[7]), "<header>");
    let empty = r#"{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    assert_eq!(refused_header(empty, &[7]), "<header>");
}

#[test]
fn a_file_truncated_while_open_gives_an_error_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    valid_file(&path);
    let ckpt = Checkpoint::open(&path, true).unwrap();
    let names = ckpt.names();
    let header_end = {
        let bytes = std::fs::read(&path).unwrap();
        8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(header_end + 1)
        .unwrap();
    let last = names.last().unwrap();
    match ckpt.tensor(last) {
        Err(Error::Format { tensor, reason }) => {
            assert_eq!(&tensor, last);
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected a format error, got {:?}", other.map(|t| t.data)),
    }
}

#[test]
fn directories_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    match Checkpoint::open(dir.path(), true) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory)
        }
        other => panic!("expected an is-a-directory error, got {:?}", other.err()),
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path in a fresh directory.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let (done, wait) = std::sync::mpsc::channel();
    let opener = path.clone();
    std::thread::spawn(move || {
        let _ = done.send(Checkpoint::open(&opener, true).err().map(|e| e.to_string()));
    });
    let message = wait
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("opening a FIFO blocked")
        .expect("a FIFO opened as a checkpoint");
    assert!(message.contains("not a regular file"), "{message}");
}
