//! Keeping the loaded configuration current: a thread polls the configuration file and the
//! certificate, key and CA files it names, and loads the configuration again when any of them
//! changes, so that rotated certificates and changed users apply without a restart.
//!
//! - Change is told by content, not modification time: every poll reads the files and
//!   compares a SHA-256 digest over all of them with the previous poll's. This sees a
//!   certificate replaced within the same second, a Kubernetes secret's symlink swap, and a
//!   file that disappears or comes back. The files are a few kilobytes each.
//! - A change that loads becomes current at once: new connections get the new TLS
//!   configuration, new requests the new users and headers. Connections already open keep the
//!   TLS session they negotiated.
//! - A change that does not load (a half-written file, a key that no longer matches its
//!   certificate, a typo) leaves the last good configuration in force; the error is logged as a
//!   warning once, and again only when it changes. The next change of any file is tried again.
//! - Whether TLS is on is fixed at start, because it decides what every listener does with a
//!   new connection: a reload that would turn TLS on or off is refused like a broken file
//!   (restart the exporter to switch).

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use log::Level;

use super::{file, WebConfig};
use crate::logging::event;

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// No file changed since the last poll.
    Unchanged,
    /// Something changed and the new configuration is now current.
    Applied,
    /// Something changed but the new configuration was refused; the last good one stays. The
    /// message says why (it never holds a password, hash or key).
    Rejected(String),
}

struct State {
    /// Digest of the configuration and the files it named at the last poll.
    fingerprint: [u8; 32],
    /// The last refusal logged, so that the same one is logged once.
    last_error: Option<String>,
    #[cfg(test)]
    warnings: usize,
}

struct Shared {
    path: PathBuf,
    tls: bool,
    current: RwLock<Arc<WebConfig>>,
    state: Mutex<State>,
}

/// The current web configuration, kept up to date from its file by a background thread (see
/// the module documentation). Dropping it stops the thread.
pub struct WebConfigWatcher {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WebConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfigWatcher")
            .field("path", &self.shared.path)
            .field("tls", &self.shared.tls)
            .finish_non_exhaustive()
    }
}

/// SHA-256 over the configuration file and every file it names, each with its path and
/// either its contents or the kind of error reading it gave.
fn fingerprint(path: &Path) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut add = |p: &Path| -> Option<Vec<u8>> {
        ctx.update(p.as_os_str().as_encoded_bytes());
        ctx.update(&[0]);
        match std::fs::read(p) {
            Ok(data) => {
                ctx.update(&(data.len() as u64).to_be_bytes());
                ctx.update(&data);
                Some(data)
            }
            Err(e) => {
                ctx.update(b"error:");
                ctx.update(format!("{:?}", e.kind()).as_bytes());
                None
            }
        }
    };
    if let Some(text) = add(path) {
        let text = String::from_utf8_lossy(&text);
        for f in file::named_files(&text, super::dir_of(path)) {
            add(&f);
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl WebConfigWatcher {
    /// How often [`WebConfigWatcher::start`] is usually asked to poll.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Load the configuration at `path` (an error if it does not load: the exporter should
    /// not start) and poll it and the files it names every `interval` from a thread of its
    /// own (at least every 10 ms).
    pub fn start(path: impl Into<PathBuf>, interval: Duration) -> anyhow::Result<WebConfigWatcher> {
        let interval = interval.max(Duration::from_millis(10));
        let mut w = WebConfigWatcher::new(path)?;
        let (tx, rx) = mpsc::channel::<()>();
        let shared = Arc::clone(&w.shared);
        let thread = std::thread::Builder::new()
            .name("web-config".into())
            .spawn(move || {
                // A message or a dropped sender both mean stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                    shared.poll();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the web config watcher thread: {e}"))?;
        w.stop = Some(tx);
        w.thread = Some(thread);
        Ok(w)
    }

    /// Load the configuration without a polling thread; [`WebConfigWatcher::poll`] checks
    /// for changes when called.
    pub fn new(path: impl Into<PathBuf>) -> anyhow::Result<WebConfigWatcher> {
        let path = path.into();
        let fingerprint = fingerprint(&path);
        let cfg = WebConfig::load(&path)?;
        Ok(WebConfigWatcher {
            shared: Arc::new(Shared {
                tls: cfg.tls().is_some(),
                path,
                current: RwLock::new(Arc::new(cfg)),
                state: Mutex::new(State {
                    fingerprint,
                    last_error: None,
                    #[cfg(test)]
                    warnings: 0,
                }),
            }),
            stop: None,
            thread: None,
        })
    }

    /// The configuration in force: a clone of an `Arc`, cheap enough for every connection
    /// and request.
    pub fn current(&self) -> Arc<WebConfig> {
        self.shared.current()
    }

    /// Whether TLS is on; fixed for the life of the watcher.
    pub fn tls_enabled(&self) -> bool {
        self.shared.tls
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Look for a change now, as the thread does every interval.
    pub fn poll(&self) -> Reload {
        self.shared.poll()
    }

    #[cfg(test)]
    pub(super) fn warnings_logged(&self) -> usize {
        self.shared.state.lock().unwrap().warnings
    }
}

impl Drop for WebConfigWatcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn current(&self) -> Arc<WebConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn poll(&self) -> Reload {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let fp = fingerprint(&self.path);
        if fp == state.fingerprint {
            return Reload::Unchanged;
        }
        state.fingerprint = fp;
        let file = self.path.display().to_string();
        let refused = match WebConfig::load(&self.path) {
            Ok(new) if new.tls().is_some() != self.tls => {
                let (was, now) = if self.tls {
                    ("on", "off")
                } else {
                    ("off", "on")
                };
                format!(
                    "web config {file}: the new configuration turns TLS {now}, which takes a \
                     restart (TLS stays {was})"
                )
            }
            Ok(mut new) => {
                let old = self.current();
                if old.auth.same_users(&new.auth) {
                    // Same users and hashes: keep the cache of checks that passed.
                    new.auth = Arc::clone(&old.auth);
                }
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                state.last_error = None;
                event(Level::Info, "web config reloaded", &[("file", &file)]);
                return Reload::Applied;
            }
            Err(e) => format!("{e:#}"),
        };
        if state.last_error.as_deref() != Some(refused.as_str()) {
            event(
                Level::Warn,
                "web config not reloaded, the last good one stays in force",
                &[("file", &file), ("err", &refused)],
            );
            #[cfg(test)]
            {
                state.warnings += 1;
            }
            state.last_error = Some(refused.clone());
        }
        Reload::Rejected(refused)
    }
}
