//! Reading sysfs attribute files the way hardware drivers answer them (power-exporter and
//! razer-exporter read every attribute through here).
//!
//! A driver may refuse one attribute (`EINVAL`/`ENODATA`/`EOPNOTSUPP`: not supported by this
//! model; `EAGAIN`/`EIO`/`EBUSY`/`ETIMEDOUT`: the device did not answer this time) while the
//! others work; a file can be unreadable for this user (`EACCES`, RAPL's `energy_uj` since
//! 2020); and a device can vanish between the listing and the read. [`read`] tells these apart
//! so that each collector decides: absent, skipped and counted, or a component failure.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why an attribute has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No such file, or the driver says the model does not support it: no sample, no error.
    Absent,
    /// Permission denied.
    Denied,
    /// The device failed to answer this time (EAGAIN, EIO, EBUSY, ETIMEDOUT, ...).
    Failed(String),
    /// The content did not parse.
    Malformed(String),
}

pub type Attr<T> = Result<T, Missing>;

fn classify(path: &Path, e: &io::Error) -> Missing {
    match e.raw_os_error() {
        Some(libc::ENOENT)
        | Some(libc::ENODEV)
        | Some(libc::ENXIO)
        | Some(libc::EINVAL)
        | Some(libc::ENODATA)
        | Some(libc::EOPNOTSUPP) => Missing::Absent,
        Some(libc::EACCES) | Some(libc::EPERM) => Missing::Denied,
        _ => Missing::Failed(format!("{}: {e}", path.display())),
    }
}

/// The attribute's text, trimmed of surrounding whitespace.
pub fn read(path: &Path) -> Attr<String> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).trim().to_owned()),
        Err(e) => Err(classify(path, &e)),
    }
}

/// The attribute as an integer (sysfs units: micro-, milli-, as the file says). An empty file
/// is absent (some drivers create the file and leave it empty).
pub fn read_i64(path: &Path) -> Attr<i64> {
    let text = read(path)?;
    if text.is_empty() {
        return Err(Missing::Absent);
    }
    text.parse()
        .map_err(|_| Missing::Malformed(format!("{}: not an integer", path.display())))
}

/// The attribute as an unsigned integer.
pub fn read_u64(path: &Path) -> Attr<u64> {
    let text = read(path)?;
    if text.is_empty() {
        return Err(Missing::Absent);
    }
    text.parse()
        .map_err(|_| Missing::Malformed(format!("{}: not an unsigned integer", path.display())))
}

/// The entries of a class directory (`class/hwmon`, `class/power_supply`), sorted by name;
/// an absent class is an empty list, not an error.
pub fn entries(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_empty_malformed_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("v"), "42\n").unwrap();
        fs::write(p("empty"), "").unwrap();
        fs::write(p("junk"), "4x2\n").unwrap();
        assert_eq!(read_u64(&p("v")), Ok(42));
        assert_eq!(read_i64(&p("v")), Ok(42));
        assert_eq!(read_u64(&p("missing")), Err(Missing::Absent));
        assert_eq!(read_u64(&p("empty")), Err(Missing::Absent));
        assert!(matches!(read_u64(&p("junk")), Err(Missing::Malformed(_))));
        // A directory where a file should be: a read error, not absence.
        fs::create_dir(p("dir")).unwrap();
        assert!(matches!(read(&p("dir")), Err(Missing::Failed(_))));
        assert!(entries(&p("no-class")).unwrap().is_empty());
    }

    /// How each errno a driver answers is classified. `EAGAIN`, `EBUSY` and `ETIMEDOUT` come
    /// from no file a test can make (a driver answers them), so they are checked here on
    /// synthetic errors; `EIO` and `EINVAL` also come from real files in the exporters' fault
    /// tests (/proc/self/mem and /proc/self/clear_refs).
    #[test]
    fn errnos_are_classified() {
        let p = Path::new("/sys/x/attr");
        let of = |errno| classify(p, &io::Error::from_raw_os_error(errno));
        for errno in [libc::EAGAIN, libc::EIO, libc::EBUSY, libc::ETIMEDOUT] {
            match of(errno) {
                Missing::Failed(m) => assert!(m.starts_with("/sys/x/attr: "), "{m}"),
                other => panic!("errno {errno}: {other:?}"),
            }
        }
        for errno in [
            libc::ENOENT,
            libc::ENODEV,
            libc::ENXIO,
            libc::EINVAL,
            libc::ENODATA,
        ] {
            assert_eq!(of(errno), Missing::Absent, "errno {errno}");
        }
        assert_eq!(of(libc::EOPNOTSUPP), Missing::Absent);
        assert_eq!(of(libc::EACCES), Missing::Denied);
        assert_eq!(of(libc::EPERM), Missing::Denied);
    }
}
