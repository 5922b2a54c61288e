//! One GPU: its context, the stream all work is queued on, the kernels
//! compiled for it (each `kernels/*.cu` compiled by NVRTC once, on first
//! use, for the device's compute capability), its cuBLAS handle (created on
//! the first product) and its caching allocator.

use super::nvrtc::{self, KernelSource};
use super::pool::{driver_error, DeviceBuffer, Pool, PoolStats};
use super::{find_library_with_hint, imp, GpuInfo};
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A GPU ready to run the kernels of [`crate::cuda`].
pub struct CudaDevice {
    info: GpuInfo,
    arch: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: Arc<Pool>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
    blas: Mutex<Option<CudaBlas>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The caches stay consistent if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CudaDevice {
    /// Opens GPU `ordinal` with a stream and an empty cache of kernels and
    /// memory. An error, never a panic, when there is no driver or no such
    /// device. Kernels compile on first use, so NVRTC is needed only then.
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let (ctx, info) = imp::open(ordinal)?;
        // All work goes to one stream, so cudarc's per-buffer events (for
        // ordering between streams) are not needed; buffers made from here on
        // have none.
        // SAFETY: nothing of this context is used on another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver_error("stream creation"))?;
        let (major, minor) = info.compute_capability;
        Ok(Arc::new(CudaDevice {
            arch: format!("sm_{major}{minor}"),
            info,
            pool: Arc::new(Pool::new(stream.clone())),
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            blas: Mutex::new(None),
        }))
    }

    /// The device `ordinal` shared by the whole process, opened on the first
    /// call, so that its kernels compile once per process.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut devices = locked(DEVICES.get_or_init(Default::default));
        if let Some(dev) = devices.get(&ordinal) {
            return Ok(dev.clone());
        }
        let dev = CudaDevice::new(ordinal)?;
        devices.insert(ordinal, dev.clone());
        Ok(dev)
    }

    /// What the device is.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// The architecture the kernels are compiled for, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The module of `kernel`, compiled and loaded on first use.
    fn module(&self, kernel: &KernelSource) -> Result<Arc<CudaModule>> {
        if let Some(m) = locked(&self.modules).get(kernel.name) {
            return Ok(m.clone());
        }
        let compiled = nvrtc::compile_kernel(kernel, &self.arch)?;
        let module = self
            .ctx
            .load_module(compiled.into_ptx())
            .map_err(driver_error(&format!("loading kernels/{}.cu", kernel.name)))?;
        locked(&self.modules).insert(kernel.name, module.clone());
        Ok(module)
    }

    /// Kernel `name` of `kernel`, which must be in its list of functions.
    pub(crate) fn function(
        &self,
        kernel: &KernelSource,
        name: &'static str,
    ) -> Result<CudaFunction> {
        if let Some(f) = locked(&self.functions).get(&(kernel.name, name)) {
            return Ok(f.clone());
        }
        if !kernel.functions.contains(&name) {
            return Err(Error::Device(format!(
                "kernels/{}.cu lists no kernel {name}",
                kernel.name
            )));
        }
        let f = self
            .module(kernel)?
            .load_function(name)
            .map_err(driver_error(&format!(
                "kernel {name} of kernels/{}.cu",
                kernel.name
            )))?;
        locked(&self.functions).insert((kernel.name, name), f.clone());
        Ok(f)
    }

    /// Compiles and loads every kernel source now rather than on first use.
    pub fn preload(&self) -> Result<()> {
        for kernel in nvrtc::KERNELS {
            self.module(kernel)?;
        }
        Ok(())
    }

    /// Runs `f` with the cuBLAS handle, created on first use (after checking
    /// that libcublas loads); calls are serialised, one at a time.
    pub(crate) fn with_blas<R>(&self, f: impl FnOnce(&CudaBlas) -> R) -> Result<R> {
        let mut slot = locked(&self.blas);
        if slot.is_none() {
            find_library_with_hint(
                "cuBLAS library",
                &cudarc::get_lib_name_candidates("cublas"),
                "install cuBLAS (the CUDA toolkit, or the PyPI wheel nvidia-cublas) and put the folder of libcublas.so on LD_LIBRARY_PATH",
            )?;
            let blas = CudaBlas::new(self.stream.clone())
                .map_err(|e| Error::Device(format!("cuBLAS handle: {e}")))?;
            // Full f32 products (no TF32), as the CPU computes them.
            // SAFETY: the handle is live.
            unsafe {
                cudarc::cublas::sys::cublasSetMathMode(
                    *blas.handle(),
                    cudarc::cublas::sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
                )
            }
            .result()
            .map_err(|e| Error::Device(format!("cuBLAS math mode: {e}")))?;
            *slot = Some(blas);
        }
        self.bind()?;
        Ok(f(slot.as_ref().expect("created just above")))
    }

    /// Makes this device's context current on the calling thread (needed
    /// before raw library calls such as cuBLAS's).
    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))
    }

    /// An uninitialised buffer of `len` values from the cache.
    pub(crate) fn alloc<T: DeviceRepr + Copy>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        DeviceBuffer::uninit(&self.pool, len)
    }

    /// A buffer of `len` zeros.
    pub fn zeros<T: DeviceRepr + Copy>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc(len)?;
        buf.zero()?;
        Ok(buf)
    }

    /// A buffer holding a copy of `host`.
    pub fn upload<T: DeviceRepr + Copy>(&self, host: &[T]) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc(host.len())?;
        buf.copy_from_host(host)?;
        Ok(buf)
    }

    /// Waits until all queued work is done.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_error("synchronize"))
    }

    /// The caching allocator's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Returns the cached free buffers to the driver.
    pub fn trim_pool(&self) {
        self.pool.trim();
    }
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaDevice(cuda:{} {} {})",
            self.info.ordinal, self.info.name, self.arch
        )
    }
}
