//! Python bindings (`llmint8._core`): type and error conversion only; the logic lives in the
//! framework-free modules beside this one.

use std::collections::HashMap;
use std::path::PathBuf;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyPermissionError,
    PyValueError,
};
use pyo3::prelude::*;

use crate::buffer_pool;
use crate::dtype;
use crate::epilogue;
use crate::error::Error;
use crate::format::{self, TensorRef};
use crate::int8_linear as linear;
use crate::int8_product as product;
use crate::metadata;
use crate::outliers::{self, OutlierStats};
use crate::pack::{self, TileShape};
use crate::reader::Checkpoint;

create_exception!(
    llmint8,
    FormatError,
    PyValueError,
    "A checkpoint or state dict breaks the llmint8 format; the message names the tensor."
);
create_exception!(
    llmint8,
    PackingError,
    PyValueError,
    "Arguments to a packing function that describe no valid layout."
);
create_exception!(
    llmint8,
    ShapeError,
    PyValueError,
    "Operands whose shapes do not fit the operation."
);
create_exception!(
    llmint8,
    OutlierError,
    PyValueError,
    "Outlier column indices or masks that do not fit the layer's columns."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::Format { .. } => FormatError::new_err(message),
            Error::Packing(_) => PackingError::new_err(message),
            Error::Outliers(_) => OutlierError::new_err(message),
            Error::Shape(_) => ShapeError::new_err(message),
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
                std::io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(message),
                std::io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
                _ => PyOSError::new_err(message),
            },
        }
    }
}

fn contiguous<'a, T: numpy::Element>(
    array: &'a PyReadonlyArray1<T>,
    what: &str,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a contiguous 1-D array")))
}

/// The elements of a row-major (C-contiguous) 2-D array; `as_slice` alone also takes a
/// column-major one, whose elements would then be read in the wrong order.
fn c_contiguous<'a, T: numpy::Element>(
    array: &'a PyReadonlyArray2<T>,
    what: &str,
) -> PyResult<&'a [T]> {
    match array.as_slice() {
        Ok(data) if array.is_c_contiguous() => Ok(data),
        _ => Err(ShapeError::new_err(format!("{what} must be C-contiguous"))),
    }
}

