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
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, target_dir  # noqa: E402
from odin import measure  # noqa: E402
from odin.exporters import Proc, free_port, wait_http  # noqa: E402
from odin.measure import cpu_seconds, memory_kib  # noqa: E402



def scrape_once(port: int) -> tuple[float, int]:
    dt, body, _ = measure.scrape(port, timeout=10)
    return dt, len(body)


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
        for _, (_, port) in targets.items():
            wait_http(f"http://127.0.0.1:{port}/metrics")
            for _ in range(20):  # warm up both before measuring
                scrape_once(port)
        lat = {k: [] for k in targets}
        cpu = {k: 0.0 for k in targets}
        size = {}
        per_round = args.scrapes // args.rounds
        for _ in range(args.rounds):
            for name, (proc, port) in targets.items():
                c0 = cpu_seconds(proc.p.pid)
                for _ in range(per_round):
                    dt, n = scrape_once(port)
                    lat[name].append(dt)
                    size[name] = n
                cpu[name] += cpu_seconds(proc.p.pid) - c0
        mem = {name: memory_kib(proc.p.pid) for name, (proc, _) in targets.items()}
    finally:
        ours.stop()
        node.stop()

    n = per_round * args.rounds
    rows = {}
    for name in targets:
        xs = sorted(lat[name])
        rows[name] = {
            "cpu_per_1000": cpu[name] / n * 1000,
            "p50_ms": statistics.median(xs) * 1000,
            "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1000,
            "rss_mib": mem[name][0] / 1024,
            "hwm_mib": mem[name][1] / 1024,
            "gzip_bytes": size[name],
        }
    print(f"\n{n} scrapes each, {args.rounds} alternating rounds, gzip, kept-alive connection"
          f"{'; network-exporter ' + ' '.join(args.ours_arg) if args.ours_arg else ''}\n")
    print("| exporter | CPU s / 1,000 scrapes | p50 latency (ms) | p99 latency (ms) | RSS (MiB) | peak RSS (MiB) | response (gzip bytes) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['cpu_per_1000']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['rss_mib']:.1f} | {r['hwm_mib']:.1f} | {r['gzip_bytes']} |")
    a, b = rows["network-exporter"], rows["node_exporter"]
    ratio = lambda k: a[k] / b[k] if b[k] else float("nan")  # noqa: E731
    print(f"| **ratio** network/node | {ratio('cpu_per_1000'):.2f} | {ratio('p50_ms'):.2f} | "
          f"{ratio('p99_ms'):.2f} | {ratio('rss_mib'):.2f} | {ratio('hwm_mib'):.2f} | {ratio('gzip_bytes'):.2f} |")
    print(f"\ntargets: CPU ratio <= 0.5 ({'met' if ratio('cpu_per_1000') <= 0.5 else 'NOT met'}), "
          f"RSS ratio <= 0.5 ({'met' if ratio('rss_mib') <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
