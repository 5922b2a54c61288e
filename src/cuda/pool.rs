//! The caching allocator: device memory is taken from the driver once and
//! reused. Free buffers wait in lists by size class; a dropped
//! [`DeviceBuffer`] goes back to its list instead of being freed, so a
//! training step that repeats the shapes of the step before allocates nothing.
//!
//! Everything runs on the device's one stream, so a buffer handed out again
//! is only touched by work queued after the work of its previous owner.

use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of a device's caching allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers obtained from the driver (each one a device allocation).
    pub device_allocations: u64,
    /// Buffers handed out again from the free lists.
    pub cache_hits: u64,
    /// Bytes held from the driver, in use or cached.
    pub bytes_reserved: u64,
    /// Bytes waiting in the free lists.
    pub bytes_cached: u64,
}

/// Free lists of device buffers by size class, on one stream.
pub(crate) struct Pool {
    stream: Arc<CudaStream>,
    free: Mutex<HashMap<usize, Vec<CudaSlice<u8>>>>,
    device_allocations: AtomicU64,
    cache_hits: AtomicU64,
    bytes_reserved: AtomicU64,
    bytes_cached: AtomicU64,
}

/// A driver error as a device error about `what`.
pub(crate) fn driver_error(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("CUDA {what}: {e}"))
}

/// The size class of a request: a multiple of 512 bytes up to 1 MiB, then
/// eight classes per power of two (at most 12.5% unused).
fn size_class(bytes: usize) -> usize {
    const SMALL: usize = 512;
    if bytes <= 1 << 20 {
        return bytes.max(1).div_ceil(SMALL) * SMALL;
    }
    let step = (1usize << (usize::BITS - 1 - bytes.leading_zeros())) / 8;
    bytes.div_ceil(step) * step
}

impl Pool {
    pub(crate) fn new(stream: Arc<CudaStream>) -> Pool {
        Pool {
            stream,
            free: Mutex::new(HashMap::new()),
            device_allocations: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            bytes_reserved: AtomicU64::new(0),
            bytes_cached: AtomicU64::new(0),
        }
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Vec<CudaSlice<u8>>>> {
        // A panic while holding the lock leaves the lists consistent.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `bytes` bytes (uninitialised), from the free
    /// lists when one of its class waits there.
    fn take(&self, bytes: usize) -> Result<CudaSlice<u8>> {
        let class = size_class(bytes);
        if let Some(slice) = self.lists().get_mut(&class).and_then(Vec::pop) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.bytes_cached.fetch_sub(class as u64, Ordering::Relaxed);
            return Ok(slice);
        }
        // SAFETY: the memory is uninitialised; every kernel writes the
        // outputs it is given before anything reads them.
        let slice = unsafe { self.stream.alloc::<u8>(class) }
            .map_err(driver_error(&format!("allocation of {class} bytes")))?;
        self.device_allocations.fetch_add(1, Ordering::Relaxed);
        self.bytes_reserved
            .fetch_add(class as u64, Ordering::Relaxed);
        Ok(slice)
    }

    fn give_back(&self, slice: CudaSlice<u8>) {
        let class = slice.len();
        self.bytes_cached.fetch_add(class as u64, Ordering::Relaxed);
        self.lists().entry(class).or_default().push(slice);
    }

    /// Returns every cached buffer to the driver.
    pub(crate) fn trim(&self) {
        let freed: u64 = self
            .lists()
            .drain()
            .flat_map(|(_, list)| list)
            .map(|s| s.len() as u64)
            .sum();
        self.bytes_cached.fetch_sub(freed, Ordering::Relaxed);
        self.bytes_reserved.fetch_sub(freed, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            device_allocations: self.device_allocations.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            bytes_reserved: self.bytes_reserved.load(Ordering::Relaxed),
            bytes_cached: self.bytes_cached.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

/// `len` values of type `T` in device memory from a device's caching
/// allocator; dropping it returns the memory to the cache.
pub struct DeviceBuffer<T> {
    slice: Option<CudaSlice<u8>>,
    len: usize,
    pool: Arc<Pool>,
    marker: PhantomData<T>,
}

impl<T: DeviceRepr + Copy> DeviceBuffer<T> {
    /// An uninitialised buffer of `len` values.
    pub(crate) fn uninit(pool: &Arc<Pool>, len: usize) -> Result<DeviceBuffer<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::Device(format!("a buffer of {len} values is too large")))?;
        Ok(DeviceBuffer {
            slice: Some(pool.take(bytes)?),
            len,
            pool: pool.clone(),
            marker: PhantomData,
        })
    }

    fn slice(&self) -> &CudaSlice<u8> {
        self.slice.as_ref().expect("a live buffer holds its memory")
    }

    fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice.as_mut().expect("a live buffer holds its memory")
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the first value, for a kernel that reads it.
    pub(crate) fn ptr(&self) -> u64 {
        let slice = self.slice();
        let (ptr, _record) = slice.device_ptr(slice.stream());
        ptr
    }

    /// The device address of the first value, for a kernel that writes it.
    pub(crate) fn ptr_mut(&mut self) -> u64 {
        self.ptr()
    }

    /// The address of value `offset` (at most `len`), for a kernel that reads from there.
    pub(crate) fn ptr_at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.len);
        self.ptr() + (offset * std::mem::size_of::<T>()) as u64
    }

