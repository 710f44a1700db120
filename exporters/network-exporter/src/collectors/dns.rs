//! DNS prober: looks up the names given with `--dns.probe-name` on the system resolver
//! (`/etc/resolv.conf`) or on the servers given with `--dns.server`, in the background every
//! `--dns.interval`, each lookup bounded by `--dns.timeout`.
//!
//! Metrics (`server` is the `--dns.server` address as `IP:port`, or `system`):
//! - `network_dns_lookup_duration_seconds{name,server}` histogram: latency of every lookup that
//!   got an answer from a server (any response code). Lookups that timed out or failed without a
//!   response are not observed here; they are counted in `network_dns_lookups_total`.
//! - `network_dns_last_lookup_duration_seconds{name,server}` gauge: time the last lookup took,
//!   whatever its outcome (a timed-out lookup shows about the timeout).
//! - `network_dns_lookups_total{name,server,result,rcode}` counter: `result` is `success` or
//!   `failure`; `rcode` the lowercase response code (`noerror`, `nxdomain`, `servfail`,
//!   `refused`, `formerr`, `notimp`, ...; `unknown` for codes outside the registry), or `timeout`
//!   when no answer came within the timeout, or `error` for other failures without a response
//!   (connection refused, no usable name server). The success series and the failure series for
//!   `noerror`, `nxdomain`, `servfail`, `refused`, `timeout` and `error` exist from the start, so
//!   `rate()` and `increase()` see the first failure.
//! - `network_dns_probe_success{name,server}` gauge: 1 if the last lookup returned at least one
//!   record of the probed type (`--dns.record-type`, `A` or `AAAA`), else 0.
//!
//! A lookup succeeds only if the answer holds at least one address of the probed type. An empty
//! `NOERROR` answer (NODATA: the name exists, but has no record of that type) is a failure
//! with `rcode="noerror"`, because the name is of no use to a client asking for that type.
//!
//! Each lookup is a real query: the resolver's cache is off (capacity 0), `/etc/hosts` is not
//! consulted, each query is sent once (attempts 1) over UDP, and retried over TCP only when the
//! UDP answer comes back truncated, as libc does. `/etc/resolv.conf` is read again on every run
//! (name servers, search list, ndots), so a changed resolver configuration is picked up.
//! Negative answers (NXDOMAIN) are trusted as final, as libc does. The resolver answers the
//! special-use names `localhost`, `*.localhost` and `invalid` (RFC 6761) itself, so probing
//! them tests nothing.
//!
//! A run fails (so `network_collector_success{collector="dns"}` is 0 and `/health` reports
//! DNS failing) when the prober cannot work at all (unreadable `/etc/resolv.conf`) or when every
//! lookup of the run failed: then DNS is broken for this host. The per-name metrics of that run
//! are written before the error is returned. A run in which only some names fail succeeds;
//! the failures show in the metrics.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::proto::error::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{Name, TokioAsyncResolver};
use odin_common::{parse_duration, Collector, Context, Field, Labels, Mode, SampleValue, Sink};
use prometheus::core::Collector as _;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// Histogram buckets for DNS latency: a local cache answers in well under a millisecond, a
/// distant recursive resolver in tens to hundreds, the default timeout is 5 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Outcomes whose counter series exist before they first happen.
const PREINIT: &[(&str, &str)] = &[
    ("success", "noerror"),
    ("failure", "noerror"),
    ("failure", "nxdomain"),
    ("failure", "servfail"),
    ("failure", "refused"),
    ("failure", "timeout"),
    ("failure", "error"),
];

/// Flags of the DNS prober. With no `--dns.probe-name` the collector is off.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsArgs {
    /// Name to look up on every probe run (repeatable, or comma-separated in the environment).
    /// No name: the DNS prober is off.
    #[arg(long = "dns.probe-name", value_name = "NAME", value_delimiter = ',')]
    pub probe_names: Vec<String>,

    /// DNS server to query, `IP[:port]` (port 53 by default), or `system` for the resolvers of
    /// /etc/resolv.conf (repeatable; every name is probed on every server). Default: `system`.
    #[arg(
        long = "dns.server",
        value_name = "IP[:PORT]",
        value_delimiter = ',',
        value_parser = parse_server
    )]
    pub servers: Vec<DnsServer>,

    /// Time between probe runs, e.g. `30s`, `1m`, `1m30s`, `45` (seconds).
    #[arg(
        long = "dns.interval",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub interval: Duration,

    /// Time one lookup may take before it counts as `timeout`, e.g. `5s`, `500ms`, `1.5s`.
    #[arg(
        long = "dns.timeout",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub timeout: Duration,

    /// Record type to ask for: `A` or `AAAA` (any case).
    #[arg(
        long = "dns.record-type",
        value_name = "TYPE",
        value_enum,
        ignore_case = true,
        default_value = "A"
    )]
    pub record_type: AddressType,
}

