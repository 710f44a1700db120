//! Power only: the small reading API power-exporter's `gpu` collector uses, so that the
//! workspace has one GPU reader. It goes through this crate's NVML loading
//! ([`crate::nvml`]), error policy, nvidia-smi runner and table parsing
//! ([`crate::nvidia_smi`]) and suspend rule ([`crate::suspend`]); nothing here talks to a GPU
//! any other way.
//!
//! [`PowerReader::open`] picks a backend like `--backend` does (`auto`: NVML, else
//! nvidia-smi) without asking any GPU anything: NVML is loaded and initialised, nvidia-smi is
//! asked `--version`. [`PowerReader::read`] then:
//!
//! 1. learns the GPUs' identities (index, UUID, name, PCI bus id) once, at the first read
//!    where not every NVIDIA display controller in `<sysfs>/bus/pci/devices` sleeps, and again
//!    only after a GPU was lost or an unknown bus id appeared;
//! 2. skips every GPU whose `runtime_status` says `suspended`: it is not asked, its values are
//!    absent and [`PowerRead::sleeping`] names it;
//! 3. asks the others for power and nothing else:
//!    - **NVML**: one call per GPU on the device handle kept from step 1.
//!      `nvmlDeviceGetTotalEnergyConsumption` (millijoules since the driver loaded) is the
//!      energy counter, and the power is the counter's increase over the time since the
//!      previous read (an average over the collection interval, like RAPL's; absent on the
//!      first read, after a sleep and when the counter went back). A GPU that does not
//!      support the counter (`NotSupported`, or a library without the entry point: before
//!      Volta) is asked `nvmlDeviceGetPowerUsage` instead, from then on: power without an
//!      energy counter.
//!    - **nvidia-smi**: one run of `--query-gpu=pci.bus_id,power.draw
//!      --format=csv,noheader,nounits` for all GPUs, matched to the identities by bus id. Its
//!      query has no energy field: power only. nvidia-smi cannot be asked about some GPUs
//!      only: when every known GPU sleeps it is not run; when only some do, it runs and the
//!      sleeping GPUs' values are dropped (they may have been woken by it: the same limitation
//!      as gpu-exporter's `gpu` collector).
//!
//! No GPU, no NVML library and no nvidia-smi are not failures: [`PowerReader::open`] returns
//! [`NoReader`] with the reason, and a read with no GPU returns nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::nvmlDevice_t;

use crate::backend_select::Choice;
use crate::nvidia_smi::parse::parse_query_gpu;
use crate::nvidia_smi::runner::{RunError, Runner};
use crate::nvidia_smi::table::{self, Layout};
use crate::nvml::{device::watts, errors::ErrorPolicy, library};
use crate::reading::GpuReading;
use crate::suspend;

/// The fields of the identity query, once.
pub const IDENTITY_FIELDS: &[&str] = &["index", "uuid", "name", "pci.bus_id"];
/// The fields of every power query.
pub const POWER_FIELDS: &[&str] = &["pci.bus_id", "power.draw"];
/// nvidia-smi's answer to these queries is a few lines; anything far larger is not it.
const MAX_STDOUT: usize = 1 << 20;

/// Where the readings come from, with gpu-exporter's flag values.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    /// `auto` (NVML, else nvidia-smi), `nvml` or `nvidia-smi`.
    pub backend: Choice,
    /// The NVML library to load; `None`: the system's `libnvidia-ml.so.1`.
    pub nvml_library: Option<PathBuf>,
    /// Program and leading words of nvidia-smi ([`crate::nvidia_smi::runner::split_command`]).
    pub smi_command: Vec<String>,
}

/// Who a GPU is, learned once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuIdentity {
    pub index: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// As the backend prints it (`00000000:01:00.0`).
    pub pci_bus_id: Option<String>,
}

impl GpuIdentity {
    fn from_reading(g: &GpuReading, fallback_index: u32) -> GpuIdentity {
        GpuIdentity {
            index: g.index.unwrap_or(fallback_index),
            uuid: g.uuid.clone(),
            name: g.name.clone(),
            pci_bus_id: g.pci_bus_id.clone(),
        }
    }

