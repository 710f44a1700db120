//! The error policy of the NVML backend: how one failed NVML call affects a read.
//!
//! Per-value failures never fail the read:
//! - `NotSupported` leaves the value `None`, silently (the board has no such sensor);
//! - a function the installed driver's library lacks (`FailedToLoadSymbol`, `FunctionNotFound`)
//!   leaves it `None` and is reported once per function for the life of the backend;
//! - `GpuLost` marks the GPU lost: the backend drops it from the snapshot (with a problem)
//!   and keeps the others;
//! - any other error leaves the value `None` and is reported.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;

/// Per-call timing of one read, for `examples/nvml-call-times.rs` (never on the serving
/// path). Every NVML result reaches [`ErrorPolicy::value`] the moment its call returns, so the
/// time between two `value` calls is the later call's own (plus a few instructions of glue).
#[derive(Debug, Default)]
pub struct CallClock {
    last: Option<(Instant, Duration)>,
    /// (NVML function, wall time, this thread's CPU time) in call order.
    pub calls: Vec<(String, Duration, Duration)>,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl CallClock {
    /// Starts (or restarts) the clock: the next call is timed from now.
    pub fn start(&mut self) {
        self.last = Some((Instant::now(), thread_cpu()));
    }

    fn lap(&mut self, function: &str) {
        let (now, cpu) = (Instant::now(), thread_cpu());
        if let Some((last, last_cpu)) = self.last {
            self.calls.push((
                function.to_owned(),
                now - last,
                cpu.saturating_sub(last_cpu),
            ));
        }
        self.last = Some((now, cpu));
    }
}

/// Applies the policy to the calls made for one device, collecting what went wrong.
pub(crate) struct ErrorPolicy<'a> {
    /// `0`, or `0 mig 1` for a MIG device: how problems name the device.
    pub device: String,
    /// Problems of this read, one line each.
    pub problems: &'a mut Vec<String>,
    /// NVML functions already found missing from the library (kept for the backend's life).
    pub missing_functions: &'a mut BTreeSet<String>,
    /// A call answered `GpuLost`.
    pub gpu_lost: bool,
    /// Times each call when set (the timing example only).
    pub clock: Option<&'a mut CallClock>,
}

impl<'a> ErrorPolicy<'a> {
    pub fn new(
        device: String,
        problems: &'a mut Vec<String>,
        missing_functions: &'a mut BTreeSet<String>,
    ) -> ErrorPolicy<'a> {
        ErrorPolicy {
            device,
            problems,
            missing_functions,
            gpu_lost: false,
            clock: None,
        }
    }

    /// The value of one NVML call, or `None` as the policy says. `function`: the NVML entry
    /// point behind `result`, as problems name it.
    pub fn value<T>(&mut self, function: &str, result: Result<T, NvmlError>) -> Option<T> {
        if let Some(clock) = self.clock.as_deref_mut() {
            clock.lap(function);
        }
        match result {
            Ok(v) => Some(v),
            Err(NvmlError::NotSupported) => None,
            Err(NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound) => {
                if self.missing_functions.insert(function.to_owned()) {
                    self.problems.push(format!(
                        "{function}: not in this driver's NVML library; its values are absent"
                    ));
                }
                None
            }
            Err(NvmlError::GpuLost) => {
                self.gpu_lost = true;
                None
            }
            Err(e) => {
                self.problems
                    .push(format!("gpu {}: {function}: {e}", self.device));
                None
            }
        }
    }

    /// One value of `nvmlDeviceGetFieldValues`. A field id the driver does not know (older
    /// drivers answer `InvalidArg` or an unknown value type for it) is noted once, like a
    /// missing function, instead of on every read.
    pub fn field_value(&mut self, id: u32, result: Result<f64, NvmlError>) -> Option<f64> {
        let function = format!("nvmlDeviceGetFieldValues(field {id})");
        match result {
            Err(NvmlError::InvalidArg | NvmlError::UnexpectedVariant(_)) => {
                if self.missing_functions.insert(function.clone()) {
                    self.problems.push(format!(
                        "{function}: not known to this driver; its value is absent"
                    ));
                }
                None
            }
            result => self.value(&function, result),
        }
    }
}

/// `NvmlError` is not `Clone`; rebuild the variants a field value can carry.
pub(crate) fn clone_error(e: &NvmlError) -> NvmlError {
    match e {
        NvmlError::NotSupported => NvmlError::NotSupported,
        NvmlError::GpuLost => NvmlError::GpuLost,
        NvmlError::NoPermission => NvmlError::NoPermission,
        NvmlError::NotFound => NvmlError::NotFound,
        NvmlError::InvalidArg => NvmlError::InvalidArg,
        NvmlError::NoData => NvmlError::NoData,
        NvmlError::UnexpectedVariant(v) => NvmlError::UnexpectedVariant(*v),
        NvmlError::FailedToLoadSymbol(s) => NvmlError::FailedToLoadSymbol(s.clone()),
        _ => NvmlError::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_symbol_is_reported_once_and_lost_gpu_is_flagged() {
        let mut problems = Vec::new();
        let mut missing = BTreeSet::new();
        let mut policy = ErrorPolicy::new("0".into(), &mut problems, &mut missing);
        let gone = || Err::<u32, _>(NvmlError::FailedToLoadSymbol("undefined symbol".into()));
        assert_eq!(policy.value("nvmlDeviceGetX", gone()), None);
        assert_eq!(policy.value("nvmlDeviceGetX", gone()), None);
        assert_eq!(
            policy.value("nvmlDeviceGetY", Err(NvmlError::NotSupported)),
            None::<u32>
        );
        assert_eq!(
            policy.value("nvmlDeviceGetZ", Err(NvmlError::NoPermission)),
            None::<u32>
        );
        assert!(!policy.gpu_lost);
        assert_eq!(
            policy.value("nvmlDeviceGetW", Err(NvmlError::GpuLost)),
            None::<u32>
        );
        assert!(policy.gpu_lost);
        assert_eq!(policy.value("nvmlDeviceGetV", Ok(7u32)), Some(7));
        assert_eq!(policy.field_value(185, Err(NvmlError::InvalidArg)), None);
        assert_eq!(
            policy.field_value(185, Err(NvmlError::UnexpectedVariant(5))),
            None
        );
        assert_eq!(policy.field_value(82, Err(NvmlError::NotSupported)), None);
        assert_eq!(policy.field_value(82, Ok(41.0)), Some(41.0));
        assert_eq!(
            problems,
            vec![
                "nvmlDeviceGetX: not in this driver's NVML library; its values are absent"
                    .to_owned(),
                "gpu 0: nvmlDeviceGetZ: the current user does not have permission to perform \
                 this operation"
                    .to_owned(),
                "nvmlDeviceGetFieldValues(field 185): not known to this driver; its value is \
                 absent"
                    .to_owned(),
            ]
        );
    }
}
