//! The CUDA C sources of the kernels (`kernels/*.cu`, embedded in the binary)
//! and their compilation by NVRTC for a GPU architecture at run time.
//!
//! The list of sources needs no GPU and no CUDA; compiling needs the `cuda`
//! feature and a loadable libnvrtc, which is probed for before cudarc touches
//! it (cudarc panics when the library is missing).

/// One kernel source of `kernels/`, embedded at build time.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// The file's stem: `"elementwise"` for `kernels/elementwise.cu`.
    pub name: &'static str,
    /// The CUDA C text of the file.
    pub source: &'static str,
    /// The `extern "C" __global__` functions it defines, every one of which a
    /// wrapper in [`crate::cuda`] launches.
    pub functions: &'static [&'static str],
}

/// Shared definitions (`kernels/common.cuh`) put before every source.
pub const PRELUDE: &str = include_str!("../../kernels/common.cuh");

macro_rules! kernel_source {
    ($konst:ident, $name:literal, [$($f:literal),* $(,)?]) => {
        #[doc = concat!("`kernels/", $name, ".cu`.")]
        pub const $konst: KernelSource = KernelSource {
            name: $name,
            source: include_str!(concat!("../../kernels/", $name, ".cu")),
            functions: &[$($f),*],
        };
    };
}

kernel_source!(
    ELEMENTWISE,
    "elementwise",
    [
        "unary_forward",
        "unary_backward",
        "binary_forward",
        "div_grad_b",
        "broadcast_copy",
        "fill",
        "repeat_row",
    ]
);
kernel_source!(REDUCE, "reduce", ["sum_to"]);
kernel_source!(
    LAYOUT,
    "layout",
    ["permute4", "copy_rows", "reverse_blocks"]
);
kernel_source!(
    SOFTMAX,
    "softmax",
    [
        "log_softmax_rows",
        "log_softmax_backward_rows",
        "softmax_backward_rows",
    ]
);
kernel_source!(CONV, "conv", ["im2col", "col2im", "fill_planes"]);
kernel_source!(
    BATCHNORM,
    "batchnorm",
    [
        "bn_batch_stats",
        "bn_prepare",
        "bn_forward",
        "bn_grad_sums",
        "bn_backward_dx",
    ]
);
kernel_source!(MAXPOOL, "maxpool", ["maxpool_forward", "maxpool_backward"]);
kernel_source!(
    LSTM,
    "lstm",
    ["lstm_bias_rows", "lstm_cell_forward", "lstm_cell_backward"]
);
kernel_source!(CTC, "ctc", ["ctc_loss_grad", "ctc_reduce", "ctc_backward"]);
kernel_source!(KD, "kd", ["kl_div_rows", "kl_div_backward"]);
kernel_source!(
    LOSS,
    "loss",
    [
        "cross_entropy_rows",
        "cross_entropy_backward",
        "mse_forward",
        "mse_backward",
    ]
);
kernel_source!(
    OPTIM,
    "optim",
    ["sgd_update", "adam_update", "sum_squares", "sum_partials"]
);

/// Every kernel source, one per op family.
pub const KERNELS: &[KernelSource] = &[
    ELEMENTWISE,
    REDUCE,
    LAYOUT,
    SOFTMAX,
    CONV,
    BATCHNORM,
    MAXPOOL,
    LSTM,
    CTC,
    KD,
    LOSS,
    OPTIM,
];

impl KernelSource {
    /// The text NVRTC compiles: the prelude, then the source, whose lines
    /// keep their own numbers in compiler messages.
    pub fn full_source(&self) -> String {
        format!("{PRELUDE}\n#line 1 \"{}.cu\"\n{}", self.name, self.source)
    }

    /// The names of the `extern "C" __global__` functions the source defines,
    /// in order (read from the text, for checks against [`KernelSource::functions`]).
    pub fn defined_functions(&self) -> Vec<&'static str> {
        const MARK: &str = "extern \"C\" __global__ void ";
        self.source
            .match_indices(MARK)
            .filter_map(|(at, _)| {
                let rest = &self.source[at + MARK.len()..];
                rest.find('(').map(|end| rest[..end].trim())
            })
            .collect()
    }
}

#[cfg(feature = "cuda")]
pub use imp::{compile, compile_kernel, probe_nvrtc, Compiled, Image};

#[cfg(feature = "cuda")]
mod imp {
    use super::KernelSource;
    use crate::cuda::find_library_with_hint;
    use crate::error::{Error, Result};
    use cudarc::nvrtc::{result, sys};
    use std::ffi::{c_char, CString};

    /// What NVRTC made of one source.
    #[derive(Clone, Debug)]
    pub enum Image {
        /// PTX text, for a virtual architecture (`compute_90`); the driver
        /// compiles it when the module is loaded.
        Ptx(String),
        /// Machine code (CUBIN) for a real architecture (`sm_90`).
        Cubin(Vec<u8>),
    }

    /// One compiled source.
    #[derive(Clone, Debug)]
    pub struct Compiled {
        /// The source's name (`elementwise`).
        pub name: String,
        /// The architecture it was compiled for (`sm_90`, `compute_90`).
        pub arch: String,
        /// The compiled code.
        pub image: Image,
        /// NVRTC's log (warnings), often empty.
        pub log: String,
    }

