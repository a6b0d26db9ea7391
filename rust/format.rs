//! Writing int8 state dicts as safetensors files (reading: [`crate::reader`]).
//!
//! The file is plain safetensors (no code runs on load). llmint8 adds to the header's
//! `__metadata__`:
//! - `format` = `"pt"` (what transformers expects of PyTorch safetensors files),
//! - `llmint8.format` = `"llmint8"` and `llmint8.format_version` = [`FORMAT_VERSION`],
//! - `llmint8.checksums`: a JSON object mapping every tensor name to a CRC-32 (8 lower-case hex
//!   digits) of its dtype, shape and bytes ([`tensor_checksum`]), verified when the tensor is read:
//!   a change to a tensor's header entry is caught as well as one to its data,
//! - `llmint8.metadata_checksum`: a CRC-32 of every other metadata entry
//!   ([`crate::metadata::metadata_checksum`]), so thresholds and layer settings are covered too,
//!
//! plus whatever metadata the caller passes (threshold, original dtype, skipped modules, …; the
//! values of llmint8's own keys are validated, [`crate::metadata::validate`]).
//! Files whose metadata names llmint8 nowhere (e.g. written by transformers with bitsandbytes) are
//! read too, with the same layout validation but no checksums; llmint8 metadata without an intact
//! `llmint8.format` marker is refused, so a damaged marker cannot switch the checksums off.
//! Headers are written with sorted keys: the same tensors and metadata give the same bytes.
//!
//! Writes are atomic: a temporary file in the destination directory is written, flushed to disk,
//! then renamed over the destination ([`write`]) or, where an existing file must be kept
//! ([`write_new`]), moved into place only if nothing is there, in one step; then the directory is
//! synced. Errors name the destination, never the temporary file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, View};

use crate::dtype;
use crate::error::{Error, Result};
use crate::layout::{self, Entry};
use crate::metadata::{self, metadata_checksum, METADATA_CHECKSUM_KEY};

pub const FORMAT_KEY: &str = "llmint8.format";
pub const FORMAT_NAME: &str = "llmint8";
pub const VERSION_KEY: &str = "llmint8.format_version";
pub const FORMAT_VERSION: &str = "2";
pub const CHECKSUMS_KEY: &str = "llmint8.checksums";
const FRAMEWORK_KEY: &str = "format";
/// Metadata keys the writer sets itself; a caller passing one is refused, and a caller copying
/// a file's metadata into a new one leaves them out.
pub const RESERVED_METADATA_KEYS: [&str; 5] = [
    FRAMEWORK_KEY,
    FORMAT_KEY,
    VERSION_KEY,
    CHECKSUMS_KEY,
    METADATA_CHECKSUM_KEY,
];
const HEADER: &str = "<header>";
const HEADER_LEN_BYTES: usize = 8;

/// One tensor to write: its bytes in the dtype's little-endian layout, row-major.
pub struct TensorRef<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl View for &TensorRef<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// CRC-32 over a tensor's dtype name, its shape (little-endian u64 per dimension, after the
/// rank) and its bytes, as 8 lower-case hex digits.
pub fn tensor_checksum(dtype: Dtype, shape: &[usize], data: &[u8]) -> String {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(format!("{dtype:?}").as_bytes());
    hasher.update(&[0]);
    hasher.update(&(shape.len() as u64).to_le_bytes());
    for &dim in shape {
        hasher.update(&(dim as u64).to_le_bytes());
    }
    hasher.update(data);
    format!("{:08x}", hasher.finalize())
}

fn validate_layout(tensors: &[TensorRef]) -> Result<()> {
    let by_name: HashMap<&str, &TensorRef> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let names: Vec<&str> = by_name.keys().copied().collect();
    layout::validate(&names, |name| {
        by_name.get(name).map(|t| Entry {
            dtype: t.dtype,
            shape: &t.shape,
            data: t.data,
        })
    })
}

fn check_tensor(t: &TensorRef) -> Result<()> {
    if t.name.is_empty() {
        return Err(Error::format("<unnamed>", "tensor names must not be empty"));
    }
    let elements = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::format(&t.name, "shape overflows"))?;
    let expected = elements * dtype::size_of(t.dtype);
    if t.data.len() != expected {
        return Err(Error::format(
            &t.name,
            format!(
                "shape {:?} of {:?} needs {expected} bytes, got {}",
                t.shape,
                t.dtype,
                t.data.len()
            ),
        ));
    }
    Ok(())
}