/// Writes tensors `(name, dtype name, shape, uint8 bytes)` and string metadata to `path`
/// atomically, after validating the int8 layer layout and llmint8's metadata values. Adds
/// checksums and the format marker. `overwrite=False` refuses (`FileExistsError`) an existing
/// `path`, also one another writer creates meanwhile.
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata, overwrite = true))]
fn write_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    tensors: Vec<(String, String, Vec<usize>, PyReadonlyArray1<'_, u8>)>,
    metadata: HashMap<String, String>,
    overwrite: bool,
) -> PyResult<()> {
    let mut refs = Vec::with_capacity(tensors.len());
    for (name, dtype_name, shape, bytes) in &tensors {
        refs.push(TensorRef {
            dtype: dtype::from_name(dtype_name, name)?,
            name: name.clone(),
            shape: shape.clone(),
            data: contiguous(bytes, name)?,
        });
    }
    if overwrite {
        py.detach(|| format::write(&path, &refs, &metadata))?;
    } else {
        py.detach(|| format::write_new(&path, &refs, &metadata))?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically (for small companion files such as shard indices).
#[pyfunction]
fn write_bytes_atomic(py: Python<'_>, path: PathBuf, data: &[u8]) -> PyResult<()> {
    py.detach(|| format::write_bytes_atomic(&path, data))?;
    Ok(())
}

/// A checkpoint file, its header validated on open. Tensors are read when asked for and come back
/// as uint8 arrays of their raw little-endian bytes, with their dtype name and shape.
#[pyclass(module = "llmint8._core", frozen)]
struct CheckpointReader {
    inner: Checkpoint,
}

#[pymethods]
impl CheckpointReader {
    #[new]
    #[pyo3(signature = (path, verify_checksums = true))]
    fn new(py: Python<'_>, path: PathBuf, verify_checksums: bool) -> PyResult<Self> {
        let inner = py.detach(|| Checkpoint::open(&path, verify_checksums))?;
        Ok(Self { inner })
    }

    /// Tensor names in file order.
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    /// The header's metadata (string to string).
    fn metadata(&self) -> HashMap<String, String> {
        self.inner.metadata().clone()
    }

    /// Whether llmint8 wrote the file (and so it carries per-tensor checksums).
    #[getter]
    fn is_llmint8(&self) -> bool {
        self.inner.is_llmint8()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// `(dtype name, shape)` of one tensor, without reading its data.
    fn info(&self, name: &str) -> PyResult<(String, Vec<usize>)> {
        let (dtype, shape) = self.inner.tensor_info(name)?;
        Ok((dtype::name_of(dtype, name)?.to_string(), shape.to_vec()))
    }

    /// `(dtype name, shape, bytes)` of one tensor; the bytes are read from the file straight
    /// into the returned array (numpy's allocation: large arrays get huge pages) and their
    /// checksum verified.
    fn read<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(String, Vec<usize>, Bound<'py, PyArray1<u8>>)> {
        let (dtype, shape) = self.inner.tensor_info(name)?;
        let dtype_name = dtype::name_of(dtype, name)?.to_string();
        let shape = shape.to_vec();
        let array = PyArray1::<u8>::zeros(py, self.inner.tensor_len(name)?, false);
        {
            let mut view = array.readwrite();
            let out = view
                .as_slice_mut()
                .expect("a fresh 1-D array is contiguous");
            py.detach(|| self.inner.read_into(name, out))?;
        }
        Ok((dtype_name, shape, array))
    }

    fn __len__(&self) -> usize {
        self.inner.names().len()
    }

    fn __repr__(&self) -> String {
        format!(
            "CheckpointReader({:?}, tensors={}, llmint8={})",
            self.inner.path(),
            self.inner.names().len(),
            self.inner.is_llmint8()
        )
    }
}

/// Packs int4 values (int8 array, each in [-8, 7]) two per byte, low nibble first.
#[pyfunction]
fn pack_int4<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, i8>,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let packed = pack::pack_int4(contiguous(&values, "values")?)?;
    Ok(PyArray1::from_vec(py, packed))
}

/// Inverse of `pack_int4`: `count` int4 values as int8.
#[pyfunction]
fn unpack_int4<'py>(
    py: Python<'py>,
    packed: PyReadonlyArray1<'py, u8>,
    count: usize,
) -> PyResult<Bound<'py, PyArray1<i8>>> {
    let values = pack::unpack_int4(contiguous(&packed, "packed")?, count)?;
    Ok(PyArray1::from_vec(py, values))
}

/// Re-lays a row-major int8 matrix as zero-padded `[tile_rows, tile_cols]` tiles (1-D result).
#[pyfunction]
fn tile_int8<'py>(
    py: Python<'py>,
    matrix: PyReadonlyArray2<'py, i8>,
    tile_rows: usize,
    tile_cols: usize,
) -> PyResult<Bound<'py, PyArray1<i8>>> {
    let (rows, cols) = (matrix.shape()[0], matrix.shape()[1]);
    let data = c_contiguous(&matrix, "matrix")?;
    let shape = TileShape {
        rows,
        cols,
        tile_rows,
        tile_cols,
    };
    let tiled = py.detach(|| pack::tile(data, shape))?;
    Ok(PyArray1::from_vec(py, tiled))
}

/// Inverse of `tile_int8`: the `[rows, cols]` row-major matrix.
#[pyfunction]
fn untile_int8<'py>(
    py: Python<'py>,
    tiled: PyReadonlyArray1<'py, i8>,
    rows: usize,
    cols: usize,
    tile_rows: usize,
    tile_cols: usize,
) -> PyResult<Bound<'py, PyArray2<i8>>> {
    let data = contiguous(&tiled, "tiled")?;
    let shape = TileShape {
        rows,
        cols,
        tile_rows,
        tile_cols,
    };
    let matrix = py.detach(|| pack::untile(data, shape))?;
    let flat = PyArray1::from_vec(py, matrix);
    flat.reshape([rows, cols])
}

