//! llmint8's core: the int8 checkpoint format, outlier column bookkeeping, packing and the
//! CPU's exact int8 products.
//!
//! Framework-free: it speaks bytes, slices and paths (and numpy arrays in the optional Python
//! bindings, built by maturin with the `python` feature).

mod amx;
pub mod buffer_pool;
pub mod cpu_features;
pub mod dtype;
pub mod epilogue;
pub mod error;
pub mod format;
pub mod int8_linear;
pub mod int8_product;
pub mod layout;
pub mod metadata;
pub mod openmp;
pub mod outliers;
pub mod pack;
mod quantize;
pub mod reader;
mod unique_keys;

#[cfg(test)]
mod hostile_files;
#[cfg(test)]
mod test_values;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
