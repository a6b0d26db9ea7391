//! Reading checkpoint files: the header parsed and validated on open, each tensor copied out with
//! positioned reads when asked for.
//!
//! The reader does not memory-map the file: a mapped file that another process truncates kills
//! the reader with SIGBUS on the next touched page, and no error handling can catch that. With
//! positioned reads a file that shrinks under the reader gives a `FormatError` naming the tensor
//! that could not be read, and a file changed in place fails its checksums. Each tensor costs one
//! copy either way (from the page cache into the returned buffer), as copying out of a mapping did.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use crate::dtype;
use crate::error::{Error, Result};
use crate::format::{tensor_checksum, CHECKSUMS_KEY, FORMAT_KEY, FORMAT_NAME, VERSION_KEY};
use crate::layout::{self, Entry};
use crate::metadata::{self, metadata_checksum, METADATA_CHECKSUM_KEY};
use crate::unique_keys::first_repeated_key;

const HEADER: &str = "<header>";
const FILE: &str = "<file>";
const HEADER_LEN_BYTES: usize = 8;
/// safetensors' own bound on the header (JSON) size.
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Format versions this reader accepts; version 1 files carry no metadata checksum.
const READABLE_VERSIONS: &[&str] = &["1", crate::format::FORMAT_VERSION];

/// A checkpoint file opened for reading: header parsed and validated.
pub struct Checkpoint {
    path: PathBuf,
    file: File,
    data_start: u64,
    header: Metadata,
    metadata: HashMap<String, String>,
    checksums: Option<HashMap<String, String>>,
    verify_checksums: bool,
}

/// A tensor read from a checkpoint: its bytes copied out of the file.
pub struct TensorData<'a> {
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub data: Vec<u8>,
}

/// Whether any metadata key or value names llmint8 (every llmint8 file has several such entries).
fn mentions_llmint8(metadata: &HashMap<String, String>) -> bool {
    metadata
        .iter()
        .any(|(key, value)| key.contains(FORMAT_NAME) || value == FORMAT_NAME)
}

/// Opens `path` for reading, refusing what is not a regular file before anything can block on it
/// (opening a FIFO waits for a writer; a directory opens but cannot be read).
fn open_regular(path: &Path) -> Result<File> {
    let kind = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    check_regular(path, &kind)?;
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never blocks, should the path have become a FIFO since the check above.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io(path, e))?;
    let opened = file.metadata().map_err(|e| Error::io(path, e))?;
    check_regular(path, &opened)?;
    Ok(file)
}

