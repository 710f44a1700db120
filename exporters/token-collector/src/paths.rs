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

/// The name of `uid` in a passwd file's text (`name:x:uid:gid:...`); the first entry wins.
pub fn user_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let mut fields = line.split(':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let id: u32 = fields.nth(1)?.trim().parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// The user name of `uid` from /etc/passwd, else the number as text.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| user_in_passwd(&p, uid))
        .unwrap_or_else(|| uid.to_string())
}

/// The owner of `path` (its uid's user name, else the uid), `None` when it cannot be read.
pub fn owner_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| user_name(m.uid()))
}

/// `--label.user`: when the usage families get a `user` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum UserLabel {
    /// Only on a shared host: the sources (transcript roots that exist at start and the
    /// spool) have more than one owner.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Whether the `user` label is served, given the owners of the sources at start.
pub fn label_user(mode: UserLabel, owners: &[String]) -> bool {
    match mode {
        UserLabel::Always => true,
        UserLabel::Never => false,
        UserLabel::Auto => {
            let distinct: std::collections::BTreeSet<&String> = owners.iter().collect();
            distinct.len() > 1
        }
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
# a comment:x:7:7
ada:x:1000:1000:Ada:/home/ada:/bin/bash
broken line
bob:*:1001:1001::/home/bob:/bin/sh
ada2:x:1000:1000::/home/ada2:/bin/sh
";

    #[test]
    fn user_names_from_a_passwd_file() {
        assert_eq!(user_in_passwd(PASSWD, 0).as_deref(), Some("root"));
        assert_eq!(user_in_passwd(PASSWD, 1000).as_deref(), Some("ada"));
        assert_eq!(user_in_passwd(PASSWD, 1001).as_deref(), Some("bob"));
        assert_eq!(user_in_passwd(PASSWD, 7), None);
        assert_eq!(user_in_passwd(PASSWD, 4242), None);
        assert_eq!(user_in_passwd("", 0), None);
    }

    #[test]
    fn an_unknown_uid_is_its_number() {
        // No passwd file names uid 4294967294 (nobody is 65534).
        assert_eq!(user_name(4_294_967_294), "4294967294");
    }

    #[test]
    fn the_owner_of_a_directory() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let uid = std::fs::metadata(tmp.path()).unwrap().uid();
        assert_eq!(owner_of(tmp.path()), Some(user_name(uid)));
        assert_eq!(owner_of(&tmp.path().join("missing")), None);
    }

    #[test]
    fn the_user_label_only_with_several_owners() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!label_user(UserLabel::Auto, &o(&[])));
        assert!(!label_user(UserLabel::Auto, &o(&["ada"])));
        assert!(!label_user(UserLabel::Auto, &o(&["ada", "ada", "ada"])));
        assert!(label_user(UserLabel::Auto, &o(&["ada", "bob"])));
        assert!(label_user(UserLabel::Auto, &o(&["ada", "ada", "1001"])));
        assert!(label_user(UserLabel::Always, &o(&["ada"])));
        assert!(!label_user(UserLabel::Never, &o(&["ada", "bob"])));
    }
}
