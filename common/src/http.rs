//! The HTTP side: listeners, the connection and request limits, routing, and graceful
//! shutdown.
//!
//! Hardening: request headers must fit `MAX_BUF` and arrive within `--web.read-header-timeout`
//! (a slow-loris client is dropped then; hyper also arms that timer while a keep-alive
//! connection waits for its next request); request bodies are never read (a request
//! announcing one gets 413 and the connection is closed); a connection is closed after
//! `--web.max-connection-age` once its request is answered.
//!
//! Idle connections are cheap and never delay a scrape: every connection is accepted at once
//! (none waits in the listen backlog behind idle ones), at most `--web.max-connections` stay
//! open (a new one beyond that closes the connection that has been open longest without a
//! request in progress, which bounds memory), and what is limited is the work:
//! `--web.max-requests` scrapes are served at once, more wait their turn (FIFO) for up to their
//! scrape timeout and then get 503. The process's open-file limit is raised to its hard limit
//! at start, as Go programs do, and a connection limit above it is lowered to fit.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::Level;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::cli::ListenAddr;
use crate::health;
use crate::logging::event;
use crate::runtime::Runtime;
use crate::webconfig::{Decision, WebConfig, WebConfigWatcher};

/// Largest request head (request line plus headers) accepted.
pub const MAX_BUF: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// How long a connection gets to finish its request after shutdown or its age limit.
const CONNECTION_GRACE: Duration = Duration::from_secs(15);
/// How long a scrape waits for its turn under `--web.max-requests` when the scraper does not
/// say its timeout (`X-Prometheus-Scrape-Timeout-Seconds`).
const DEFAULT_SCRAPE_WAIT: Duration = Duration::from_secs(10);
/// File descriptors kept free of connections: collectors open files too.
const FD_RESERVE: u64 = 128;
/// At shutdown, how long connections keep reading before they close between requests: a
/// request already sent (in the socket, not read yet) is answered, not dropped.
const SHUTDOWN_READ_WINDOW: Duration = Duration::from_millis(150);

pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct ServerConfig {
    pub telemetry_path: String,
    /// `--web.config.file`: TLS, basic authentication and extra headers, re-read when it
    /// changes.
    pub web: Option<Arc<WebConfigWatcher>>,
    /// `--web.unauthenticated-probes`: `/healthz` and `/ready` without authentication.
    pub unauthenticated_probes: bool,
    /// Most connections open at once; a new one beyond this closes the one open longest
    /// without a request in progress.
    pub max_connections: usize,
    /// Most scrapes served at once; 0 for no limit.
    pub max_requests: usize,
    pub read_header_timeout: Duration,
    pub max_connection_age: Duration,
}

/// Raise the soft open-file limit to the hard one (as the Go runtime does for node_exporter),
/// and return the soft limit now in force (`None` if it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: a valid rlimit no higher than the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some(lim.rlim_cur)
}

/// The connection limit that fits under an open-file limit of `fds`.
pub fn fit_connections(wanted: usize, fds: Option<u64>) -> usize {
    match fds {
        Some(fds) => wanted.min(fds.saturating_sub(FD_RESERVE).max(1) as usize),
        None => wanted,
    }
}