/// Exact int32 `a @ b.T` of C-contiguous int8 `a` [rows, k] and `b` [n, k] (few rows of
/// activations against a weight: each weight row read once; threads over the weight's rows).
#[pyfunction]
fn int8_product<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, i8>,
    b: PyReadonlyArray2<'py, i8>,
) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (rows, k) = (a.shape()[0], a.shape()[1]);
    let (n, k_b) = (b.shape()[0], b.shape()[1]);
    if k != k_b {
        return Err(ShapeError::new_err(format!(
            "int8 product: a is [{rows}, {k}] and b [{n}, {k_b}]: their columns differ"
        )));
    }
    let a = c_contiguous(&a, "int8 product: a")?;
    let b = c_contiguous(&b, "int8 product: b")?;
    let out = py.detach(|| product::int8_product(a, rows, b, n, k))?;
    PyArray1::from_vec(py, out).reshape([rows, n])
}

/// Float values as the core takes them (`linear::Activations`) from a C-contiguous array of
/// `kind` "float32" (its values) or "float16" / "bfloat16" (their bits as uint16), with its
/// shape, handed to `f`.
fn with_floats<R>(
    array: &Bound<'_, PyAny>,
    kind: &str,
    what: &str,
    f: impl FnOnce(linear::Activations, &[usize]) -> PyResult<R>,
) -> PyResult<R> {
    let contiguous = |dims: &[usize], c_order: bool| {
        if c_order {
            Ok(dims.to_vec())
        } else {
            Err(ShapeError::new_err(format!("{what} must be C-contiguous")))
        }
    };
    match kind {
        "float32" => {
            let values: PyReadonlyArrayDyn<f32> = array.extract()?;
            let shape = contiguous(values.shape(), values.is_c_contiguous())?;
            f(linear::Activations::F32(values.as_slice()?), &shape)
        }
        "float16" | "bfloat16" => {
            let bits: PyReadonlyArrayDyn<u16> = array.extract()?;
            let shape = contiguous(bits.shape(), bits.is_c_contiguous())?;
            let bits = bits.as_slice()?;
            f(
                if kind == "float16" {
                    linear::Activations::F16(bits)
                } else {
                    linear::Activations::Bf16(bits)
                },
                &shape,
            )
        }
        other => Err(ShapeError::new_err(format!(
            "{what}: values of kind {other:?} (float32, float16 or bfloat16)"
        ))),
    }
}

/// `f` with the bias, where given (`with_floats`; one dimension).
fn with_bias<R>(
    bias: Option<&Bound<'_, PyAny>>,
    kind: &str,
    what: &str,
    f: impl FnOnce(Option<linear::Activations>) -> PyResult<R>,
) -> PyResult<R> {
    match bias {
        None => f(None),
        Some(bias) => with_floats(bias, kind, what, |values, shape| {
            if shape.len() != 1 {
                return Err(ShapeError::new_err(format!("{what} must be 1-D")));
            }
            f(Some(values))
        }),
    }
}

/// The CPU forward's output [rows, n] and the outlier columns it found.
type LinearOutput<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<i64>>);

/// LLM.int8()'s forward on the CPU (`int8_linear`): C-contiguous activations `x` [rows, k] as
/// float32 values or float16 / bfloat16 bits (`kind`: "float32", "float16", "bfloat16"), the
/// weight's int8 rows `cb` [n, k] and scales `scb` [n], outlier columns from `threshold` or the
/// ascending-or-not `static_cols`, the `bias` [n] where given (of `bias_kind`, as `kind`).
/// Returns the output [rows, n] float32 and the outlier columns found (int64, ascending; empty
/// with static columns).
#[pyfunction]
#[pyo3(signature = (x, kind, cb, scb, threshold, static_cols = None, bias = None,
                    bias_kind = "float32"))]
