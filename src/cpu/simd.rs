//! Run-time selection of an AVX-512 or AVX2 build of a kernel loop.
//!
//! The crate is compiled for the baseline x86-64 (SSE2), so loops the
//! compiler vectorises use 4 lanes. [`avx2_dispatch!`] compiles a function
//! body three times (baseline, AVX2, AVX-512F) and picks the widest the CPU
//! runs. All use the same IEEE operations in the same order (Rust never
//! contracts a multiply and an add into an FMA), so the results are
//! bit-identical; the wider builds only process 8 or 16 lanes at a time.

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

/// Whether the CPU runs AVX-512F (detected once by std, then cached).
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args) -> ret { body }` (safe code only; the return
/// type may be left out) whose body runs from an AVX-512F build when the
/// CPU has it, else from an AVX2 build when it has AVX2, else from the
/// baseline build.
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
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn imp_avx512($($arg: $ty),*) -> $ret {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::simd::has_avx512() {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { imp_avx512($($arg),*) };
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
