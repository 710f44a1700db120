//! NVML backend (being written, issue 3): reads GPUs through `nvml-wrapper`.
//!
//! Until it lands, [`open`] reports that the backend is unavailable, which the backend
//! selection treats like a missing library.

use std::path::Path;

use crate::reading::Backend;

/// Load NVML (from `library`, or the system's `libnvidia-ml.so.1`), initialise it, and return
/// a backend. `Err` carries a one-line reason (library not found, init failed, no permission).
pub fn open(library: Option<&Path>) -> anyhow::Result<Box<dyn Backend>> {
    let _ = library;
    anyhow::bail!("NVML backend not built yet")
}
