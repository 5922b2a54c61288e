//! `set_threads_with_caller`: the calling thread becomes the pool's worker,
//! so a one-thread setting runs every kernel on it. Its own test binary,
//! since it builds the process's one global pool.

use retort::{on_pool, set_threads, set_threads_with_caller, Tape, Tensor};

#[test]
fn the_caller_is_the_only_worker_and_kernels_run_on_it() {
    assert!(set_threads_with_caller(Some(0)).is_err(), "zero threads");
    set_threads_with_caller(Some(1)).expect("first pool");
    assert_eq!(rayon::current_thread_index(), Some(0));
    assert_eq!(rayon::current_num_threads(), 1);
    let me = std::thread::current().id();
    assert_eq!(on_pool(|| std::thread::current().id()), me);

    // A parallel kernel (a batched convolution) completes on this thread.
    let x = Tensor::from_vec((0..288).map(|i| i as f32 / 288.0).collect(), &[4, 2, 6, 6]).unwrap();
    let w = Tensor::full(&[3, 2, 3, 3], 0.1).unwrap();
    let mut tape = Tape::new();
    let spec = retort::ops::conv2d::Conv2dSpec::new((1, 1), (1, 1));
    let y = retort::ops::conv2d::conv2d(&mut tape, &x, &w, None, spec).unwrap();
    assert_eq!(y.dims(), &[4, 3, 6, 6]);

    // The pool is built: the same count is accepted, another is refused.
    set_threads(1).expect("same count");
    assert!(set_threads(2).is_err());
    assert!(set_threads_with_caller(Some(1)).is_err());
}
