//! Every `kernels/*.cu` compiles with NVRTC for sm_90 (H100, H200) whenever
//! libnvrtc can be loaded; no GPU is needed. Without libnvrtc the compile
//! tests report that they were skipped and why, unless
//! `RETORT_REQUIRE_NVRTC=1` (set by CI), which makes them fail instead.

use retort::cuda::nvrtc::KERNELS;
use std::collections::BTreeSet;

/// Every `.cu` file of `kernels/` is embedded, and each source defines
/// exactly the kernels its list names (the ones the wrappers launch).
#[test]
fn every_kernel_file_is_embedded_with_its_kernels_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    if !dir.is_dir() {
        // A test binary copied away from its source tree (to a GPU machine).
        eprintln!("skipped: {} is not here", dir.display());
        return;
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("kernels/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let embedded: BTreeSet<String> = KERNELS.iter().map(|k| k.name.to_string()).collect();
    assert_eq!(on_disk, embedded, "kernels/*.cu and nvrtc::KERNELS differ");
    for k in KERNELS {
        let defined: BTreeSet<&str> = k.defined_functions().into_iter().collect();
        let listed: BTreeSet<&str> = k.functions.iter().copied().collect();
        assert_eq!(defined, listed, "kernels/{}.cu", k.name);
        assert_eq!(
            defined.len(),
            k.functions.len(),
            "kernels/{}.cu lists a kernel twice",
            k.name
        );
    }
}

#[cfg(feature = "cuda")]
mod nvrtc_compiles {
    use retort::cuda::nvrtc::{compile, compile_kernel, probe_nvrtc, Image, KERNELS};

    /// Whether NVRTC is here; without it, says why the test is skipped, or
    /// fails when `RETORT_REQUIRE_NVRTC=1`.
    fn nvrtc_here(test: &str) -> bool {
        match probe_nvrtc() {
            Ok((major, minor)) => {
                eprintln!("{test}: NVRTC {major}.{minor}");
                true
            }
            Err(e) if std::env::var("RETORT_REQUIRE_NVRTC").as_deref() == Ok("1") => {
                panic!("RETORT_REQUIRE_NVRTC=1 but NVRTC cannot be used: {e}")
            }
            Err(e) => {
                eprintln!("skipped {test}: {e}");
                false
            }
        }
    }

    #[test]
    fn every_kernel_compiles_to_machine_code_for_sm_90() {
        if !nvrtc_here("every_kernel_compiles_to_machine_code_for_sm_90") {
            return;
        }
        for k in KERNELS {
            let compiled = compile_kernel(k, "sm_90").unwrap_or_else(|e| panic!("{e}"));
            match &compiled.image {
                Image::Cubin(bytes) => assert!(
                    bytes.starts_with(b"\x7fELF"),
                    "{}: not an ELF image",
                    k.name
                ),
                Image::Ptx(_) => panic!("{}: sm_90 gave PTX, not CUBIN", k.name),
            }
            if !compiled.log.is_empty() {
                eprintln!("kernels/{}.cu: {}", k.name, compiled.log);
            }
        }
    }

    /// The PTX for compute_90 has an entry point for every listed kernel, so
    /// a wrapper never asks for a kernel its module lacks.
    #[test]
    fn every_listed_kernel_is_an_entry_point_for_compute_90() {
        if !nvrtc_here("every_listed_kernel_is_an_entry_point_for_compute_90") {
            return;
        }
        for k in KERNELS {
            let compiled = compile_kernel(k, "compute_90").unwrap_or_else(|e| panic!("{e}"));
            let entries = compiled.ptx_entries();
            for f in k.functions {
                assert!(
                    entries.contains(f),
                    "kernels/{}.cu: no PTX entry {f} in {entries:?}",
                    k.name
                );
            }
        }
    }

    #[test]
    fn a_source_that_does_not_compile_is_an_error_with_nvrtc_log() {
        if !nvrtc_here("a_source_that_does_not_compile_is_an_error_with_nvrtc_log") {
            return;
        }
        let err = compile(
            "broken",
            "extern \"C\" __global__ void k() { undeclared = 1; }",
            "sm_90",
        )
        .expect_err("an undeclared identifier does not compile")
        .to_string();
        assert!(
            err.contains("broken.cu") && err.contains("undeclared"),
            "{err}"
        );
    }

    #[test]
    fn an_architecture_that_is_not_sm_or_compute_is_refused() {
        let err = compile("k", "", "hopper")
            .expect_err("not an architecture")
            .to_string();
        assert!(err.contains("hopper"), "{err}");
    }
}
