//! The transport boundary: something that takes a [`Request`] (only ever a GET, see
//! [`report`](super::report)) and gives back the device's answer bytes. [`Hidraw`] is the real
//! one, a `/dev/hidrawN` node through the kernel's feature-report ioctls; the replay
//! ([`super::replay`]) is the recorded or scripted one the tests and the demo use.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::report::{Request, REPORT_LEN};

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The device did not answer in time (the kernel's USB control timeout, or a replayed
    /// silence).
    NoAnswer,
    /// Any other failure of the transfer, with the OS's words.
    Io(String),
}

/// One request, one answer. Implementations take only a [`Request`], which only
/// [`encode`](super::report::encode) makes from a GET.
pub trait Transport: Send {
    fn exchange(&mut self, request: &Request) -> Result<Vec<u8>, TransportError>;

    /// How long to wait before asking again after a busy answer.
    fn retry_delay(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// `_IOC(_IOC_READ | _IOC_WRITE, 'H', nr, len)` from `<linux/hidraw.h>`, for the
/// architectures whose ioctl numbers use the common layout (x86, Arm, RISC-V).
const fn hidioc(nr: u64, len: usize) -> u64 {
    const READ_WRITE: u64 = 3;
    (READ_WRITE << 30) | ((len as u64) << 16) | ((b'H' as u64) << 8) | nr
}

/// Report number byte plus the 90-byte report: Razer devices have no numbered reports, so the
/// number is 0 and the kernel leaves it off the wire.
const BUF_LEN: usize = REPORT_LEN + 1;
const HIDIOCSFEATURE: u64 = hidioc(0x06, BUF_LEN);
const HIDIOCGFEATURE: u64 = hidioc(0x07, BUF_LEN);

/// A hidraw node. The descriptor is opened read-write because the feature-report ioctls
/// need it; what travels is always an encoded GET.
pub struct Hidraw {
    file: File,
    path: PathBuf,
    /// Time between sending a request and reading the answer (openrazer waits 600-800 µs
    /// for keyboards and laptops).
    wait: Duration,
}

impl Hidraw {
    pub fn open(path: &Path) -> io::Result<Hidraw> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(Hidraw {
            file,
            path: path.to_owned(),
            wait: Duration::from_micros(800),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ioctl(&self, request: u64, buf: &mut [u8; BUF_LEN]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable buffer of exactly the length encoded in `request`
        // (HIDIOC[SG]FEATURE(BUF_LEN)); the kernel reads and writes at most that many bytes.
        let n = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, buf.as_mut_ptr()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

fn transport_error(path: &Path, what: &str, e: io::Error) -> TransportError {
    match e.raw_os_error() {
        Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => TransportError::NoAnswer,
        _ => TransportError::Io(format!("{} ({what}): {e}", path.display())),
    }
}

impl Transport for Hidraw {
    fn exchange(&mut self, request: &Request) -> Result<Vec<u8>, TransportError> {
        let mut buf = [0u8; BUF_LEN];
        buf[1..].copy_from_slice(request.bytes());
        self.ioctl(HIDIOCSFEATURE, &mut buf)
            .map_err(|e| transport_error(&self.path, "send", e))?;
        std::thread::sleep(self.wait);
        let mut buf = [0u8; BUF_LEN];
        let n = self
            .ioctl(HIDIOCGFEATURE, &mut buf)
            .map_err(|e| transport_error(&self.path, "receive", e))?;
        // The answer starts with the report number the kernel put back; a short answer is
        // passed on short, for the decoder to count.
        Ok(buf[1..n.clamp(1, BUF_LEN)].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_hidraw_h() {
        // HIDIOCSFEATURE(91) and HIDIOCGFEATURE(91) as the C macros compute them on x86_64.
        assert_eq!(HIDIOCSFEATURE, 0xC05B_4806);
        assert_eq!(HIDIOCGFEATURE, 0xC05B_4807);
    }

    #[test]
    fn a_file_that_is_not_hidraw_fails_as_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hidraw0");
        std::fs::write(&p, b"").unwrap();
        let mut h = Hidraw::open(&p).unwrap();
        let req = super::super::report::encode(&super::super::report::FIRMWARE, 0xff);
        match h.exchange(&req) {
            Err(TransportError::Io(msg)) => assert!(msg.contains("hidraw0 (send)"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
