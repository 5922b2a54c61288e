//! Launching kernels: grid shapes and the argument types shared with
//! `kernels/common.cuh`.
//!
//! Kernel parameters are `i64` for sizes (`long long`), `i32` for flags and
//! op codes, `f32`/`f64` for numbers, `u64` device addresses for pointers
//! (0 for a null pointer), `[i64; 4]` for `Dims4` and `[i64; 11]` for `Geom`.

use crate::cpu::conv2d::ConvGeom;
use cudarc::driver::LaunchConfig;

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;

/// The most blocks a launch uses; kernels loop over the rest (grid-stride).
const MAX_BLOCKS: usize = 1 << 16;

/// A grid of `BLOCK`-thread blocks covering `n` values, one thread per value
/// up to the block limit.
pub(crate) fn for_elements(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (up to the block limit) of `width` values: a warp for
/// short rows, up to 256 threads for long ones.
pub(crate) fn for_rows(rows: usize, width: usize) -> LaunchConfig {
    let threads = width.next_power_of_two().clamp(32, 256) as u32;
    LaunchConfig {
        grid_dim: (rows.clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A size as the kernels' `i64`.
pub(crate) fn int(n: usize) -> i64 {
    n as i64
}

/// Four dimensions or strides as the kernels' `Dims4`.
pub(crate) fn dims4(d: [usize; 4]) -> [i64; 4] {
    d.map(int)
}

/// A window geometry as the kernels' `Geom`.
pub(crate) fn geom(g: &ConvGeom) -> [i64; 11] {
    [
        g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo,
    ]
    .map(int)
}

/// Launches kernel `$name` of kernel source `$src` on `$dev` with `$cfg` and
/// the arguments, which must be local variables of the kernel's parameter
/// types, in order. Evaluates to `Result<()>`.
macro_rules! launch {
    ($dev:expr, $src:expr, $name:literal, $cfg:expr, $($arg:ident),+ $(,)?) => {{
        let func = $dev.function(&$src, $name)?;
        let mut builder = $dev.stream().launch_builder(&func);
        $( cudarc::driver::PushKernelArg::arg(&mut builder, &$arg); )+
        // SAFETY: the caller passes the kernel's parameters in order with
        // their types (see launch.rs), and device buffers sized for the launch.
        unsafe { builder.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $crate::error::Error::Device(format!("CUDA kernel {}: {e}", $name)))
    }};
}
pub(crate) use launch;

/// Checks that `buf` holds exactly `len` values, as the launch will assume.
pub(crate) fn expect_len<T: cudarc::driver::DeviceRepr + Copy>(
    op: &'static str,
    what: &str,
    buf: &super::pool::DeviceBuffer<T>,
    len: usize,
) -> crate::error::Result<()> {
    if buf.len() == len {
        Ok(())
    } else {
        Err(crate::error::Error::shape(
            op,
            format!("{what} holds {} values, expected {len}", buf.len()),
        ))
    }
}
