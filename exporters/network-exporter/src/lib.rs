//! network-exporter: host network health (interfaces, TCP, UDP, sockets, DNS) for Prometheus.
//!
//! Each data source is one module under [`collectors`]; this file declares them once in
//! [`SPEC`] (name, default, help, how to build it) and turns the exporter's own flags
//! ([`Args`]) into what the collectors are built from ([`Setup`]). `main.rs` hands both to
//! `odin_common::run`.

pub mod collectors;

use collectors::device_filter::{DeviceFilter, DeviceFilterArgs};
use collectors::dns::{self, DnsArgs};
use collectors::tcpstat::{self, TcpstatArgs};
use collectors::{netclass, netdev, netstat, sockstat, softnet, wireless};
use odin_common::{built, Built, CollectorDef, ExporterSpec, Settings};

/// The flags of network-exporter besides the shared ones of odin-common.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub devices: DeviceFilterArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub tcpstat: TcpstatArgs,
}

/// What the collectors are built from: the parsed flags, with the interface filter compiled
/// once for the three collectors that share it.
#[derive(Debug, Clone)]
pub struct Setup {
    pub devices: DeviceFilter,
    pub dns: DnsArgs,
    pub tcpstat: TcpstatArgs,
}

/// Turn the flags into the [`Setup`]; fails on an invalid interface regex, naming its flag.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    Ok(Setup {
        devices: DeviceFilter::from_args(&args.devices)?,
        dns: args.dns,
        tcpstat: args.tcpstat,
    })
}

/// network-exporter as odin-common runs it: every collector, declared once.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "network-exporter",
    prefix: "network",
    version: env!("CARGO_PKG_VERSION"),
    about: "Host network health: interfaces, TCP, UDP, sockets and DNS.",
    default_port: 19102,
    collectors: &[
        CollectorDef::on("netdev", "interface counters from /proc/net/dev", |setup| {
            built(netdev::Netdev::new(setup.devices.clone()))
        }),
        CollectorDef::on(
            "netclass",
            "link state, speed, MTU, carrier changes from /sys/class/net",
            |setup| built(netclass::Netclass::new(setup.devices.clone())),
        ),
        CollectorDef::on(
            "wireless",
            "wireless link quality from /proc/net/wireless",
            |setup| built(wireless::Wireless::new(setup.devices.clone())),
        ),
        CollectorDef::on(
            "softnet",
            "per-CPU softnet drops and squeezes from /proc/net/softnet_stat",
            |_| built(softnet::Softnet::new()),
        ),
        CollectorDef::on(
            "tcpstat",
            "TCP sockets by state and queued bytes (netlink inet_diag or /proc/net/tcp{,6})",
            |setup| built(tcpstat::Tcpstat::new(&setup.tcpstat)),
        ),
        CollectorDef::on(
            "netstat",
            "TCP, UDP and IP counters from /proc/net/{snmp,netstat,snmp6}",
            |_| built(netstat::Netstat::new()),
        ),
        CollectorDef::on(
            "sockstat",
            "socket usage from /proc/net/sockstat{,6}",
            |_| built(sockstat::Sockstat::new()),
        ),
        CollectorDef::on(
            "dns",
            "DNS lookup probes (needs --dns.probe-name)",
            build_dns,
        ),
    ],
};

/// The DNS prober, or nothing (said in the log) when no `--dns.probe-name` is given.
fn build_dns(setup: &Setup) -> Built {
    match dns::from_args(&setup.dns)? {
        Some(prober) => built(prober),
        None => {
            log::info!("dns collector off: no --dns.probe-name given");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_valid() {
        assert_eq!(SPEC.check(), Ok(()));
        let names: Vec<&str> = SPEC.collectors.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "netdev", "netclass", "wireless", "softnet", "tcpstat", "netstat", "sockstat",
                "dns"
            ]
        );
        assert!(SPEC.collectors.iter().all(|c| c.default_enabled));
    }
}
