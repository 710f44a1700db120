//! Which network interfaces the `netdev`, `netclass` and `wireless` collectors report.
//!
//! Reads nothing itself: it is built from two flags and asked about one interface name at a
//! time.
//!
//! - `--collector.netdev.device-include=REGEX`: report only interfaces whose name matches.
//! - `--collector.netdev.device-exclude=REGEX`: drop interfaces whose name matches. It
//!   *replaces* the default exclusion below; an empty value (`--collector.netdev.device-exclude=`)
//!   excludes nothing, so every interface is reported.
//! - Both given: an interface must match the include and not match the exclude.
//! - Include given without exclude: the default exclusion does not apply (what you include is
//!   what you get). An empty include matches every interface, so
//!   `--collector.netdev.device-include=` also reports every interface.
//! - Neither given: [`DEFAULT_EXCLUDE`] applies.
//!
//! Regexes are unanchored, as in node_exporter: write `^eth0$`, not `eth0`, to match one name.
//!
//! # The default exclusion, and why it is name-based
//!
//! The exporter is about *host* network health: the links that carry traffic off the box. By
//! default it drops interfaces that container, Kubernetes and VM runtimes create on their own,
//! one per container or pod or network (`veth*`, `cali*`, `lxc*`, OVN's 15-hex-digit names,
//! Docker's `docker0` and `br-<12 hex>`, `cni0`, `flannel.*`, `cilium_*`, `kube-ipvs0`,
//! `nodelocaldns`, `tunl0`, `vxlan*`, OVS's `genev_sys_*`/`vxlan_sys_*`, Weave's `weave` and
//! `datapath`, libvirt's `virbr*`): they come and go with workloads (series churn, unbounded
//! label values) and their traffic also crosses a physical interface, so sums double-count.
//!
//! Loopback (`lo`) is dropped too: its traffic never leaves the host, it is often the busiest
//! interface on a box, and it never shows a link problem, so in "total traffic" panels it is
//! only noise. Add it back with an explicit exclude (for example `--collector.netdev.device-exclude=`).
//!
//! Interfaces an administrator sets up by hand are kept even when virtual: bonds, VLANs,
//! bridges with their own names, WireGuard (`wg*`), VPN `tun*`/`tap*`. That is why the default
//! is a list of names rather than "everything whose sysfs entry lies under
//! `/devices/virtual/`", which would also drop all of those; a name rule is also the same for
//! `/proc/net/dev` (which has no sysfs path) and for sysfs, and it is predictable from
//! `ip link` output alone.

use regex::Regex;

/// The default exclusion, applied when neither flag is given. See the module documentation.
pub const DEFAULT_EXCLUDE: &str = concat!(
    "^(lo|veth.*|docker.*|br-[0-9a-f]{12}|cni.*|flannel.*|cali.*|vxlan.*|tunl.*|kube-ipvs.*",
    "|cilium_.*|lxc.*|virbr.*|genev_sys_.*|vxlan_sys_.*|weave|datapath|nodelocaldns",
    "|[0-9a-f]{15})$"
);

/// The two interface-filter flags, to `#[command(flatten)]` into the exporter's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceFilterArgs {
    /// Report only network interfaces whose name matches this regex (netdev, netclass and
    /// wireless collectors). When given without --collector.netdev.device-exclude, the default
    /// exclusion of virtual interfaces does not apply.
    #[arg(long = "collector.netdev.device-include", value_name = "REGEX")]
    pub device_include: Option<String>,

    /// Drop network interfaces whose name matches this regex; replaces the default exclusion
    /// of loopback and container/VM interfaces. An empty value excludes nothing.
    #[arg(
        long = "collector.netdev.device-exclude",
        value_name = "REGEX",
        long_help = format!(
            "Drop network interfaces whose name matches this regex; replaces the default \
             exclusion of loopback and container/VM interfaces. An empty value excludes \
             nothing. Default when neither this nor --collector.netdev.device-include is \
             given: {DEFAULT_EXCLUDE}"
        )
    )]
    pub device_exclude: Option<String>,
}

/// An interface-name filter; cheap to clone (the compiled regexes are shared).
#[derive(Debug, Clone)]
pub struct DeviceFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl DeviceFilter {
    /// Build the filter from the flags; fails on an invalid regex, naming the flag.
    pub fn from_args(args: &DeviceFilterArgs) -> anyhow::Result<Self> {
        Self::new(
            args.device_include.as_deref(),
            args.device_exclude.as_deref(),
        )
    }

    /// Build the filter from the two optional patterns (see the module documentation for how
    /// they combine). An empty pattern means "no restriction" for either; an empty include
    /// still counts as given, so it also switches the default exclusion off.
    pub fn new(include: Option<&str>, exclude: Option<&str>) -> anyhow::Result<Self> {
        let compile = odin_common::regex_flag;
        let include_given = include.is_some();
        let include = match include {
            Some(p) if !p.is_empty() => Some(compile("collector.netdev.device-include", p)?),
            _ => None,
        };
        let exclude = match exclude {
            Some("") => None,
            Some(p) => Some(compile("collector.netdev.device-exclude", p)?),
            None if include_given => None,
            None => Some(Regex::new(DEFAULT_EXCLUDE).expect("DEFAULT_EXCLUDE is a valid regex")),
        };
        Ok(Self { include, exclude })
    }

    /// A filter that lets every interface through (what `--collector.netdev.device-exclude=`
    /// builds; tests use it to see every fixture device).
    #[cfg(test)]
    pub fn allow_all() -> Self {
        Self {
            include: None,
            exclude: None,
        }
    }

