//! Support for gpu-exporter's tests, benches and examples (feature `test-support`, which the
//! crate's dev-dependency on itself turns on for them): the real nvidia-smi captures
//! ([`capture`]) and the fake NVML library ([`fake_nvml`]).

pub mod capture;
pub mod fake_nvml;
