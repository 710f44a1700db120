//! gpu-exporter as a library: the pieces the binary will be assembled from.
//!
//! Status (issue 3, first session): the nvidia-smi backend's parsing ([`nvidia_smi::parse`],
//! [`nvidia_smi::table`]) and process handling ([`nvidia_smi::runner`]) exist and are tested
//! against the real captures; the NVML backend, the collectors that emit metrics, and the
//! wiring into odin-common's runtime do not exist yet. See the crate README.

pub mod nvidia_smi;
pub mod nvml;
pub mod reading;
