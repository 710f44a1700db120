//! NVML backend: reads GPUs through `nvml-wrapper` (`libnvidia-ml.so.1`).
//!
//! [`open`] loads and initialises the library and registers for critical XID events;
//! [`NvmlBackend::read`] asks every device for everything the metric contract lists, once per
//! call (NVML answers from the driver in microseconds; nothing here waits or spawns).
//!
//! - [`library`]: loading and initialising NVML, one-line reasons when that fails.
//! - [`events`]: critical XID errors, counted from NVML events.
//! - [`device`]: the per-device reads; [`mig`]: MIG devices; [`processes`]: compute
//!   processes.
//! - [`errors`]: how a failed call affects a read (`NotSupported` is silent, a function the
//!   driver's library lacks is reported once, `GpuLost` drops the GPU, anything else is
//!   reported); per-value failures never fail the read.
//! - `raw`: the entry points `nvml-wrapper` does not wrap (remapped rows, MIG instance ids,
//!   margin temperature, JPEG/OFA utilization, retired page counts, events), called through
//!   the library table it loaded (`Nvml::lib`), with the same error mapping.

pub(crate) mod device;
pub(crate) mod errors;
pub use device::{clock_event_fields_renumbered, CLOCK_EVENT_FIELDS};
pub use errors::CallClock;
mod events;
pub(crate) mod library;
mod mig;
mod pcie;
mod processes;
mod raw;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use crate::reading::{Backend, Snapshot};
use device::Fixed;
use errors::ErrorPolicy;
use events::XidEvents;
pub use library::DEFAULT_LIBRARY;
use pcie::PcieSampler;

/// How often PCIe throughput is sampled when nothing else is said (`--collect.interval`'s
/// default).
pub const DEFAULT_PCIE_PERIOD: Duration = Duration::from_secs(10);

/// Load NVML (from `library`, or the system's `libnvidia-ml.so.1`), initialise it, and return
/// a backend. `Err` carries a one-line reason (library not found, init failed, no permission).
pub fn open(library: Option<&Path>) -> anyhow::Result<Box<dyn Backend>> {
    open_with(library, DEFAULT_PCIE_PERIOD)
}

/// [`open`], with PCIe throughput sampled every `pcie_period`.
pub fn open_with(
    library: Option<&Path>,
    pcie_period: Duration,
) -> anyhow::Result<Box<dyn Backend>> {
    Ok(Box::new(NvmlBackend::open_with(library, pcie_period)?))
}

/// The NVML backend. Holds the initialised library for its whole life (`nvmlShutdown` and
/// unloading happen on drop).
pub struct NvmlBackend {
    // The event set in `state` is freed in `Drop::drop`, which runs before `nvml` (and with it
    // nvmlShutdown and the library) is dropped.
    state: Mutex<State>,
    driver_version: Option<String>,
    cuda_version: Option<String>,
    pcie: PcieSampler,
    nvml: Arc<Nvml>,
}

/// What one backend remembers between reads.
struct State {
    xid: XidEvents,
    /// NVML functions found missing from the library: each is reported once.
    missing_functions: BTreeSet<String>,
    /// Notes from `open` (for example: XID events not supported) for the first read.
    notes: Vec<String>,
    /// What never changes while the driver is loaded, by GPU UUID, once read cleanly.
    fixed: HashMap<String, Fixed>,
}

impl NvmlBackend {
    pub fn open(library: Option<&Path>) -> anyhow::Result<NvmlBackend> {
        NvmlBackend::open_with(library, DEFAULT_PCIE_PERIOD)
    }

    /// [`NvmlBackend::open`], with PCIe throughput sampled every `pcie_period`.
    pub fn open_with(library: Option<&Path>, pcie_period: Duration) -> anyhow::Result<NvmlBackend> {
        let nvml = Arc::new(library::load(library)?);
        let driver_version = nvml.sys_driver_version().ok();
        let cuda_version = nvml
            .sys_cuda_driver_version()
            .ok()
            .map(library::cuda_version_text);
        let mut notes = Vec::new();
        let xid = XidEvents::register(&nvml, &mut notes);
        Ok(NvmlBackend {
            state: Mutex::new(State {
                xid,
                missing_functions: BTreeSet::new(),
                notes,
                fixed: HashMap::new(),
            }),
            driver_version,
            cuda_version,
            pcie: PcieSampler::start(Arc::clone(&nvml), pcie_period),
            nvml,
        })
    }
}