    /// Copies the values to host memory (waits for the queued work).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let stream = self.pool.stream();
        let mut out: Vec<T> = Vec::with_capacity(self.len);
        // SAFETY: the bytes hold `len` values of T, written by the kernels or
        // the upload that filled the buffer.
        let view = unsafe { self.slice().transmute::<T>(self.len) }
            .ok_or_else(|| Error::Device("a buffer smaller than its length".into()))?;
        // SAFETY: memcpy_dtoh writes all `len` values before set_len's values are read.
        #[allow(clippy::uninit_vec)]
        unsafe {
            out.set_len(self.len)
        };
        stream
            .memcpy_dtoh(&view, &mut out)
            .map_err(driver_error("copy to the host"))?;
        stream
            .synchronize()
            .map_err(driver_error("copy to the host"))?;
        Ok(out)
    }

    /// Overwrites the values with `host` (of the same length).
    pub fn copy_from_host(&mut self, host: &[T]) -> Result<()> {
        if host.len() != self.len {
            return Err(Error::shape(
                "DeviceBuffer::copy_from_host",
                format!("{} values for a buffer of {}", host.len(), self.len),
            ));
        }
        let stream = self.pool.stream().clone();
        let len = self.len;
        // SAFETY: the buffer holds at least `len` values of T.
        let mut view = unsafe { self.slice_mut().transmute_mut::<T>(len) }
            .ok_or_else(|| Error::Device("a buffer smaller than its length".into()))?;
        stream
            .memcpy_htod(host, &mut view)
            .map_err(driver_error("copy to the device"))
    }

    /// Sets every byte to 0 (every value to 0 for the number types used here).
    pub fn zero(&mut self) -> Result<()> {
        let stream = self.pool.stream().clone();
        let bytes = self.len * std::mem::size_of::<T>();
        if bytes == 0 {
            return Ok(());
        }
        let mut view = self.slice_mut().slice_mut(0..bytes);
        stream
            .memset_zeros(&mut view)
            .map_err(driver_error("memset"))
    }

    /// A new buffer with the same values (a device-to-device copy).
    pub fn try_clone(&self) -> Result<DeviceBuffer<T>> {
        let mut out = DeviceBuffer::uninit(&self.pool, self.len)?;
        let stream = self.pool.stream().clone();
        let bytes = self.len * std::mem::size_of::<T>();
        let src = self.slice().slice(0..bytes);
        let mut dst = out.slice_mut().slice_mut(0..bytes);
        stream
            .memcpy_dtod(&src, &mut dst)
            .map_err(driver_error("device copy"))?;
        Ok(out)
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            self.pool.give_back(slice);
        }
    }
}

impl<T> fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>({} values)",
            std::any::type_name::<T>(),
            self.len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_little_waste() {
        for bytes in [
            0,
            1,
            511,
            512,
            513,
            4096,
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 1,
            3 << 20,
            123_456_789,
        ] {
            let class = size_class(bytes);
            assert!(class >= bytes.max(1), "{bytes} -> {class}");
            assert!(
                class as f64 <= (bytes.max(512) as f64) * 1.125 + 512.0,
                "{bytes} -> {class}"
            );
            assert_eq!(size_class(class), class, "a class is its own class");
        }
    }
}