#[allow(clippy::too_many_arguments)]
fn int8_linear<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    kind: &str,
    cb: PyReadonlyArray2<'py, i8>,
    scb: PyReadonlyArray1<'py, f32>,
    threshold: f32,
    static_cols: Option<PyReadonlyArray1<'py, i64>>,
    bias: Option<&Bound<'py, PyAny>>,
    bias_kind: &str,
) -> PyResult<LinearOutput<'py>> {
    let (n, k) = (cb.shape()[0], cb.shape()[1]);
    let cb = c_contiguous(&cb, "int8 linear: cb")?;
    let scb = scb
        .as_slice()
        .map_err(|_| ShapeError::new_err("int8 linear: scb must be contiguous"))?;
    let cols: Option<Vec<usize>> = match &static_cols {
        None => None,
        Some(cols) => Some(
            cols.as_array()
                .iter()
                .map(|&c| usize::try_from(c))
                .collect::<Result<_, _>>()
                .map_err(|_| OutlierError::new_err("int8 linear: a negative outlier column"))?,
        ),
    };
    let outliers = match &cols {
        Some(cols) => linear::Outliers::Static(cols),
        None => linear::Outliers::Threshold(threshold),
    };
    let (rows, result) = with_floats(x, kind, "int8 linear: x", |values, shape| {
        let &[rows, xk] = shape else {
            return Err(ShapeError::new_err("int8 linear: x must be 2-D"));
        };
        if xk != k {
            return Err(ShapeError::new_err(format!(
                "int8 linear: x has {xk} columns and cb [{n}, {k}]"
            )));
        }
        with_bias(bias, bias_kind, "int8 linear: bias", |bias| {
            py.detach(|| linear::int8_linear(values, rows, k, cb, n, scb, outliers, bias))
                .map(|f| (rows, f))
                .map_err(PyErr::from)
        })
    })?;
    let out = output_array(py, result.out, rows, n)?;
    let found = result.outlier_cols.into_iter().map(|c| c as i64).collect();
    Ok((out, PyArray1::from_vec(py, found)))
}

/// An output buffer of the core's pool (`buffer_pool::OUTPUTS`) behind a numpy array: back to
/// the pool when the array (and every tensor viewing it) is freed.
#[pyclass(module = "llmint8._core", frozen)]
struct PooledOutput {
    values: Vec<f32>,
}

impl Drop for PooledOutput {
    fn drop(&mut self) {
        buffer_pool::OUTPUTS.give(std::mem::take(&mut self.values));
    }
}

/// `values` as a [rows, n] array: backed by a `PooledOutput` where the pool takes buffers of its
/// size, else owning them as any vector.
fn output_array(
    py: Python<'_>,
    values: Vec<f32>,
    rows: usize,
    n: usize,
) -> PyResult<Bound<'_, PyArray2<f32>>> {
    if values.len() * 4 < buffer_pool::MIN_BYTES {
        return PyArray1::from_vec(py, values).reshape([rows, n]);
    }
    let owner = Bound::new(py, PooledOutput { values })?;
    let (data, len) = (owner.get().values.as_ptr(), owner.get().values.len());
    // SAFETY: the values live in `owner`, which the array keeps as its base object until it is
    // freed, and nothing reallocates or moves them meanwhile (the owner is frozen).
    let values = unsafe { std::slice::from_raw_parts(data, len) };
    let view = numpy::ndarray::ArrayView2::from_shape((rows, n), values)
        .map_err(|err| ShapeError::new_err(format!("int8 linear output: {err}")))?;
    // SAFETY: as above.
    Ok(unsafe { PyArray2::borrow_from_array(&view, owner.into_any()) })
}

/// Frees the buffers the CPU forward keeps (`buffer_pool`); returns the bytes freed.
#[pyfunction]
fn free_kept_buffers() -> usize {
    buffer_pool::clear()
}

