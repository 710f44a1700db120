//! Real read errors from files, for the exporters' fault tests: a symlink to
//! `/proc/self/mem` reads EIO (offset 0 is unmapped), one to `/proc/self/clear_refs` EINVAL
//! (no read method).

use std::os::unix::fs::symlink;
use std::path::Path;

/// A file whose read fails with `EIO` (offset 0 of the reader's own memory is unmapped).
pub const EIO: &str = "/proc/self/mem";
/// A file whose read fails with `EINVAL` (it has no read method).
pub const EINVAL: &str = "/proc/self/clear_refs";

/// Put a symlink to `target` where `path` was (a file or a link).
pub fn replace(path: &Path, target: &str) {
    std::fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    symlink(target, path).unwrap();
}

/// Whether reading `path` fails here with `errno` (a kernel without it skips the test).
pub fn answers(path: &str, errno: i32) -> bool {
    let got = std::fs::read(path);
    let ok = got.as_ref().err().and_then(|e| e.raw_os_error()) == Some(errno);
    if !ok {
        eprintln!("skipped: {path} does not answer errno {errno} here ({got:?})");
    }
    ok
}
