//! Per-thread scratch buffers that kernels reuse from call to call, so that
//! a temporary (an im2col matrix, a transposed operand) costs neither an
//! allocation nor a zero-fill each time. Each buffer handed out starts on a
//! 64-byte boundary: a 16-lane load of a row whose length is a multiple of
//! 16 then never straddles two cache lines (which halves its speed on AVX-512).

use std::cell::Cell;
use std::thread::LocalKey;

/// One kind of scratch buffer: each thread keeps its own, as large as the
/// largest request it has served.
pub(crate) type Slot = LocalKey<Cell<Vec<f32>>>;

/// Values a buffer may need before its first one to start on a cache line.
pub(crate) const ALIGN_SLACK: usize = 64 / std::mem::size_of::<f32>() - 1;

/// The index of the first value of `buf` on a 64-byte boundary (at most
/// [`ALIGN_SLACK`]).
pub(crate) fn line_start(buf: &[f32]) -> usize {
    buf.as_ptr().align_offset(64).min(ALIGN_SLACK)
}

/// Runs `f` on a buffer of exactly `len` values from this thread's `slot`,
/// starting on a 64-byte boundary.
/// The values it holds on entry are unspecified (whatever a previous user
/// left, or zeros): `f` must write every value it reads.
///
/// Re-entrant: a nested call on the same slot (e.g. from a rayon task that
/// the outer call's thread picked up while waiting) gets a fresh buffer, and
/// the larger of the two is kept afterwards.
pub(crate) fn with_scratch<R>(
    slot: &'static Slot,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = slot.with(Cell::take);
    if buf.len() < len + ALIGN_SLACK {
        buf.resize(len + ALIGN_SLACK, 0.0);
    }
    let start = line_start(&buf);
    let result = f(&mut buf[start..start + len]);
    slot.with(|s| {
        let other = s.take();
        s.set(if other.len() > buf.len() { other } else { buf });
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TEST_SLOT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }

    #[test]
    fn nested_use_gets_its_own_buffer_and_the_larger_is_kept() {
        with_scratch(&TEST_SLOT, 4, |outer| {
            outer.fill(1.0);
            with_scratch(&TEST_SLOT, 8, |inner| {
                assert_eq!(inner.len(), 8);
                assert_eq!(inner.as_ptr() as usize % 64, 0, "not on a cache line");
                inner.fill(2.0);
            });
            assert!(outer.iter().all(|&v| v == 1.0));
        });
        assert_eq!(
            TEST_SLOT.with(|s| {
                let v = s.take();
                let n = v.len();
                s.set(v);
                n
            }),
            8 + ALIGN_SLACK
        );
    }
}