/// The float end of the CPU's forward (`epilogue`), in place: `out` [rows, n] float32 plus the
/// product of the outlier columns, the activations' `x_cols` [rows, c] by the dequantized weight's
/// `weight_cols` [c, n] (float32, C-contiguous), plus the `bias` [n] where given (of `bias_kind`:
/// "float32", "float16" or "bfloat16" bits).
#[pyfunction]
#[pyo3(signature = (out, x_cols, weight_cols, bias = None, bias_kind = "float32"))]
fn linear_epilogue(
    py: Python<'_>,
    mut out: PyReadwriteArray2<'_, f32>,
    x_cols: PyReadonlyArray2<'_, f32>,
    weight_cols: PyReadonlyArray2<'_, f32>,
    bias: Option<&Bound<'_, PyAny>>,
    bias_kind: &str,
) -> PyResult<()> {
    let (rows, n) = (out.shape()[0], out.shape()[1]);
    let c = x_cols.shape()[1];
    if x_cols.shape()[0] != rows || weight_cols.shape() != [c, n] {
        return Err(ShapeError::new_err(format!(
            "linear epilogue: out [{rows}, {n}], x_cols {:?} and weight_cols {:?}",
            x_cols.shape(),
            weight_cols.shape()
        )));
    }
    let x_cols = c_contiguous(&x_cols, "linear epilogue: x_cols")?;
    let weight_cols = c_contiguous(&weight_cols, "linear epilogue: weight_cols")?;
    if !out.is_c_contiguous() {
        return Err(ShapeError::new_err(
            "linear epilogue: out must be C-contiguous",
        ));
    }
    let out = out.as_slice_mut()?;
    with_bias(bias, bias_kind, "linear epilogue: bias", |bias| {
        let bias = bias.map(linear::Activations::to_f32);
        py.detach(|| {
            epilogue::add_outliers_and_bias(out, (rows, n, c), x_cols, weight_cols, bias.as_deref())
        })
        .map_err(PyErr::from)
    })
}

/// The instructions the core's blocked int8 product runs on with this CPU: "amx", "avx512vnni",
/// "avx2" or "portable".
#[pyfunction]
fn int8_product_kernel() -> &'static str {
    product::blocked_kernel()
}

/// Caps the instructions the CPU products and passes use from now on (`cpu_features`): "native"
/// (all the CPU has), "avx2" (AVX2 and FMA at most) or "portable" (none of them); returns the cap
/// in force.
#[pyfunction]
fn cap_cpu_instructions(name: &str) -> PyResult<&'static str> {
    let cap = crate::cpu_features::Cap::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "CPU instructions {name:?}: expected \"native\", \"avx2\" or \"portable\""
        ))
    })?;
    crate::cpu_features::cap(cap);
    Ok(crate::cpu_features::capped().name())
}

/// Whether the CPU products' threads are those of the OpenMP runtime the process has loaded
/// (`enable`, where one is loaded) rather than rayon's; returns whether they are now.
#[pyfunction]
fn share_openmp_threads(enable: bool) -> bool {
    crate::openmp::share_threads(enable)
}

fn to_i64(indices: Vec<u32>) -> Vec<i64> {
    indices.into_iter().map(i64::from).collect()
}

/// Column indices of the set entries of a boolean mask, ascending (int64).
#[pyfunction]
fn mask_to_indices<'py>(
    py: Python<'py>,
    mask: PyReadonlyArray1<'py, bool>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let indices = outliers::mask_to_indices(contiguous(&mask, "mask")?);
    Ok(PyArray1::from_vec(py, to_i64(indices)))
}

/// Sorted unique column indices, each checked to lie in [0, n_cols).
#[pyfunction]
fn sorted_unique<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray1<'py, i64>,
    n_cols: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let out = outliers::sorted_unique(contiguous(&indices, "indices")?, n_cols)?;
    Ok(PyArray1::from_vec(py, to_i64(out)))
}

/// Union of two index sets over `n_cols` columns, sorted and unique.
#[pyfunction]
fn union_indices<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, i64>,
    b: PyReadonlyArray1<'py, i64>,
    n_cols: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let a = outliers::sorted_unique(contiguous(&a, "a")?, n_cols)?;
    let b = outliers::sorted_unique(contiguous(&b, "b")?, n_cols)?;
    Ok(PyArray1::from_vec(py, to_i64(outliers::union(&a, &b))))
}

