//! The machine's single-precision peak: a loop of independent fused
//! multiply-adds, written in assembly so that nothing but FMAs runs, timed
//! per core. GEMM and whole-step figures are read against it
//! (`retort bench --peak`, `cargo bench --bench kernels`).
//!
//! Each iteration issues 16 (AVX-512, 16 lanes) or 12 (AVX2, 8 lanes)
//! FMAs on as many independent accumulators, enough to cover the FMA
//! latency on two FMA ports; an FMA counts as 2 FLOPs.

use std::time::Instant;

/// One measured peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// The instructions that ran: `"avx512"` (512-bit FMA) or `"avx2"` (256-bit FMA).
    pub isa: &'static str,
    /// Threads that ran the loop at once (one per core asked for).
    pub threads: usize,
    /// Billions of single-precision FLOPs per second, all threads together.
    pub gflops: f64,
}

/// FLOPs of one iteration of the loop of `isa`.
fn flops_per_iter(isa: &str) -> f64 {
    match isa {
        "avx512" => 16.0 * 16.0 * 2.0,
        _ => 12.0 * 8.0 * 2.0,
    }
}

/// The peaks this CPU has loops for: AVX-512 when it runs `avx512f`, AVX2
/// when it runs `avx2` and `fma`; empty elsewhere. Each is the best of
/// `repeats` timings of about `seconds` each, on `threads` threads at once.
/// Short timings and many repeats (e.g. 5 ms x 40) read the true peak
/// even on a busy machine: a timing that another process interrupted is
/// simply not the best one.
pub fn measure(threads: usize, seconds: f64, repeats: usize) -> Vec<Peak> {
    let mut out = Vec::new();
    for isa in ["avx512", "avx2"] {
        if !supported(isa) {
            continue;
        }
        // Calibrate the iteration count to about `seconds` on one thread.
        let mut iters = 1u64 << 12;
        loop {
            let t = time_loop(isa, iters);
            if t > seconds / 4.0 || iters > 1 << 40 {
                iters = ((iters as f64) * seconds / t.max(1e-9)).max(1.0) as u64;
                break;
            }
            iters *= 2;
        }
        let threads = threads.max(1);
        let mut best = 0.0f64;
        for _ in 0..repeats.max(1) {
            let secs = if threads == 1 {
                time_loop(isa, iters)
            } else {
                let t0 = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| time_loop(isa, iters));
                    }
                });
                t0.elapsed().as_secs_f64()
            };
            best = best.max(flops_per_iter(isa) * iters as f64 * threads as f64 / secs / 1e9);
        }
        out.push(Peak {
            isa,
            threads,
            gflops: best,
        });
    }
    out
}

