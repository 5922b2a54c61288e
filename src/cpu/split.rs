//! Splitting a count into parts of even sizes: the row and column tiles of
//! the GEMM kernels.

/// Splits `total` into the fewest parts of at most `max`, of even sizes:
/// `(start, len)` pairs.
pub(super) fn even_parts(total: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let parts = total.div_ceil(max);
    (0..parts).map(move |u| even_part(total, parts, u))
}

/// Part `u` of `total` split into `parts` parts of even sizes.
pub(super) fn even_part(total: usize, parts: usize, u: usize) -> (usize, usize) {
    let start = total * u / parts;
    (start, total * (u + 1) / parts - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts cover the total in order, none longer than `max`, their
    /// lengths differing by one at most.
    #[test]
    fn parts_tile_the_total_evenly() {
        for total in 0..100 {
            for max in 1..12 {
                let parts: Vec<_> = even_parts(total, max).collect();
                assert_eq!(parts.len(), total.div_ceil(max));
                let mut next = 0;
                for &(start, len) in &parts {
                    assert_eq!(start, next);
                    assert!(len >= 1 && len <= max);
                    next += len;
                }
                assert_eq!(next, total);
                let lens = parts.iter().map(|p| p.1);
                assert!(lens.clone().max().unwrap_or(0) - lens.min().unwrap_or(0) <= 1);
            }
        }
    }
}