    /// `gpu 1 (00000000:02:00.0)`: how details and problems name the GPU.
    pub fn describe(&self) -> String {
        match &self.pci_bus_id {
            Some(b) => format!("gpu {} ({b})", self.index),
            None => format!("gpu {}", self.index),
        }
    }

    fn suspended(&self, sysfs: &Path) -> bool {
        self.pci_bus_id
            .as_deref()
            .and_then(|b| suspend::runtime_suspended(sysfs, b))
            == Some(true)
    }
}

/// One awake GPU's power.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuPower {
    pub gpu: GpuIdentity,
    /// Watts: NVML's energy counter's increase over the time since the previous read, or the
    /// driver's power reading (`nvmlDeviceGetPowerUsage`, nvidia-smi's `power.draw`).
    pub power_watts: Option<f64>,
    /// Joules since the driver loaded (NVML only, on GPUs that have the counter).
    pub energy_joules: Option<f64>,
}

/// What one read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerRead {
    /// The GPUs asked, in index order.
    pub gpus: Vec<GpuPower>,
    /// The GPUs not asked because they are runtime-suspended ([`GpuIdentity::describe`], or
    /// the sysfs device name before the identities are known).
    pub sleeping: Vec<String>,
    /// Per-item problems (a GPU lost, a value unreadable): never fatal.
    pub problems: Vec<String>,
}

/// Why no reader could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoReader {
    /// One line: what was tried and why it did not work.
    pub reason: String,
    /// The backend was named explicitly (`nvml` or `nvidia-smi`), not found by `auto`.
    pub forced: bool,
}

/// Reads GPU power through NVML or nvidia-smi; see the module documentation.
pub struct PowerReader {
    inner: Inner,
}

enum Inner {
    /// Boxed: nvml-wrapper's function table is large.
    Nvml(Box<NvmlPower>),
    Smi(SmiPower),
}

impl std::fmt::Debug for PowerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerReader")
            .field("backend", &self.backend())
            .finish()
    }
}

impl PowerReader {
    /// Load NVML or check that nvidia-smi answers, as `config.backend` says, within
    /// `timeout`. No GPU is asked anything here.
    pub fn open(config: &PowerConfig, timeout: Duration) -> Result<PowerReader, NoReader> {
        Self::open_cancellable(config, timeout, Arc::new(AtomicBool::new(false)))
    }

    /// [`PowerReader::open`] whose nvidia-smi runs (the probe here, the reads later) stop
    /// within milliseconds once `cancel` is set, and run through gpu-exporter's watchdog
    /// ([`crate::nvidia_smi::watchdog`]) when this executable answers it, so that a hung
    /// nvidia-smi does not outlive the exporter.
    pub fn open_cancellable(
        config: &PowerConfig,
        timeout: Duration,
        cancel: Arc<AtomicBool>,
    ) -> Result<PowerReader, NoReader> {
        let nvml_err = match config.backend {
            Choice::NvidiaSmi => None,
            Choice::Nvml | Choice::Auto => match library::load(config.nvml_library.as_deref()) {
                Ok(nvml) => {
                    return Ok(PowerReader {
                        inner: Inner::Nvml(Box::new(NvmlPower::new(nvml))),
                    })
                }
                Err(e) => Some(format!("NVML: {e:#}")),
            },
        };
        if config.backend == Choice::Nvml {
            return Err(NoReader {
                reason: nvml_err.unwrap_or_default(),
                forced: true,
            });
        }
        let smi = SmiPower::new(config.smi_command.clone(), cancel);
        match smi.probe(timeout) {
            Ok(()) => Ok(PowerReader {
                inner: Inner::Smi(smi),
            }),
            Err(e) => Err(NoReader {
                reason: match nvml_err {
                    Some(n) => format!("{n}; nvidia-smi: {e}"),
                    None => format!("nvidia-smi: {e}"),
                },
                forced: config.backend == Choice::NvidiaSmi,
            }),
        }
    }

