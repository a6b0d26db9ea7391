//! The one error type of the core. The Python bindings map each variant to a named exception.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint or state dict breaks the format: `tensor` names the offending entry
    /// (or `<header>` / `<file>` when no single tensor is at fault).
    #[error("{tensor}: {reason}")]
    Format { tensor: String, reason: String },

    /// Arguments to packing functions that cannot describe a valid layout.
    #[error("packing: {0}")]
    Packing(String),

    /// Outlier column indices or masks that do not fit the number of columns.
    #[error("outliers: {0}")]
    Outliers(String),

    /// Operands of a product whose lengths do not match the shapes given.
    #[error("{0}")]
    Shape(String),

    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn format(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