fn check_regular(path: &Path, kind: &std::fs::Metadata) -> Result<()> {
    if kind.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory, not a checkpoint file",
            ),
        ));
    }
    if !kind.is_file() {
        return Err(Error::format(
            FILE,
            format!(
                "{} is not a regular file (a FIFO, socket or device); checkpoints are read from \
                 regular files",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Fills `buf` from `file` at `offset`; `None` when the file ends first.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<Option<()>> {
    #[cfg(unix)]
    let result = std::os::unix::fs::FileExt::read_exact_at(file, buf, offset);
    #[cfg(windows)]
    let result = {
        use std::os::windows::fs::FileExt;
        let (mut done, mut result) = (0, Ok(()));
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    result = Err(std::io::ErrorKind::UnexpectedEof.into());
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        result
    };
    match result {
        Ok(()) => Ok(Some(())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

impl Checkpoint {
    /// Opens and validates `path`. With `verify_checksums`, every tensor read is checked against the
    /// checksum recorded when it was written (llmint8 files only).
    pub fn open(path: &Path, verify_checksums: bool) -> Result<Self> {
        let file = open_regular(path)?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let (header_len, header) = read_header(&file, path, len)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let checksums = parse_checksums(&metadata, &header)?;
        let checkpoint = Checkpoint {
            path: path.to_path_buf(),
            file,
            data_start: (HEADER_LEN_BYTES + header_len) as u64,
            header,
            metadata,
            checksums,
            verify_checksums,
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }

    fn validate(&self) -> Result<()> {
        let names = self.names();
        for name in &names {
            if name.is_empty() {
                return Err(Error::format(HEADER, "a tensor with an empty name"));
            }
            let info = self.info(name)?;
            dtype::name_of(info.dtype, name)?;
        }
        // Validation reads the values of the small statistics tensors only (scales, markers,
        // outlier columns), each checked against its checksum first so that corruption is
        // reported as such rather than as a bad value; of every other tensor it reads the header.
        let mut values = HashMap::new();
        for name in names.iter().filter(|n| is_validated_by_value(n)) {
            values.insert(name.as_str(), self.tensor(name)?.data);
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        layout::validate(&names, |name| {
            let info = self.header.info(name)?;
            Some(Entry {
                dtype: info.dtype,
                shape: &info.shape,
                data: values.get(name).map_or(&[][..], Vec::as_slice),
            })
        })
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.header
            .info(name)
            .ok_or_else(|| Error::format(name, "no such tensor in the file"))
    }

    /// Tensor names in file order.
    pub fn names(&self) -> Vec<String> {
        self.header.offset_keys()
    }

    /// The header's free-form metadata, including llmint8's own keys.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Whether the file was written by llmint8 (and so carries checksums).
    pub fn is_llmint8(&self) -> bool {
        self.checksums.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(dtype, shape)` of one tensor, without touching its data.
    pub fn tensor_info(&self, name: &str) -> Result<(Dtype, &[usize])> {
        let info = self.info(name)?;
        Ok((info.dtype, &info.shape))
    }

    /// One tensor, its checksum verified (when enabled and recorded).
    pub fn tensor(&self, name: &str) -> Result<TensorData<'_>> {
        let info = self.info(name)?;
        let mut data = vec![0u8; info.data_offsets.1 - info.data_offsets.0];
        self.read_into(name, &mut data)?;
        Ok(TensorData {
            dtype: info.dtype,
            shape: &info.shape,
            data,
        })
    }

    /// The number of bytes of one tensor's data.
    pub fn tensor_len(&self, name: &str) -> Result<usize> {
        let (start, end) = self.info(name)?.data_offsets;
        Ok(end - start)
    }

    /// Reads one tensor's bytes into `out` (exactly [`Self::tensor_len`] bytes; the caller
    /// chooses the memory, e.g. a numpy array, so that nothing is copied twice), its checksum
    /// verified (when enabled and recorded).
    pub fn read_into(&self, name: &str, out: &mut [u8]) -> Result<()> {
        let info = self.info(name)?;
        let (start, end) = info.data_offsets;
        if out.len() != end - start {
            return Err(Error::format(
                name,
                format!(
                    "a buffer of {} bytes for {} bytes of data",
                    out.len(),
                    end - start
                ),
            ));
        }
        let found = read_at(&self.file, out, self.data_start + start as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        if found.is_none() {
            return Err(Error::format(
                name,
                format!(
                    "{} ended before this tensor's bytes: the file was truncated while it was \
                     being read",
                    self.path.display()
                ),
            ));
        }
        if self.verify_checksums {
            if let Some(expected) = self.checksums.as_ref().and_then(|c| c.get(name)) {
                let actual = tensor_checksum(info.dtype, &info.shape, out);
                if &actual != expected {
                    return Err(Error::format(
                        name,
                        format!(
                            "checksum mismatch (recorded {expected}, computed {actual}): the file \
                             is corrupted"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads and parses the header (length prefix, JSON) with the checks safetensors' own parser
/// makes, plus: no key may appear twice, and the data must end exactly at the end of the file.
fn read_header(file: &File, path: &Path, len: u64) -> Result<(usize, Metadata)> {
    let short = || {
        Error::format(
            HEADER,
            format!(
                "{} is {len} bytes, too short for a safetensors file",
                path.display()
            ),
        )
    };
    let mut prefix = [0u8; HEADER_LEN_BYTES];
    read_at(file, &mut prefix, 0)
        .map_err(|e| Error::io(path, e))?
        .ok_or_else(short)?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::format(
            HEADER,
            format!("header length {header_len} is over the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if HEADER_LEN_BYTES as u64 + header_len > len {
        return Err(Error::format(
            HEADER,
            format!(
                "header length {header_len} runs past the end of the {len}-byte file {}",
                path.display()
            ),
        ));
    }
    let mut bytes = vec![0u8; header_len as usize];
    read_at(file, &mut bytes, HEADER_LEN_BYTES as u64)
        .map_err(|e| Error::io(path, e))?
        .ok_or_else(short)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::format(HEADER, format!("the header is not UTF-8: {e}")))?;
    let header: Metadata = serde_json::from_str(text).map_err(|e| {
        Error::format(
            HEADER,
            format!("{}: invalid safetensors header: {e}", path.display()),
        )
    })?;
    if let Some(key) = first_repeated_key(text) {
        return Err(Error::format(
            HEADER,
            format!("the key {key} appears twice in the header"),
        ));
    }
    let expected_len = (HEADER_LEN_BYTES + bytes.len() + header.data_len()) as u64;
    if expected_len != len {
        return Err(Error::format(
            HEADER,
            format!(
                "the header describes a {expected_len}-byte file, {} is {len} bytes",
                path.display()
            ),
        ));
    }
    Ok((bytes.len(), header))
}

fn parse_checksums(
    metadata: &HashMap<String, String>,
    header: &Metadata,
) -> Result<Option<HashMap<String, String>>> {
    match metadata.get(FORMAT_KEY).map(String::as_str) {
        // A file is foreign only when nothing in its metadata names llmint8: a damaged marker
        // must not turn an llmint8 file into one read without checksums.
        None if !mentions_llmint8(metadata) => return Ok(None),
        None => {
            return Err(Error::format(
                HEADER,
                format!("llmint8 metadata without its {FORMAT_KEY} marker: the header is damaged"),
            ))
        }
        Some(FORMAT_NAME) => {}
        Some(other) => {
            return Err(Error::format(
                HEADER,
                format!("{FORMAT_KEY} is {other:?}, expected {FORMAT_NAME:?}"),
            ))
        }
    }
    let version = metadata.get(VERSION_KEY).map(String::as_str);
    if !version.is_some_and(|v| READABLE_VERSIONS.contains(&v)) {
        return Err(Error::format(
            HEADER,
            format!(
                "{VERSION_KEY} is {version:?}; this llmint8 reads versions {READABLE_VERSIONS:?}"
            ),
        ));
    }
    // Version 1 files predate the metadata checksum; from version 2 on it is required, and once
    // present it is checked whatever the version says.
    match metadata.get(METADATA_CHECKSUM_KEY) {
        Some(recorded) => {
            let actual = metadata_checksum(metadata);
            if &actual != recorded {
                return Err(Error::format(
                    METADATA_CHECKSUM_KEY,
                    format!(
                        "metadata checksum mismatch (recorded {recorded}, computed {actual}): \
                         the header's metadata was changed"
                    ),
                ));
            }
        }
        None if version == Some("1") => {}
        None => {
            return Err(Error::format(
                HEADER,
                format!("an llmint8 file without {METADATA_CHECKSUM_KEY}"),
            ))
        }
    }
    metadata::validate(metadata)?;
    let raw = metadata
        .get(CHECKSUMS_KEY)
        .ok_or_else(|| Error::format(HEADER, format!("an llmint8 file without {CHECKSUMS_KEY}")))?;
    let parsed: HashMap<String, String> = serde_json::from_str(raw)
        .map_err(|e| Error::format(HEADER, format!("{CHECKSUMS_KEY} is not valid: {e}")))?;
    let names = header.tensors();
    if let Some(name) = names.keys().find(|n| !parsed.contains_key(*n)) {
        return Err(Error::format(name, "has no recorded checksum"));
    }
    if let Some(name) = parsed.keys().find(|n| !names.contains_key(*n)) {
        return Err(Error::format(
            name,
            "has a recorded checksum but is missing from the file",
        ));
    }
    Ok(Some(parsed))
}

fn is_validated_by_value(name: &str) -> bool {
    let leaf = name.rsplit_once('.').map_or(name, |(_, leaf)| leaf);
    matches!(
        leaf,
        layout::SCALES
            | layout::WEIGHT_FORMAT
            | layout::OUTLIER_COLS
            | layout::OUTLIER_COUNTS
            | layout::OUTLIER_BATCHES
    )
}
