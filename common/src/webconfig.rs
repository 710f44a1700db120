//! The web configuration file (`--web.config.file`) in the exporter-toolkit format that
//! Prometheus and node_exporter read: TLS (through rustls), HTTP Basic authentication against
//! bcrypt hashes, and extra response headers. docs/web-config.md describes the format, what is
//! supported and refused, how reloads work and the design of the bcrypt cache.
//!
//! - [`WebConfig::load`] reads and checks one file, including the files it names (the
//!   certificate and key must belong together, the client CA must hold certificates).
//! - [`WebConfigWatcher`] holds the configuration in force and loads it again when the file,
//!   or a certificate, key or CA file it names, changes.
//! - Per connection: [`WebConfig::tls`] (an `Arc<rustls::ServerConfig>` to accept with, or
//!   `None` for plain HTTP). Per request: [`WebConfig::auth`] ([`BasicAuth::check`] gives a
//!   [`Decision`]) and [`WebConfig::headers`].
//!
//! Files: `webconfig/file.rs` (the YAML and its rules), `webconfig/tls.rs` (rustls),
//! `webconfig/auth.rs` (Basic authentication and its cache), `webconfig/watch.rs` (reloads).

mod auth;
mod file;
mod tls;
mod watch;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::HeaderMap;

pub use auth::{BasicAuth, Decision};
pub use watch::{Reload, WebConfigWatcher};

/// One loaded and checked web configuration.
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Arc<BasicAuth>,
    headers: HeaderMap,
    http2: bool,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .field("headers", &self.headers)
            .field("http2", &self.http2)
            .finish()
    }
}

/// The folder relative names in the file at `path` are taken from.
fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

impl WebConfig {
    /// Read, check and build the configuration in the file at `path`. The error names the
    /// file and the setting at fault.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<WebConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read web config {}", path.display()))?;
        WebConfig::from_text(&text, dir_of(path))
            .with_context(|| format!("web config {}", path.display()))
    }

    /// Build from the file's text; relative file names are taken from `dir`.
    fn from_text(text: &str, dir: &Path) -> anyhow::Result<WebConfig> {
        let spec = file::parse(text, dir)?;
        let tls = spec.tls.as_ref().map(tls::build).transpose()?;
        let mut headers = HeaderMap::new();
        for (n, v) in spec.headers {
            headers.insert(n, v);
        }
        Ok(WebConfig {
            tls,
            auth: Arc::new(BasicAuth::new(spec.users)),
            headers,
            http2: spec.http2,
        })
    }

    /// The TLS configuration to accept connections with, or `None` for plain HTTP. It offers
    /// HTTP/1.1 alone through ALPN.
    pub fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// The basic-authentication check; [`BasicAuth::enabled`] is false (and every request
    /// allowed) when the file has no users.
    pub fn auth(&self) -> &Arc<BasicAuth> {
        &self.auth
    }

    /// Headers to add to every response (`http_server_config.headers`; blank ones left out).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// `http_server_config.http2` as written (default true). ODIN serves HTTP/1.1 only, so it
    /// changes nothing; it is here for a log line.
    pub fn http2_requested(&self) -> bool {
        self.http2
    }
}