impl Drop for NvmlBackend {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        state.xid.free(&self.nvml);
    }
}

impl Backend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    /// NVML calls do not block on anything slow, so `timeout` is not needed here.
    fn read(&self, _timeout: Duration) -> anyhow::Result<Snapshot> {
        self.read_with(None)
    }
}

impl NvmlBackend {
    /// One read with every NVML call timed into `clock` (`examples/nvml-call-times.rs`).
    pub fn read_timed(&self, clock: &mut CallClock) -> anyhow::Result<Snapshot> {
        self.read_with(Some(clock))
    }

    fn read_with(&self, mut clock: Option<&mut CallClock>) -> anyhow::Result<Snapshot> {
        if let Some(c) = clock.as_deref_mut() {
            c.start();
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let count = self
            .nvml
            .device_count()
            .map_err(|e| anyhow::anyhow!("NVML device count failed: {e}"))?;
        let mut snap = Snapshot {
            cuda_version: self.cuda_version.clone(),
            ..Snapshot::default()
        };
        snap.problems.append(&mut state.notes);
        state.xid.drain(&self.nvml, &mut snap.problems);
        for i in 0..count {
            self.read_device(i, state, &mut snap, clock.as_deref_mut());
        }
        Ok(snap)
    }

    /// Read device `i` (the GPU, its processes and MIG devices) into `snap`, or note why it
    /// is skipped.
    fn read_device(
        &self,
        i: u32,
        state: &mut State,
        snap: &mut Snapshot,
        mut clock: Option<&mut CallClock>,
    ) {
        if let Some(c) = clock.as_deref_mut() {
            c.start();
        }
        let dev = match self.nvml.device_by_index(i) {
            Ok(d) => d,
            Err(NvmlError::GpuLost) => {
                snap.problems
                    .push(format!("gpu {i}: GPU is lost (fell off the bus); skipped"));
                return;
            }
            Err(e) => {
                snap.problems
                    .push(format!("gpu {i}: no device handle: {e}; skipped"));
                return;
            }
        };
        let mut problems = Vec::new();
        let mut errors =
            ErrorPolicy::new(i.to_string(), &mut problems, &mut state.missing_functions);
        errors.clock = clock;
        let mut g = device::read_gpu(
            &self.nvml,
            &dev,
            self.driver_version.clone(),
            &mut state.fixed,
            &mut errors,
        );
        if let Some((rx, tx)) = self.pcie.get(i) {
            let bytes_per_second = |kilobytes: u32| f64::from(kilobytes) * 1024.0;
            g.pcie_rx_bytes_per_second = errors
                .value("nvmlDeviceGetPcieThroughput", rx)
                .map(bytes_per_second);
            g.pcie_tx_bytes_per_second = errors
                .value("nvmlDeviceGetPcieThroughput", tx)
                .map(bytes_per_second);
        }
        let index = g.index.unwrap_or(i);
        g.index = Some(index);
        let processes = processes::read_processes(&self.nvml, &dev, &g, &mut errors);
        let mig_devices = if g.mig_mode_current == Some(true) {
            mig::read_mig_devices(&self.nvml, &dev, &g, &mut errors)
        } else {
            Vec::new()
        };
        if errors.gpu_lost {
            let uuid = g.uuid.as_deref().unwrap_or("unknown uuid");
            snap.problems.push(format!(
                "gpu {index} ({uuid}): GPU is lost (fell off the bus); skipped"
            ));
            return;
        }
        g.xid_errors = state.xid.counts(i);
        g.last_xid = state.xid.last(i);
        snap.problems.append(&mut problems);
        snap.gpus.push(g);
        snap.processes.extend(processes);
        snap.mig_devices.extend(mig_devices);
    }
}
