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
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, target_dir  # noqa: E402
from odin import measure  # noqa: E402
from odin.exporters import Proc, free_port, wait_http  # noqa: E402



def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=1000, help="scrapes per exporter")
    ap.add_argument("--rounds", type=int, default=10, help="alternations between the two")
    ap.add_argument("--ours-arg", action="append", default=[],
                    help="extra flag for network-exporter, e.g. --collector.tcpstat.source=procfs")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "network-exporter"],
                   cwd=REPO, check=True)
    ours_bin = target_dir() / "release" / "network-exporter"
    work = Path(tempfile.mkdtemp(prefix="odin-bench-"))
    p_ours, p_node = free_port(), free_port()
    ours = Proc([ours_bin, f"--web.listen-address=127.0.0.1:{p_ours}", "--log.level=warn",
                 "--no-collector.netclass", "--no-collector.softnet", "--no-collector.wireless",
                 "--no-collector.dns", *args.ours_arg], work / "ours.log")
    node = Proc(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{p_node}",
                 "--collector.disable-defaults", "--collector.netdev", "--collector.netstat",
                 "--collector.sockstat", "--collector.tcpstat", "--log.level=warn"], work / "node.log")
    targets = {"network-exporter": (ours, p_ours), "node_exporter": (node, p_node)}
    try:
        for _, port in targets.values():
            wait_http(f"http://127.0.0.1:{port}/metrics")
        rows, n = measure.head_to_head(targets, args.scrapes, args.rounds)
    finally:
        ours.stop()
        node.stop()

    print(f"\n{n} scrapes each, {args.rounds} alternating rounds, gzip, kept-alive connection"
          f"{'; network-exporter ' + ' '.join(args.ours_arg) if args.ours_arg else ''}\n")
    ratio = measure.print_head_to_head(rows, "network-exporter", "node_exporter", "network/node")
    print(f"\ntargets: CPU ratio <= 0.5 ({'met' if ratio['cpu_per_1000'] <= 0.5 else 'NOT met'}), "
          f"RSS ratio <= 0.5 ({'met' if ratio['rss_mib'] <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
