//! The real hidraw path end to end: a virtual Razer Blade made through `/dev/uhid` answers
//! the controller's feature reports as a Blade does, the kernel gives it a hidraw node, and
//! the exporter finds it in sysfs and reads it through the same ioctls it uses on a laptop.
//!
//! Needs a writable `/dev/uhid` (the `uhid` module, root) and the right to make a device node
//! (the node is made in a temporary directory from the major:minor sysfs gives, since no udev
//! runs in a container). Where either is missing the test says it skipped and why.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odin_testkit::{value, Exe};
use razer_exporter::hid::replay::{Answer, Reply};
use razer_exporter::hid::report::{self, parse_request, REPORT_LEN};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_razer-exporter"),
    env_prefix: "RAZER_EXPORTER_",
};

// <linux/uhid.h>: struct uhid_event is packed, a u32 type then the largest request
// (uhid_create2_req, 4372 bytes).
const EVENT_LEN: usize = 4 + 4372;
const UHID_DESTROY: u32 = 1;
const UHID_GET_REPORT: u32 = 9;
const UHID_GET_REPORT_REPLY: u32 = 10;
const UHID_CREATE2: u32 = 11;
const UHID_SET_REPORT: u32 = 13;
const UHID_SET_REPORT_REPLY: u32 = 14;
const BUS_USB: u16 = 3;
const PRODUCT: u16 = 0x028A;

/// One vendor-defined 90-byte feature report, no report ids: what Razer devices declare.
const DESCRIPTOR: &[u8] = &[
    0x06, 0x00, 0xff, // Usage Page (vendor 0xFF00)
    0x09, 0x01, // Usage 1
    0xa1, 0x01, // Collection (Application)
    0x15, 0x00, // Logical Minimum 0
    0x26, 0xff, 0x00, // Logical Maximum 255
    0x75, 0x08, // Report Size 8
    0x95, 0x5a, // Report Count 90
    0x09, 0x02, // Usage 2
    0xb1, 0x02, // Feature (Data, Variable, Absolute)
    0xc0, // End Collection
];

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
}

fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(buf[at..at + 2].try_into().unwrap())
}

fn create(uhid: &mut File) -> std::io::Result<()> {
    let mut ev = vec![0u8; EVENT_LEN];
    put_u32(&mut ev, 0, UHID_CREATE2);
    let name = b"Razer Blade (odin uhid test)";
    ev[4..4 + name.len()].copy_from_slice(name);
    put_u16(&mut ev, 260, DESCRIPTOR.len() as u16);
    put_u16(&mut ev, 262, BUS_USB);
    put_u32(&mut ev, 264, 0x1532);
    put_u32(&mut ev, 268, u32::from(PRODUCT));
    ev[280..280 + DESCRIPTOR.len()].copy_from_slice(DESCRIPTOR);
    uhid.write_all(&ev)
}

/// What the virtual Blade answers, per request.
fn answer(get: &report::Get) -> Answer {
    Answer::ok(match get.name() {
        "firmware" => &[1, 3],
        "power_mode" => &[0, 1, 2, 0], // creator
        "boost_cpu" => &[0, 1, 3],
        "boost_gpu" => &[0, 2, 2],
        "fan_1" => &[0, 1, 35],
        "fan_2" => &[0, 2, 35],
        "keyboard_brightness" => &[1, 255],
        _ => &[0x80 | 60],
    })
}