/// `--dns.record-type`: the kind of address a probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AddressType {
    /// An IPv4 address (A record).
    #[value(name = "A")]
    A,
    /// An IPv6 address (AAAA record).
    #[value(name = "AAAA")]
    Aaaa,
}

impl From<AddressType> for RecordType {
    fn from(address: AddressType) -> Self {
        match address {
            AddressType::A => RecordType::A,
            AddressType::Aaaa => RecordType::AAAA,
        }
    }
}

/// Where lookups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServer {
    /// The name servers, search list and ndots of `/etc/resolv.conf`.
    System,
    /// One server, queried over UDP (TCP for truncated answers).
    Addr(SocketAddr),
}

impl fmt::Display for DnsServer {
    /// The `server` label: `system`, `192.0.2.1:53`, `[2001:db8::1]:53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsServer::System => f.write_str("system"),
            DnsServer::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Parse `--dns.server`: `system`, `IP`, `IP:port`, `[IPv6]:port`.
pub fn parse_server(s: &str) -> Result<DnsServer, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("system") {
        return Ok(DnsServer::System);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("DNS server {s:?}: port 0"));
        }
        return Ok(DnsServer::Addr(addr));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(DnsServer::Addr(SocketAddr::new(ip, 53))),
        Err(_) => Err(format!(
            "DNS server {s:?}: expected IP[:port] (e.g. 192.0.2.1, 192.0.2.1:5353, [2001:db8::1]:53) or system"
        )),
    }
}

/// Build the DNS collector from its flags: `Ok(None)` when no probe name is configured.
pub fn from_args(args: &DnsArgs) -> anyhow::Result<Option<DnsCollector>> {
    if args.probe_names.is_empty() {
        return Ok(None);
    }
    DnsCollector::new(
        &args.probe_names,
        &args.servers,
        args.record_type.into(),
        args.interval,
        args.timeout,
    )
    .map(Some)
}

/// The outcome of one lookup, as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// At least one record of the probed type came back.
    pub success: bool,
    /// The `rcode` label.
    pub rcode: &'static str,
    /// A response came from a server (false for `timeout` and `error`).
    pub answered: bool,
}

impl Outcome {
    fn result(&self) -> &'static str {
        if self.success {
            "success"
        } else {
            "failure"
        }
    }
}

/// Classify a lookup result. `Ok` with no record of `record_type` is NODATA: a failure with
/// `rcode="noerror"`.
pub fn classify(res: &Result<Lookup, ResolveError>, record_type: RecordType) -> Outcome {
    match res {
        Ok(lookup) => {
            let found = lookup.record_iter().any(|r| r.record_type() == record_type);
            Outcome {
                success: found,
                rcode: "noerror",
                answered: true,
            }
        }
        Err(e) => match e.kind() {
            ResolveErrorKind::NoRecordsFound { response_code, .. } => Outcome {
                success: false,
                rcode: rcode_label(*response_code),
                answered: true,
            },
            ResolveErrorKind::Timeout => timeout_outcome(),
            ResolveErrorKind::Proto(p) if matches!(p.kind(), ProtoErrorKind::Timeout) => {
                timeout_outcome()
            }
            ResolveErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                timeout_outcome()
            }
            _ => Outcome {
                success: false,
                rcode: "error",
                answered: false,
            },
        },
    }
}

fn timeout_outcome() -> Outcome {
    Outcome {
        success: false,
        rcode: "timeout",
        answered: false,
    }
}

/// The `rcode` label of a DNS response code: its lowercase mnemonic, `unknown` outside the
/// registry (keeps the label bounded).
pub fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "noerror",
        ResponseCode::FormErr => "formerr",
        ResponseCode::ServFail => "servfail",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::NotImp => "notimp",
        ResponseCode::Refused => "refused",
        ResponseCode::YXDomain => "yxdomain",
        ResponseCode::YXRRSet => "yxrrset",
        ResponseCode::NXRRSet => "nxrrset",
        ResponseCode::NotAuth => "notauth",
        ResponseCode::NotZone => "notzone",
        ResponseCode::BADVERS => "badvers",
        ResponseCode::BADSIG => "badsig",
        ResponseCode::BADKEY => "badkey",
        ResponseCode::BADTIME => "badtime",
        ResponseCode::BADMODE => "badmode",
        ResponseCode::BADNAME => "badname",
        ResponseCode::BADALG => "badalg",
        ResponseCode::BADTRUNC => "badtrunc",
        ResponseCode::BADCOOKIE => "badcookie",
        _ => "unknown",
    }
}

/// One probed name: the label as configured and the parsed name.
#[derive(Debug, Clone)]
struct Target {
    label: String,
    name: Name,
}

