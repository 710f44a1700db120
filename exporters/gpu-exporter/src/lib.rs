//! gpu-exporter as a library: the pieces the binary is assembled from.
//!
//! - [`reading`], what a backend reads (backend-neutral [`reading::Snapshot`]).
//! - [`nvidia_smi`], the nvidia-smi backend (parser, runner, [`nvidia_smi::backend`]).
//! - [`nvml`], the NVML backend.
//! - [`backend_select`], `--backend=auto|nvml|nvidia-smi`.
//! - [`metrics`] and [`dcgm`], a snapshot to metric families (`docs/metrics.md`).
//! - [`suspend`], runtime-suspend state of a GPU from sysfs.
//! - [`collectors`], the `gpu` and `backend` collectors handed to odin-common.

pub mod backend_select;
pub mod collectors;
pub mod dcgm;
pub mod metrics;
pub mod nvidia_smi;
pub mod nvml;
pub mod reading;
pub mod suspend;
