//! Run-time selection of an AVX2 build of a kernel loop.
//!
//! The crate is compiled for the baseline x86-64 (SSE2), so loops the
//! compiler vectorises use 4 lanes. [`avx2_dispatch!`] compiles a function
//! body twice, once with AVX2 enabled, and picks one at run time. Both use
//! the same IEEE operations in the same order (Rust never contracts a
//! multiply and an add into an FMA), so the results are bit-identical;
//! AVX2 only processes 8 lanes at a time.

/// Whether the CPU runs AVX2 (detected once by std, then cached).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args) -> ret { body }` (safe code only; the return
/// type may be left out) whose body runs from an AVX2 build when the CPU
/// has AVX2, else from the baseline build.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        avx2_dispatch! {
            $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn imp_avx2($($arg: $ty),*) -> $ret {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::simd::has_avx2() {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { imp_avx2($($arg),*) };
            }
            imp($($arg),*)
        }
    };
}
