//! The MIG devices of a GPU in MIG mode: identity, instance ids, profile and memory.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::device::framebuffer_memory;
use super::errors::ErrorPolicy;
use super::raw;
use crate::reading::{GpuReading, MigDeviceReading};

/// The MIG devices of `dev` (whose reading is `g`). Problems name a MIG device
/// `<gpu> mig <slot>`.
pub(crate) fn read_mig_devices(
    nvml: &Nvml,
    dev: &Device<'_>,
    g: &GpuReading,
    errors: &mut ErrorPolicy<'_>,
) -> Vec<MigDeviceReading> {
    let mut out = Vec::new();
    if errors.gpu_lost {
        return out;
    }
    let (Some(gpu_index), Some(gpu_uuid)) = (g.index, g.uuid.clone()) else {
        return out;
    };
    let slots = errors
        .value("nvmlDeviceGetMaxMigDeviceCount", dev.mig_device_count())
        .unwrap_or(0);
    let gpu_name = std::mem::take(&mut errors.device);
    for slot in 0..slots {
        let mig = match dev.mig_device_by_index(slot) {
            Ok(m) => m,
            // An empty slot.
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
            Err(e) => {
                errors.device = gpu_name.clone();
                errors.value::<()>("nvmlDeviceGetMigDeviceHandleByIndex", Err(e));
                continue;
            }
        };
        errors.device = format!("{gpu_name} mig {slot}");
        let Some(uuid) = errors.value("nvmlDeviceGetUUID", mig.uuid()) else {
            continue;
        };
        let memory = framebuffer_memory(nvml, &mig, errors);
        out.push(MigDeviceReading {
            gpu_index,
            gpu_uuid: gpu_uuid.clone(),
            uuid,
            gpu_instance_id: errors.value(
                "nvmlDeviceGetGpuInstanceId",
                raw::gpu_instance_id(nvml, &mig),
            ),
            compute_instance_id: errors.value(
                "nvmlDeviceGetComputeInstanceId",
                raw::compute_instance_id(nvml, &mig),
            ),
            profile: errors
                .value("nvmlDeviceGetName", mig.name())
                .and_then(|n| mig_profile(&n)),
            memory_used_bytes: memory.as_ref().map(|m| m.used as f64),
            memory_total_bytes: memory.as_ref().map(|m| m.total as f64),
        });
    }
    errors.device = gpu_name;
    out
}

/// The MIG profile in a MIG device's name: `NVIDIA H100 80GB HBM3 MIG 1g.10gb` -> `1g.10gb`.
fn mig_profile(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_from_names() {
        assert_eq!(
            mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb").as_deref(),
            Some("1g.10gb")
        );
        assert_eq!(mig_profile("MIG 3g.40gb").as_deref(), Some("3g.40gb"));
        assert_eq!(mig_profile("NVIDIA L40S"), None);
        assert_eq!(mig_profile("NVIDIA MIG "), None);
    }
}