    /// Whether the interface named `device` is reported.
    pub fn allows(&self, device: &str) -> bool {
        if let Some(inc) = &self.include {
            if !inc.is_match(device) {
                return false;
            }
        }
        match &self.exclude {
            Some(exc) => !exc.is_match(device),
            None => true,
        }
    }
}

impl Default for DeviceFilter {
    /// The filter with neither flag given: [`DEFAULT_EXCLUDE`].
    fn default() -> Self {
        Self::new(None, None).expect("default filter builds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_LIKE: &[&str] = &[
        "eth0",
        "enp3s0",
        "wlan0",
        "wlp2s0",
        "bond0",
        "bond0.100",
        "eth0.42",
        "br0",
        "wg0",
        "tun0",
        "tap0",
        "ib0",
        "ifb0",
    ];

    const VIRTUAL: &[&str] = &[
        "lo",
        "docker0",
        "veth1a2b3c",
        "br-0f1e2d3c4b5a",
        "a1b2c3d4e5f6a7b",
        "cni0",
        "flannel.1",
        "cali12ab34cd56e",
        "vxlan.calico",
        "tunl0",
        "kube-ipvs0",
        "cilium_host",
        "cilium_vxlan",
        "lxc9f8e7d6c5b4a",
        "virbr0",
        "virbr0-nic",
        "genev_sys_6081",
        "vxlan_sys_4789",
        "weave",
        "datapath",
        "nodelocaldns",
    ];

    #[test]
    fn default_keeps_host_interfaces_and_drops_virtual_ones() {
        let f = DeviceFilter::default();
        for d in HOST_LIKE {
            assert!(f.allows(d), "{d} should be kept by default");
        }
        for d in VIRTUAL {
            assert!(!f.allows(d), "{d} should be dropped by default");
        }
    }

    #[test]
    fn default_hex_rules_need_the_exact_shape() {
        let f = DeviceFilter::default();
        // 14 and 16 hex digits are not OVN port names; upper case is not either.
        assert!(f.allows("a1b2c3d4e5f6a7"));
        assert!(f.allows("a1b2c3d4e5f6a7b8"));
        assert!(f.allows("A1B2C3D4E5F6A7B"));
        // Docker's br- names carry 12 hex digits; a hand-made br-lan is kept.
        assert!(f.allows("br-lan"));
        assert!(f.allows("br-0f1e2d3c4b5"));
        // Only whole names match: "lo" inside a name does not exclude it.
        assert!(f.allows("lo0x"));
        assert!(f.allows("eth-lo"));
    }

    #[test]
    fn include_alone_disables_the_default_exclusion() {
        let f = DeviceFilter::new(Some("^(lo|eth0|docker0)$"), None).unwrap();
        assert!(f.allows("lo"));
        assert!(f.allows("eth0"));
        assert!(f.allows("docker0"));
        assert!(!f.allows("wlan0"));
        assert!(!f.allows("eth1"));
    }

    #[test]
    fn exclude_replaces_the_default() {
        let f = DeviceFilter::new(None, Some("^wlan")).unwrap();
        assert!(f.allows("lo"));
        assert!(f.allows("veth1a2b3c"));
        assert!(f.allows("eth0"));
        assert!(!f.allows("wlan0"));
    }

    #[test]
    fn include_then_exclude_when_both_are_given() {
        let f = DeviceFilter::new(Some("^eth"), Some("^eth1$")).unwrap();
        assert!(f.allows("eth0"));
        assert!(f.allows("eth2"));
        assert!(!f.allows("eth1"));
        assert!(!f.allows("wlan0"));
        assert!(!f.allows("lo"));
    }

    #[test]
    fn empty_patterns_mean_no_restriction() {
        let f = DeviceFilter::new(None, Some("")).unwrap();
        for d in HOST_LIKE.iter().chain(VIRTUAL) {
            assert!(f.allows(d), "{d}");
        }
        let f = DeviceFilter::new(Some(""), None).unwrap();
        assert!(f.allows("lo"));
        assert!(f.allows("veth1a2b3c"));
    }

    #[test]
    fn patterns_are_unanchored_like_node_exporter() {
        let f = DeviceFilter::new(Some("eth0"), None).unwrap();
        assert!(f.allows("eth0"));
        assert!(f.allows("veth0"));
        assert!(!f.allows("eth1"));
    }

    #[test]
    fn invalid_regex_names_the_flag() {
        let err = DeviceFilter::new(None, Some("(")).unwrap_err().to_string();
        assert!(err.contains("--collector.netdev.device-exclude"), "{err}");
        let err = DeviceFilter::new(Some("[a-"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--collector.netdev.device-include"), "{err}");
    }

    #[test]
    fn flags_parse_into_a_filter() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            filter: DeviceFilterArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--collector.netdev.device-include=^(eth|lo)",
            "--collector.netdev.device-exclude",
            "^eth1$",
        ])
        .unwrap();
        assert_eq!(cli.filter.device_include.as_deref(), Some("^(eth|lo)"));
        assert_eq!(cli.filter.device_exclude.as_deref(), Some("^eth1$"));
        let f = DeviceFilter::from_args(&cli.filter).unwrap();
        assert!(f.allows("lo"));
        assert!(f.allows("eth0"));
        assert!(!f.allows("eth1"));

        let cli = Cli::try_parse_from(["x", "--collector.netdev.device-exclude="]).unwrap();
        assert_eq!(cli.filter.device_exclude.as_deref(), Some(""));
        assert!(DeviceFilter::from_args(&cli.filter).unwrap().allows("lo"));
    }
}
