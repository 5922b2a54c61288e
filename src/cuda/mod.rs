//! The CUDA device: probing for a usable GPU without ever panicking, and the
//! GPU kernels.
//!
//! cudarc loads the driver library lazily and panics when it is missing, so
//! every entry point here first looks for the library itself and turns its
//! absence into an [`crate::Error::Device`] that names what was looked for.
//!
//! With the `cuda` feature, `CudaDevice` holds a GPU's context, stream,
//! cuBLAS handle, compiled kernels ([`nvrtc`]: `kernels/*.cu` compiled on
//! first use for the device's architecture) and a caching allocator
//! (`DeviceBuffer`). Each op family has a module of launch wrappers with the
//! semantics and layouts of its CPU kernel in [`crate::cpu`]: device buffers
//! in, device buffers out.

#[cfg(feature = "cuda")]
use crate::error::Error;
use crate::error::Result;

pub mod nvrtc;

#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod pool;

#[cfg(feature = "cuda")]
pub mod batchnorm;
#[cfg(feature = "cuda")]
pub mod conv;
#[cfg(feature = "cuda")]
pub mod ctc;
#[cfg(feature = "cuda")]
pub mod elementwise;
#[cfg(feature = "cuda")]
pub mod gemm;
#[cfg(feature = "cuda")]
pub mod kd;
#[cfg(feature = "cuda")]
pub mod layout;
#[cfg(feature = "cuda")]
pub mod loss;
#[cfg(feature = "cuda")]
pub mod lstm;
#[cfg(feature = "cuda")]
pub mod maxpool;
#[cfg(feature = "cuda")]
pub mod optim;
#[cfg(feature = "cuda")]
pub mod reduce;
#[cfg(feature = "cuda")]
pub mod softmax;

#[cfg(feature = "cuda")]
pub use device::CudaDevice;
#[cfg(feature = "cuda")]
pub use pool::{DeviceBuffer, PoolStats};

/// What the probe found about one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// The name the driver reports, e.g. "NVIDIA H200".
    pub name: String,
    /// Compute capability (major, minor); sm_90 is (9, 0).
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub memory_bytes: usize,
}

/// Opens GPU `ordinal` and reports what it is. An error (never a panic) when
/// retort was built without the `cuda` feature, when no driver library can be
/// loaded, or when the driver has no such device.
pub fn probe(ordinal: usize) -> Result<GpuInfo> {
    imp::probe(ordinal)
}

/// Loads the first of `candidates` that the dynamic loader finds, or says
/// which names were tried.
#[cfg(feature = "cuda")]
pub fn find_library(what: &str, candidates: &[String]) -> Result<()> {
    find_library_with_hint(
        what,
        candidates,
        "install the NVIDIA driver, or put its folder on LD_LIBRARY_PATH",
    )
}

/// [`find_library`] with another `hint` at the end of the error, saying how
/// to get the library.
#[cfg(feature = "cuda")]
pub fn find_library_with_hint(what: &str, candidates: &[String], hint: &str) -> Result<()> {
    for name in candidates {
        // SAFETY: loading a shared library runs its initialisers; the CUDA
        // libraries probed here are the ones cudarc would load anyway.
        if unsafe { libloading::Library::new(name) }.is_ok() {
            return Ok(());
        }
    }
    let mut tried: Vec<&str> = Vec::new();
    for name in candidates {
        if !tried.contains(&name.as_str()) {
            tried.push(name);
        }
    }
    Err(Error::Device(format!(
        "no {what} found: could not load any of {tried:?} ({hint})"
    )))
}

#[cfg(feature = "cuda")]
mod imp {
    use super::{find_library, GpuInfo};
    use crate::error::{Error, Result};
    use cudarc::driver::CudaContext;
    use std::sync::Arc;

    pub fn probe(ordinal: usize) -> Result<GpuInfo> {
        open(ordinal).map(|(_, info)| info)
    }

    /// Finds the driver library, then opens GPU `ordinal` and reads what it is.
    pub(crate) fn open(ordinal: usize) -> Result<(Arc<CudaContext>, GpuInfo)> {
        find_library("CUDA driver", &cudarc::get_lib_name_candidates("cuda"))?;
        let count = CudaContext::device_count()
            .map_err(|e| Error::Device(format!("the CUDA driver could not count devices: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "no CUDA device {ordinal}: the driver reports {count} device(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| Error::Device(format!("could not open CUDA device {ordinal}: {e}")))?;
        let driver =
            |e: cudarc::driver::DriverError| Error::Device(format!("CUDA device {ordinal}: {e}"));
        let info = GpuInfo {
            ordinal,
            name: ctx.name().map_err(driver)?,
            compute_capability: ctx.compute_capability().map_err(driver)?,
            memory_bytes: ctx.total_mem().map_err(driver)?,
        };
        Ok((ctx, info))
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::GpuInfo;
    use crate::error::{Error, Result};

    pub fn probe(_ordinal: usize) -> Result<GpuInfo> {
        Err(Error::Device(
            "retort was built without the `cuda` feature; rebuild with `cargo build --release --features cuda`".into(),
        ))
    }
}
