#!/usr/bin/env python3
"""Benchmark: power-exporter against node_exporter on the same sysfs tree, in the same run.

Both read the same fixture tree (a workstation tree merged from the collectors' fixtures:
RAPL on two packages, batteries and AC, thermal zones and cooling devices, hwmon chips):
node_exporter restricted to its `rapl`, `powersupplyclass`, `thermal_zone` and `hwmon`
collectors, power-exporter with its `rapl`, `battery`, `thermal` and `hwmon` collectors (its
`gpu` collector off: node_exporter has none). They are scraped in alternating rounds, each scrape as Prometheus does it (Accept-Encoding: gzip,
kept-alive connection). Reported per exporter: CPU seconds per 1,000 scrapes (utime+stime of
the server process), scrape latency p50/p99, resident memory; then the ratios
power-exporter / node_exporter (targets: CPU and RSS at most 0.5). Then power-exporter's
background RAPL sampler alone: CPU used over --idle seconds without scrapes, as a share of
one core (target: under 0.1%).

Usage: python3 bench/power_vs_node_exporter.py [--scrapes 2000] [--rounds 10] [--idle 60]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, measure  # noqa: E402
from odin.measure import cpu_seconds  # noqa: E402
from benchkit import build, start_pair, stop  # noqa: E402

OURS, PEER = "power-exporter", "node_exporter"
FIXTURES = REPO / "exporters/power-exporter/tests/fixtures"
TREES = ["rapl-desktop", "host-desktop", "battery-laptop"]
NODE_COLLECTORS = ["rapl", "powersupplyclass", "thermal_zone", "hwmon"]


def start(ours_bin: Path, work: Path) -> dict:
    """The fixture trees merged into work/sys; power-exporter (gpu collector off) and
    node_exporter (rapl, powersupplyclass, thermal_zone, hwmon) reading it, each on a free
    loopback port, serving: {name: (Proc, port)}."""
    for name in TREES:
        shutil.copytree(FIXTURES / name / "sys", work / "sys", dirs_exist_ok=True, symlinks=True)
    sysfs = work / "sys"
    return start_pair(
        work,
        (OURS, [ours_bin, f"--path.sysfs={sysfs}", "--log.level=warn", "--no-collector.gpu"]),
        (PEER, ["prometheus-node-exporter", f"--path.sysfs={sysfs}", "--collector.disable-defaults",
                *[f"--collector.{c}" for c in NODE_COLLECTORS]]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=2000, help="scrapes per exporter")
    ap.add_argument("--rounds", type=int, default=10, help="alternations between the two")
    ap.add_argument("--idle", type=float, default=60, help="seconds to measure the RAPL sampler alone")
    args = ap.parse_args()

    ours_bin = build(OURS)[OURS]
    work = Path(tempfile.mkdtemp(prefix="odin-bench-power-"))
    targets = {}
    try:
        targets = start(ours_bin, work)
        ours = targets[OURS][0]
        rows, n = measure.head_to_head(targets, args.scrapes, args.rounds)
        measure.close_all()
        c0, t0 = cpu_seconds(ours.p.pid), time.monotonic()
        time.sleep(args.idle)
        idle_share = (cpu_seconds(ours.p.pid) - c0) / (time.monotonic() - t0)
    finally:
        stop(targets)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n} scrapes each, {args.rounds} alternating rounds, gzip, kept-alive connection, "
          f"tree: {' + '.join(TREES)}\n")
    ratio = measure.print_head_to_head(rows, OURS, PEER, "power/node")
    print(f"\nRAPL sampler alone, {args.idle:.0f} s without scrapes: {idle_share * 100:.4f}% of one core")
    print(f"\ntargets: CPU ratio <= 0.5 ({'met' if ratio['cpu_per_1000'] <= 0.5 else 'NOT met'}), "
          f"RSS ratio <= 0.5 ({'met' if ratio['rss_mib'] <= 0.5 else 'NOT met'}), "
          f"sampler < 0.1% of a core ({'met' if idle_share < 0.001 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
