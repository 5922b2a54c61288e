//! An LSTM direction's recurrent weight as its step products read it.
//!
//! Every time step of a batch multiplies the same matrix: `h·W_hhᵀ` going
//! forward, `dGates·W_hh` going back. Read in place, a 16-column strip of
//! `crnn-t`'s `W_hhᵀ` (128 x 512) has its rows 2 KB apart, all in two of the
//! 64 sets of a 32 KB L1, so each row tile of the batch fetches the strip
//! from L2 again (32 x 128 x 512 at ~65% of the FMA peak). Packed once per
//! call into [`panel_gemm`](super::panel_gemm)'s panels, each strip is one
//! contiguous run and the products reach ~90%; the packing (~15 µs) is paid
//! once for the 31 products of a 32-step batch. Small weights (`crnn-s`,
//! 48 x 192) stay in L1 either way and are read in place.
//!
//! Both forms give the same bits (the panels' chain is the unpacked
//! kernel's and `matrixmultiply`'s).

use super::gemm::{gemm, MatRef};
use super::panel_gemm::{gemm_prepacked, PackedB};
use super::small_gemm::Kernel;

/// Values of the weight from which the step products read it from panels:
/// 32 K (128 KB). 32 x 128 x 512 (`crnn-t`, 64 K values) 1.2-1.4x in place,
/// 32 x 512 x 128 1.2x; 32 x 96 x 384 (37 K) 1.0-1.15x; 32 x 48 x 192
/// (`crnn-s`, 9 K) 0.9-1.06x.
pub const PANELS_MIN_VALUES: usize = 32 * 1024;

/// The recurrent weight of one direction, ready for its step products.
pub(crate) enum StepWeights<'a> {
    /// Read where it lies (by [`gemm`]'s unpacked kernel when it fits).
    InPlace(MatRef<'a>),
    /// Packed once for all the steps.
    Panels(PackedB),
}

impl<'a> StepWeights<'a> {
    /// Whether products of `rows` rows by a weight of `values` values, at
    /// `products` steps, read it from panels: the CPU runs a panel kernel,
    /// the batch has more than one row, and the weight is large enough.
    pub(crate) fn packs(rows: usize, values: usize, products: usize) -> bool {
        Kernel::best().is_some() && rows > 1 && products > 1 && values >= PANELS_MIN_VALUES
    }

    /// `w` for `products` products of `rows` rows each: packed when
    /// [`packs`](Self::packs) says so.
    pub(crate) fn new(w: MatRef<'a>, rows: usize, products: usize) -> Self {
        match Kernel::best() {
            Some(kernel) if Self::packs(rows, w.rows * w.cols, products) => {
                StepWeights::Panels(PackedB::new(kernel, w))
            }
            _ => StepWeights::InPlace(w),
        }
    }

    /// `c = a·w + beta·c`.
    pub(crate) fn product(&self, a: MatRef, beta: f32, c: &mut [f32]) {
        match self {
            StepWeights::InPlace(w) => gemm(1.0, a, *w, beta, c),
            StepWeights::Panels(w) => gemm_prepacked(1.0, a, w, beta, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::testing::{bits, values};
    use crate::rng::Rng;

    #[test]
    fn panels_pay_only_for_large_weights_and_batches() {
        let runs = Kernel::best().is_some();
        assert_eq!(StepWeights::packs(32, 128 * 512, 31), runs);
        assert!(
            !StepWeights::packs(32, 48 * 192, 31),
            "crnn-s stays in place"
        );
        assert!(!StepWeights::packs(1, 128 * 512, 31), "one row");
        assert!(!StepWeights::packs(32, 128 * 512, 1), "one product");
    }

    /// Both forms of a weight, as stored and transposed, give the same bits
    /// at every beta, for batches below and above a register tile.
    #[test]
    fn panels_and_in_place_agree_bit_for_bit() {
        let mut rng = Rng::seed(23);
        for (m, k, n) in [(2, 128, 512), (7, 512, 128), (32, 128, 512), (33, 181, 200)] {
            let data = values(k * n, &mut rng);
            let as_stored = MatRef::row_major(&data, k, n);
            let transposed = MatRef::row_major(&data, n, k).t();
            for w in [as_stored, transposed] {
                let panels = match Kernel::best() {
                    Some(kernel) => StepWeights::Panels(PackedB::new(kernel, w)),
                    None => return,
                };
                let in_place = StepWeights::InPlace(w);
                let a = values(m * k, &mut rng);
                let a = MatRef::row_major(&a, m, k);
                for beta in [0.0, 1.0] {
                    let c0 = values(m * n, &mut rng);
                    let (mut want, mut got) = (c0.clone(), c0);
                    in_place.product(a, beta, &mut want);
                    panels.product(a, beta, &mut got);
                    assert_eq!(bits(&want), bits(&got), "{m}x{k}x{n} beta {beta}");
                }
            }
        }
    }
}