/// Writes `tensors` with `metadata` to `path` atomically, replacing what is there, after checking
/// every tensor, the int8 layer layout and llmint8's metadata values. Reserved metadata keys
/// (`format`, the `llmint8.*` keys written here) must not be passed.
pub fn write(path: &Path, tensors: &[TensorRef], metadata: &HashMap<String, String>) -> Result<()> {
    write_checked(path, tensors, metadata, Commit::Replace)
}

/// As [`write`], but refuses (an `AlreadyExists` I/O error, nothing written) when `path` exists,
/// also when another writer puts a file there while this one works.
pub fn write_new(
    path: &Path,
    tensors: &[TensorRef],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    write_checked(path, tensors, metadata, Commit::KeepExisting)
}

#[derive(Clone, Copy)]
enum Commit {
    Replace,
    KeepExisting,
}

fn write_checked(
    path: &Path,
    tensors: &[TensorRef],
    metadata: &HashMap<String, String>,
    commit: Commit,
) -> Result<()> {
    for key in RESERVED_METADATA_KEYS {
        if metadata.contains_key(key) {
            return Err(Error::format(
                HEADER,
                format!("metadata key {key:?} is reserved for the format itself"),
            ));
        }
    }
    metadata::validate(metadata)?;
    let mut seen = std::collections::HashSet::new();
    for t in tensors {
        check_tensor(t)?;
        if !seen.insert(t.name.as_str()) {
            return Err(Error::format(&t.name, "appears twice"));
        }
    }
    validate_layout(tensors)?;
    check_destination(path, commit)?;

    let checksums: serde_json::Map<String, serde_json::Value> = tensors
        .par_iter()
        .map(|t| {
            let sum = tensor_checksum(t.dtype, &t.shape, t.data);
            (t.name.clone(), serde_json::Value::from(sum))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let mut header = metadata.clone();
    header.insert(FRAMEWORK_KEY.into(), "pt".into());
    header.insert(FORMAT_KEY.into(), FORMAT_NAME.into());
    header.insert(VERSION_KEY.into(), FORMAT_VERSION.into());
    header.insert(
        CHECKSUMS_KEY.into(),
        serde_json::Value::Object(checksums).to_string(),
    );
    let sum = metadata_checksum(&header);
    header.insert(METADATA_CHECKSUM_KEY.into(), sum);

    let temp = temp_path(path)?;
    let result = write_synced(&temp, path, tensors, header).and_then(|()| {
        match commit {
            Commit::Replace => std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?,
            Commit::KeepExisting => rename_no_replace(&temp, path)?,
        }
        sync_parent(path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Before any work: the directory `path` goes into exists, `path` is not a directory, and (when
/// existing files are kept) nothing is at `path` yet.
fn check_destination(path: &Path, commit: Commit) -> Result<()> {
    let refuse =
        |kind, what: &str| Err(Error::io(path, std::io::Error::new(kind, what.to_string())));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return refuse(
            std::io::ErrorKind::NotFound,
            &format!("its directory {} does not exist", parent.display()),
        );
    }
    if path.is_dir() {
        return refuse(
            std::io::ErrorKind::IsADirectory,
            "is a directory; a checkpoint is written to a file path",
        );
    }
    if matches!(commit, Commit::KeepExisting) && path.symlink_metadata().is_ok() {
        return refuse(std::io::ErrorKind::AlreadyExists, "already exists");
    }
    Ok(())
}

/// Moves `from` to `to` only if `to` does not exist, in one step (Linux `renameat2` with
/// `RENAME_NOREPLACE`; elsewhere, or on file systems without it, a hard link then an unlink).
fn rename_no_replace(from: &Path, to: &Path) -> Result<()> {
    let exists = || {
        Error::io(
            to,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        )
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        if let (Ok(a), Ok(b)) = (c(from), c(to)) {
            // SAFETY: both are valid NUL-terminated paths; renameat2 touches nothing else.
            let status = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            if status == 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EEXIST) => return Err(exists()),
                Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP) => {} // fall back below
                _ => return Err(Error::io(to, err)),
            }
        }
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from).map_err(|e| Error::io(to, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(Error::io(to, e)),
    }
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp_name = format!(
        ".{}.{}-{nanos}.tmp",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(temp_name))
}

/// Writes the safetensors file to `temp` (created here, named with this process's id) and syncs
/// it to disk. The layout is safetensors' own: tensors sorted by descending dtype alignment, then
/// name; header padded with spaces to a multiple of 8 bytes.
fn write_synced(
    temp: &Path,
    dest: &Path,
    tensors: &[TensorRef],
    header: HashMap<String, String>,
) -> Result<()> {
    let mut order: Vec<&TensorRef> = tensors.iter().collect();
    order.sort_by(|a, b| b.dtype.cmp(&a.dtype).then(a.name.cmp(&b.name)));
    let mut offset = 0;
    let mut infos = Vec::with_capacity(order.len());
    for t in &order {
        let end = offset + t.data.len();
        infos.push((
            t.name.clone(),
            TensorInfo {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let metadata =
        Metadata::new(Some(header), infos).map_err(|e| Error::format(HEADER, e.to_string()))?;
    // Through serde_json's sorted map, so the same tensors and metadata always give the same bytes.
    let mut header_bytes = serde_json::to_value(&metadata)
        .map_err(|e| Error::format(HEADER, e.to_string()))?
        .to_string()
        .into_bytes();
    header_bytes.resize(header_bytes.len().next_multiple_of(HEADER_LEN_BYTES), b' ');
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(|e| Error::io(dest, e))?;
    let io = |e| Error::io(dest, e);
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &file);
    writer
        .write_all(&(header_bytes.len() as u64).to_le_bytes())
        .map_err(io)?;
    writer.write_all(&header_bytes).map_err(io)?;
    for t in order {
        writer.write_all(t.data).map_err(io)?;
    }
    writer.flush().map_err(io)?;
    drop(writer);
    file.sync_all().map_err(io)
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Directories cannot be opened for syncing everywhere; where they can, the rename is durable.
    if let Ok(dir) = File::open(parent) {
        dir.sync_all().map_err(|e| Error::io(parent, e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, directory sync): for small
/// companion files such as a shard index.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path)?;
    let result = (|| {
        check_destination(path, Commit::Replace)?;
        let mut file = File::create(&temp).map_err(|e| Error::io(path, e))?;
        file.write_all(bytes).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Checkpoint;

    fn layer_tensors(scb: &[f32]) -> (Vec<u8>, Vec<u8>) {
        let weight: Vec<u8> = (0..scb.len() * 3).map(|i| i as u8).collect();
        let scb = scb.iter().flat_map(|v| v.to_le_bytes()).collect();
        (weight, scb)
    }

    fn refs<'a>(weight: &'a [u8], scb: &'a [u8], rows: usize) -> Vec<TensorRef<'a>> {
        vec![
            TensorRef {
                name: "l.weight".into(),
                dtype: Dtype::I8,
                shape: vec![rows, 3],
                data: weight,
            },
            TensorRef {
                name: "l.SCB".into(),
                dtype: Dtype::F32,
                shape: vec![rows],
                data: scb,
            },
            TensorRef {
                name: "l.weight_format".into(),
                dtype: Dtype::U8,
                shape: vec![],
                data: &[0],
            },
        ]
    }

    fn offending(result: Result<Checkpoint>) -> String {
        match result {
            Err(Error::Format { tensor, .. }) => tensor,
            Err(other) => panic!("expected a format error, got {other:?}"),
            Ok(_) => panic!("expected a format error, got a checkpoint"),
        }
    }

    #[test]
    fn round_trip_keeps_bytes_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let (weight, scb) = layer_tensors(&[1.5, 2.0]);
        let meta = HashMap::from([("llmint8.threshold".to_string(), "6.0".to_string())]);
        write(&path, &refs(&weight, &scb, 2), &meta).unwrap();
        let ckpt = Checkpoint::open(&path, true).unwrap();
        assert!(ckpt.is_llmint8());
        assert_eq!(ckpt.metadata()["llmint8.threshold"], "6.0");
        assert_eq!(ckpt.metadata()["format"], "pt");
        let w = ckpt.tensor("l.weight").unwrap();
        assert_eq!(
            (w.dtype, w.shape, w.data),
            (Dtype::I8, &[2usize, 3][..], weight.clone())
        );
        assert_eq!(ckpt.tensor("l.SCB").unwrap().data, &scb[..]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn invalid_layouts_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let (weight, scb) = layer_tensors(&[1.0, f32::INFINITY]);
        let err = write(&path, &refs(&weight, &scb, 2), &HashMap::new()).unwrap_err();
        assert!(matches!(err, Error::Format { ref tensor, .. } if tensor == "l.SCB"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let reserved = HashMap::from([(CHECKSUMS_KEY.to_string(), "{}".to_string())]);
        let (weight, scb) = layer_tensors(&[1.0, 1.0]);
        assert!(write(&path, &refs(&weight, &scb, 2), &reserved).is_err());
    }

    /// A valid one-layer file `m.safetensors` in a fresh directory (kept alive by the caller).
    fn written_layer() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        write(&path, &refs(&weight, &scb, 2), &HashMap::new()).unwrap();
        (dir, path)
    }

    #[test]
    fn a_flipped_byte_is_caught_by_its_checksum() {
        let (_dir, path) = written_layer();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1; // inside the last tensor's data
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let ckpt = Checkpoint::open(&path, true);
        let name = match ckpt {
            Ok(c) => {
                let names = c.names();
                names
                    .into_iter()
                    .find(|n| c.tensor(n).is_err())
                    .expect("one tensor fails its checksum")
            }
            Err(e) => offending(Err(e)),
        };
        assert!(name.starts_with("l."));
        // Opting out of verification reads the (corrupted) bytes as they are.
        let unchecked = Checkpoint::open(&path, false);
        if let Ok(c) = unchecked {
            for n in c.names() {
                c.tensor(&n).unwrap();
            }
        }
    }

    #[test]
    fn truncated_and_garbage_files_are_format_errors() {
        let (dir, path) = written_layer();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert_eq!(offending(Checkpoint::open(&path, true)), HEADER);
        }
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        std::fs::write(&path, &huge).unwrap();
        assert_eq!(offending(Checkpoint::open(&path, true)), HEADER);
        assert!(matches!(
            Checkpoint::open(&dir.path().join("missing"), true),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        let meta: HashMap<String, String> =
            (0..16).map(|i| (format!("k{i}"), i.to_string())).collect();
        let files: Vec<Vec<u8>> = ["a", "b"]
            .iter()
            .map(|name| {
                let path = dir.path().join(name);
                write(
                    &path,
                    &refs(&weight, &scb, 2),
                    &meta.clone().into_iter().collect(),
                )
                .unwrap();
                std::fs::read(path).unwrap()
            })
            .collect();
        assert_eq!(files[0], files[1]);
    }

    #[test]
    fn a_damaged_format_marker_does_not_turn_off_the_checksums() {
        let (_dir, path) = written_layer();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(FORMAT_KEY.len() + 2)
            .position(|w| w == format!("\"{FORMAT_KEY}\"").as_bytes())
            .unwrap();
        bytes[at + 5] ^= 0x01; // "llmint8.format" -> "llmhnt8.format"
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01; // and a data byte
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(offending(Checkpoint::open(&path, true)), HEADER);
    }

    #[test]
    fn foreign_files_are_read_without_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bnb.safetensors");
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        let tensors = refs(&weight, &scb, 2);
        let views = tensors.iter().map(|t| (t.name.as_str(), t));
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(meta), &path).unwrap();
        let ckpt = Checkpoint::open(&path, true).unwrap();
        assert!(!ckpt.is_llmint8());
        assert_eq!(ckpt.tensor("l.weight").unwrap().data, &weight[..]);
    }

    #[test]
    fn atomic_bytes_replace_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        write_bytes_atomic(&path, b"one").unwrap();
        write_bytes_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_keeps_an_existing_file_and_one_of_two_racing_writers_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        let tensors = refs(&weight, &scb, 2);
        std::fs::write(&path, b"keep me").unwrap();
        let err = write_new(&path, &tensors, &HashMap::new()).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        std::fs::remove_file(&path).unwrap();
        // Both writers pass the up-front check; the move into place lets exactly one win.
        let outcomes: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| write_new(&path, &tensors, &HashMap::new()).is_ok()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(outcomes.iter().any(|ok| *ok));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        Checkpoint::open(&path, true).unwrap();
    }

    #[test]
    fn errors_name_the_destination_never_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        let tensors = refs(&weight, &scb, 2);
        let missing = dir.path().join("no-such-dir").join("m.safetensors");
        let message = write(&missing, &tensors, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("does not exist"), "{message}");
        assert!(
            !message.contains(".m.safetensors."),
            "a temporary name: {message}"
        );
        let message = write(dir.path(), &tensors, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(message.contains("is a directory"), "{message}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_metadata_values_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let (weight, scb) = layer_tensors(&[1.0, 2.0]);
        let meta = HashMap::from([("llmint8.threshold".to_string(), "nan".to_string())]);
        let err = write(&path, &refs(&weight, &scb, 2), &meta).unwrap_err();
        assert!(matches!(err, Error::Format { ref tensor, .. } if tensor == "llmint8.threshold"));
        assert!(!path.exists());
    }
}
