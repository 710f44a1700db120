"""What the benchmarks under bench/ measure of a server process, and how they scrape it.

    cpu_times(pid)      (utime, stime) in seconds, all threads, from /proc/<pid>/stat
    cpu_seconds(pid)    their sum
    memory_kib(pid)     (VmRSS, VmHWM) in KiB from /proc/<pid>/status
    scrape(port)        one GET /metrics as Prometheus does it (Accept-Encoding: gzip, over a
                        kept-alive connection per port): (seconds, body as sent)
    head_to_head(...)   exporters scraped in alternating rounds: CPU, latency, memory per name
    print_head_to_head  its Markdown table with the ratio row
"""
from __future__ import annotations

import http.client
import os
import statistics
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def memory_kib(pid: int) -> tuple[int, int]:
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            vals[k] = int(v.split()[0])
    return vals["VmRSS"], vals["VmHWM"]


_conns: dict[int, http.client.HTTPConnection] = {}


def scrape(port: int, timeout: float = 60) -> tuple[float, bytes, str | None]:
    """(seconds, body, Content-Encoding) of one scrape; raises on a status other than 200."""
    conn = _conns.get(port) or _conns.setdefault(
        port, http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    t0 = time.perf_counter()
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    body = resp.read()
    dt = time.perf_counter() - t0
    if resp.status != 200:
        raise RuntimeError(f"port {port}: HTTP {resp.status}")
    return dt, body, resp.getheader("Content-Encoding")


def close_all() -> None:
    """Close the kept-alive connections of scrape()."""
    for c in _conns.values():
        c.close()
    _conns.clear()


def head_to_head(targets: dict, scrapes: int, rounds: int, warmup: int = 20) -> tuple[dict, int]:
    """Two (or more) serving exporters, `targets` = {name: (Proc, port)}, scraped in
    alternating rounds (each sees the same host state and the same machine noise): per name
    its row (CPU s per 1,000 scrapes, p50/p99 latency in ms, RSS and peak RSS in MiB, gzip
    body bytes), and the number of scrapes each."""
    for _, port in targets.values():
        for _ in range(warmup):
            scrape(port)
    lat = {k: [] for k in targets}
    cpu = {k: 0.0 for k in targets}
    size = {}
    per_round = scrapes // rounds
    for _ in range(rounds):
        for name, (proc, port) in targets.items():
            c0 = cpu_seconds(proc.p.pid)
            for _ in range(per_round):
                dt, body, _ = scrape(port)
                lat[name].append(dt)
                size[name] = len(body)
            cpu[name] += cpu_seconds(proc.p.pid) - c0
    mem = {name: memory_kib(proc.p.pid) for name, (proc, _) in targets.items()}
    n = per_round * rounds
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
    return rows, n


def print_head_to_head(rows: dict, ours: str, peer: str, label: str) -> dict:
    """The Markdown table of head_to_head's rows and the ratio row ours/peer; returns the
    ratios by column."""
    print("| exporter | CPU s / 1,000 scrapes | p50 latency (ms) | p99 latency (ms) | RSS (MiB) | peak RSS (MiB) | response (gzip bytes) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['cpu_per_1000']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['rss_mib']:.1f} | {r['hwm_mib']:.1f} | {r['gzip_bytes']} |")
    a, b = rows[ours], rows[peer]
    ratio = {k: (a[k] / b[k] if b[k] else float("nan")) for k in a}
    print(f"| **ratio** {label} | {ratio['cpu_per_1000']:.2f} | {ratio['p50_ms']:.2f} | "
          f"{ratio['p99_ms']:.2f} | {ratio['rss_mib']:.2f} | {ratio['hwm_mib']:.2f} | {ratio['gzip_bytes']:.2f} |")
    return ratio
