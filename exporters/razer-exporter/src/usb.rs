//! Stable device ids from where a device sits on the USB bus.
//!
//! A HID device's sysfs directory (`0003:1532:028A.0004`) is numbered in the order the kernel
//! found devices, so the number changes across reboots and replugs. Its canonical path
//! names the USB port and interface it hangs off
//! (`/sys/devices/pci0000:00/0000:00:14.0/usb1/1-8/1-8:1.0/0003:1532:028A.0004`), which stay
//! the same while the device stays plugged into the same port. The ids are built from the
//! USB vendor and product ids and that location; never from a serial number.

use std::path::Path;

/// Where a HID device sits: the USB port path (`1-8`, `3-1.4`) and, for a device bound to
/// an interface, `<config>.<interface>` (`1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub port: String,
    pub interface: Option<String>,
}

impl Location {
    /// The interface number, for ordering a device's interfaces (0 first).
    pub fn interface_number(&self) -> Option<u32> {
        self.interface.as_deref()?.split('.').nth(1)?.parse().ok()
    }
}

fn is_port(s: &str) -> bool {
    // <bus>-<port>[.<port>...]: digits, one dash, then digits and dots
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    !bus.is_empty()
        && bus.bytes().all(|b| b.is_ascii_digit())
        && !ports.is_empty()
        && ports
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_interface(s: &str) -> bool {
    // <config>.<interface>
    let Some((c, i)) = s.split_once('.') else {
        return false;
    };
    !c.is_empty()
        && !i.is_empty()
        && c.bytes().all(|b| b.is_ascii_digit())
        && i.bytes().all(|b| b.is_ascii_digit())
}

/// The USB location in a (canonical) sysfs device path: the last USB port component and the
/// interface right below it. `None` for a device that is not on USB (a virtual uhid one).
pub fn location(path: &Path) -> Option<Location> {
    let mut found: Option<Location> = None;
    for comp in path.iter().filter_map(|c| c.to_str()) {
        if is_port(comp) {
            found = Some(Location {
                port: comp.to_owned(),
                interface: None,
            });
        } else if let Some((port, intf)) = comp.split_once(':') {
            if is_port(port) && is_interface(intf) {
                found = Some(Location {
                    port: port.to_owned(),
                    interface: Some(intf.to_owned()),
                });
            }
        }
    }
    found
}

/// `VVVV:PPPP` of a HID device directory name `BBBB:VVVV:PPPP.NNNN`.
pub fn ids_of_hid_name(name: &str) -> Option<(u16, u16)> {
    let mut parts = name.split(':');
    let (bus, vendor, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (product, instance) = rest.split_once('.')?;
    if parts.next().is_some() || bus.len() != 4 || instance.len() != 4 {
        return None;
    }
    u16::from_str_radix(bus, 16).ok()?;
    u16::from_str_radix(instance, 16).ok()?;
    Some((
        u16::from_str_radix(vendor, 16).ok()?,
        u16::from_str_radix(product, 16).ok()?,
    ))
}

/// The id of a device bound per interface (an openrazer device): `1532:00B7@1-2:1.0`.
pub fn interface_id(vendor: u16, product: u16, loc: &Location) -> String {
    match &loc.interface {
        Some(i) => format!("{vendor:04X}:{product:04X}@{}:{i}", loc.port),
        None => format!("{vendor:04X}:{product:04X}@{}", loc.port),
    }
}

/// The id of a whole USB device (a laptop's controller): `1532:028A@1-8`.
pub fn device_id(vendor: u16, product: u16, loc: &Location) -> String {
    format!("{vendor:04X}:{product:04X}@{}", loc.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_from_real_shaped_paths() {
        let p =
            Path::new("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-8/1-8:1.0/0003:1532:028A.0004");
        let loc = location(p).unwrap();
        assert_eq!(loc.port, "1-8");
        assert_eq!(loc.interface.as_deref(), Some("1.0"));
        assert_eq!(loc.interface_number(), Some(0));
        assert_eq!(interface_id(0x1532, 0x028a, &loc), "1532:028A@1-8:1.0");
        assert_eq!(device_id(0x1532, 0x028a, &loc), "1532:028A@1-8");

        // behind a hub, interface 2
        let p = Path::new(
            "/sys/devices/pci0000:00/0000:00:14.0/usb3/3-1/3-1.4/3-1.4:1.2/0003:1532:00B7.000A",
        );
        let loc = location(p).unwrap();
        assert_eq!(
            (loc.port.as_str(), loc.interface_number()),
            ("3-1.4", Some(2))
        );

        // virtual (uhid), PCI-only paths: none
        assert_eq!(
            location(Path::new(
                "/sys/devices/virtual/misc/uhid/0003:1532:028A.0001"
            )),
            None
        );
        assert_eq!(
            location(Path::new("/sys/devices/pci0000:00/0000:00:14.0")),
            None
        );
    }

    #[test]
    fn hid_names() {
        assert_eq!(
            ids_of_hid_name("0003:1532:028A.0004"),
            Some((0x1532, 0x028a))
        );
        assert_eq!(
            ids_of_hid_name("0003:1532:00b7.000a"),
            Some((0x1532, 0x00b7))
        );
        for bad in [
            "",
            "module",
            "0003:1532:028A",
            "0003:1532:028A.04",
            "0003:zz32:028A.0004",
            "0003:1532:028A.0004:1",
        ] {
            assert_eq!(ids_of_hid_name(bad), None, "{bad}");
        }
    }
}
