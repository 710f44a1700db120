#!/usr/bin/env python3
"""Benchmark: network-exporter against node_exporter on the same host, in the same run.

Both serve the same kind of data (node_exporter restricted to netdev, netstat, sockstat and
tcpstat; network-exporter to netdev, netstat, sockstat and tcpstat). The two are scraped in
alternating rounds (so both see the same host state and the same machine noise), each scrape
as Prometheus does it: Accept-Encoding: gzip, over a kept-alive connection (a new connection
per scrape would also pile up TIME_WAIT sockets that both exporters' tcpstat must then count). Reported per
exporter: CPU seconds per 1,000 scrapes (utime+stime of the server process from /proc),
scrape latency p50/p99 seen by the client, resident memory (VmRSS after the run, VmHWM peak);
then the ratios network-exporter / node_exporter.

Usage: python3 bench/network_vs_node_exporter.py [--scrapes 1000] [--rounds 10]
(builds the release binary first if needed; prints a Markdown table).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import measure  # noqa: E402
from benchkit import build, start_pair, stop  # noqa: E402

OURS, PEER = "network-exporter", "node_exporter"


def start(ours_bin: Path, work: Path, ours_args=()) -> dict:
    """network-exporter with the collectors that overlap node_exporter's (netclass, softnet,
    wireless and dns off) and node_exporter with netdev, netstat, sockstat and tcpstat, each on
    a free loopback port, serving: {name: (Proc, port)}."""
    return start_pair(
        work,
        (OURS, [ours_bin, "--log.level=warn", "--no-collector.netclass", "--no-collector.softnet",
                "--no-collector.wireless", "--no-collector.dns", *ours_args]),
        (PEER, ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.netdev",
                "--collector.netstat", "--collector.sockstat", "--collector.tcpstat",
                "--log.level=warn"]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=1000, help="scrapes per exporter")
    ap.add_argument("--rounds", type=int, default=10, help="alternations between the two")
    ap.add_argument("--ours-arg", action="append", default=[],
                    help="extra flag for network-exporter, e.g. --collector.tcpstat.source=procfs")
    args = ap.parse_args()

    ours_bin = build(OURS)[OURS]
    targets = start(ours_bin, Path(tempfile.mkdtemp(prefix="odin-bench-")), args.ours_arg)
    try:
        rows, n = measure.head_to_head(targets, args.scrapes, args.rounds)
    finally:
        stop(targets)

    print(f"\n{n} scrapes each, {args.rounds} alternating rounds, gzip, kept-alive connection"
          f"{'; network-exporter ' + ' '.join(args.ours_arg) if args.ours_arg else ''}\n")
    ratio = measure.print_head_to_head(rows, OURS, PEER, "network/node")
    print(f"\ntargets: CPU ratio <= 0.5 ({'met' if ratio['cpu_per_1000'] <= 0.5 else 'NOT met'}), "
          f"RSS ratio <= 0.5 ({'met' if ratio['rss_mib'] <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