/// One open connection, as the limit sees it.
#[derive(Default)]
struct Conn {
    /// Requests of this connection being handled now.
    busy: AtomicUsize,
    /// Told to close (the limit needs its slot).
    close: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close the connection open longest without a request in progress; whether there was
    /// one.
    fn evict_idle(open: &mut BTreeMap<u64, Arc<Conn>>) -> bool {
        let victim = open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Register a new connection, closing idle ones to stay within `max`; `None` when every
    /// open connection has a request in progress.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut open = self.lock();
        while open.len() >= max {
            if !Self::evict_idle(&mut open) {
                return None;
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn::default());
        open.insert(id, Arc::clone(&c));
        Some((id, c))
    }

    fn evict_one(&self) -> bool {
        Self::evict_idle(&mut self.lock())
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// What every connection task shares.
struct Shared {
    cfg: ServerConfig,
    conns: Connections,
    /// `--web.max-requests` permits; `None` without a limit.
    scrapes: Option<Semaphore>,
}

/// Marks a connection busy while one of its requests is handled.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(c: &Arc<Conn>) -> Busy {
        c.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(c))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bind every listen address; the first failure is an error naming the address.
pub async fn bind(addrs: &[ListenAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(bind_one(addr).await?);
    }
    Ok(out)
}

async fn bind_one(addr: &ListenAddr) -> anyhow::Result<TcpListener> {
    let candidates = addr
        .candidates()
        .map_err(|e| anyhow::anyhow!("cannot resolve listen address {addr}: {e}"))?;
    let mut last_err = None;
    for cand in candidates {
        match TcpListener::bind(cand).await {
            Ok(l) => return Ok(l),
            // The port is taken: trying the IPv4 wildcard after the IPv6 one can't help.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(anyhow::anyhow!("cannot listen on {addr}: {e}"));
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(anyhow::anyhow!("cannot listen on {addr}: {e}")),
        None => Err(anyhow::anyhow!("cannot listen on {addr}: no address")),
    }
}

/// Serve on `listeners` until `stop` resolves, then stop accepting and wait (at most
/// `CONNECTION_GRACE`) for requests in flight.
pub async fn serve(
    rt: Arc<Runtime>,
    listeners: Vec<TcpListener>,
    cfg: ServerConfig,
    stop: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = mpsc::channel::<()>(1);
    let shared = Arc::new(Shared {
        scrapes: (cfg.max_requests > 0).then(|| Semaphore::new(cfg.max_requests)),
        cfg,
        conns: Connections::default(),
    });
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&rt),
            Arc::clone(&shared),
            stop_rx.clone(),
            conn_tx.clone(),
        )));
    }
    drop(conn_tx);
    stop.await;
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    // Every connection task holds a sender; recv() yields None once all are gone.
    if tokio::time::timeout(CONNECTION_GRACE, conn_rx.recv())
        .await
        .is_err()
    {
        event(
            Level::Warn,
            "connections still open after the shutdown grace period",
            &[],
        );
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Err: the sender is gone, which also means stop.
    let _ = rx.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: TcpListener,
    rt: Arc<Runtime>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    conn_tx: mpsc::Sender<()>,
) {
    let mut draining = false;
    loop {
        let accepted = if draining {
            // Stopping: take the connections already queued in the backlog (their requests
            // may be sent already) so they are answered, not reset; then close the listener.
            match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
                Ok(a) => a,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut stop) => {
                    draining = true;
                    continue;
                }
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) if draining => return,
            Err(e) => {
                // Out of file descriptors: make room by closing an idle connection; otherwise
                // back off instead of spinning.
                let fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                if fds && shared.conns.evict_one() {
                    tokio::task::yield_now().await;
                } else {
                    event(Level::Warn, "accept failed", &[("err", &e.to_string())]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let Some((id, ctl)) = shared.conns.admit(shared.cfg.max_connections) else {
            // Every open connection has a request in progress: the request limit is the
            // bottleneck, not idle sockets. Refuse this one.
            event(
                Level::Debug,
                "connection refused: every connection is busy",
                &[("peer", &peer.to_string())],
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (rt, shared, stop, tx) = (
            Arc::clone(&rt),
            Arc::clone(&shared),
            stop.clone(),
            conn_tx.clone(),
        );
        tokio::spawn(async move {
            serve_connection(stream, peer, rt, Arc::clone(&shared), ctl, stop).await;
            shared.conns.remove(id);
            drop(tx);
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    rt: Arc<Runtime>,
    shared: Arc<Shared>,
    ctl: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) {
    let web = shared.cfg.web.as_ref().map(|w| w.current());
    let Some(tls) = web.as_ref().and_then(|w| w.tls().cloned()) else {
        return serve_http(stream, peer, rt, shared, ctl, web, stop).await;
    };
    // The handshake is part of the request head: same timeout, and an idle slot may be
    // taken from it like from any connection without a request in progress.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(shared.cfg.read_header_timeout, acceptor.accept(stream));
    let tls_stream = tokio::select! {
        r = handshake => r,
        _ = ctl.close.notified() => return,
        _ = stopped(&mut stop) => return,
    };
    match tls_stream {
        Ok(Ok(s)) => serve_http(s, peer, rt, shared, ctl, web, stop).await,
        Ok(Err(e)) => event(
            Level::Debug,
            "TLS handshake failed",
            &[("peer", &peer.to_string()), ("err", &e.to_string())],
        ),
        Err(_) => event(
            Level::Debug,
            "TLS handshake timed out",
            &[("peer", &peer.to_string())],
        ),
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    rt: Arc<Runtime>,
    shared: Arc<Shared>,
    ctl: Arc<Conn>,
    web: Option<Arc<WebConfig>>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.cfg.read_header_timeout)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let (shared2, ctl2) = (Arc::clone(&shared), Arc::clone(&ctl));
    let svc = hyper::service::service_fn(move |req| {
        let (rt, shared, busy) = (Arc::clone(&rt), Arc::clone(&shared2), Busy::new(&ctl2));
        let web = web.clone();
        async move {
            let resp = guarded(&rt, &shared, web.as_deref(), req).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        // Closed to make room: it had no request in progress.
        _ = ctl.close.notified() => Ok(()),
        _ = tokio::time::sleep(shared.cfg.max_connection_age) => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(CONNECTION_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
        }
        _ = stopped(&mut stop) => {
            // Read what was already sent before closing between requests.
            match tokio::time::timeout(SHUTDOWN_READ_WINDOW, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(CONNECTION_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
                }
            }
        }
    };
    if let Err(e) = res {
        event(
            Level::Debug,
            "connection ended with an error",
            &[("peer", &peer.to_string()), ("err", &e.to_string())],
        );
    }
}

/// Basic authentication (when the web configuration has users) in front of every endpoint
/// but the probes `--web.unauthenticated-probes` opens, and the configuration's extra
/// headers on every answer.
async fn guarded<B>(
    rt: &Runtime,
    shared: &Shared,
    web: Option<&WebConfig>,
    req: Request<B>,
) -> Resp {
    let Some(web) = web else {
        return handle(rt, shared, req).await;
    };
    let open =
        shared.cfg.unauthenticated_probes && matches!(req.uri().path(), "/healthz" | "/ready");
    let auth = web.auth();
    let decision = if open || !auth.enabled() {
        Decision::Allowed
    } else {
        let presented = req.headers().get(header::AUTHORIZATION).cloned();
        match auth.check_cached(presented.as_ref()) {
            Some(d) => d,
            None => {
                // bcrypt costs tens of milliseconds of CPU: off the async workers.
                let auth = Arc::clone(auth);
                tokio::task::spawn_blocking(move || auth.check(presented.as_ref()))
                    .await
                    .unwrap_or(Decision::Unauthorized)
            }
        }
    };
    let mut resp = match decision {
        Decision::Allowed => handle(rt, shared, req).await,
        Decision::Unauthorized => {
            let mut r = text(StatusCode::UNAUTHORIZED, "401 unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(Decision::CHALLENGE),
            );
            r
        }
    };
    for (name, value) in web.headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

type Resp = Response<Full<Bytes>>;

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    response(status, "text/plain; charset=utf-8", body)
}

/// Whether the request announces a body we would have to read.
fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, with a non-zero q).
pub fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
        if coding != "gzip" && coding != "*" {
            return false;
        }
        let q = it
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .filter_map(|q| q.trim().parse::<f64>().ok())
            .next()
            .unwrap_or(1.0);
        q > 0.0
    })
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

enum Route {
    Landing,
    Metrics,
    Health,
    Healthz,
    Ready,
}

async fn handle<B>(rt: &Runtime, shared: &Shared, req: Request<B>) -> Resp {
    let cfg = &shared.cfg;
    let start = Instant::now();
    let path = req.uri().path().to_owned();
    let route = match path.as_str() {
        "/" => Some(Route::Landing),
        p if p == cfg.telemetry_path => Some(Route::Metrics),
        "/health" => Some(Route::Health),
        "/healthz" => Some(Route::Healthz),
        "/ready" => Some(Route::Ready),
        _ => None,
    };
    let mut resp = match route {
        None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        Some(_) if req.method() != Method::GET && req.method() != Method::HEAD => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        Some(_) if has_body(&req) => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        ),
        Some(Route::Landing) => landing(rt, cfg),
        Some(Route::Metrics) => match scrape_turn(shared, &req).await {
            Ok(_turn) => metrics(rt, &req).await,
            Err(waited) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many scrapes at once (--web.max-requests)\n",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                event(
                    Level::Warn,
                    "scrape refused: --web.max-requests scrapes in progress",
                    &[("waited_ms", &waited.as_millis().to_string())],
                );
                r
            }
        },
        Some(Route::Health) => {
            let report = health::report(rt);
            let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
            response(StatusCode::OK, "application/json", body)
        }
        Some(Route::Healthz) => {
            let st = health::overall(rt.slots.iter().map(|s| s.healthy(&s.state())));
            if st == health::Status::Unhealthy {
                text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
            } else {
                text(StatusCode::OK, "OK")
            }
        }
        Some(Route::Ready) => match rt.not_ready_reason() {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n"),
            ),
        },
    };
    if has_body(&req) {
        // The body stays unread; the connection can't be reused.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16().to_string();
    let ms = format!("{:.1}", start.elapsed().as_secs_f64() * 1000.0);
    let method = req.method().as_str().to_owned();
    event(
        Level::Debug,
        "request",
        &[
            ("method", &method),
            ("path", &path),
            ("status", &status),
            ("duration_ms", &ms),
        ],
    );
    resp
}

/// Wait for a turn under `--web.max-requests`, at most the scrape's own timeout (its
/// `X-Prometheus-Scrape-Timeout-Seconds`, else [`DEFAULT_SCRAPE_WAIT`]); `Err(waited)` when
/// none came.
async fn scrape_turn<'a, B>(
    shared: &'a Shared,
    req: &Request<B>,
) -> Result<Option<tokio::sync::SemaphorePermit<'a>>, Duration> {
    let Some(sem) = &shared.scrapes else {
        return Ok(None);
    };
    if let Ok(p) = sem.try_acquire() {
        return Ok(Some(p));
    }
    let wait = req
        .headers()
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_SCRAPE_WAIT, |s| {
            Duration::from_secs_f64(s.min(300.0))
        });
    let start = Instant::now();
    match tokio::time::timeout(wait, sem.acquire()).await {
        Ok(Ok(p)) => Ok(Some(p)),
        _ => Err(start.elapsed()),
    }
}