/// Per-column counts of how many batches each input column was an outlier column in.
#[pyclass(name = "OutlierStats", module = "llmint8._core")]
struct PyOutlierStats {
    inner: OutlierStats,
}

#[pymethods]
impl PyOutlierStats {
    #[new]
    fn new(n_cols: usize) -> Self {
        Self {
            inner: OutlierStats::new(n_cols),
        }
    }

    #[getter]
    fn n_cols(&self) -> usize {
        self.inner.n_cols()
    }

    #[getter]
    fn batches(&self) -> u64 {
        self.inner.batches()
    }

    /// Per-column counts (int64).
    fn counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let counts: Vec<i64> = self.inner.counts().iter().map(|&c| c as i64).collect();
        PyArray1::from_vec(py, counts)
    }

    /// Records one batch from its outlier column indices.
    fn observe_indices(&mut self, indices: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        self.inner
            .observe_indices(contiguous(&indices, "indices")?)?;
        Ok(())
    }

    /// Records one batch from its per-column boolean mask.
    fn observe_mask(&mut self, mask: PyReadonlyArray1<'_, bool>) -> PyResult<()> {
        self.inner.observe_mask(contiguous(&mask, "mask")?)?;
        Ok(())
    }

    /// Adds another set of observations over the same columns.
    fn merge(&mut self, other: PyRef<'_, PyOutlierStats>) -> PyResult<()> {
        self.inner.merge(&other.inner)?;
        Ok(())
    }

    /// Columns seen as outliers in at least `min_fraction` of the batches (int64, ascending).
    fn static_columns<'py>(
        &self,
        py: Python<'py>,
        min_fraction: f64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let columns = self.inner.static_columns(min_fraction)?;
        Ok(PyArray1::from_vec(py, to_i64(columns)))
    }

    fn __repr__(&self) -> String {
        format!(
            "OutlierStats(n_cols={}, batches={})",
            self.inner.n_cols(),
            self.inner.batches()
        )
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("PackingError", py.get_type::<PackingError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("OutlierError", py.get_type::<OutlierError>())?;
    m.add("FORMAT_VERSION", format::FORMAT_VERSION)?;
    m.add("THRESHOLD_KEY", metadata::THRESHOLD_KEY)?;
    m.add("LAYERS_KEY", metadata::LAYERS_KEY)?;
    m.add("ORIGINAL_DTYPE_KEY", metadata::ORIGINAL_DTYPE_KEY)?;
    m.add("SKIPPED_KEY", metadata::SKIPPED_KEY)?;
    m.add(
        "RESERVED_METADATA_KEYS",
        format::RESERVED_METADATA_KEYS.to_vec(),
    )?;
    m.add_function(wrap_pyfunction!(write_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(write_bytes_atomic, m)?)?;
    m.add_class::<CheckpointReader>()?;
    m.add_function(wrap_pyfunction!(pack_int4, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_int4, m)?)?;
    m.add_function(wrap_pyfunction!(tile_int8, m)?)?;
    m.add_function(wrap_pyfunction!(untile_int8, m)?)?;
    m.add_function(wrap_pyfunction!(mask_to_indices, m)?)?;
    m.add_function(wrap_pyfunction!(sorted_unique, m)?)?;
    m.add_function(wrap_pyfunction!(union_indices, m)?)?;
    m.add_function(wrap_pyfunction!(int8_product, m)?)?;
    m.add_function(wrap_pyfunction!(int8_linear, m)?)?;
    m.add_function(wrap_pyfunction!(linear_epilogue, m)?)?;
    m.add_function(wrap_pyfunction!(free_kept_buffers, m)?)?;
    m.add_function(wrap_pyfunction!(share_openmp_threads, m)?)?;
    m.add_function(wrap_pyfunction!(int8_product_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(cap_cpu_instructions, m)?)?;
    m.add_class::<PyOutlierStats>()?;
    Ok(())
}
