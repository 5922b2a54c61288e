//! `retort devices`: what this machine offers.

use crate::error::Result;

/// Prints the CPU thread count and the result of probing CUDA device 0.
pub fn run() -> Result<()> {
    println!("cpu\t{} threads", rayon::current_num_threads());
    match crate::cuda::probe(0) {
        Ok(gpu) => println!(
            "cuda:{}\t{}\tsm_{}{}\t{:.1} GiB",
            gpu.ordinal,
            gpu.name,
            gpu.compute_capability.0,
            gpu.compute_capability.1,
            gpu.memory_bytes as f64 / (1u64 << 30) as f64
        ),
        Err(e) => println!("cuda\tunavailable: {e}"),
    }
    Ok(())
}
