//! Loading and initialising the NVML library, with one-line reasons when that fails.

use std::ffi::OsStr;
use std::path::Path;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// The library `open(None)` loads: the runtime soname every driver installs (the unversioned
/// `libnvidia-ml.so` only comes with development packages).
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// Load NVML from `library` (or [`DEFAULT_LIBRARY`] through the dynamic loader's search) and
/// initialise it. `Err` carries a one-line reason (library not found, init failed, no
/// permission).
pub(crate) fn load(library: Option<&Path>) -> anyhow::Result<Nvml> {
    let path: &OsStr = library.map_or(OsStr::new(DEFAULT_LIBRARY), Path::as_os_str);
    let shown = Path::new(path).display().to_string();
    if let Some(p) = library {
        if p.components().count() > 1 && !p.exists() {
            anyhow::bail!("NVML library not found at {shown}");
        }
    }
    Nvml::builder()
        .lib_path(path)
        .init()
        .map_err(|e| anyhow::anyhow!(init_error(&shown, &e)))
}

/// One line for an `Nvml::init` failure.
fn init_error(path: &str, e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(le) => {
            // libloading's message is dlerror(): "<path>: cannot open shared object file: ..."
            let detail = le.to_string().replace('\n', " ");
            format!("NVML library not found: cannot load {path}: {detail}")
        }
        NvmlError::FailedToLoadSymbol(s) => {
            format!("NVML init failed: {path} is not an NVML library ({s})")
        }
        NvmlError::LibRmVersionMismatch => format!(
            "NVML init failed: driver/library version mismatch ({path} does not match the loaded \
             kernel driver; reboot or reload the nvidia module)"
        ),
        NvmlError::NoPermission => format!(
            "NVML init failed: insufficient permissions to talk to the driver (/dev/nvidia*) \
             through {path}"
        ),
        NvmlError::DriverNotLoaded => {
            "NVML init failed: the NVIDIA kernel driver is not loaded".to_owned()
        }
        other => format!("NVML init failed: {other}"),
    }
}

/// `13010` -> `13.1` (CUDA encodes major*1000 + minor*10).
pub(crate) fn cuda_version_text(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions() {
        assert_eq!(cuda_version_text(13010), "13.1");
        assert_eq!(cuda_version_text(12020), "12.2");
        assert_eq!(cuda_version_text(11080), "11.8");
    }

    #[test]
    fn init_errors_are_one_line() {
        for e in [
            NvmlError::LibRmVersionMismatch,
            NvmlError::NoPermission,
            NvmlError::DriverNotLoaded,
            NvmlError::Unknown,
        ] {
            let line = init_error("/x/libnvidia-ml.so.1", &e);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("NVML init failed: "), "{line}");
        }
        assert!(init_error("p", &NvmlError::LibRmVersionMismatch)
            .contains("driver/library version mismatch"));
        assert!(init_error("p", &NvmlError::NoPermission).contains("insufficient permissions"));
    }
}
