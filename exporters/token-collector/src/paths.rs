//! Default locations and the time zone, shared by the exporter and `report`.

use std::path::{Path, PathBuf};

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Each directory of $CLAUDE_CONFIG_DIR (comma-separated), else ~/.claude and ~/.config/claude.
pub fn default_config_dirs() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("CLAUDE_CONFIG_DIR") {
        let dirs: Vec<PathBuf> = v
            .to_string_lossy()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if !dirs.is_empty() {
            return dirs;
        }
    }
    match home() {
        Some(h) => vec![h.join(".claude"), h.join(".config").join("claude")],
        None => Vec::new(),
    }
}

/// The system-wide database: root's default, and that of a service user without a home
/// directory (`nobody` in a container, whose $HOME does not exist).
pub const SYSTEM_STORAGE: &str = "/var/lib/token-collector/state.db";

/// [`SYSTEM_STORAGE`] as root; else $XDG_STATE_HOME/token-collector/state.db, else
/// ~/.local/state/token-collector/state.db when $HOME is a directory, else [`SYSTEM_STORAGE`].
pub fn default_storage() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    storage_for(root, xdg, home().filter(|h| h.is_dir()))
}

fn storage_for(root: bool, xdg_state: Option<PathBuf>, home_dir: Option<PathBuf>) -> PathBuf {
    if root {
        return PathBuf::from(SYSTEM_STORAGE);
    }
    match xdg_state.or_else(|| home_dir.map(|h| h.join(".local").join("state"))) {
        Some(state) => state.join("token-collector").join("state.db"),
        None => PathBuf::from(SYSTEM_STORAGE),
    }
}

#[cfg(test)]
#[test]
fn storage_defaults() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        storage_for(true, p("/x"), p("/h")),
        PathBuf::from(SYSTEM_STORAGE)
    );
    assert_eq!(
        storage_for(false, p("/x"), p("/h")),
        PathBuf::from("/x/token-collector/state.db")
    );
    assert_eq!(
        storage_for(false, None, p("/h")),
        PathBuf::from("/h/.local/state/token-collector/state.db")
    );
    assert_eq!(
        storage_for(false, None, None),
        PathBuf::from(SYSTEM_STORAGE)
    );
}

/// `spool` next to the database.
pub fn default_spool(db: &Path) -> PathBuf {
    db.parent()
        .map(|d| d.join("spool"))
        .unwrap_or_else(|| PathBuf::from("spool"))
}

/// The named IANA zone (refused when unknown), else the system's zone, else UTC.
pub fn timezone(name: Option<&str>) -> anyhow::Result<jiff::tz::TimeZone> {
    match name {
        Some(n) => jiff::tz::TimeZone::get(n).map_err(|e| anyhow::anyhow!("--timezone {n:?}: {e}")),
        None => Ok(jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)),
    }
}

/// The spool of a database at `storage` (`spool` next to it); the same as [`default_spool`].
pub fn spool_dir_for(storage: &Path) -> PathBuf {
    default_spool(storage)
}

/// The spool directory as the exporter would use it from the environment alone:
/// $TOKEN_COLLECTOR_SPOOL_DIR, else next to $TOKEN_COLLECTOR_STORAGE_PATH, else next to the
/// default database. `wrap` uses it, so both sides agree without flags.
pub fn spool_dir_from_env() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(s) = var("TOKEN_COLLECTOR_SPOOL_DIR") {
        return s;
    }
    let db = var("TOKEN_COLLECTOR_STORAGE_PATH").unwrap_or_else(default_storage);
    default_spool(&db)
}
