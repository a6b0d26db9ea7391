//! The threads of an OpenMP runtime already loaded in the process, for the CPU products.
//!
//! A host framework's OpenMP workers keep spinning for milliseconds after each of its parallel
//! operations; a second thread pool (rayon's) started meanwhile shares the cores with them, and
//! on a 2-core machine the core's threaded product then ran 2-5x slower than alone
//! (benches/cpu.md). Running the product's parallel part as a parallel region of that same
//! runtime (`GOMP_parallel`, which libgomp and the LLVM and Intel runtimes all export) hands it to
//! the spinning workers instead. Nothing is loaded here: only a runtime the process has already
//! loaded is found (`dlopen` with `RTLD_NOLOAD`), else the products keep rayon.

use std::ffi::{c_int, c_uint, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

type Parallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
type Query = unsafe extern "C" fn() -> c_int;

/// The entry points of a loaded OpenMP runtime.
#[derive(Clone, Copy)]
pub struct OpenMp {
    parallel: Parallel,
    thread_num: Query,
    num_threads: Query,
    max_threads: Query,
}

/// Shared library names of the OpenMP runtimes looked for, in order.
const RUNTIMES: [&str; 4] = ["libgomp.so.1", "libiomp5.so", "libomp.so", "libomp.so.5"];

static RUNTIME: OnceLock<Option<OpenMp>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether the products run on a loaded OpenMP runtime's threads from now on (`enable`), if
/// one is loaded; returns whether they do.
pub fn share_threads(enable: bool) -> bool {
    let found = enable && loaded().is_some();
    ENABLED.store(found, Ordering::Relaxed);
    found
}

/// The runtime the products run on, if sharing is enabled and one is loaded.
pub fn runtime() -> Option<OpenMp> {
    if ENABLED.load(Ordering::Relaxed) {
        *loaded()
    } else {
        None
    }
}

fn loaded() -> &'static Option<OpenMp> {
    RUNTIME.get_or_init(|| RUNTIMES.iter().find_map(|name| find(name)))
}

#[cfg(unix)]
fn find(name: &str) -> Option<OpenMp> {
    let name = CString::new(name).ok()?;
    // SAFETY: RTLD_NOLOAD only returns a library the process has loaded already (its handle is
    // kept for the process's life); the symbols are the OpenMP ABI's, with these signatures.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let symbol = |s: &str| {
            let s = CString::new(s).ok()?;
            let p = libc::dlsym(handle, s.as_ptr());
            (!p.is_null()).then_some(p)
        };
        Some(OpenMp {
            parallel: std::mem::transmute::<*mut c_void, Parallel>(symbol("GOMP_parallel")?),
            thread_num: std::mem::transmute::<*mut c_void, Query>(symbol("omp_get_thread_num")?),
            num_threads: std::mem::transmute::<*mut c_void, Query>(symbol("omp_get_num_threads")?),
            max_threads: std::mem::transmute::<*mut c_void, Query>(symbol("omp_get_max_threads")?),
        })
    }
}

#[cfg(not(unix))]
fn find(_name: &str) -> Option<OpenMp> {
    None
}

struct Region<'a> {
    work: &'a (dyn Fn(usize, usize) + Sync),
    openmp: OpenMp,
    panicked: AtomicBool,
}

extern "C" fn run_region(data: *mut c_void) {
    // SAFETY: `data` is the `Region` `OpenMp::parallel` passed, alive until GOMP_parallel returns.
    let region = unsafe { &*(data as *const Region) };
    // SAFETY: called inside the parallel region, as the OpenMP ABI allows.
    let (thread, threads) =
        unsafe { ((region.openmp.thread_num)(), (region.openmp.num_threads)()) };
    let call = || (region.work)(thread.max(0) as usize, threads.max(1) as usize);
    if catch_unwind(AssertUnwindSafe(call)).is_err() {
        region.panicked.store(true, Ordering::Relaxed);
    }
}

impl OpenMp {
    /// The threads a parallel region started by the calling thread gets.
    pub fn max_threads(&self) -> usize {
        // SAFETY: an OpenMP query without arguments.
        unsafe { (self.max_threads)() }.max(1) as usize
    }

    /// `work(thread, threads)` on every thread of a parallel region of the runtime's default
    /// size for the calling thread; returns when all are done. Panics if any call panicked.
    pub fn parallel(&self, work: &(dyn Fn(usize, usize) + Sync)) {
        let region = Region {
            work,
            openmp: *self,
            panicked: AtomicBool::new(false),
        };
        // SAFETY: GOMP_parallel runs `run_region(data)` on each thread of the team (the caller's
        // included) and returns after all have finished, so `region` outlives every use.
        unsafe { (self.parallel)(run_region, &region as *const Region as *mut c_void, 0, 0) };
        assert!(
            !region.panicked.load(Ordering::Relaxed),
            "a product's thread panicked"
        );
    }
}
