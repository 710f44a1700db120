//! network-exporter: host network health (interfaces, TCP, UDP, sockets, DNS) for Prometheus.
//! Each data source is one file under `collectors/`; this file only wires flags to them.

mod collectors;

use std::process::ExitCode;

use collectors::{
    device_filter, dns, netclass, netdev, netstat, sockstat, softnet, tcpstat, wireless,
};
use odin_common::{Collector, CollectorSpec, ExporterSpec};

#[derive(Debug, clap::Args)]
struct Args {
    #[command(flatten)]
    devices: device_filter::DeviceFilterArgs,
    #[command(flatten)]
    dns: dns::DnsArgs,
    #[command(flatten)]
    tcpstat: tcpstat::TcpstatArgs,
}

const fn on(name: &'static str, help: &'static str) -> CollectorSpec {
    CollectorSpec {
        name,
        default_enabled: true,
        help,
    }
}

const SPEC: ExporterSpec = ExporterSpec {
    name: "network-exporter",
    prefix: "network",
    version: env!("CARGO_PKG_VERSION"),
    about: "Host network health: interfaces, TCP, UDP, sockets and DNS.",
    default_port: 19102,
    collectors: &[
        on("netdev", "interface counters from /proc/net/dev"),
        on(
            "netclass",
            "link state, speed, MTU, carrier changes from /sys/class/net",
        ),
        on("wireless", "wireless link quality from /proc/net/wireless"),
        on(
            "softnet",
            "per-CPU softnet drops and squeezes from /proc/net/softnet_stat",
        ),
        on(
            "tcpstat",
            "TCP sockets by state and queued bytes (netlink inet_diag or /proc/net/tcp{,6})",
        ),
        on(
            "netstat",
            "TCP, UDP and IP counters from /proc/net/{snmp,netstat,snmp6}",
        ),
        on("sockstat", "socket usage from /proc/net/sockstat{,6}"),
        on("dns", "DNS lookup probes (needs --dns.probe-name)"),
    ],
};

fn main() -> ExitCode {
    odin_common::run::<Args>(&SPEC, |args, settings| {
        let filter = device_filter::DeviceFilter::from_args(&args.devices)?;
        let mut out: Vec<Box<dyn Collector>> = Vec::new();
        if settings.enabled("netdev") {
            out.push(Box::new(netdev::Netdev::new(filter.clone())));
        }
        if settings.enabled("netclass") {
            out.push(Box::new(netclass::Netclass::new(filter.clone())));
        }
        if settings.enabled("wireless") {
            out.push(Box::new(wireless::Wireless::new(filter)));
        }
        if settings.enabled("softnet") {
            out.push(Box::new(softnet::Softnet::new()));
        }
        if settings.enabled("tcpstat") {
            out.push(Box::new(tcpstat::Tcpstat::new(&args.tcpstat)));
        }
        if settings.enabled("netstat") {
            out.push(Box::new(netstat::Netstat::new()));
        }
        if settings.enabled("sockstat") {
            out.push(Box::new(sockstat::Sockstat::new()));
        }
        if settings.enabled("dns") {
            match dns::from_args(&args.dns)? {
                Some(c) => out.push(Box::new(c)),
                None => log::info!("dns collector off: no --dns.probe-name given"),
            }
        }
        Ok(out)
    })
}