/// Whether the loop of `isa` can run here.
fn supported(isa: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            "avx512" => std::arch::is_x86_feature_detected!("avx512f"),
            _ => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// Seconds that `iters` iterations of the loop of `isa` take on this thread.
fn time_loop(isa: &str, iters: u64) -> f64 {
    let t0 = Instant::now();
    #[cfg(target_arch = "x86_64")]
    {
        if supported(isa) {
            // SAFETY: the CPU runs the instructions (checked just above);
            // the loops touch no memory and declare every register they write.
            unsafe {
                if isa == "avx512" {
                    fma_loop_avx512(iters)
                } else {
                    fma_loop_avx2(iters)
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, iters);
    t0.elapsed().as_secs_f64()
}

/// `iters` x 16 independent 512-bit FMAs (zmm0..15 += zmm16 * zmm17, all zero).
///
/// # Safety
/// The CPU must run AVX-512F.
#[cfg(target_arch = "x86_64")]
unsafe fn fma_loop_avx512(iters: u64) {
    // SAFETY: the caller checked AVX-512F; registers written are declared.
    unsafe {
        std::arch::asm!(
            "vpxord zmm16, zmm16, zmm16",
            "vpxord zmm17, zmm17, zmm17",
            "vpxord zmm0, zmm0, zmm0", "vpxord zmm1, zmm1, zmm1",
            "vpxord zmm2, zmm2, zmm2", "vpxord zmm3, zmm3, zmm3",
            "vpxord zmm4, zmm4, zmm4", "vpxord zmm5, zmm5, zmm5",
            "vpxord zmm6, zmm6, zmm6", "vpxord zmm7, zmm7, zmm7",
            "vpxord zmm8, zmm8, zmm8", "vpxord zmm9, zmm9, zmm9",
            "vpxord zmm10, zmm10, zmm10", "vpxord zmm11, zmm11, zmm11",
            "vpxord zmm12, zmm12, zmm12", "vpxord zmm13, zmm13, zmm13",
            "vpxord zmm14, zmm14, zmm14", "vpxord zmm15, zmm15, zmm15",
            "2:",
            "vfmadd231ps zmm0, zmm16, zmm17", "vfmadd231ps zmm1, zmm16, zmm17",
            "vfmadd231ps zmm2, zmm16, zmm17", "vfmadd231ps zmm3, zmm16, zmm17",
            "vfmadd231ps zmm4, zmm16, zmm17", "vfmadd231ps zmm5, zmm16, zmm17",
            "vfmadd231ps zmm6, zmm16, zmm17", "vfmadd231ps zmm7, zmm16, zmm17",
            "vfmadd231ps zmm8, zmm16, zmm17", "vfmadd231ps zmm9, zmm16, zmm17",
            "vfmadd231ps zmm10, zmm16, zmm17", "vfmadd231ps zmm11, zmm16, zmm17",
            "vfmadd231ps zmm12, zmm16, zmm17", "vfmadd231ps zmm13, zmm16, zmm17",
            "vfmadd231ps zmm14, zmm16, zmm17", "vfmadd231ps zmm15, zmm16, zmm17",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) iters.max(1) => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
            out("zmm16") _, out("zmm17") _,
            options(nostack, nomem),
        );
    }
}

/// `iters` x 12 independent 256-bit FMAs (ymm0..11 += ymm12 * ymm13, all zero).
///
/// # Safety
/// The CPU must run AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
unsafe fn fma_loop_avx2(iters: u64) {
    // SAFETY: the caller checked AVX2 and FMA; registers written are declared.
    unsafe {
        std::arch::asm!(
            "vxorps ymm12, ymm12, ymm12",
            "vxorps ymm13, ymm13, ymm13",
            "vxorps ymm0, ymm0, ymm0", "vxorps ymm1, ymm1, ymm1",
            "vxorps ymm2, ymm2, ymm2", "vxorps ymm3, ymm3, ymm3",
            "vxorps ymm4, ymm4, ymm4", "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6", "vxorps ymm7, ymm7, ymm7",
            "vxorps ymm8, ymm8, ymm8", "vxorps ymm9, ymm9, ymm9",
            "vxorps ymm10, ymm10, ymm10", "vxorps ymm11, ymm11, ymm11",
            "2:",
            "vfmadd231ps ymm0, ymm12, ymm13", "vfmadd231ps ymm1, ymm12, ymm13",
            "vfmadd231ps ymm2, ymm12, ymm13", "vfmadd231ps ymm3, ymm12, ymm13",
            "vfmadd231ps ymm4, ymm12, ymm13", "vfmadd231ps ymm5, ymm12, ymm13",
            "vfmadd231ps ymm6, ymm12, ymm13", "vfmadd231ps ymm7, ymm12, ymm13",
            "vfmadd231ps ymm8, ymm12, ymm13", "vfmadd231ps ymm9, ymm12, ymm13",
            "vfmadd231ps ymm10, ymm12, ymm13", "vfmadd231ps ymm11, ymm12, ymm13",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) iters.max(1) => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _,
            options(nostack, nomem),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_positive_where_measured() {
        for p in measure(1, 0.01, 1) {
            assert!(p.gflops > 0.1 && p.gflops.is_finite(), "{p:?}");
        }
    }
}
