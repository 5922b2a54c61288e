//! Keeping freed tensor buffers in the process for reuse.
//!
//! A training step allocates and frees the same large buffers (activations,
//! gradients, several MB each) every time. glibc's `malloc` serves blocks
//! from 128 KB up with `mmap` and hands them back with `munmap`, and trims
//! the top of its heap whenever 128 KB or more is free there, so each step
//! asks the kernel for fresh zeroed pages again: on a `crnn-t` training step
//! about a sixth of the time went to page faults and clearing pages.

/// Asks the C allocator to keep freed memory for reuse: blocks up to 32 MB
/// (glibc's largest setting) come from its heaps instead of `mmap`, and the
/// heaps are not trimmed. Peak memory is unchanged (it is the same buffers);
/// what changes is that pages, once touched, stay with the process until it
/// exits. Call it once, early, in a program that trains or infers; `retort`
/// does. A no-op off glibc. Returns whether the allocator took the setting.
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::raw::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    /// `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit glibc; larger values are refused.
    const MMAP_THRESHOLD: c_int = 32 << 20;

    pub fn keep_freed_memory() -> bool {
        // SAFETY: mallopt only changes malloc's parameters; it is safe to
        // call at any time from any thread.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_setting() {
        assert!(super::keep_freed_memory());
    }
}