async fn metrics<B>(rt: &Runtime, req: &Request<B>) -> Resp {
    let scrape = rt.scrape().await;
    let want_gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
    let mut body = scrape.body;
    let mut gzipped = false;
    if want_gzip {
        match gzip(&body) {
            Ok(z) => {
                body = z;
                gzipped = true;
            }
            Err(e) => event(
                Level::Warn,
                "gzip failed, sending plain",
                &[("err", &e.to_string())],
            ),
        }
    }
    let mut r = response(StatusCode::OK, METRICS_CONTENT_TYPE, body);
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn landing(rt: &Runtime, cfg: &ServerConfig) -> Resp {
    let name = html_escape(rt.id.name);
    let version = html_escape(rt.id.version);
    let mut about = html_escape(rt.id.about);
    if rt.id.demo {
        about.push_str("</p>\n<p><strong>Demo mode:</strong> these values are demo data (fixture trees, replays or fakes), not this machine's.");
    }
    let metrics = html_escape(&cfg.telemetry_path);
    let mut collectors = String::new();
    for s in &rt.slots {
        let mode = if s.is_background() {
            "background"
        } else {
            "on scrape"
        };
        collectors.push_str(&format!(
            "<li><code>{}</code> ({mode})</li>\n",
            html_escape(s.name)
        ));
    }
    if collectors.is_empty() {
        collectors.push_str("<li>none enabled</li>\n");
    }
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body>\n<h1>{name} {version}</h1>\n<p>{about}</p>\n<ul>\n\
         <li><a href=\"{metrics}\">Metrics</a></li>\n\
         <li><a href=\"/health\">Health</a> (JSON)</li>\n\
         <li><a href=\"/healthz\">Liveness</a></li>\n\
         <li><a href=\"/ready\">Readiness</a></li>\n</ul>\n\
         <h2>Collectors</h2>\n<ul>\n{collectors}</ul>\n</body>\n</html>\n"
    );
    response(StatusCode::OK, "text/html; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{Collector, Context, Mode, Sink};
    use crate::runtime::Identity;
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const ID: Identity = Identity {
        name: "h-exporter",
        prefix: "h",
        version: "0.0.7",
        about: "Serves <tests> & more.",
        demo: false,
    };

    struct Test {
        name: &'static str,
        mode: Mode,
        fail: Arc<AtomicBool>,
        delay: Duration,
    }

    impl Collector for Test {
        fn mode(&self) -> Mode {
            self.mode
        }
        fn collect(&self, _: &Context, out: &mut Sink) -> anyhow::Result<()> {
            std::thread::sleep(self.delay);
            if self.fail.load(Ordering::SeqCst) {
                anyhow::bail!("{} cannot read its source", self.name);
            }
            out.gauge("value", "V.")
                .sample(&[("from", self.name)], 42.0);
            Ok(())
        }
    }

    fn coll(
        name: &'static str,
        mode: Mode,
        delay: Duration,
    ) -> ((&'static str, Box<dyn Collector>), Arc<AtomicBool>) {
        let fail = Arc::new(AtomicBool::new(false));
        let collector = Test {
            name,
            mode,
            fail: Arc::clone(&fail),
            delay,
        };
        ((name, Box::new(collector)), fail)
    }

    fn config() -> ServerConfig {
        ServerConfig {
            telemetry_path: "/metrics".into(),
            web: None,
            unauthenticated_probes: false,
            max_connections: 64,
            max_requests: 4,
            read_header_timeout: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(60),
        }
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        rt: Arc<Runtime>,
    }

    async fn start(
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        cfg: ServerConfig,
    ) -> Server {
        let rt = Arc::new(Runtime::new(
            ID,
            collectors,
            "/p".into(),
            "/s".into(),
            Duration::from_secs(5),
        ));
        let listeners = bind(&[ListenAddr::Host("127.0.0.1".into(), 0)])
            .await
            .unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(Arc::clone(&rt), listeners, cfg, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
            rt,
        }
    }

    impl Server {
        async fn shutdown(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    use odin_testkit::Reply;

    /// Send `method path` with extra header lines and read the reply to the end.
    async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        Reply::parse(&raw)
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        request(addr, "GET", path, "").await
    }

    const BG: Mode = Mode::Background {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let srv = start(vec![a], config()).await;

        let r = get(srv.addr, "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let html = r.text();
        assert!(html.contains("<h1>h-exporter 0.0.7</h1>"), "{html}");
        assert!(html.contains("Serves &lt;tests&gt; &amp; more."), "{html}");
        for link in [
            "href=\"/metrics\"",
            "href=\"/health\"",
            "href=\"/healthz\"",
            "href=\"/ready\"",
        ] {
            assert!(html.contains(link), "{link} missing: {html}");
        }

        let r = get(srv.addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("content-encoding"), None);
        let plain = r.text();
        assert!(plain.contains("h_value{from=\"a\"} 42\n"), "{plain}");
        assert!(
            plain.contains("h_collector_success{collector=\"a\"} 1\n"),
            "{plain}"
        );

        let r = get(srv.addr, "/metrics?foo=bar").await;
        assert_eq!(r.status, 200, "query strings are ignored");

        let r = get(srv.addr, "/healthz").await;
        assert_eq!((r.status, r.text().as_str()), (200, "OK"));
        let r = get(srv.addr, "/ready").await;
        assert_eq!(r.status, 200, "no background collector: ready at once");

        let r = get(srv.addr, "/nope").await;
        assert_eq!(r.status, 404);
        let r = get(srv.addr, "/metrics/").await;
        assert_eq!(r.status, 404);

        for m in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let r = request(srv.addr, m, "/metrics", "").await;
            assert_eq!(r.status, 405, "{m}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
        let r = request(srv.addr, "POST", "/health", "Content-Length: 3\r\n").await;
        assert_eq!(r.status, 405);

        let r = request(srv.addr, "GET", "/metrics", "Content-Length: 100000\r\n").await;
        assert_eq!(r.status, 413);
        assert_eq!(r.header("connection"), Some("close"));

        let r = request(srv.addr, "HEAD", "/metrics", "").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        assert!(len > 100, "{len}");
        let r = request(srv.addr, "HEAD", "/health", "").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());

        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gzip_round_trip() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let srv = start(vec![a], config()).await;
        let r = request(
            srv.addr,
            "GET",
            "/metrics",
            "Accept-Encoding: deflate, gzip;q=0.5\r\n",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("h_value{from=\"a\"} 42\n"), "{text}");
        assert!(
            text.contains("# TYPE h_collector_success gauge\n"),
            "{text}"
        );
        let r = request(srv.addr, "GET", "/metrics", "Accept-Encoding: gzip;q=0\r\n").await;
        assert_eq!(r.header("content-encoding"), None);
        assert!(r.text().contains("h_value"));
        srv.shutdown().await;
    }

    #[test]
    fn accept_encoding_parsing() {
        let h = |s: &'static str| accepts_gzip(Some(&HeaderValue::from_static(s)));
        assert!(h("gzip"));
        assert!(h("br, GZIP"));
        assert!(h("gzip;q=0.1"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("deflate, br"));
        assert!(!h("xgzip"));
        assert!(!accepts_gzip(None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_degraded_unhealthy_and_ready() {
        let (a, fail_a) = coll("a", Mode::OnScrape, Duration::ZERO);
        let (b, _) = coll("b", Mode::OnScrape, Duration::ZERO);
        let (bg, _) = coll("bg", BG, Duration::ZERO);
        let srv = start(vec![a, b, bg], config()).await;

        let r = get(srv.addr, "/ready").await;
        assert_eq!(r.status, 503, "background collector has not run");
        let r = get(srv.addr, "/health").await;
        assert_eq!(r.header("content-type"), Some("application/json"));
        let h: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(h["status"], "healthy", "pending counts as healthy: {h}");
        assert_eq!(h["version"], "0.0.7");
        assert!(h["uptime_seconds"].as_f64().unwrap() >= 0.0);
        assert_eq!(h["components"]["bg"]["state"], "pending");
        assert_eq!(
            h["components"]["bg"]["last_success"],
            serde_json::Value::Null
        );
        assert_eq!(h["components"]["bg"]["mode"], "background");
        assert_eq!(h["components"]["bg"]["interval_seconds"], 3600.0);

        srv.rt.run_background_once().await;
        assert_eq!(get(srv.addr, "/ready").await.status, 200);

        fail_a.store(true, Ordering::SeqCst);
        for _ in 0..12 {
            get(srv.addr, "/metrics").await;
        }
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let r = get(srv.addr, "/metrics").await;
        assert!(r
            .text()
            .contains("h_collector_success{collector=\"a\"} 0\n"));
        let h: serde_json::Value =
            serde_json::from_slice(&get(srv.addr, "/health").await.body).unwrap();
        assert_eq!(h["status"], "degraded", "{h}");
        let a = &h["components"]["a"];
        assert_eq!(a["healthy"], false);
        assert_eq!(a["state"], "failed");
        assert_eq!(a["mode"], "on_scrape");
        assert_eq!(a["consecutive_failures"], 13);
        let errors = a["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 10);
        assert_eq!(errors[9]["message"], "a cannot read its source");
        let t = errors[9]["time"].as_f64().unwrap();
        assert!((t - before).abs() < 5.0, "{t} vs {before}");
        assert_eq!(h["components"]["b"]["healthy"], true);
        assert_eq!(h["components"]["b"]["state"], "ok");
        assert!(h["components"]["b"]["last_success"].as_f64().unwrap() > 1.6e9);
        assert_eq!(h["components"]["b"]["errors"].as_array().unwrap().len(), 0);
        let r = get(srv.addr, "/healthz").await;
        assert_eq!(r.status, 200, "degraded is still alive");
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_failing_is_unhealthy() {
        let (a, fail) = coll("a", Mode::OnScrape, Duration::ZERO);
        fail.store(true, Ordering::SeqCst);
        let srv = start(vec![a], config()).await;
        get(srv.addr, "/metrics").await;
        let h: serde_json::Value =
            serde_json::from_slice(&get(srv.addr, "/health").await.body).unwrap();
        assert_eq!(h["status"], "unhealthy");
        let r = get(srv.addr, "/healthz").await;
        assert_eq!(r.status, 503);
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_loris_is_dropped_and_does_not_pin_the_server() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let cfg = ServerConfig {
            max_connections: 2,
            read_header_timeout: Duration::from_millis(500),
            ..config()
        };
        let srv = start(vec![a], cfg).await;
        // Two clients take every connection slot and trickle header bytes forever.
        let mut loris = Vec::new();
        for _ in 0..2 {
            let addr = srv.addr;
            loris.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
                    .await
                    .unwrap();
                for i in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(format!("X-{i}: y\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let mut buf = [0u8; 64];
                    match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                start.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A real scrape queued behind them is answered once the header timeout frees a slot.
        let start = Instant::now();
        let r = get(srv.addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        for l in loris {
            let held = l.await.unwrap();
            assert!(
                held < Duration::from_secs(3),
                "slow client kept its connection {held:?}"
            );
        }
        srv.shutdown().await;
    }

    /// `n` connections that send half a request head and then wait: what an idle flood or a
    /// crowd of stalled clients looks like to the server.
    async fn half_headers(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
                .await
                .unwrap();
            v.push(s);
        }
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_never_delay_a_scrape() {
        // The test's own 2,000 sockets and the server's.
        raise_fd_limit();
        // More idle connections than any connection limit the server had: a scrape that
        // arrives after them is answered at once, not after the header timeout frees a slot.
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let srv = start(vec![a], config()).await;
        for n in [100, 1000] {
            let idle = half_headers(srv.addr, n).await;
            let start = Instant::now();
            let r = get(srv.addr, "/metrics").await;
            let took = start.elapsed();
            assert_eq!(r.status, 200);
            assert!(
                took < Duration::from_secs(1),
                "{n} idle connections: scrape took {took:?}"
            );
            drop(idle);
        }
        srv.shutdown().await;
    }

    /// Whether the server closed `s` (EOF or reset) within `limit`.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(limit, s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_connection_limit_the_longest_idle_connection_makes_room() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let cfg = ServerConfig {
            max_connections: 4,
            ..config()
        };
        let srv = start(vec![a], cfg).await;
        let mut idle = half_headers(srv.addr, 4).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let r = get(srv.addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // The first idle connection was closed to admit the scrape; the newest stays.
        assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
        assert!(!closed_within(&mut idle[3], Duration::from_millis(200)).await);
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_with_a_request_in_progress_is_never_closed_to_make_room() {
        let (slow, _) = coll("slow", Mode::OnScrape, Duration::from_millis(600));
        let cfg = ServerConfig {
            max_connections: 2,
            ..config()
        };
        let srv = start(vec![slow], cfg).await;
        let addr = srv.addr;
        let inflight = tokio::spawn(async move { get(addr, "/metrics").await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Two more connections arrive while the scrape runs: only idle ones may give way.
        let _idle = half_headers(addr, 2).await;
        let r = inflight.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().contains("h_value{from=\"slow\"} 42\n"));
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_beyond_max_requests_wait_their_turn_or_get_503_at_their_timeout() {
        let (slow, _) = coll("slow", Mode::OnScrape, Duration::from_millis(300));
        let cfg = ServerConfig {
            max_requests: 1,
            ..config()
        };
        let srv = start(vec![slow], cfg).await;
        let addr = srv.addr;
        // Three at once with the default wait: one at a time, all answered.
        let three: Vec<_> = (0..3)
            .map(|_| tokio::spawn(async move { get(addr, "/metrics").await.status }))
            .collect();
        for t in three {
            assert_eq!(t.await.unwrap(), 200);
        }
        // A scraper that can wait 50 ms behind a 300 ms scrape: 503, told to retry.
        let first = tokio::spawn(async move { get(addr, "/metrics").await.status });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = request(
            addr,
            "GET",
            "/metrics",
            "X-Prometheus-Scrape-Timeout-Seconds: 0.05\r\n",
        )
        .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(first.await.unwrap(), 200);
        // Other endpoints are not limited.
        assert_eq!(get(addr, "/healthz").await.status, 200);
        srv.shutdown().await;
    }

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        assert_eq!(fit_connections(1024, Some(20_000)), 1024);
        assert_eq!(
            fit_connections(1024, Some(1024)),
            1024 - FD_RESERVE as usize
        );
        assert_eq!(fit_connections(1024, Some(10)), 1);
        assert_eq!(fit_connections(1024, None), 1024);
        let soft = raise_fd_limit().unwrap();
        assert!(soft >= 64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_headers_are_refused() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let srv = start(vec![a], config()).await;
        let big = format!("X-Big: {}\r\n", "a".repeat(MAX_BUF + 1));
        let r = request(srv.addr, "GET", "/metrics", &big).await;
        assert_eq!(r.status, 431);
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_finishes_the_scrape_in_flight() {
        let (slow, _) = coll("slow", Mode::OnScrape, Duration::from_millis(800));
        let srv = start(vec![slow], config()).await;
        let addr = srv.addr;
        let inflight = tokio::spawn(async move { get(addr, "/metrics").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        srv.shutdown().await;
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "returned before the scrape ended"
        );
        let r = inflight.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().contains("h_value{from=\"slow\"} 42\n"));
        // Not accepting any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_connection_is_closed_at_max_age() {
        let (a, _) = coll("a", Mode::OnScrape, Duration::ZERO);
        let cfg = ServerConfig {
            max_connection_age: Duration::from_millis(300),
            ..config()
        };
        let srv = start(vec![a], cfg).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let r = Reply::parse(&raw);
        assert_eq!((r.status, r.text().as_str()), (200, "OK"));
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bind_failure_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind(&[ListenAddr::Host("127.0.0.1".into(), port)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("in use"), "{err}");
    }
}