    /// `nvml` or `nvidia-smi`.
    pub fn backend(&self) -> &'static str {
        match self.inner {
            Inner::Nvml(_) => "nvml",
            Inner::Smi(_) => "nvidia-smi",
        }
    }

    /// The GPUs learned so far (empty before the first read that could learn them).
    pub fn identities(&self) -> Vec<GpuIdentity> {
        match &self.inner {
            Inner::Nvml(n) => n.gpus.iter().map(|g| g.id.clone()).collect(),
            Inner::Smi(s) => s.gpus.clone(),
        }
    }

    /// Ask every awake GPU for its power; `sysfs` is where `bus/pci/devices` is read for the
    /// suspend rule. `Err` only when nothing could be read at all (NVML's device count
    /// failed; nvidia-smi failed, timed out or printed something unreadable).
    pub fn read(&mut self, sysfs: &Path, timeout: Duration) -> anyhow::Result<PowerRead> {
        match &mut self.inner {
            Inner::Nvml(n) => n.read(sysfs),
            Inner::Smi(s) => s.read(sysfs, timeout),
        }
    }
}

/// Before the identities are known: the sysfs names of the NVIDIA GPUs when every one sleeps
/// (so none is woken to be identified), else `None`.
fn all_asleep_before_identified(sysfs: &Path) -> Option<Vec<String>> {
    let found = suspend::nvidia_gpus(sysfs);
    (!found.is_empty() && found.iter().all(|(_, s)| *s == Some(true)))
        .then(|| found.into_iter().map(|(dev, _)| dev).collect())
}

// ---- NVML ----

/// An NVML device handle, kept from the identity read so that each power read is one call.
struct Handle(nvmlDevice_t);

// SAFETY: an NVML device handle is an opaque pointer that stays valid while the library is
// initialised (the `Nvml` it came from lives next to it in `NvmlPower`); NVML is thread-safe,
// which is also why nvml-wrapper's `Device` is `Send` and `Sync`.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

struct NvmlGpu {
    id: GpuIdentity,
    handle: Handle,
    /// `Some(false)` once the GPU said it has no energy counter: asked for power instead.
    energy_counter: Option<bool>,
    /// The counter (mJ) and when it was read, for the next read's power.
    last: Option<(u64, Instant)>,
}

struct NvmlPower {
    // `gpus` holds raw handles only (nothing to drop); `nvml` shuts the library down on drop.
    gpus: Vec<NvmlGpu>,
    identified: bool,
    /// NVML functions found missing from the library (each reported once).
    missing_functions: BTreeSet<String>,
    nvml: Nvml,
}

impl NvmlPower {
    fn new(nvml: Nvml) -> NvmlPower {
        NvmlPower {
            gpus: Vec::new(),
            identified: false,
            missing_functions: BTreeSet::new(),
            nvml,
        }
    }

