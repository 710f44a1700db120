//! Command-line flags shared by every exporter, the exporter's own flags (`A: clap::Args`),
//! and their environment-variable twins.
//!
//! Every long flag `--a.b-c` of an exporter named `x-exporter` can also be set through
//! `X_EXPORTER_A_B_C`; the command line wins over the environment. Repeatable flags split an
//! environment value on commas.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use log::LevelFilter;

use crate::logging::{Format, Verbosity};
use crate::ExporterSpec;

/// One `--web.listen-address` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: every interface (IPv6 and IPv4 where the host has IPv6, IPv4 otherwise).
    AnyInterface(u16),
    /// `HOST:PORT` or `[V6]:PORT`; `HOST` may be a name, resolved at bind time.
    Host(String, u16),
}

impl ListenAddr {
    /// Resolve to socket addresses to try in order.
    pub fn candidates(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            ListenAddr::AnyInterface(port) => Ok(vec![
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, *port)),
                SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, *port)),
            ]),
            ListenAddr::Host(host, port) => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} resolves to no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::AnyInterface(p) => write!(f, ":{p}"),
            ListenAddr::Host(h, p) if h.contains(':') => write!(f, "[{h}]:{p}"),
            ListenAddr::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Parse `:PORT`, `HOST:PORT` or `[V6]:PORT`.
pub fn parse_listen_addr(s: &str) -> Result<ListenAddr, String> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{s:?}: expected [IPV6]:PORT"))?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{s:?}: {h:?} is not an IPv6 address"))?;
        (h, p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected HOST:PORT or :PORT"))?;
        if h.contains(':') {
            return Err(format!(
                "{s:?}: write IPv6 addresses in brackets, [ADDR]:PORT"
            ));
        }
        (h, p)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    if host.is_empty() {
        Ok(ListenAddr::AnyInterface(port))
    } else {
        Ok(ListenAddr::Host(host.to_owned(), port))
    }
}

/// Compile the regex a user gave to the flag `--<flag>`, the one way every exporter does it:
/// the error names the flag and the pattern.
pub fn regex_flag(flag: &str, pattern: &str) -> anyhow::Result<regex::Regex> {
    use anyhow::Context as _;
    regex::Regex::new(pattern).with_context(|| format!("invalid regex in --{flag}: {pattern:?}"))
}

