//! PCIe throughput, sampled off the scrape path.
//!
//! `nvmlDeviceGetPcieThroughput` counts bytes over a 20 ms window inside the call, so it
//! blocks for about 20 ms per direction. Measured on an H200 (driver 580.159.04), the two
//! calls were 42 of a read's 53 ms. A thread of the backend samples both directions of every
//! GPU once per period; a read serves the last sample. A sample older than three periods (a
//! stuck driver) is left out rather than served.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::PcieUtilCounter;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use super::errors::clone_error;

/// One GPU's last sample: receive and transmit, KB/s as NVML gives them.
pub(crate) struct Sample {
    pub rx: Result<u32, NvmlError>,
    pub tx: Result<u32, NvmlError>,
    pub at: Instant,
}

impl Sample {
    /// Both results, cloned (`NvmlError` is not `Clone`).
    pub fn results(&self) -> (Result<u32, NvmlError>, Result<u32, NvmlError>) {
        let copy = |r: &Result<u32, NvmlError>| r.as_ref().map(|v| *v).map_err(clone_error);
        (copy(&self.rx), copy(&self.tx))
    }
}

type Samples = Arc<Mutex<HashMap<u32, Sample>>>;

/// The sampling thread and what it last saw, by device index.
pub(crate) struct PcieSampler {
    samples: Samples,
    period: Duration,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl PcieSampler {
    /// Takes the first sample here (so that the first read has one: about 40 ms per GPU),
    /// then starts a thread that samples every `period`.
    pub fn start(nvml: Arc<Nvml>, period: Duration) -> PcieSampler {
        let samples: Samples = Arc::default();
        sample_all(&nvml, &samples);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("nvml-pcie".into())
                .spawn(move || loop {
                    {
                        let (lock, cvar) = &*stop;
                        let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                        let (stopped, _) = cvar
                            .wait_timeout_while(stopped, period, |s| !*s)
                            .unwrap_or_else(|e| e.into_inner());
                        if *stopped {
                            return;
                        }
                    }
                    sample_all(&nvml, &samples);
                })
                .ok()
        };
        if thread.is_none() {
            log::warn!("cannot start the PCIe throughput sampler thread; its series are absent");
        }
        PcieSampler {
            samples,
            period,
            stop,
            thread,
        }
    }

    /// Device `index`'s last sample, unless none was taken yet or it is stale.
    pub fn get(&self, index: u32) -> Option<(Result<u32, NvmlError>, Result<u32, NvmlError>)> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let s = samples.get(&index)?;
        (s.at.elapsed() <= self.period * 3).then(|| s.results())
    }
}

impl Drop for PcieSampler {
    /// Stops the thread and waits for its pass in progress (at most about 40 ms per GPU), so
    /// that no NVML call outlives the backend.
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One pass: both directions of every GPU.
pub(crate) fn sample_all(nvml: &Nvml, samples: &Mutex<HashMap<u32, Sample>>) {
    let count = nvml.device_count().unwrap_or(0);
    for i in 0..count {
        let Ok(dev) = nvml.device_by_index(i) else {
            continue;
        };
        let rx = dev.pcie_throughput(PcieUtilCounter::Receive);
        let tx = dev.pcie_throughput(PcieUtilCounter::Send);
        samples.lock().unwrap_or_else(|e| e.into_inner()).insert(
            i,
            Sample {
                rx,
                tx,
                at: Instant::now(),
            },
        );
    }
}
