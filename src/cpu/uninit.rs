//! Output vectors that a kernel writes whole, allocated without zeroing
//! them first. A `vec![0.0; len]` is a `calloc`, which clears every byte
//! before the kernel overwrites it: on a `crnn-s` line the convolutions'
//! outputs and the layout copies cleared ~100 KB that way (~7% of the
//! line's instructions, ~0.7% of its time; 1-2% of batch 32).

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A vector of `len` values that `fill` writes, given them uninitialised.
///
/// # Safety
/// `fill` writes every one of the `len` values (if it panics instead, the
/// vector is dropped empty).
pub(crate) unsafe fn vec_written_by(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the first `len` values were written (the caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// A vector of `n` values written by `fill(start, out)` over consecutive
/// chunks `out` of `chunk` values (the last may be shorter) starting at
/// index `start`, in parallel; an output shorter than two chunks is
/// written by one call on this thread. `fill(start, out)` must write every
/// value of `out` (the elementwise kernels, BatchNorm, max-pool's
/// gradient).
pub(crate) fn build_chunked(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let chunks = |spare: &mut [MaybeUninit<f32>]| {
        if n < 2 * chunk {
            fill(0, spare);
        } else {
            spare
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, part)| fill(i * chunk, part));
        }
    };
    // SAFETY: every caller's `fill` writes each value of each chunk.
    unsafe { vec_written_by(n, chunks) }
}

/// The values of `s` once every one of them has been written.
///
/// # Safety
/// Every element of `s` must be initialised.
pub(crate) unsafe fn assume_init_mut(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has the layout of f32 and the caller
    // guarantees every element is initialised.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `values` as slots for a kernel that writes them.
///
/// # Safety
/// Only initialised values are written through the slots (never
/// `MaybeUninit::uninit()`), so `values` stays initialised.
pub(crate) unsafe fn as_slots(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller keeps
    // the values initialised.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Every slot set to `value`, then the slots as the values they hold (for
/// a path that accumulates into its output, beside one that writes it).
pub(crate) fn filled(slots: &mut [MaybeUninit<f32>], value: f32) -> &mut [f32] {
    slots.fill(MaybeUninit::new(value));
    // SAFETY: every slot was just written.
    unsafe { assume_init_mut(slots) }
}

/// `values` written into the first `values.len()` slots.
pub(crate) fn write_all(slots: &mut [MaybeUninit<f32>], values: &[f32]) {
    for (slot, &v) in slots[..values.len()].iter_mut().zip(values) {
        slot.write(v);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::mem::MaybeUninit;

    /// Runs `fill` on `len` slots that all hold NaN and returns what it
    /// left: a value `fill` skipped stays NaN (a kernel that must write
    /// every slot can be tested with it, where its outputs are never NaN).
    pub(crate) fn written_over_nan(
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<f32>]),
    ) -> Vec<f32> {
        let mut values = vec![f32::NAN; len];
        // SAFETY: the kernels under test write f32 values only.
        fill(unsafe { super::as_slots(&mut values) });
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_holds_what_its_filler_wrote() {
        // SAFETY: the closure writes all 5 values.
        let v = unsafe {
            vec_written_by(5, |slots| {
                for (i, s) in slots.iter_mut().enumerate() {
                    s.write(i as f32);
                }
            })
        };
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn filled_slots_hold_the_value() {
        let v = testing::written_over_nan(4, |slots| {
            let values = filled(&mut slots[1..3], 7.0);
            assert_eq!(values, [7.0, 7.0]);
        });
        assert!(v[0].is_nan() && v[3].is_nan() && v[1..3] == [7.0, 7.0]);
    }

    #[test]
    fn slots_skipped_over_nan_stay_nan() {
        let v = testing::written_over_nan(3, |slots| {
            slots[1].write(2.0);
        });
        assert!(v[0].is_nan() && v[2].is_nan() && v[1] == 2.0);
    }
}