/// The DNS prober. Owns a current-thread tokio runtime: `collect` blocks on it, so the
/// collector needs no ambient runtime (the odin runtime runs it on its own thread).
pub struct DnsCollector {
    targets: Vec<Target>,
    servers: Vec<DnsServer>,
    record_type: RecordType,
    interval: Duration,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    /// Resolvers of the `--dns.server` addresses, built once (index = `servers` index);
    /// `None` for `system`, which is built from `/etc/resolv.conf` on each run.
    fixed_resolvers: Vec<Option<TokioAsyncResolver>>,
    duration: HistogramVec,
    lookups: IntCounterVec,
}

impl fmt::Debug for DnsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsCollector")
            .field(
                "names",
                &self.targets.iter().map(|t| &t.label).collect::<Vec<_>>(),
            )
            .field("servers", &self.servers)
            .field("record_type", &self.record_type)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DnsCollector {
    /// A prober for `names` on `servers` (empty: the system resolver). Fails on a name that is
    /// not a valid DNS name, a record type other than A/AAAA, or a zero duration.
    pub fn new(
        names: &[String],
        servers: &[DnsServer],
        record_type: RecordType,
        interval: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        if names.is_empty() {
            bail!("DNS prober: no name to probe");
        }
        if !matches!(record_type, RecordType::A | RecordType::AAAA) {
            bail!("DNS prober: record type {record_type} is not A or AAAA");
        }
        if interval.is_zero() || timeout.is_zero() {
            bail!("DNS prober: interval and timeout must be greater than zero");
        }
        let mut targets: Vec<Target> = Vec::new();
        for raw in names {
            let label = raw.trim().to_owned();
            if label.is_empty() {
                bail!("DNS prober: empty probe name");
            }
            let name = Name::from_str(&label)
                .map_err(|e| anyhow!("DNS prober: {label:?} is not a valid DNS name: {e}"))?;
            if !targets.iter().any(|t| t.label == label) {
                targets.push(Target { label, name });
            }
        }
        let mut uniq: Vec<DnsServer> = Vec::new();
        for server in servers {
            if !uniq.contains(server) {
                uniq.push(server.clone());
            }
        }
        if uniq.is_empty() {
            uniq.push(DnsServer::System);
        }

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("DNS prober: cannot build its tokio runtime")?;
        let fixed_resolvers = uniq
            .iter()
            .map(|server| match server {
                DnsServer::System => None,
                DnsServer::Addr(addr) => {
                    let group =
                        NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                    let config = ResolverConfig::from_parts(None, Vec::new(), group);
                    Some(TokioAsyncResolver::tokio(
                        config,
                        probe_opts(ResolverOpts::default(), timeout),
                    ))
                }
            })
            .collect();

        let duration = HistogramVec::new(
            HistogramOpts::new(
                "dns_lookup_duration_seconds",
                "Latency of DNS lookups that got an answer (any response code).",
            )
            .buckets(BUCKETS.to_vec()),
            &["name", "server"],
        )?;
        let lookups = IntCounterVec::new(
            Opts::new(
                "dns_lookups_total",
                "DNS lookups by outcome: result success or failure, rcode the response code, or timeout / error when no response came.",
            ),
            &["name", "server", "result", "rcode"],
        )?;
        for target in &targets {
            for server in &uniq {
                let server = server.to_string();
                duration.with_label_values(&[target.label.as_str(), server.as_str()]);
                for (result, rcode) in PREINIT {
                    lookups.with_label_values(&[
                        target.label.as_str(),
                        server.as_str(),
                        result,
                        rcode,
                    ]);
                }
            }
        }

        Ok(Self {
            targets,
            servers: uniq,
            record_type,
            interval,
            timeout,
            runtime,
            fixed_resolvers,
            duration,
            lookups,
        })
    }

    /// Probe every name on every server once, concurrently, and return one [`Probe`] per
    /// lookup, ordered by server, then name, as configured. `Err` only when a resolver cannot
    /// be set up.
    fn probe_all(&self) -> anyhow::Result<Vec<Probe>> {
        // The resolvers of this run: fixed ones cloned (cheap handles), the system one read
        // from /etc/resolv.conf now.
        let mut resolvers: Vec<TokioAsyncResolver> = Vec::with_capacity(self.servers.len());
        for fixed in &self.fixed_resolvers {
            resolvers.push(match fixed {
                Some(resolver) => resolver.clone(),
                None => self.system_resolver()?,
            });
        }
        let resolvers = Arc::new(resolvers);
        let timeout = self.timeout;
        let record_type = self.record_type;
        let targets = &self.targets;

        let run = async move {
            let mut tasks = tokio::task::JoinSet::new();
            for server in 0..resolvers.len() {
                for (target, name) in targets.iter().map(|t| t.name.clone()).enumerate() {
                    let resolvers = Arc::clone(&resolvers);
                    tasks.spawn(async move {
                        let start = Instant::now();
                        let lookup = resolvers[server].lookup(name, record_type);
                        let res = tokio::time::timeout(timeout, lookup).await;
                        let elapsed = start.elapsed();
                        let outcome = match res {
                            Ok(answer) => classify(&answer, record_type),
                            Err(_) => timeout_outcome(),
                        };
                        Probe {
                            target,
                            server,
                            outcome,
                            elapsed,
                        }
                    });
                }
            }
            let mut probes = Vec::with_capacity(tasks.len());
            while let Some(joined) = tasks.join_next().await {
                probes.push(joined.map_err(|e| anyhow!("DNS probe task failed: {e}"))?);
            }
            probes.sort_by_key(|p| (p.server, p.target));
            Ok::<_, anyhow::Error>(probes)
        };

        // block_on panics inside another runtime's context; should a caller collect from
        // within one (e.g. an async `--once`), run the probes on a scoped helper thread.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| self.runtime.block_on(run))
                    .join()
                    .map_err(|_| anyhow!("DNS probe thread panicked"))?
            })
        } else {
            self.runtime.block_on(run)
        }
    }

    /// A resolver for the system configuration, read from `/etc/resolv.conf` now.
    fn system_resolver(&self) -> anyhow::Result<TokioAsyncResolver> {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| anyhow!("DNS prober: cannot read /etc/resolv.conf: {e}"))?;
        // Trust NXDOMAIN as final, as libc does, instead of asking every other server.
        let mut group = NameServerConfigGroup::with_capacity(config.name_servers().len());
        for ns in config.name_servers() {
            let mut ns = ns.clone();
            ns.trust_negative_responses = true;
            group.push(ns);
        }
        let config =
            ResolverConfig::from_parts(config.domain().cloned(), config.search().to_vec(), group);
        Ok(TokioAsyncResolver::tokio(
            config,
            probe_opts(opts, self.timeout),
        ))
    }
}

