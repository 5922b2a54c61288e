//! Choosing where a run computes: `cpu`, `cuda` (or `cuda:N`), or `auto`
//! (the GPU when one is usable, otherwise the CPU, saying why).

use crate::error::{Error, Result};
use crate::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// The device a run asks for; [`DeviceChoice::resolve`] turns it into a
/// [`Device`]. In configuration files and on the command line: `"cpu"`,
/// `"cuda"`, `"cuda:1"`, `"auto"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU.
    #[default]
    Cpu,
    /// GPU `ordinal`; an error when it cannot be used.
    Cuda(usize),
    /// GPU 0 when it can be used, otherwise the CPU.
    Auto,
}

impl DeviceChoice {
    /// Whether this is the CPU (the default, left out of written configs).
    pub fn is_cpu(&self) -> bool {
        *self == DeviceChoice::Cpu
    }

    /// The device to run on. `Auto` falls back to the CPU when no GPU is
    /// usable and prints why on stderr; `Cuda` without a usable GPU is an
    /// error naming what is missing.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(ordinal) => {
                open_gpu(ordinal)?;
                Ok(Device::Cuda(ordinal))
            }
            DeviceChoice::Auto => match open_gpu(0) {
                Ok(()) => Ok(Device::Cuda(0)),
                Err(e) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        eprintln!("--device auto: no usable GPU ({e}); falling back to the CPU")
                    });
                    Ok(Device::Cpu)
                }
            },
        }
    }
}

/// Opens GPU `ordinal` and compiles its kernels, so that a missing driver,
/// NVRTC or cuBLAS shows up before a run starts.
#[cfg(feature = "cuda")]
fn open_gpu(ordinal: usize) -> Result<()> {
    let dev = crate::cuda::CudaDevice::get(ordinal)?;
    dev.preload()?;
    // cuBLAS is loaded on first use; check now that it can be.
    dev.with_blas(|_| ())
}

#[cfg(not(feature = "cuda"))]
fn open_gpu(ordinal: usize) -> Result<()> {
    crate::cuda::probe(ordinal).map(|_| ())
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<DeviceChoice> {
        let bad = || {
            Error::invalid(
                "device",
                format!("unknown device {s:?}: expected cpu, cuda, cuda:N or auto"),
            )
        };
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            "auto" => Ok(DeviceChoice::Auto),
            _ => {
                let ordinal = s.strip_prefix("cuda:").ok_or_else(bad)?;
                ordinal.parse().map(DeviceChoice::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(0) => write!(f, "cuda"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceChoice::Auto => write!(f, "auto"),
        }
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_read_and_print_the_same() {
        for (text, choice) in [
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:2", DeviceChoice::Cuda(2)),
            ("auto", DeviceChoice::Auto),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
            assert_eq!(choice.to_string(), text);
        }
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("cpu, cuda, cuda:N or auto"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn the_cpu_resolves_to_the_cpu_and_auto_never_fails() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        // Auto gives the GPU where one works and the CPU elsewhere, never an error.
        assert!(DeviceChoice::Auto.resolve().is_ok());
    }
}
