//! The HTTP side: listeners, the connection limits, routing, and graceful shutdown.
//!
//! Hardening: request headers must fit `MAX_BUF` and arrive within `--web.read-header-timeout`
//! (a slow-loris client is dropped then); at most `--web.max-connections` connections are
//! served at once (more wait in the kernel's listen backlog, so an idle flood costs no file
//! descriptors); a connection is closed after `--web.max-connection-age` once its request is
//! answered; request bodies are never read (a request announcing one gets 413 and the
//! connection is closed).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::Level;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::ListenAddr;
use crate::health;
use crate::logging::event;
use crate::runtime::Runtime;

/// Largest request head (request line plus headers) accepted.
pub const MAX_BUF: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// How long a connection gets to finish its request after shutdown or its age limit.
const CONNECTION_GRACE: Duration = Duration::from_secs(15);

pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub telemetry_path: String,
    pub max_connections: usize,
    pub read_header_timeout: Duration,
    pub max_connection_age: Duration,
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
    let sem = Arc::new(Semaphore::new(cfg.max_connections));
    let cfg = Arc::new(cfg);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&rt),
            Arc::clone(&cfg),
            Arc::clone(&sem),
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
    cfg: Arc<ServerConfig>,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    conn_tx: mpsc::Sender<()>,
) {
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&sem).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped(&mut stop) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                event(Level::Warn, "accept failed", &[("err", &e.to_string())]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (rt, cfg, stop, tx) = (
            Arc::clone(&rt),
            Arc::clone(&cfg),
            stop.clone(),
            conn_tx.clone(),
        );
        tokio::spawn(async move {
            serve_connection(stream, peer, rt, cfg, stop).await;
            drop(permit);
            drop(tx);
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    rt: Arc<Runtime>,
    cfg: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.read_header_timeout)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let cfg2 = Arc::clone(&cfg);
    let svc = hyper::service::service_fn(move |req| {
        let (rt, cfg) = (Arc::clone(&rt), Arc::clone(&cfg2));
        async move { Ok::<_, Infallible>(handle(&rt, &cfg, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = tokio::time::sleep(cfg.max_connection_age) => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(CONNECTION_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(CONNECTION_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
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

pub async fn handle<B>(rt: &Runtime, cfg: &ServerConfig, req: Request<B>) -> Resp {
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
        Some(Route::Metrics) => metrics(rt, &req).await,
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
        Some(Route::Ready) => {
            if rt.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: background collectors have not finished a first run\n",
                )
            }
        }
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
    let name = html_escape(rt.name);
    let version = html_escape(rt.version);
    let about = html_escape(rt.about);
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