    impl Compiled {
        /// The image in the form cudarc loads as a module.
        pub fn into_ptx(self) -> cudarc::nvrtc::Ptx {
            match self.image {
                Image::Ptx(text) => cudarc::nvrtc::Ptx::from_src(text),
                Image::Cubin(bytes) => cudarc::nvrtc::Ptx::from_binary(bytes),
            }
        }
    }

    /// Loads libnvrtc (an error naming the files tried when it cannot be
    /// found, never a panic) and returns its version (major, minor).
    pub fn probe_nvrtc() -> Result<(i32, i32)> {
        find_library_with_hint(
            "NVRTC library",
            &cudarc::get_lib_name_candidates("nvrtc"),
            "install CUDA's NVRTC (e.g. the PyPI wheel nvidia-cuda-nvrtc) and put the folder of libnvrtc.so on LD_LIBRARY_PATH",
        )?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library was found just above; the pointers are valid.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| Error::Device(format!("NVRTC did not report its version: {e:?}")))?;
        Ok((major, minor))
    }

    /// Compiles `kernel` (the prelude and its source) for `arch`.
    pub fn compile_kernel(kernel: &KernelSource, arch: &str) -> Result<Compiled> {
        compile(kernel.name, &kernel.full_source(), arch)
    }

    /// Frees an NVRTC program when dropped.
    struct Program(sys::nvrtcProgram);

    impl Drop for Program {
        fn drop(&mut self) {
            // SAFETY: the program was created by create_program and is freed once.
            let _ = unsafe { result::destroy_program(self.0) };
        }
    }

    fn text(raw: &[c_char]) -> String {
        let bytes: Vec<u8> = raw
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }

    /// Compiles the CUDA C `source` named `name` for `arch`: a virtual
    /// architecture (`compute_90`) gives PTX, a real one (`sm_90`) CUBIN.
    /// A source that does not compile is an [`Error::Device`] holding NVRTC's
    /// log; a missing libnvrtc is an error too, never a panic.
    pub fn compile(name: &str, source: &str, arch: &str) -> Result<Compiled> {
        let digits = arch
            .strip_prefix("sm_")
            .or_else(|| arch.strip_prefix("compute_"));
        if !digits.is_some_and(|d| d.len() >= 2 && d.bytes().take(2).all(|b| b.is_ascii_digit())) {
            return Err(Error::invalid(
                "nvrtc::compile",
                format!("architecture {arch:?} is neither sm_XY nor compute_XY"),
            ));
        }
        probe_nvrtc()?;
        let c_source = CString::new(source)
            .map_err(|_| Error::invalid("nvrtc::compile", format!("{name}: NUL in the source")))?;
        let c_name = CString::new(format!("{name}.cu"))
            .map_err(|_| Error::invalid("nvrtc::compile", "NUL in the source name"))?;
        let failed = |what: &str, e: result::NvrtcError| {
            Error::Device(format!(
                "NVRTC, kernels/{name}.cu for {arch}: {what}: {e:?}"
            ))
        };
        let program = Program(
            result::create_program(&c_source, Some(&c_name))
                .map_err(|e| failed("creating the program", e))?,
        );
        let options = [format!("--gpu-architecture={arch}"), "--std=c++17".into()];
        // SAFETY: the program is live until `program` drops.
        let status = unsafe { result::compile_program(program.0, &options) };
        let log = unsafe { result::get_program_log(program.0) }
            .map(|raw| text(&raw))
            .unwrap_or_default();
        if let Err(e) = status {
            return Err(Error::Device(format!(
                "NVRTC could not compile kernels/{name}.cu for {arch} ({e:?}):\n{log}"
            )));
        }
        let image = if arch.starts_with("sm_") {
            let mut size = 0usize;
            // SAFETY: the program compiled; the buffer holds `size` bytes.
            unsafe { sys::nvrtcGetCUBINSize(program.0, &mut size) }
                .result()
                .map_err(|e| failed("sizing the CUBIN", e))?;
            let mut cubin = vec![0u8; size];
            unsafe { sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr().cast()) }
                .result()
                .map_err(|e| failed("reading the CUBIN", e))?;
            Image::Cubin(cubin)
        } else {
            // SAFETY: the program compiled.
            let raw =
                unsafe { result::get_ptx(program.0) }.map_err(|e| failed("reading the PTX", e))?;
            Image::Ptx(text(&raw))
        };
        Ok(Compiled {
            name: name.to_string(),
            arch: arch.to_string(),
            image,
            log,
        })
    }

    impl Compiled {
        /// The kernel entry points (`.entry NAME(`) of a PTX image; empty for CUBIN.
        pub fn ptx_entries(&self) -> Vec<&str> {
            match &self.image {
                Image::Ptx(text) => text
                    .lines()
                    .filter_map(|l| l.split_once(".entry "))
                    .map(|(_, rest)| rest.split(['(', ' ']).next().unwrap_or("").trim())
                    .collect(),
                Image::Cubin(_) => Vec::new(),
            }
        }
    }
}
