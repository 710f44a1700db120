//! DNS prober flags and outcome classification, without a network.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use network_exporter::collectors::dns::{self, AddressType, DnsArgs, DnsServer};
use odin_common::{parse_duration, Mode, Settings};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    dns: DnsArgs,
}

fn parse(args: &[&str]) -> Result<DnsArgs, clap::Error> {
    let mut argv = vec!["network-exporter"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).map(|c| c.dns)
}

/// The DNS flags use odin-common's duration parser: it accepts everything the prober's own
/// parser accepted, with the same values, plus bare seconds and decimals.
#[test]
fn durations() {
    for (text, want) in [
        ("30s", Duration::from_secs(30)),
        ("500ms", Duration::from_millis(500)),
        ("1m", Duration::from_secs(60)),
        ("1m30s", Duration::from_secs(90)),
        ("2h", Duration::from_secs(7200)),
        ("1s250ms", Duration::from_millis(1250)),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        let args = parse(&[&format!("--dns.interval={text}")]).unwrap();
        assert_eq!(args.interval, want, "--dns.interval={text}");
    }
    // Newly accepted: bare seconds and decimals, as every other duration flag takes them.
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    for bad in ["", "s", "-1s", "10x", "0s", "0ms", "5 s", "ms10"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        assert!(
            parse(&[&format!("--dns.timeout={bad}")]).is_err(),
            "--dns.timeout={bad:?} accepted"
        );
    }
}

#[test]
fn servers() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        dns::parse_server("192.0.2.1"),
        Ok(DnsServer::Addr(a("192.0.2.1:53")))
    );
    assert_eq!(
        dns::parse_server("192.0.2.1:5353"),
        Ok(DnsServer::Addr(a("192.0.2.1:5353")))
    );
    assert_eq!(
        dns::parse_server("2001:db8::1"),
        Ok(DnsServer::Addr(a("[2001:db8::1]:53")))
    );
    assert_eq!(
        dns::parse_server("[2001:db8::1]"),
        Ok(DnsServer::Addr(a("[2001:db8::1]:53")))
    );
    assert_eq!(
        dns::parse_server("[2001:db8::1]:54"),
        Ok(DnsServer::Addr(a("[2001:db8::1]:54")))
    );
    assert_eq!(dns::parse_server("system"), Ok(DnsServer::System));
    assert_eq!(dns::parse_server("SYSTEM"), Ok(DnsServer::System));
    for bad in [
        "",
        "dns.google",
        "192.0.2.1:",
        "192.0.2.1:0",
        "192.0.2.1:70000",
        "300.1.1.1",
    ] {
        assert!(dns::parse_server(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(DnsServer::System.to_string(), "system");
    assert_eq!(
        DnsServer::Addr(a("[2001:db8::1]:53")).to_string(),
        "[2001:db8::1]:53"
    );
    assert_eq!(
        DnsServer::Addr(a("127.0.0.1:5353")).to_string(),
        "127.0.0.1:5353"
    );
}

#[test]
fn record_types() {
    let record_type = |value: &str| {
        parse(&[&format!("--dns.record-type={value}")]).map(|a| RecordType::from(a.record_type))
    };
    assert_eq!(record_type("A").unwrap(), RecordType::A);
    assert_eq!(record_type("a").unwrap(), RecordType::A);
    assert_eq!(record_type("aaaa").unwrap(), RecordType::AAAA);
    assert_eq!(record_type("AAAA").unwrap(), RecordType::AAAA);
    assert!(record_type("MX").is_err());
}

#[test]
fn defaults_and_off_without_names() {
    let args = parse(&[]).unwrap();
    assert!(args.probe_names.is_empty());
    assert_eq!(args.interval, Duration::from_secs(30));
    assert_eq!(args.timeout, Duration::from_secs(5));
    assert_eq!(args.record_type, AddressType::A);
    assert!(dns::from_args(&args).unwrap().is_none());
}

#[test]
fn flags_build_a_background_collector() {
    let flags = [
        "--dns.probe-name=example.org",
        "--dns.probe-name",
        "example.net",
        "--dns.server=192.0.2.1",
        "--dns.server=[2001:db8::1]:5353",
        "--dns.interval=1m",
        "--dns.timeout=750ms",
        "--dns.record-type=AAAA",
    ];
    let args = parse(&flags).unwrap();
    assert_eq!(args.probe_names, vec!["example.org", "example.net"]);
    assert_eq!(args.servers.len(), 2);
    assert_eq!(args.record_type, AddressType::Aaaa);

    // The collector the exporter declares as `dns`, built from all of its flags.
    #[derive(Debug, Parser)]
    struct ExporterCli {
        #[command(flatten)]
        args: network_exporter::Args,
    }
    let cli =
        ExporterCli::try_parse_from(std::iter::once("network-exporter").chain(flags)).unwrap();
    let settings = Settings {
        procfs: "/proc".into(),
        sysfs: "/sys".into(),
        enabled_collectors: vec!["dns"],
    };
    let setup = network_exporter::setup(cli.args, &settings).unwrap();
    let dns_def = network_exporter::SPEC
        .collectors
        .iter()
        .find(|def| def.name == "dns")
        .expect("a collector named dns");
    let collector = (dns_def.build)(&setup).unwrap().expect("collector on");
    assert_eq!(
        collector.mode(),
        Mode::Background {
            interval: Duration::from_secs(60),
            timeout: Duration::from_millis(750)
        }
    );
}

#[test]
fn bad_flags_are_refused() {
    assert!(parse(&["--dns.timeout=5x"]).is_err());
    // A bare number is seconds now (odin-common's duration parser), no longer refused.
    assert_eq!(
        parse(&["--dns.timeout=5"]).unwrap().timeout,
        Duration::from_secs(5)
    );
    assert!(parse(&["--dns.server=resolver.example"]).is_err());
    assert!(parse(&["--dns.record-type=TXT"]).is_err());
    let args = parse(&["--dns.probe-name=bad..name"]).unwrap();
    let err = dns::from_args(&args).unwrap_err().to_string();
    assert!(err.contains("bad..name"), "{err}");
}

#[test]
fn outcomes_without_a_response() {
    let refused: Result<hickory_resolver::lookup::Lookup, ResolveError> =
        Err(io::Error::from(io::ErrorKind::ConnectionRefused).into());
    assert_eq!(
        dns::classify(&refused, RecordType::A),
        dns::Outcome {
            success: false,
            rcode: "error",
            answered: false
        }
    );
    let none = Err(ResolveError::from(ResolveErrorKind::NoConnections));
    assert_eq!(dns::classify(&none, RecordType::A).rcode, "error");
    let timeout = Err(ResolveError::from(ResolveErrorKind::Timeout));
    assert_eq!(
        dns::classify(&timeout, RecordType::A),
        dns::Outcome {
            success: false,
            rcode: "timeout",
            answered: false
        }
    );
    let io_timeout = Err(io::Error::from(io::ErrorKind::TimedOut).into());
    assert_eq!(dns::classify(&io_timeout, RecordType::A).rcode, "timeout");
}

#[test]
fn rcode_labels() {
    assert_eq!(dns::rcode_label(ResponseCode::NoError), "noerror");
    assert_eq!(dns::rcode_label(ResponseCode::NXDomain), "nxdomain");
    assert_eq!(dns::rcode_label(ResponseCode::ServFail), "servfail");
    assert_eq!(dns::rcode_label(ResponseCode::Refused), "refused");
    assert_eq!(dns::rcode_label(ResponseCode::BADCOOKIE), "badcookie");
    assert_eq!(dns::rcode_label(ResponseCode::Unknown(3999)), "unknown");
}
