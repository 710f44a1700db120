#!/usr/bin/env python3
"""Differential test: network-exporter against node_exporter on the same data.

node_exporter (Debian prometheus-node-exporter) is the oracle. Both read the same fixture tree
(values must agree exactly) and the live host (counters read by network-exporter must lie
between two node_exporter readings taken just before and just after; gauges within a small
tolerance). Where the metrics overlap: netdev, netclass, softnet, netstat, sockstat, and TCP
connection states (live only: node_exporter 1.5 reads those over netlink, not from --path.procfs).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from odintest import (REPO, Checks, Proc, binary, free_port, parse_exposition, scrape,  # noqa: E402
                      wait_http)

FIXTURE = REPO / "exporters/network-exporter/tests/fixtures/host-a"
MAP_FILE = REPO / "exporters/network-exporter/tests/node_exporter_map.tsv"

# Families whose node_exporter name is ours with `node_network_` -> `network_` (label device).
DEVICE_FAMILIES = [f"receive_{k}_total" for k in
                   ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")] + \
                  [f"transmit_{k}_total" for k in
                   ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")] + \
                  ["up", "carrier", "speed_bytes", "mtu_bytes", "carrier_changes_total",
                   "carrier_up_changes_total", "carrier_down_changes_total"]
SOFTNET = ["processed_total", "dropped_total", "times_squeezed_total"]


def parse_ref(ref: str):
    m = re.match(r"^([a-zA-Z0-9_:]+)(\{(.*)\})?$", ref.strip())
    if not m:
        raise ValueError(f"bad reference {ref!r} in {MAP_FILE}")
    labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
    return m.group(1), labels


def pairs(ours: dict, node: dict, softnet: bool = True):
    """(description, node key, our key, is_counter) for every overlapping series.

    softnet=False leaves softnet out: node_exporter 1.5 labels softnet rows by position while
    network-exporter uses the CPU number the kernel prints (column 13), so they differ on a
    host with an offline CPU, which the fixture has on purpose.
    """
    out = []
    for fam in DEVICE_FAMILIES:
        ours_name = "network_" + fam.replace("errs", "errors")
        for (name, labels) in ours:
            if name == ours_name:
                out.append((f"{ours_name}{dict(labels)}", ("node_network_" + fam, labels),
                            (name, labels), fam.endswith("_total")))
    for fam in SOFTNET if softnet else []:
        for (name, labels) in ours:
            if name == "network_softnet_" + fam:
                out.append((f"{name}{dict(labels)}", ("node_softnet_" + fam, labels), (name, labels), True))
    for line in MAP_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        node_ref, our_ref = line.split("\t")[:2]
        nk, ok = parse_ref(node_ref), parse_ref(our_ref)
        out.append((our_ref, nk, ok, ok[0].endswith("_total")))
    return out


def node_exporter(port: int, work: Path, fixture: bool) -> Proc:
    argv = ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults", "--collector.netdev", "--collector.netclass",
            "--collector.softnet", "--collector.netstat", "--collector.sockstat",
            "--collector.netstat.fields=.*",
            # node_exporter 1.5 reads netdev and netclass over netlink by default, which sees
            # the live host whatever --path.procfs says: make it read the files instead.
            "--no-collector.netdev.netlink", "--no-collector.netclass.netlink",
            # Debian's build excludes ^lo$ by default; compare every device we export.
            "--collector.netdev.device-exclude=^$"]
    if fixture:
        argv += [f"--path.procfs={FIXTURE / 'proc'}", f"--path.sysfs={FIXTURE / 'sys'}"]
    else:
        argv += ["--collector.tcpstat"]
    return Proc(argv, work / f"node-{'fixture' if fixture else 'live'}.log")


def run_ours(fixture: bool) -> dict:
    argv = [str(binary("network-exporter")), "--once",
            "--no-collector.dns"]
    if fixture:
        argv += [f"--path.procfs={FIXTURE / 'proc'}", f"--path.sysfs={FIXTURE / 'sys'}"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"network-exporter --once failed ({p.returncode}): {p.stderr[-2000:]}")
    return parse_exposition(p.stdout)[0]


def main() -> int:
    c = Checks("differential-node-exporter")
    work = Path(tempfile.mkdtemp(prefix="odin-diff-"))

    # 1. Fixture tree: exact agreement.
    port = free_port()
    with node_exporter(port, work, fixture=True):
        wait_http(f"http://127.0.0.1:{port}/metrics")
        node, _ = scrape(f"http://127.0.0.1:{port}/metrics")
        ours = run_ours(fixture=True)
    compared = 0
    for what, nk, ok, _ in pairs(ours, node, softnet=False):
        if ok not in ours:
            continue
        if nk not in node:
            c.check(False, f"fixture: node_exporter has {nk[0]}{dict(nk[1])}", "absent")
            continue
        compared += 1
        c.check(node[nk] == ours[ok], f"fixture: {what} = {ours[ok]:g}", f"node_exporter says {node[nk]:g}")
    c.check(compared >= 40, f"fixture: compared {compared} series (>= 40)")

    # 2. Live host: node reading, ours, node reading again.
    port = free_port()
    with node_exporter(port, work, fixture=False):
        wait_http(f"http://127.0.0.1:{port}/metrics")
        before, _ = scrape(f"http://127.0.0.1:{port}/metrics")
        ours = run_ours(fixture=False)
        after, _ = scrape(f"http://127.0.0.1:{port}/metrics")
    compared = 0
    live_pairs = pairs(ours, before)
    for state in ("established", "listen", "time_wait", "close_wait", "syn_sent", "fin_wait2"):
        total = sum(v for (n, l), v in ours.items()
                    if n == "network_tcp_connection_states" and ("state", state) in l)
        ours[("sum_tcp_states", (("state", state),))] = total
        live_pairs.append((f"tcp state {state} (both families)",
                           ("node_tcp_connection_states", (("state", state),)),
                           ("sum_tcp_states", (("state", state),)), False))
    for what, nk, ok, is_counter in live_pairs:
        if ok not in ours or nk not in before or nk not in after:
            continue
        compared += 1
        lo, hi, v = min(before[nk], after[nk]), max(before[nk], after[nk]), ours[ok]
        if not is_counter:
            # Gauges (socket counts, states) move between readings; allow a little slack.
            slack = max(3.0, 0.05 * hi)
            lo, hi = lo - slack, hi + slack
        c.check(lo <= v <= hi, f"live: {what} = {v:g} within node_exporter's [{lo:g}, {hi:g}]")
    c.check(compared >= 30, f"live: compared {compared} series (>= 30)")
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
