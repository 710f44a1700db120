//! Runtime power management of a GPU, read from sysfs without touching the GPU:
//! `<sysfs>/bus/pci/devices/<domain:bus:dev.fn>/power/runtime_status` (`active`,
//! `suspended`, `suspending`, `resuming`, `error`, `unsupported`).
//!
//! On laptops the dGPU sleeps (`suspended`) when nothing uses it; asking NVML or nvidia-smi
//! about it wakes it up and costs battery. The collector checks this file first.

use std::path::Path;

/// sysfs's device directory name for a bus id as nvidia-smi/NVML print it:
/// `00000000:0C:00.0` → `0000:0c:00.0` (4-digit domain, lower case). `None` if it does not
/// look like a PCI address.
pub fn sysfs_device_name(bus_id: &str) -> Option<String> {
    let (domain, rest) = bus_id.trim().split_once(':')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// Whether the PCI device is runtime-suspended: `Some(true)` for `suspended`, `Some(false)` for
/// any other status, `None` when the file cannot be read (no such device, no runtime PM,
/// sysfs not mounted) or the bus id is malformed.
pub fn runtime_suspended(sysfs: &Path, bus_id: &str) -> Option<bool> {
    let dev = sysfs_device_name(bus_id)?;
    let path = sysfs
        .join("bus/pci/devices")
        .join(dev)
        .join("power/runtime_status");
    let status = std::fs::read_to_string(path).ok()?;
    Some(status.trim() == "suspended")
}

/// PCI vendor id of NVIDIA.
const NVIDIA_VENDOR: &str = "0x10de";

/// The NVIDIA display controllers (PCI class 0x03xxxx: VGA or 3D controller) sysfs lists, with
/// whether each is runtime-suspended (`None` when its status cannot be read). Reading these
/// files does not wake a device. Used before the first successful read, when the collector
/// does not know the GPUs' bus ids yet.
pub fn nvidia_gpus(sysfs: &Path) -> Vec<(String, Option<bool>)> {
    let Ok(dir) = std::fs::read_dir(sysfs.join("bus/pci/devices")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Option<bool>)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let read = |f: &str| std::fs::read_to_string(path.join(f)).ok();
            if read("vendor")?.trim() != NVIDIA_VENDOR || !read("class")?.trim().starts_with("0x03")
            {
                return None;
            }
            let status = read("power/runtime_status").map(|s| s.trim() == "suspended");
            Some((e.file_name().to_string_lossy().into_owned(), status))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(root: &Path, dev: &str, vendor: &str, class: &str, status: Option<&str>) {
        let d = root.join("bus/pci/devices").join(dev);
        std::fs::create_dir_all(d.join("power")).unwrap();
        std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
        std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        if let Some(s) = status {
            std::fs::write(d.join("power/runtime_status"), format!("{s}\n")).unwrap();
        }
    }

    #[test]
    fn finds_nvidia_display_controllers_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        pci(
            root,
            "0000:01:00.0",
            "0x10de",
            "0x030000",
            Some("suspended"),
        );
        pci(
            root,
            "0000:01:00.1",
            "0x10de",
            "0x040300",
            Some("suspended"),
        ); // its HDMI audio
        pci(root, "0000:00:02.0", "0x8086", "0x030000", Some("active")); // the iGPU
        pci(root, "0000:02:00.0", "0x10de", "0x030200", None); // 3D controller, no runtime PM
        assert_eq!(
            nvidia_gpus(root),
            vec![
                ("0000:01:00.0".to_owned(), Some(true)),
                ("0000:02:00.0".to_owned(), None)
            ]
        );
        assert_eq!(nvidia_gpus(&root.join("missing")), Vec::new());
    }

    #[test]
    fn bus_ids_map_to_sysfs_names() {
        assert_eq!(
            sysfs_device_name("00000000:0C:00.0").as_deref(),
            Some("0000:0c:00.0")
        );
        assert_eq!(
            sysfs_device_name("0000:01:00.1").as_deref(),
            Some("0000:01:00.1")
        );
        assert_eq!(
            sysfs_device_name("00000001:AB:1F.7").as_deref(),
            Some("0001:ab:1f.7")
        );
        assert_eq!(sysfs_device_name("GPU-0000"), None);
        assert_eq!(sysfs_device_name("0000:01:00"), None);
        assert_eq!(sysfs_device_name("0000:01:20.0"), None);
        assert_eq!(sysfs_device_name("../../x:01:00.0"), None);
    }

    #[test]
    fn reads_runtime_status() {
        let dir = tempfile::tempdir().unwrap();
        let power = dir.path().join("bus/pci/devices/0000:01:00.0/power");
        std::fs::create_dir_all(&power).unwrap();
        std::fs::write(power.join("runtime_status"), "suspended\n").unwrap();
        assert_eq!(
            runtime_suspended(dir.path(), "00000000:01:00.0"),
            Some(true)
        );
        std::fs::write(power.join("runtime_status"), "active\n").unwrap();
        assert_eq!(
            runtime_suspended(dir.path(), "00000000:01:00.0"),
            Some(false)
        );
        assert_eq!(runtime_suspended(dir.path(), "00000000:02:00.0"), None);
    }
}
