//! Critical XID errors, counted from NVML events.
//!
//! At start the backend creates one event set and registers every device that can report
//! critical XID errors; each read drains the events that arrived since the last one (never
//! waiting) and counts them per GPU and XID code. The counts live as long as the backend:
//! `nvidia_gpu_xid_errors_total` counts XID errors since the exporter started.

use std::collections::BTreeMap;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use super::raw;

/// The XID errors seen since the backend opened, and the event set they come from.
#[derive(Default)]
pub(crate) struct XidEvents {
    /// `None` when no device could be registered (or the set could not be created).
    set: Option<raw::EventSet>,
    /// Device handle (as an address) to GPU index, for the registered devices.
    registered: BTreeMap<usize, u32>,
    /// XID errors seen, by GPU index and XID code.
    counts: BTreeMap<u32, BTreeMap<u64, u64>>,
    /// The code of the last XID error seen, by GPU index.
    last: BTreeMap<u32, u64>,
}

impl XidEvents {
    /// Create the event set and register every device that can report critical XID errors.
    /// Devices that cannot are listed in `notes`, for the first read to report.
    pub fn register(nvml: &Nvml, notes: &mut Vec<String>) -> XidEvents {
        let mut events = XidEvents::default();
        let set = match raw::event_set_create(nvml) {
            Ok(set) => set,
            Err(e) => {
                notes.push(format!("XID events unavailable (nvmlEventSetCreate: {e})"));
                return events;
            }
        };
        let count = nvml.device_count().unwrap_or(0);
        let mut unsupported = Vec::new();
        for i in 0..count {
            let Ok(dev) = nvml.device_by_index(i) else {
                continue;
            };
            match raw::register_xid(nvml, &dev, &set) {
                Ok(handle) => {
                    events.registered.insert(handle, i);
                }
                Err(NvmlError::NotSupported) => unsupported.push(i.to_string()),
                Err(e) => notes.push(format!("gpu {i}: XID events not registered: {e}")),
            }
        }
        if !unsupported.is_empty() {
            notes.push(format!(
                "gpu {}: XID events not supported; nvidia_gpu_xid_errors_total absent there",
                unsupported.join(",")
            ));
        }
        if events.registered.is_empty() {
            let _ = raw::event_set_free(nvml, set);
        } else {
            events.set = Some(set);
        }
        events
    }

    /// Count the critical XID events that arrived since the last call (never waits).
    pub fn drain(&mut self, nvml: &Nvml, problems: &mut Vec<String>) {
        let Some(set) = self.set.as_ref() else {
            return;
        };
        // Bounded, in case a flood of events arrives faster than it drains.
        for _ in 0..10_000 {
            match raw::event_wait(nvml, set) {
                Ok(Some(event)) => {
                    if event.event_type & raw::EVENT_XID_CRITICAL == 0 {
                        continue;
                    }
                    let Some(&gpu) = self.registered.get(&event.device) else {
                        continue;
                    };
                    *self
                        .counts
                        .entry(gpu)
                        .or_default()
                        .entry(event.data)
                        .or_insert(0) += 1;
                    self.last.insert(gpu, event.data);
                }
                Ok(None) => break,
                Err(e) => {
                    problems.push(format!("nvmlEventSetWait_v2: {e}"));
                    break;
                }
            }
        }
    }

    /// XID errors seen on GPU `index`, by code.
    pub fn counts(&self, index: u32) -> BTreeMap<u64, u64> {
        self.counts.get(&index).cloned().unwrap_or_default()
    }

    /// The code of the last XID error seen on GPU `index`.
    pub fn last(&self, index: u32) -> Option<u64> {
        self.last.get(&index).copied()
    }

    /// Free the event set; call before NVML shuts down.
    pub fn free(&mut self, nvml: &Nvml) {
        if let Some(set) = self.set.take() {
            // Nothing to do about a failure while shutting down.
            let _ = raw::event_set_free(nvml, set);
        }
    }
}
