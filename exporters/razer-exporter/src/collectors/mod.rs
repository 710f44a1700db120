//! One file per source: openrazer's sysfs files, and the laptop controller over HID.

pub mod hid;
pub mod openrazer;
