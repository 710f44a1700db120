//! The compute processes running on one GPU.

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::{Device, Nvml};

use super::errors::ErrorPolicy;
use crate::reading::{GpuReading, ProcessReading};

/// The compute processes on `dev` (whose reading is `g`), with the memory each uses.
pub(crate) fn read_processes(
    nvml: &Nvml,
    dev: &Device<'_>,
    g: &GpuReading,
    errors: &mut ErrorPolicy<'_>,
) -> Vec<ProcessReading> {
    if errors.gpu_lost {
        return Vec::new();
    }
    let Some(list) = errors.value(
        "nvmlDeviceGetComputeRunningProcesses_v3",
        dev.running_compute_processes(),
    ) else {
        return Vec::new();
    };
    list.into_iter()
        .map(|p| ProcessReading {
            pid: p.pid,
            // Not found (the process ended) or not allowed: the collector falls back to
            // /proc/<pid>/comm, so this is not worth a problem.
            process_name: nvml.sys_process_name(p.pid, 1024).ok(),
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes as f64),
                UsedGpuMemory::Unavailable => None,
            },
            gpu_uuid: g.uuid.clone(),
            gpu_pci_bus_id: g.pci_bus_id.clone(),
        })
        .collect()
}
