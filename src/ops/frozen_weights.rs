//! Winograd-transformed weights of frozen models, kept from call to call.
//!
//! An evaluation-mode conv block ([`super::conv2d::conv2d_bn_relu_eval`])
//! on a few lines would otherwise transform its weight at every call, which
//! costs more than the Winograd algorithm saves there; with the transform
//! kept, a `crnn-s` line's b3 and b4 run 1.2x and 1.5x faster than the
//! direct convolution. Entries are keyed by the weight's storage and hold a
//! reference to it, so a parameter updated in place afterwards
//! ([`Tensor::data_mut`]) finds its storage shared, copies it, and never
//! matches its stale entry again. Larger batches transform per call (the
//! cost is then small) and leave the cache alone.

use crate::cpu::winograd::transform_weight;
use crate::tensor::{Storage, Tensor};
use std::sync::{Arc, Mutex};

/// Entries kept (least recently used dropped first): a few models' layers.
const ENTRIES: usize = 16;

struct Entry {
    storage: Arc<Storage>,
    shape: (usize, usize),
    transformed: Arc<Vec<f32>>,
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The Winograd transform of `weight` (o, c, 3, 3) on the CPU, from the
/// cache or computed and kept.
pub(crate) fn winograd_weight(weight: &Tensor, o: usize, c: usize) -> Arc<Vec<f32>> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let storage = weight.storage_arc();
    let hit = cache
        .iter()
        .position(|e| Arc::ptr_eq(&e.storage, storage) && e.shape == (o, c));
    let entry = match hit {
        Some(i) => cache.remove(i),
        None => Entry {
            storage: Arc::clone(storage),
            shape: (o, c),
            transformed: Arc::new(transform_weight(weight.data(), o, c)),
        },
    };
    let transformed = Arc::clone(&entry.transformed);
    if cache.len() == ENTRIES {
        cache.remove(0);
    }
    cache.push(entry);
    transformed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_updated_in_place_is_transformed_again() {
        let values: Vec<f32> = (0..2 * 3 * 9).map(|i| i as f32 * 0.1 - 2.0).collect();
        let mut w = Tensor::from_vec(values.clone(), &[2, 3, 3, 3]).unwrap();
        let first = winograd_weight(&w, 2, 3);
        assert_eq!(*first, transform_weight(&values, 2, 3));
        assert!(Arc::ptr_eq(&first, &winograd_weight(&w, 2, 3)), "not kept");
        w.data_mut()[0] = 5.0;
        let second = winograd_weight(&w, 2, 3);
        assert_eq!(*second, transform_weight(w.data(), 2, 3));
        assert_ne!(*first, *second);
    }
}