/// Resolver options for probing: no cache, no hosts file, one attempt, the probe timeout,
/// TCP only for truncated answers.
fn probe_opts(mut opts: ResolverOpts, timeout: Duration) -> ResolverOpts {
    opts.cache_size = 0;
    opts.use_hosts_file = false;
    opts.attempts = 1;
    opts.timeout = timeout;
    opts.try_tcp_on_error = false;
    opts.preserve_intermediates = false;
    opts
}

/// One lookup of one run: which name on which server (indexes into the configuration), how
/// it went and how long it took.
#[derive(Debug)]
struct Probe {
    target: usize,
    server: usize,
    outcome: Outcome,
    elapsed: Duration,
}

/// What the last run's lookups show, with labels `name` and `server`.
const PROBE_FIELDS: &[Field<Probe>] = &[
    Field::gauge(
        "dns_last_lookup_duration_seconds",
        "Time the last DNS lookup took, whatever its outcome.",
        |probe| probe.elapsed.as_secs_f64().sample_value(),
    ),
    Field::gauge(
        "dns_probe_success",
        "1 if the last DNS lookup returned at least one address of the probed type.",
        |probe| probe.outcome.success.sample_value(),
    ),
];

impl Collector for DnsCollector {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let probes = self.probe_all()?;
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        let labels: Vec<[(&str, &str); 2]> = probes
            .iter()
            .map(|probe| {
                [
                    ("name", self.targets[probe.target].label.as_str()),
                    ("server", servers[probe.server].as_str()),
                ]
            })
            .collect();

        let mut failed = 0usize;
        let mut first_failure: Option<String> = None;
        for (probe, [(_, name), (_, server)]) in probes.iter().zip(&labels) {
            let outcome = &probe.outcome;
            if outcome.answered {
                self.duration
                    .with_label_values(&[name, server])
                    .observe(probe.elapsed.as_secs_f64());
            }
            self.lookups
                .with_label_values(&[name, server, outcome.result(), outcome.rcode])
                .inc();
            if !outcome.success {
                failed += 1;
                log::debug!("DNS probe of {name} via {server} failed: {}", outcome.rcode);
                first_failure
                    .get_or_insert_with(|| format!("{name} via {server}: {}", outcome.rcode));
            }
        }

        let rows: Vec<(&Labels<'_>, &Probe)> = labels
            .iter()
            .zip(&probes)
            .map(|(labels, probe)| (&labels[..], probe))
            .collect();
        out.fields(PROBE_FIELDS, &rows);
        out.extend(self.duration.collect());
        out.extend(self.lookups.collect());

        if !probes.is_empty() && failed == probes.len() {
            bail!(
                "all {failed} DNS lookups failed (first: {})",
                first_failure.unwrap_or_default()
            );
        }
        Ok(())
    }
}
