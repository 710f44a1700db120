//! `gpu`: the power of NVIDIA GPUs, read through gpu-exporter's library (the workspace's one
//! GPU reader: [`gpu_exporter::power::PowerReader`], NVML or nvidia-smi, suspend rule
//! included), in the background every `--gpu.interval` within `--gpu.timeout` (loading NVML
//! can take a while; nvidia-smi is a child process, killed and reaped at the timeout).
//!
//! Writes, per awake GPU, with labels `gpu` (the NVML/nvidia-smi index), `uuid` and `name`:
//!
//! - `power_gpu_power_watts`: with NVML on a GPU that has the energy counter, the average
//!   power since the previous run (the counter's increase over the time between the two
//!   runs; absent on the first run and on the first run after a sleep); otherwise the
//!   driver's power reading (`nvmlDeviceGetPowerUsage`, nvidia-smi's `power.draw`, the value
//!   of gpu-exporter's `nvidia_gpu_power_draw_watts`);
//! - `power_gpu_energy_joules_total`: NVML's `nvmlDeviceGetTotalEnergyConsumption`, energy
//!   since the driver loaded (the value of gpu-exporter's
//!   `nvidia_gpu_energy_consumed_joules_total`); absent through nvidia-smi and on GPUs without
//!   the counter.
//!
//! A runtime-suspended GPU (`<sysfs>/bus/pci/devices/<bus id>/power/runtime_status`) is not
//! asked: its series are absent and `/health`'s detail says it sleeps. No GPU, no NVML library
//! and no nvidia-smi are no failure: nothing is written and the detail says which (the backend
//! is looked for again every [`RETRY`]). A backend named with `--gpu.backend` that cannot be
//! used fails the run. Where gpu-exporter also runs, `--no-collector.gpu` avoids polling the
//! GPUs twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use gpu_exporter::power::{GpuPower, PowerConfig, PowerReader};
use odin_common::{Collector, Context, Field, Mode, Sink};

/// How long to wait before looking for a backend again after none was found (a driver that
/// loads after the exporter starts).
pub const RETRY: Duration = Duration::from_secs(300);

const FIELDS: &[Field<GpuPower>] = &[
    Field::gauge(
        "gpu_power_watts",
        "Power drawn by the GPU: NVML's energy counter averaged since the previous read, else the driver's power reading.",
        |g| g.power_watts,
    ),
    Field::counter(
        "gpu_energy_joules_total",
        "Energy used by the GPU since its driver loaded (NVML's total energy consumption).",
        |g| g.energy_joules,
    ),
];

/// The `gpu` collector; see the module documentation.
pub struct Gpu {
    config: PowerConfig,
    interval: Duration,
    timeout: Duration,
    state: Mutex<State>,
    /// Set at shutdown: an nvidia-smi run in progress is killed at once.
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    reader: Option<PowerReader>,
    /// When no backend was found last, so the next look waits [`RETRY`].
    none_since: Option<Instant>,
    detail: Option<String>,
}

impl Gpu {
    pub fn new(config: PowerConfig, interval: Duration, timeout: Duration) -> Gpu {
        Gpu {
            config,
            interval,
            timeout,
            state: Mutex::new(State::default()),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Collector for Gpu {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.reader.is_none() {
            if matches!(st.none_since, Some(t) if t.elapsed() < RETRY) {
                return Ok(());
            }
            match PowerReader::open_cancellable(&self.config, ctx.timeout, Arc::clone(&self.cancel))
            {
                Ok(r) => {
                    st.reader = Some(r);
                    st.none_since = None;
                }
                Err(e) => {
                    st.none_since = Some(Instant::now());
                    st.detail = Some(format!("no GPU backend: {}", e.reason));
                    if e.forced {
                        let flag = self.config.backend.to_possible_value();
                        let name = flag.as_ref().map_or("", |v| v.get_name());
                        anyhow::bail!("--gpu.backend={name}: {}", e.reason);
                    }
                    return Ok(());
                }
            }
        }
        let reader = st.reader.as_mut().expect("opened above");
        let backend = reader.backend();
        let read = match reader.read(&ctx.sysfs, ctx.timeout) {
            Ok(r) => r,
            Err(e) => {
                st.detail = Some(format!("{backend}: read failed"));
                return Err(e);
            }
        };
        for p in &read.problems {
            out.item_error(p.clone());
        }
        let labels: Vec<[(&str, String); 3]> = read
            .gpus
            .iter()
            .map(|g| {
                [
                    ("gpu", g.gpu.index.to_string()),
                    ("uuid", g.gpu.uuid.clone().unwrap_or_default()),
                    ("name", g.gpu.name.clone().unwrap_or_default()),
                ]
            })
            .collect();
        let labels: Vec<[(&str, &str); 3]> = labels
            .iter()
            .map(|l| [(l[0].0, &*l[0].1), (l[1].0, &*l[1].1), (l[2].0, &*l[2].1)])
            .collect();
        let rows: Vec<_> = labels
            .iter()
            .zip(&read.gpus)
            .map(|(l, g)| (&l[..], g))
            .collect();
        if !rows.is_empty() {
            out.fields(FIELDS, &rows);
        }

        let mut detail = format!("{backend}: {} GPU(s) read", read.gpus.len());
        if !read.sleeping.is_empty() {
            detail.push_str(&format!(
                "; runtime-suspended, not woken: {}",
                read.sleeping.join(", ")
            ));
        } else if read.gpus.is_empty() {
            detail.push_str(" (no GPU found)");
        }
        st.detail = Some(detail);
        Ok(())
    }

    /// Kill the nvidia-smi run in progress so that shutdown need not wait for its timeout.
    fn stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn detail(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .detail
            .clone()
    }
}