    /// Index, UUID, name and bus id of every GPU, and its handle.
    fn identify(&mut self, problems: &mut Vec<String>) -> anyhow::Result<()> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| anyhow::anyhow!("NVML device count failed: {e}"))?;
        let mut gpus = Vec::new();
        for i in 0..count {
            let dev = match self.nvml.device_by_index(i) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("gpu {i}: no device handle: {e}; skipped"));
                    continue;
                }
            };
            let mut errors = ErrorPolicy::new(i.to_string(), problems, &mut self.missing_functions);
            let reading = GpuReading {
                index: errors.value("nvmlDeviceGetIndex", dev.index()),
                uuid: errors.value("nvmlDeviceGetUUID", dev.uuid()),
                name: errors.value("nvmlDeviceGetName", dev.name()),
                pci_bus_id: errors
                    .value("nvmlDeviceGetPciInfo_v3", dev.pci_info())
                    .map(|p| p.bus_id),
                ..GpuReading::default()
            };
            if errors.gpu_lost {
                problems.push(format!("gpu {i}: GPU is lost (fell off the bus); skipped"));
                continue;
            }
            gpus.push(NvmlGpu {
                id: GpuIdentity::from_reading(&reading, i),
                // SAFETY: the raw handle of a device of `self.nvml`, used only while it lives.
                handle: Handle(unsafe { dev.handle() }),
                energy_counter: None,
                last: None,
            });
        }
        self.gpus = gpus;
        // No GPU yet (a driver still coming up): ask again next time.
        self.identified = !self.gpus.is_empty();
        Ok(())
    }

    fn read(&mut self, sysfs: &Path) -> anyhow::Result<PowerRead> {
        let mut out = PowerRead::default();
        if !self.identified {
            if let Some(sleeping) = all_asleep_before_identified(sysfs) {
                out.sleeping = sleeping;
                return Ok(out);
            }
            self.identify(&mut out.problems)?;
        }
        let mut lost = false;
        for g in &mut self.gpus {
            if g.id.suspended(sysfs) {
                out.sleeping.push(g.id.describe());
                g.last = None;
                continue;
            }
            // SAFETY: the handle came from `self.nvml`, which is still initialised.
            let dev = unsafe { Device::new(g.handle.0, &self.nvml) };
            let mut errors = ErrorPolicy::new(
                g.id.index.to_string(),
                &mut out.problems,
                &mut self.missing_functions,
            );
            let mut reading = GpuPower {
                gpu: g.id.clone(),
                power_watts: None,
                energy_joules: None,
            };
            if g.energy_counter != Some(false) {
                let result = dev.total_energy_consumption();
                let now = Instant::now();
                match result {
                    Ok(mj) => {
                        g.energy_counter = Some(true);
                        reading.energy_joules = Some(mj as f64 / 1000.0);
                        reading.power_watts = average_watts(g.last, mj, now);
                        g.last = Some((mj, now));
                    }
                    Err(e @ (NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound)) => {
                        errors.value::<u64>("nvmlDeviceGetTotalEnergyConsumption", Err(e));
                        g.energy_counter = Some(false);
                    }
                    Err(NvmlError::NotSupported) => g.energy_counter = Some(false),
                    Err(e) => {
                        errors.value::<u64>("nvmlDeviceGetTotalEnergyConsumption", Err(e));
                    }
                }
            }
            if g.energy_counter == Some(false) {
                reading.power_watts = errors
                    .value("nvmlDeviceGetPowerUsage", dev.power_usage())
                    .map(watts);
            }
            if errors.gpu_lost {
                out.problems.push(format!(
                    "{}: GPU is lost (fell off the bus); skipped",
                    g.id.describe()
                ));
                lost = true;
                continue;
            }
            out.gpus.push(reading);
        }
        if lost {
            // Its handle is no use any more; learn the GPUs again next time.
            self.identified = false;
        }
        Ok(out)
    }
}

/// Average power between the previous counter reading and `mj` at `now`; `None` without a
/// previous reading, when no time passed, or when the counter went back (the driver was
/// reloaded).
fn average_watts(last: Option<(u64, Instant)>, mj: u64, now: Instant) -> Option<f64> {
    let (before, at) = last?;
    let secs = now.checked_duration_since(at)?.as_secs_f64();
    (mj >= before && secs > 0.0).then(|| (mj - before) as f64 / 1000.0 / secs)
}

// ---- nvidia-smi ----

struct SmiPower {
    command: Vec<String>,
    gpus: Vec<GpuIdentity>,
    identified: bool,
    cancel: Arc<AtomicBool>,
}

impl SmiPower {
    fn new(command: Vec<String>, cancel: Arc<AtomicBool>) -> SmiPower {
        SmiPower {
            command,
            gpus: Vec::new(),
            identified: false,
            cancel,
        }
    }

    fn run(&self, deadline: Instant, args: &[&str]) -> Result<String, RunError> {
        let mut runner = Runner::new(
            self.command.clone(),
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
            MAX_STDOUT,
        );
        runner.watchdog = crate::nvidia_smi::watchdog::this_executable();
        runner.cancel = Some(Arc::clone(&self.cancel));
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        runner.run(&args).map(|o| o.stdout)
    }

    /// `--version`: the command runs and talks to the driver (asks no GPU).
    fn probe(&self, timeout: Duration) -> Result<(), RunError> {
        self.run(Instant::now() + timeout, &["--version"])
            .map(|_| ())
    }

    fn query(
        &self,
        deadline: Instant,
        fields: &[&str],
        nounits: bool,
    ) -> anyhow::Result<(Vec<GpuReading>, Vec<String>)> {
        let query = format!("--query-gpu={}", fields.join(","));
        let format = if nounits {
            "--format=csv,noheader,nounits"
        } else {
            "--format=csv,noheader"
        };
        let stdout = self
            .run(deadline, &[&query, format])
            .map_err(|e| anyhow::anyhow!("nvidia-smi {query}: {e}"))?;
        let parsed = parse_query_gpu(&stdout, Layout::NoHeader(fields)).map_err(|e| {
            anyhow::anyhow!(
                "nvidia-smi {query} printed something unreadable ({e}): {:?}",
                table::excerpt(stdout.trim(), 120)
            )
        })?;
        Ok((parsed.items, parsed.problems))
    }

