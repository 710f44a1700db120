//! The collectors of gpu-exporter, one per file.
//!
//! - [`gpu`]: every `nvidia_gpu_*` series of the GPUs (and the `DCGM_FI_DEV_*` family with
//!   `--metrics.dcgm-compat`), from the selected backend.
//! - [`backend`]: `nvidia_gpu_backend_info`, and a failing `/health` component when auto
//!   selection fell back to nvidia-smi or found nothing.

pub mod backend;
pub mod gpu;
