#!/usr/bin/env python3
"""Benchmark: razer-exporter's cost, in absolute figures (no other Razer exporter exists).

The exporter reads the desk fixture tree (openrazer's files of six devices: a Blade's
keyboard, three mice, a dock, a headset) and the demo replay of a Blade's controller
(`demo/blade-15.toml`). Reported:

- scrapes: CPU seconds per 1,000 scrapes, latency p50/p99, resident memory, response size,
  as Prometheus scrapes (gzip, kept-alive connection). For scale, node_exporter with every
  collector off (serving only its own process and Go metrics: the floor of a Go exporter)
  is scraped in the same run, alternating rounds; the ratio is against that floor, not a peer.
- background reads: each collector alone at a 100 ms interval for --idle seconds without
  scrapes: CPU per read (milliseconds) and as a share of one core at the default 30 s
  interval. On real hardware a read also waits for USB transfers; that is wall time in the
  driver, not the exporter's CPU.

Usage: python3 bench/razer_absolute.py [--scrapes 2000] [--rounds 10] [--idle 20]
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
from odin.exporters import Proc, free_port, wait_http  # noqa: E402
from odin.measure import cpu_seconds, memory_kib  # noqa: E402
from benchkit import build, start_pair, stop  # noqa: E402

OURS, FLOOR = "razer-exporter", "node_exporter (floor)"
CRATE = REPO / "exporters/razer-exporter"
SYSFS = CRATE / "tests/fixtures/desk/sys"
REPLAY = CRATE / "demo/blade-15.toml"
READ_INTERVAL = 0.1
DEFAULT_INTERVAL = 30.0
# node_exporter with every collector off: it serves only its own process and Go metrics
FLOOR_ARGV = ["prometheus-node-exporter", "--collector.disable-defaults"]


def base_argv(ours_bin: Path, work: Path) -> list:
    """razer-exporter on the desk fixture and the Blade replay (no address)."""
    (work / "dev").mkdir(exist_ok=True)
    return [ours_bin, f"--path.sysfs={SYSFS}", f"--path.dev={work / 'dev'}", f"--hid.replay={REPLAY}",
            "--log.level=warn"]


def start(ours_bin: Path, work: Path) -> dict:
    """razer-exporter and the floor, each on a free loopback port, serving: {name: (Proc, port)}."""
    return start_pair(work, (OURS, base_argv(ours_bin, work)), (FLOOR, FLOOR_ARGV))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=2000, help="scrapes per exporter")
    ap.add_argument("--rounds", type=int, default=10, help="alternations between the two")
    ap.add_argument("--idle", type=float, default=20, help="seconds to measure each background collector")
    args = ap.parse_args()

    ours_bin = build(OURS)[OURS]
    work = Path(tempfile.mkdtemp(prefix="odin-bench-razer-"))
    base = base_argv(ours_bin, work)
    procs = []
    try:
        targets = start(ours_bin, work)
        procs += [p for p, _ in targets.values()]
        rows, n = measure.head_to_head(targets, args.scrapes, args.rounds)
        measure.close_all()
        stop(targets)

        reads = {}
        for name, off in [("openrazer", "hid"), ("hid", "openrazer")]:
            port = free_port()
            p = Proc([*base, f"--web.listen-address=127.0.0.1:{port}", f"--no-collector.{off}",
                      f"--{name}.interval={READ_INTERVAL}s"], work / f"{name}.log")
            procs.append(p)
            wait_http(f"http://127.0.0.1:{port}/metrics")
            time.sleep(1)
            c0, t0 = cpu_seconds(p.p.pid), time.monotonic()
            time.sleep(args.idle)
            cpu, wall = cpu_seconds(p.p.pid) - c0, time.monotonic() - t0
            count = wall / READ_INTERVAL
            reads[name] = (cpu / count * 1000, cpu / count / DEFAULT_INTERVAL * 100, memory_kib(p.p.pid)[0] / 1024)
            p.stop()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n} scrapes each, {args.rounds} alternating rounds, gzip, kept-alive connection, "
          f"desk fixture (6 openrazer devices) + demo replay (1 laptop)\n")
    measure.print_head_to_head(rows, OURS, FLOOR, "razer/floor")
    print(f"\nbackground reads, each collector alone every {READ_INTERVAL * 1000:.0f} ms for {args.idle:.0f} s, no scrapes:\n")
    print("| collector | CPU per read (ms) | share of one core at the default 30 s interval | RSS (MiB) |")
    print("|---|---|---|---|")
    for name, (ms, share, rss) in reads.items():
        print(f"| {name} | {ms:.3f} | {share:.5f}% | {rss:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