    fn read(&mut self, sysfs: &Path, timeout: Duration) -> anyhow::Result<PowerRead> {
        let deadline = Instant::now() + timeout;
        let mut out = PowerRead::default();
        if !self.identified {
            if let Some(sleeping) = all_asleep_before_identified(sysfs) {
                out.sleeping = sleeping;
                return Ok(out);
            }
            let (rows, problems) = self.query(deadline, IDENTITY_FIELDS, false)?;
            out.problems.extend(problems);
            self.gpus = rows
                .iter()
                .enumerate()
                .map(|(i, g)| GpuIdentity::from_reading(g, i as u32))
                .collect();
            self.identified = !self.gpus.is_empty();
        }
        let asleep: Vec<bool> = self.gpus.iter().map(|g| g.suspended(sysfs)).collect();
        out.sleeping = self
            .gpus
            .iter()
            .zip(&asleep)
            .filter(|(_, s)| **s)
            .map(|(g, _)| g.describe())
            .collect();
        if !self.gpus.is_empty() && asleep.iter().all(|s| *s) {
            return Ok(out);
        }
        let (rows, problems) = self.query(deadline, POWER_FIELDS, true)?;
        out.problems.extend(problems);
        for row in rows {
            let bus = row.pci_bus_id.as_deref().map(str::trim);
            let Some(k) = self
                .gpus
                .iter()
                .position(|g| g.pci_bus_id.as_deref() == bus && bus.is_some())
            else {
                out.problems.push(format!(
                    "nvidia-smi listed a GPU at {} not seen before; learning the GPUs again",
                    bus.unwrap_or("an unknown bus id")
                ));
                self.identified = false;
                continue;
            };
            if asleep[k] {
                continue;
            }
            out.gpus.push(GpuPower {
                gpu: self.gpus[k].clone(),
                power_watts: row.power_draw_watts,
                energy_joules: None,
            });
        }
        out.gpus.sort_by_key(|g| g.gpu.index);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_power_from_two_counter_readings() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(average_watts(None, 5000, t1), None);
        assert_eq!(average_watts(Some((1000, t0)), 61_000, t1), Some(30.0));
        assert_eq!(average_watts(Some((1000, t0)), 1000, t1), Some(0.0));
        // The counter went back (driver reloaded): no value rather than a negative one.
        assert_eq!(average_watts(Some((9000, t0)), 1000, t1), None);
        assert_eq!(average_watts(Some((1000, t1)), 2000, t1), None);
    }

    #[test]
    fn identities_describe_themselves() {
        let g = GpuIdentity {
            index: 1,
            pci_bus_id: Some("00000000:02:00.0".into()),
            ..GpuIdentity::default()
        };
        assert_eq!(g.describe(), "gpu 1 (00000000:02:00.0)");
        let dir = tempfile::tempdir().unwrap();
        assert!(!g.suspended(dir.path()));
        let p = dir.path().join("bus/pci/devices/0000:02:00.0/power");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("runtime_status"), "suspended\n").unwrap();
        assert!(g.suspended(dir.path()));
    }

    #[test]
    fn missing_nvidia_smi_is_no_reader_with_both_reasons() {
        let config = PowerConfig {
            backend: Choice::Auto,
            nvml_library: Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
            smi_command: vec!["/nonexistent/nvidia-smi".into()],
        };
        let e = PowerReader::open(&config, Duration::from_secs(2)).unwrap_err();
        assert!(!e.forced);
        assert!(
            e.reason.starts_with("NVML: NVML library not found"),
            "{}",
            e.reason
        );
        assert!(
            e.reason.contains("; nvidia-smi: cannot run"),
            "{}",
            e.reason
        );
        let forced = PowerConfig {
            backend: Choice::Nvml,
            ..config
        };
        assert!(
            PowerReader::open(&forced, Duration::from_secs(2))
                .unwrap_err()
                .forced
        );
    }
}