/// Parse a duration, the one parser of every duration flag: one or more `<number><unit>`
/// parts with units `ms`, `s`, `m`, `h`, `d` (`500ms`, `30s`, `1m30s`, `1.5s`, `2h`), or a bare
/// number of seconds (`1.5`). It must be positive and at most a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 500ms, 1m30s, 1.5)");
    let text = s.trim();
    let number_end = |t: &str| {
        t.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len())
    };
    let mut seconds = 0.0_f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    if number_end(rest) == rest.len() {
        seconds = rest.parse::<f64>().map_err(|_| bad())?;
        rest = "";
    }
    while !rest.is_empty() {
        let digits = number_end(rest);
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        seconds += n * scale;
        rest = &rest[unit_len..];
    }
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 * 365.0 {
        return Err(format!(
            "{s:?}: duration must be positive and at most a year"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.len() < 2 {
        return Err(format!(
            "{s:?}: must start with / and name a path other than /"
        ));
    }
    if ["/health", "/healthz", "/ready"].contains(&s) {
        return Err(format!("{s:?} is taken by a built-in endpoint"));
    }
    Ok(s.to_owned())
}

/// The shared flags, parsed.
#[derive(Debug, Clone)]
pub struct SharedArgs {
    pub listen: Vec<ListenAddr>,
    pub telemetry_path: String,
    pub max_connections: usize,
    pub max_requests: usize,
    pub web_config: Option<PathBuf>,
    pub unauthenticated_probes: bool,
    pub read_header_timeout: Duration,
    pub max_connection_age: Duration,
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub log_level: LevelFilter,
    pub log_format: Format,
    pub collect_timeout: Duration,
    pub once: bool,
    pub demo: bool,
    pub enabled_collectors: Vec<&'static str>,
}

const H_WEB: &str = "Web";
const H_PATHS: &str = "Paths";
const H_LOG: &str = "Logging";
const H_COLLECTORS: &str = "Collectors";

/// `network-exporter` + `web.listen-address` → `NETWORK_EXPORTER_WEB_LISTEN_ADDRESS`.
pub fn env_name(exporter: &str, long: &str) -> String {
    let mut s = String::with_capacity(exporter.len() + long.len() + 1);
    for c in exporter
        .chars()
        .chain(std::iter::once('_'))
        .chain(long.chars())
    {
        s.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    s
}

fn shared_args<S>(spec: &ExporterSpec<S>) -> Vec<Arg> {
    let mut v = vec![
        Arg::new("web.listen-address")
            .long("web.listen-address")
            .value_name("[HOST]:PORT")
            .action(ArgAction::Append)
            .value_parser(parse_listen_addr)
            .default_value(format!(":{}", spec.default_port))
            .help("Address to listen on; repeat for several. `:PORT` means every interface")
            .help_heading(H_WEB),
        Arg::new("web.telemetry-path")
            .long("web.telemetry-path")
            .value_name("PATH")
            .value_parser(parse_telemetry_path)
            .default_value("/metrics")
            .help("Path under which metrics are served")
            .help_heading(H_WEB),
        Arg::new("web.max-requests")
            .long("web.max-requests")
            .value_name("N")
            .value_parser(clap::value_parser!(u32))
            .default_value("40")
            .help("Most scrapes served at once; more wait their turn up to their scrape timeout, then get 503. 0: no limit")
            .help_heading(H_WEB),
        Arg::new("web.max-connections")
            .long("web.max-connections")
            .value_name("N")
            .value_parser(clap::value_parser!(u32).range(1..=1_048_576))
            .default_value("1024")
            .help("Most HTTP connections open at once (bounds memory); a new one beyond it closes the connection idle longest")
            .help_heading(H_WEB),
        Arg::new("web.config.file")
            .long("web.config.file")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TLS and basic authentication: a web configuration file in the exporter-toolkit format (docs/web-config.md); re-read when it changes")
            .help_heading(H_WEB),
        Arg::new("web.unauthenticated-probes")
            .long("web.unauthenticated-probes")
            .action(ArgAction::SetTrue)
            .help("Answer /healthz and /ready without basic authentication (for kubelet probes); everything else stays behind it")
            .help_heading(H_WEB),
        Arg::new("web.read-header-timeout")
            .long("web.read-header-timeout")
            .value_name("DURATION")
            .value_parser(parse_duration)
            .default_value("10s")
            .help("Close a connection that has not sent complete request headers in this time")
            .help_heading(H_WEB),
        Arg::new("web.max-connection-age")
            .long("web.max-connection-age")
            .value_name("DURATION")
            .value_parser(parse_duration)
            .default_value("5m")
            .help("Close a (keep-alive) connection after this time, once its request is done")
            .help_heading(H_WEB),
        Arg::new("path.procfs")
            .long("path.procfs")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .default_value("/proc")
            .help("procfs mount point")
            .help_heading(H_PATHS),
        Arg::new("path.sysfs")
            .long("path.sysfs")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .default_value("/sys")
            .help("sysfs mount point")
            .help_heading(H_PATHS),
        Arg::new("log.level")
            .long("log.level")
            .value_name("LEVEL")
            .value_parser(clap::builder::EnumValueParser::<Verbosity>::new())
            .default_value("info")
            .help("Only log messages at this level or more severe")
            .help_heading(H_LOG),
        Arg::new("log.format")
            .long("log.format")
            .value_name("FORMAT")
            .value_parser(clap::builder::EnumValueParser::<Format>::new())
            .default_value("logfmt")
            .help("Log line format (written to stdout)")
            .help_heading(H_LOG),
        Arg::new("collect.timeout")
            .long("collect.timeout")
            .value_name("DURATION")
            .value_parser(parse_duration)
            .default_value("10s")
            .help(
                "Longest a scrape waits for an on-scrape collector; a slower one counts as failed",
            )
            .help_heading(H_COLLECTORS),
        Arg::new("demo")
            .long("demo")
            .action(ArgAction::SetTrue)
            .help("Say that this exporter serves demo data (fixture trees, replays, fakes given by its other flags), not this machine's: in its log, in /health and as demo=\"true\" on <prefix>_exporter_build_info"),
        Arg::new("once")
            .long("once")
            .action(ArgAction::SetTrue)
            .help(
                "Collect once, print the exposition to stdout and exit (1 if a collector failed)",
            ),
    ];
    for c in spec.collectors {
        let default = if c.default_enabled {
            "enabled"
        } else {
            "disabled"
        };
        v.push(
            Arg::new(format!("collector.{}", c.name))
                .long(format!("collector.{}", c.name))
                .action(ArgAction::SetTrue)
                .help(format!(
                    "Enable the {} collector: {} (default: {default})",
                    c.name, c.help
                ))
                .help_heading(H_COLLECTORS),
        );
        v.push(
            Arg::new(format!("no-collector.{}", c.name))
                .long(format!("no-collector.{}", c.name))
                .action(ArgAction::SetTrue)
                .help(format!("Disable the {} collector", c.name))
                .help_heading(H_COLLECTORS),
        );
    }
    v
}

/// The full command: shared flags, the exporter's own (`A`), and an environment twin for each.
pub fn command<A: clap::Args, S>(spec: &ExporterSpec<S>) -> Command {
    let cmd = Command::new(spec.name)
        .version(spec.version)
        .about(spec.about)
        .args(shared_args(spec));
    // A doc comment on the exporter's (or a flattened) Args struct would replace the about
    // text; the spec's line wins.
    let cmd = A::augment_args(cmd).about(spec.about).long_about(None);
    let exporter = spec.name;
    cmd.mut_args(|a| add_env_twin(exporter, a))
}

fn add_env_twin(exporter: &str, a: Arg) -> Arg {
    let id = a.get_id().as_str();
    if id == "help" || id == "version" || a.get_env().is_some() {
        return a;
    }
    let Some(long) = a.get_long() else { return a };
    let name = env_name(exporter, long);
    let repeatable = matches!(a.get_action(), ArgAction::Append);
    let mut a = a.env(name);
    if matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        // Switches read `1`/`0`, `yes`/`no`, `on`/`off` from the environment, not only
        // `true`/`false`.
        a = a.value_parser(clap::builder::BoolishValueParser::new());
    }
    if repeatable && a.get_value_delimiter().is_none() {
        a.value_delimiter(',')
    } else {
        a
    }
}

/// Parse `args` (program name first) into the exporter's flags and the shared ones.
pub fn parse<A, S, I, T>(spec: &ExporterSpec<S>, args: I) -> Result<(A, SharedArgs), clap::Error>
where
    A: clap::Args + clap::FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command::<A, S>(spec);
    let matches = cmd.try_get_matches_from_mut(args)?;
    check_collector_twins(&cmd, spec, std::env::vars_os())
        .map_err(|msg| cmd.error(clap::error::ErrorKind::UnknownArgument, msg))?;
    let shared = shared_from_matches(spec, &matches);
    let own = A::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok((own, shared))
}

fn shared_from_matches<S>(spec: &ExporterSpec<S>, m: &ArgMatches) -> SharedArgs {
    let get_str = |id: &str| m.get_one::<String>(id).cloned().unwrap_or_default();
    let log_level = m
        .get_one::<Verbosity>("log.level")
        .copied()
        .map_or(LevelFilter::Info, LevelFilter::from);
    let log_format = m
        .get_one::<Format>("log.format")
        .copied()
        .unwrap_or(Format::Logfmt);
    let enabled_collectors = spec
        .collectors
        .iter()
        .filter(|c| collector_enabled(m, c.name, c.default_enabled))
        .map(|c| c.name)
        .collect();
    SharedArgs {
        listen: m
            .get_many::<ListenAddr>("web.listen-address")
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        telemetry_path: get_str("web.telemetry-path"),
        max_connections: m
            .get_one::<u32>("web.max-connections")
            .copied()
            .unwrap_or(1024) as usize,
        max_requests: m.get_one::<u32>("web.max-requests").copied().unwrap_or(40) as usize,
        web_config: m.get_one::<PathBuf>("web.config.file").cloned(),
        unauthenticated_probes: m.get_flag("web.unauthenticated-probes"),
        read_header_timeout: m
            .get_one::<Duration>("web.read-header-timeout")
            .copied()
            .unwrap_or_default(),
        max_connection_age: m
            .get_one::<Duration>("web.max-connection-age")
            .copied()
            .unwrap_or_default(),
        procfs: m
            .get_one::<PathBuf>("path.procfs")
            .cloned()
            .unwrap_or_default(),
        sysfs: m
            .get_one::<PathBuf>("path.sysfs")
            .cloned()
            .unwrap_or_default(),
        log_level,
        log_format,
        collect_timeout: m
            .get_one::<Duration>("collect.timeout")
            .copied()
            .unwrap_or_default(),
        once: m.get_flag("once"),
        demo: m.get_flag("demo"),
        enabled_collectors,
    }
}

/// An environment variable `<EXPORTER>_COLLECTOR_<X>` or `<EXPORTER>_NO_COLLECTOR_<X>` that
/// is the twin of no flag (a misspelt or unknown collector) would otherwise do nothing: refuse
/// it, naming the collectors there are. (On the command line clap refuses unknown flags.)
fn check_collector_twins<S>(
    cmd: &Command,
    spec: &ExporterSpec<S>,
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<(), String> {
    let on = env_name(spec.name, "collector.");
    let off = env_name(spec.name, "no-collector.");
    for (key, _) in vars {
        let Some(key) = key.to_str() else { continue };
        if !(key.starts_with(&on) || key.starts_with(&off)) {
            continue;
        }
        let twin_of_a_flag = cmd
            .get_arguments()
            .any(|a| a.get_env().is_some_and(|e| e == key));
        if !twin_of_a_flag {
            let names: Vec<&str> = spec.collectors.iter().map(|c| c.name).collect();
            return Err(format!(
                "environment variable {key} names no collector of {}; its collectors are: {}",
                spec.name,
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// `--collector.x` / `--no-collector.x` on the command line win over their environment twins;
/// on the command line the last one given wins. In the environment, `..._COLLECTOR_X=false`
/// disables and `..._NO_COLLECTOR_X=false` enables; if both twins are set, `NO_` wins.
fn collector_enabled(m: &ArgMatches, name: &str, default: bool) -> bool {
    let on = format!("collector.{name}");
    let off = format!("no-collector.{name}");
    let cli_index = |id: &str| {
        (m.value_source(id) == Some(ValueSource::CommandLine))
            .then(|| m.indices_of(id).and_then(|mut i| i.next_back()))
            .flatten()
    };
    match (cli_index(&on), cli_index(&off)) {
        (Some(a), Some(b)) => return a > b,
        (Some(_), None) => return true,
        (None, Some(_)) => return false,
        (None, None) => {}
    }
    if m.value_source(&off) == Some(ValueSource::EnvVariable) {
        return !m.get_flag(&off);
    }
    if m.value_source(&on) == Some(ValueSource::EnvVariable) {
        return m.get_flag(&on);
    }
    default
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CollectorDef;

    const SPEC: ExporterSpec<()> = ExporterSpec {
        name: "test-exporter",
        prefix: "test",
        version: "1.2.3",
        about: "Test.",
        default_port: 19999,
        collectors: &[
            CollectorDef::on("alpha", "A", |_| Ok(None)),
            CollectorDef::off("beta", "B", |_| Ok(None)),
        ],
    };

    #[derive(Debug, clap::Args)]
    struct Own {
        /// A target to probe.
        #[arg(long = "probe.target")]
        targets: Vec<String>,
        #[arg(long = "probe.count", default_value_t = 3)]
        count: u32,
    }

    // Environment variables are per process; every test uses its own exporter name so that
    // tests running in parallel never see each other's variables.
    fn spec_named(name: &'static str) -> ExporterSpec<()> {
        ExporterSpec { name, ..SPEC }
    }

    #[test]
    fn listen_address_forms() {
        assert_eq!(
            parse_listen_addr(":9100").unwrap(),
            ListenAddr::AnyInterface(9100)
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:80").unwrap(),
            ListenAddr::Host("127.0.0.1".into(), 80)
        );
        assert_eq!(
            parse_listen_addr("[::1]:9").unwrap(),
            ListenAddr::Host("::1".into(), 9)
        );
        assert_eq!(parse_listen_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen_addr("::1:9").unwrap_err().contains("brackets"));
        assert!(parse_listen_addr("localhost").is_err());
        assert!(parse_listen_addr(":70000")
            .unwrap_err()
            .contains("not a port"));
        assert!(parse_listen_addr("[nothex]:1").is_err());
        let c = ListenAddr::AnyInterface(5).candidates().unwrap();
        assert_eq!(c[0].to_string(), "[::]:5");
        assert_eq!(c[1].to_string(), "0.0.0.0:5");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        // What the DNS prober's own parser accepted before there was one parser:
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1h2m3s4ms").unwrap(),
            Duration::from_millis(3_723_004)
        );
        // And more: decimals in a part, days.
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        for bad in [
            "0s", "0", "soon", "", "5x", "s", "1m-1s", "-1", "366d", "1..5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_name("network-exporter", "web.listen-address"),
            "NETWORK_EXPORTER_WEB_LISTEN_ADDRESS"
        );
        assert_eq!(env_name("x", "no-collector.tcp"), "X_NO_COLLECTOR_TCP");
    }

    #[test]
    fn defaults() {
        let spec = spec_named("defaults-exporter");
        let (own, s) = parse::<Own, _, _, _>(&spec, ["x"]).unwrap();
        assert_eq!(s.listen, vec![ListenAddr::AnyInterface(19999)]);
        assert_eq!(s.telemetry_path, "/metrics");
        assert_eq!(s.max_connections, 1024);
        assert_eq!(s.max_requests, 40);
        assert_eq!(s.procfs, PathBuf::from("/proc"));
        assert_eq!(s.sysfs, PathBuf::from("/sys"));
        assert_eq!(s.log_level, LevelFilter::Info);
        assert_eq!(s.log_format, Format::Logfmt);
        assert_eq!(s.collect_timeout, Duration::from_secs(10));
        assert!(!s.once);
        assert_eq!(s.enabled_collectors, vec!["alpha"]);
        assert!(own.targets.is_empty());
        assert_eq!(own.count, 3);
    }

    #[test]
    fn command_line_values() {
        let spec = spec_named("cli-exporter");
        let (own, s) = parse::<Own, _, _, _>(
            &spec,
            [
                "x",
                "--web.listen-address=127.0.0.1:1",
                "--web.listen-address",
                "[::1]:2",
                "--web.telemetry-path=/m",
                "--log.level=debug",
                "--log.format=json",
                "--no-collector.alpha",
                "--collector.beta",
                "--once",
                "--probe.target=a,b",
                "--probe.count=7",
            ],
        )
        .unwrap();
        assert_eq!(
            s.listen,
            vec![
                ListenAddr::Host("127.0.0.1".into(), 1),
                ListenAddr::Host("::1".into(), 2)
            ]
        );
        assert_eq!(s.telemetry_path, "/m");
        assert_eq!(s.log_level, LevelFilter::Debug);
        assert_eq!(s.log_format, Format::Json);
        assert!(s.once);
        assert_eq!(s.enabled_collectors, vec!["beta"]);
        // Repeatable flags split on commas (the environment twin needs it; on the command line
        // it is the same parser).
        assert_eq!(own.targets, vec!["a", "b"]);
        assert_eq!(own.count, 7);
    }

    #[test]
    fn last_collector_flag_wins() {
        let spec = spec_named("last-exporter");
        let (_, s) =
            parse::<Own, _, _, _>(&spec, ["x", "--no-collector.alpha", "--collector.alpha"])
                .unwrap();
        assert_eq!(s.enabled_collectors, vec!["alpha"]);
        let (_, s) =
            parse::<Own, _, _, _>(&spec, ["x", "--collector.alpha", "--no-collector.alpha"])
                .unwrap();
        assert!(s.enabled_collectors.is_empty());
    }

    #[test]
    fn environment_twins() {
        let spec = spec_named("envtest-exporter");
        let vars = [
            ("ENVTEST_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:5,[::1]:6"),
            ("ENVTEST_EXPORTER_PATH_PROCFS", "/host/proc"),
            ("ENVTEST_EXPORTER_COLLECTOR_ALPHA", "false"),
            ("ENVTEST_EXPORTER_COLLECTOR_BETA", "true"),
            ("ENVTEST_EXPORTER_PROBE_TARGET", "one,two"),
            ("ENVTEST_EXPORTER_PROBE_COUNT", "9"),
            ("ENVTEST_EXPORTER_ONCE", "1"),
        ];
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let parsed = parse::<Own, _, _, _>(&spec, ["x", "--path.procfs=/cli/proc"]);
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        let (own, s) = parsed.unwrap();
        assert_eq!(
            s.listen,
            vec![
                ListenAddr::Host("127.0.0.1".into(), 5),
                ListenAddr::Host("::1".into(), 6)
            ]
        );
        assert_eq!(
            s.procfs,
            PathBuf::from("/cli/proc"),
            "command line wins over environment"
        );
        assert_eq!(s.enabled_collectors, vec!["beta"]);
        assert!(s.once);
        assert_eq!(own.targets, vec!["one", "two"]);
        assert_eq!(own.count, 9);
    }

    #[test]
    fn no_collector_env_twin() {
        let spec = spec_named("envno-exporter");
        std::env::set_var("ENVNO_EXPORTER_NO_COLLECTOR_ALPHA", "yes");
        let parsed = parse::<Own, _, _, _>(&spec, ["x"]);
        std::env::remove_var("ENVNO_EXPORTER_NO_COLLECTOR_ALPHA");
        assert!(parsed.unwrap().1.enabled_collectors.is_empty());
    }

    #[test]
    fn help_lists_env_twins_and_the_web_config() {
        let help = command::<Own, ()>(&spec_named("help-exporter"))
            .render_long_help()
            .to_string();
        assert!(help.contains("HELP_EXPORTER_WEB_LISTEN_ADDRESS"), "{help}");
        assert!(help.contains("HELP_EXPORTER_PROBE_TARGET"), "{help}");
        assert!(help.contains("--no-collector.beta"), "{help}");
        assert!(help.contains("--web.config.file <FILE>"), "{help}");
        assert!(help.contains("HELP_EXPORTER_WEB_CONFIG_FILE"), "{help}");
        assert!(help.contains("--web.unauthenticated-probes"), "{help}");
        assert!(!help.contains("HELP_EXPORTER_HELP"), "{help}");
    }

    #[test]
    fn bad_values_are_errors() {
        let spec = spec_named("bad-exporter");
        for bad in [
            vec!["x", "--web.listen-address=nope"],
            vec!["x", "--log.level=loud"],
            vec!["x", "--web.telemetry-path=/health"],
            vec!["x", "--web.telemetry-path=metrics"],
            vec!["x", "--collect.timeout=0"],
            vec!["x", "--web.max-requests=-1"],
            vec!["x", "--web.max-connections=0"],
        ] {
            assert!(
                parse::<Own, _, _, _>(&spec, bad.clone()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn log_flags_are_enumerations() {
        let spec = spec_named("logenum-exporter");
        let (_, s) = parse::<Own, _, _, _>(&spec, ["x", "--log.level=warning"]).unwrap();
        assert_eq!(s.log_level, LevelFilter::Warn);
        let err = parse::<Own, _, _, _>(&spec, ["x", "--log.format=xml"]).unwrap_err();
        assert!(err.to_string().contains("logfmt"), "{err}");
    }

    #[test]
    fn unknown_collector_in_environment_is_refused() {
        let spec = spec_named("typo-exporter");
        std::env::set_var("TYPO_EXPORTER_COLLECTOR_ALPAH", "true");
        let parsed = parse::<Own, _, _, _>(&spec, ["x"]);
        std::env::remove_var("TYPO_EXPORTER_COLLECTOR_ALPAH");
        let err = parsed.unwrap_err().to_string();
        assert!(err.contains("TYPO_EXPORTER_COLLECTOR_ALPAH"), "{err}");
        assert!(err.contains("alpha, beta"), "{err}");
        // A flag of the exporter's own that merely starts with `collector.` is no typo.
        #[derive(Debug, clap::Args)]
        struct WithCollectorFlag {
            #[arg(long = "collector.alpha.depth", default_value_t = 1)]
            depth: u32,
        }
        let spec = spec_named("depth-exporter");
        std::env::set_var("DEPTH_EXPORTER_COLLECTOR_ALPHA_DEPTH", "4");
        let parsed = parse::<WithCollectorFlag, _, _, _>(&spec, ["x"]);
        std::env::remove_var("DEPTH_EXPORTER_COLLECTOR_ALPHA_DEPTH");
        assert_eq!(parsed.unwrap().0.depth, 4);
    }

    #[test]
    fn spec_check_refuses_duplicates_and_bad_names() {
        assert!(SPEC.check().is_ok());
        const TWICE: &[CollectorDef<()>] = &[
            CollectorDef::on("alpha", "A", |_| Ok(None)),
            CollectorDef::off("alpha", "B", |_| Ok(None)),
        ];
        const BAD_NAME: &[CollectorDef<()>] = &[CollectorDef::on("Alpha-1", "A", |_| Ok(None))];
        let dup = ExporterSpec {
            collectors: TWICE,
            ..spec_named("dup-exporter")
        };
        assert!(dup.check().unwrap_err().contains("declared twice"));
        let bad = ExporterSpec {
            collectors: BAD_NAME,
            ..spec_named("bad-exporter")
        };
        assert!(bad.check().unwrap_err().contains("snake_case"));
        let prefix = ExporterSpec {
            prefix: "net-work",
            ..spec_named("prefix-exporter")
        };
        assert!(prefix.check().is_err());
    }

    #[test]
    fn version_flag() {
        let err = parse::<Own, _, _, _>(&spec_named("v-exporter"), ["x", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(err.to_string(), "v-exporter 1.2.3\n");
    }
}
