//! `processes`: Claude Code instances, their trees, orphans and the host-wide counts, from one
//! scan of `/proc` ([`crate::scan`]). Writes every `claude_*` family of docs/metrics.md except
//! the `pss` collector's.

use std::sync::Arc;

use odin_common::{Collector, Context, Field, Labels, Part, Sink, SplitField};

use crate::detect::Role;
use crate::scan::{InstanceReport, Reading, Scanner};

pub struct Processes {
    scanner: Arc<Scanner>,
}

impl Processes {
    pub fn new(scanner: Arc<Scanner>) -> Self {
        Processes { scanner }
    }
}

fn n(v: u64) -> Option<f64> {
    Some(v as f64)
}

fn o(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

const OWN: &[Field<Reading>] = &[
    Field::gauge(
        "instance_resident_memory_bytes",
        "Resident set size of the instance process.",
        |r| n(r.resident_bytes),
    ),
    Field::gauge(
        "instance_virtual_memory_bytes",
        "Virtual memory size of the instance process.",
        |r| n(r.virtual_bytes),
    ),
    Field::gauge(
        "instance_swap_bytes",
        "Swapped-out memory of the instance process.",
        |r| o(r.swap_bytes),
    ),
    Field::gauge(
        "instance_threads",
        "Threads of the instance process.",
        |r| n(r.threads),
    ),
    Field::gauge(
        "instance_open_fds",
        "Open file descriptors of the instance process.",
        |r| o(r.open_fds),
    ),
    Field::counter(
        "instance_read_bytes_total",
        "Bytes the instance process read from storage.",
        |r| o(r.read_bytes),
    ),
    Field::counter(
        "instance_written_bytes_total",
        "Bytes the instance process wrote to storage.",
        |r| o(r.written_bytes),
    ),
];

const TREE: &[Field<Reading>] = &[
    Field::gauge("tree_resident_memory_bytes", "Resident set size of the instance and its descendants, summed (shared pages count once per process).", |r| n(r.resident_bytes)),
    Field::gauge("tree_virtual_memory_bytes", "Virtual memory size of the instance and its descendants, summed.", |r| n(r.virtual_bytes)),
    Field::gauge("tree_swap_bytes", "Swapped-out memory of the instance and its descendants, summed.", |r| o(r.swap_bytes)),
    Field::gauge("tree_threads", "Threads of the instance and its descendants.", |r| n(r.threads)),
    Field::gauge("tree_open_fds", "Open file descriptors of the instance and its descendants.", |r| o(r.open_fds)),
    Field::counter("tree_read_bytes_total", "Bytes the instance and its descendants read from storage (members that exited included).", |r| o(r.read_bytes)),
    Field::counter("tree_written_bytes_total", "Bytes the instance and its descendants wrote to storage (members that exited included).", |r| o(r.written_bytes)),
];

const CPU_MODES: &[Part<Reading>] = &[
    ("user", |r| Some(r.cpu_user_seconds)),
    ("system", |r| Some(r.cpu_system_seconds)),
];

const SWITCHES: &[Part<Reading>] = &[
    ("voluntary", |r| o(r.voluntary_switches)),
    ("involuntary", |r| o(r.involuntary_switches)),
];

const OWN_SPLIT: &[SplitField<Reading>] = &[
    SplitField::counter(
        "instance_cpu_seconds_total",
        "CPU time of the instance process, by mode.",
        "mode",
        CPU_MODES,
    ),
    SplitField::counter(
        "instance_context_switches_total",
        "Context switches of the instance process, by type.",
        "type",
        SWITCHES,
    ),
];

const TREE_SPLIT: &[SplitField<Reading>] = &[
    SplitField::counter(
        "tree_cpu_seconds_total",
        "CPU time of the instance and its descendants (members that exited included), by mode.",
        "mode",
        CPU_MODES,
    ),
    SplitField::counter(
        "tree_context_switches_total",
        "Context switches of the instance and its descendants (members that exited included), by type.",
        "type",
        SWITCHES,
    ),
];

/// TCP connections by state: the states are the readings' own keys, so no fixed table.
fn tcp_connections(out: &mut Sink, name: &str, help: &str, rows: &[(&Labels<'_>, &Reading)]) {
    let mut tcp = out.gauge(name, help);
    for (labels, r) in rows {
        for (state, n) in &r.tcp {
            let mut with_state = labels.to_vec();
            with_state.push(("state", state));
            tcp.sample(&with_state, *n);
        }
    }
}

impl Collector for Processes {
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let snap = self.scanner.snapshot()?;
        for e in &snap.errors {
            out.item_error(e.clone());
        }
        let pids: Vec<String> = snap.instances.iter().map(|i| i.pid.to_string()).collect();

        let mut info = out.gauge(
            "instance_info",
            "Always 1: a Claude Code instance, its version, how it was installed and whether it runs headless (-p) or interactive.",
        );
        for (i, pid) in snap.instances.iter().zip(&pids) {
            let mode = if i.headless {
                "headless"
            } else {
                "interactive"
            };
            info.sample(
                &[
                    ("pid", pid),
                    ("version", &i.version),
                    ("install", i.install.as_str()),
                    ("mode", mode),
                ],
                1,
            );
        }
        let pid_labels: Vec<[(&str, &str); 1]> =
            pids.iter().map(|p| [("pid", p.as_str())]).collect();
        let rows = |of: fn(&InstanceReport) -> &Reading| -> Vec<(&Labels<'_>, &Reading)> {
            pid_labels
                .iter()
                .zip(&snap.instances)
                .map(|(l, i)| (&l[..], of(i)))
                .collect()
        };
        let (own, tree) = (rows(|i| &i.own), rows(|i| &i.tree));
        out.fields(OWN, &own);
        out.split_fields(OWN_SPLIT, &own);
        tcp_connections(
            out,
            "instance_tcp_connections",
            "TCP connections of the instance process by state (listening sockets excluded).",
            &own,
        );
        out.fields(TREE, &tree);
        out.split_fields(TREE_SPLIT, &tree);
        tcp_connections(
            out,
            "tree_tcp_connections",
            "TCP connections of the instance and its descendants (members that exited included) by state (listening sockets excluded).",
            &tree,
        );

        let mut limit = out.gauge(
            "instance_open_fds_limit",
            "Soft limit on open file descriptors of the instance process.",
        );
        for (i, pid) in snap.instances.iter().zip(&pids) {
            limit.sample(&[("pid", pid)], i.fd_limit);
        }
        let mut ratio = out.gauge(
            "instance_open_fds_ratio",
            "Open file descriptors of the instance process over its soft limit.",
        );
        for (i, pid) in snap.instances.iter().zip(&pids) {
            let r = match (i.own.open_fds, i.fd_limit) {
                (Some(n), Some(l)) if l > 0 => Some(n as f64 / l as f64),
                _ => None,
            };
            ratio.sample(&[("pid", pid)], r);
        }
        let mut start = out.gauge(
            "instance_start_time_seconds",
            "Start time of the instance (Unix seconds).",
        );
        for (i, pid) in snap.instances.iter().zip(&pids) {
            start.sample(&[("pid", pid)], i.start_time);
        }
        let mut procs = out.gauge("instance_processes", "Descendants of the instance by role.");
        for (i, pid) in snap.instances.iter().zip(&pids) {
            for (role, n) in &i.roles {
                procs.sample(&[("pid", pid), ("role", role.as_str())], *n);
            }
        }
        let mut ports = out.gauge(
            "listening_port_info",
            "Always 1: a TCP port the instance or a process of its tree listens on; scope any or other is reachable from the network.",
        );
        for (i, pid) in snap.instances.iter().zip(&pids) {
            for (port, v6, scope) in &i.ports {
                let port = port.to_string();
                let family = if *v6 { "ipv6" } else { "ipv4" };
                ports.sample(
                    &[
                        ("pid", pid),
                        ("port", &port),
                        ("family", family),
                        ("scope", scope.as_str()),
                    ],
                    1,
                );
            }
        }

        out.gauge("instances", "Claude Code instances by mode.")
            .sample(&[("mode", "interactive")], snap.interactive)
            .sample(&[("mode", "headless")], snap.headless);
        let mut d = out.gauge(
            "descendant_processes",
            "Descendants of live Claude Code instances by role.",
        );
        for role in Role::ALL {
            d.sample(
                &[("role", role.as_str())],
                snap.descendants.get(&role).copied().unwrap_or(0),
            );
        }
        let mut o = out.gauge(
            "orphan_processes",
            "Processes of a Claude Code session whose instance is gone, by role.",
        );
        for role in Role::ALL {
            o.sample(
                &[("role", role.as_str())],
                snap.orphans.get(&role).map_or(0, |x| x.0),
            );
        }
        let mut om = out.gauge(
            "orphan_resident_memory_bytes",
            "Resident memory of orphaned processes, by role.",
        );
        for role in Role::ALL {
            om.sample(
                &[("role", role.as_str())],
                snap.orphans.get(&role).map_or(0, |x| x.1),
            );
        }
        out.counter(
            "instance_starts_total",
            "Instances that appeared since the exporter started.",
        )
        .sample(&[], snap.starts);
        out.counter(
            "instance_exits_total",
            "Instances that went away since the exporter started.",
        )
        .sample(&[], snap.exits);
        out.counter(
            "instance_restarts_total",
            "Interactive instances started in the working directory of one that exited within --restart.window.",
        )
        .sample(&[], snap.restarts);
        out.gauge(
            "oldest_instance_start_time_seconds",
            "Start time of the oldest live instance (Unix seconds).",
        )
        .sample(&[], snap.oldest_start);
        out.gauge(
            "instances_omitted",
            "Instances past --max-instances, without series of their own.",
        )
        .sample(&[], snap.omitted as u64);
        out.gauge("scan_processes", "Processes seen by the last scan.")
            .sample(&[], snap.scanned);
        out.gauge(
            "scan_unreadable_processes",
            "Processes whose files the exporter may not read (needs root or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH).",
        )
        .sample(&[], snap.unreadable);
        out.counter(
            "scan_vanished_processes_total",
            "Processes that exited while being read.",
        )
        .sample(&[], snap.vanished);
        Ok(())
    }

    fn detail(&self) -> Option<String> {
        let snap = self.scanner.last()?;
        let mut parts = vec![format!(
            "{} instances ({} interactive, {} headless), {} processes scanned",
            snap.interactive + snap.headless,
            snap.interactive,
            snap.headless,
            snap.scanned
        )];
        if snap.unreadable > 0 {
            parts.push(format!(
                "{} processes of other users could not be read and may hide instances or orphans: run as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
                snap.unreadable
            ));
        }
        Some(parts.join("; "))
    }
}