/// Answer SET_REPORT (remember the request) and GET_REPORT (the answer to it) until `stop`.
fn serve(mut uhid: File, stop: Arc<AtomicBool>) {
    let mut last: Option<[u8; REPORT_LEN]> = None;
    let mut ev = vec![0u8; EVENT_LEN];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: uhid.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let Ok(n) = uhid.read(&mut ev) else { break };
        if n < 4 {
            continue;
        }
        let mut reply = vec![0u8; EVENT_LEN];
        match get_u32(&ev, 0) {
            UHID_SET_REPORT => {
                let size = usize::from(get_u16(&ev, 10)).min(4096);
                let data = &ev[12..12 + size];
                // Without report ids the buffer still starts with the report number 0.
                let body = if data.len() == REPORT_LEN + 1 {
                    &data[1..]
                } else {
                    data
                };
                last = body.try_into().ok();
                put_u32(&mut reply, 0, UHID_SET_REPORT_REPLY);
                put_u32(&mut reply, 4, get_u32(&ev, 4));
                put_u16(&mut reply, 8, 0);
            }
            UHID_GET_REPORT => {
                put_u32(&mut reply, 0, UHID_GET_REPORT_REPLY);
                put_u32(&mut reply, 4, get_u32(&ev, 4));
                let bytes = last.as_ref().and_then(|r| {
                    let get = parse_request(r)?;
                    match answer(&get).reply(&get, r[1]) {
                        Reply::Bytes(b) => Some(b),
                        Reply::Silence => None,
                    }
                });
                match bytes {
                    Some(b) => {
                        put_u16(&mut reply, 8, 0);
                        put_u16(&mut reply, 10, (b.len() + 1) as u16);
                        reply[12] = 0; // report number
                        reply[13..13 + b.len()].copy_from_slice(&b);
                    }
                    None => put_u16(&mut reply, 8, libc::EIO as u16),
                }
            }
            _ => continue,
        }
        if uhid.write_all(&reply).is_err() {
            break;
        }
    }
    let mut destroy = vec![0u8; EVENT_LEN];
    put_u32(&mut destroy, 0, UHID_DESTROY);
    let _ = uhid.write_all(&destroy);
}

/// The hidraw entry of our virtual device, once the kernel made it.
fn our_hidraw(limit: Duration) -> Option<(String, String)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/sys/class/hidraw")
            .into_iter()
            .flatten()
            .flatten()
        {
            let uevent =
                std::fs::read_to_string(entry.path().join("device/uevent")).unwrap_or_default();
            if uevent.contains("HID_ID=0003:00001532:0000028A") && uevent.contains("odin uhid test")
            {
                let dev = std::fs::read_to_string(entry.path().join("dev")).ok()?;
                return Some((
                    entry.file_name().to_string_lossy().into_owned(),
                    dev.trim().to_owned(),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_virtual_blade_read_through_hidraw() {
    let uhid = match OpenOptions::new().read(true).write(true).open("/dev/uhid") {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "skipped: /dev/uhid cannot be opened read-write ({e}); the uhid module and root \
                 are needed to make a virtual HID device"
            );
            return;
        }
    };
    let mut writer = uhid.try_clone().unwrap();
    if let Err(e) = create(&mut writer) {
        eprintln!("skipped: UHID_CREATE2 refused ({e})");
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || serve(uhid, stop))
    };
    let result = std::panic::catch_unwind(|| {
        let Some((node, majmin)) = our_hidraw(Duration::from_secs(5)) else {
            panic!("the kernel made no hidraw node for the virtual device");
        };
        let (major, minor) = majmin.split_once(':').unwrap();
        let dev = tempfile::tempdir().unwrap();
        let path = dev.path().join(&node);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C path; mode and device number as mknod(2) takes them.
        let made = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o600,
                libc::makedev(major.parse().unwrap(), minor.parse().unwrap()),
            )
        };
        if made != 0 {
            eprintln!(
                "skipped: cannot make a device node ({})",
                std::io::Error::last_os_error()
            );
            return;
        }
        read_it(dev.path(), &node);
    });
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn read_it(dev: &Path, node: &str) {
    let out = EXPORTER.once(
        &[
            "--no-collector.openrazer".into(),
            "--path.sysfs=/sys".into(),
            format!("--path.dev={}", dev.display()),
        ],
        &[],
    );
    let body = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = format!("1532:028A@{node}");
    let v = |s: &str| value(&body, &s.replace("DEV", &d));
    assert_eq!(v(r#"razer_power_mode{device="DEV",mode="creator"}"#), 1.0);
    assert_eq!(
        v(r#"razer_boost{device="DEV",component="cpu",level="boost"}"#),
        1.0
    );
    assert_eq!(v(r#"razer_fan_target_rpm{device="DEV",zone="2"}"#), 3500.0);
    assert_eq!(
        v(r#"razer_brightness_ratio{device="DEV",zone="keyboard"}"#),
        1.0
    );
    assert_eq!(
        v(r#"razer_battery_optimizer_threshold_ratio{device="DEV"}"#),
        0.6
    );
    assert_eq!(
        v(r#"razer_hid_errors_total{device="DEV",kind="bad_crc"}"#),
        0.0
    );
    assert!(
        body.contains(r#"firmware="v1.3",driver="hidraw""#),
        "{body}"
    );
}
