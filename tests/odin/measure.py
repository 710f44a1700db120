"""What the benchmarks under bench/ measure of a server process, and how they scrape it.

    cpu_times(pid)      (utime, stime) in seconds, all threads, from /proc/<pid>/stat
    cpu_seconds(pid)    their sum
    memory_kib(pid)     (VmRSS, VmHWM) in KiB from /proc/<pid>/status
    scrape(port)        one GET /metrics as Prometheus does it (Accept-Encoding: gzip, over a
                        kept-alive connection per port): (seconds, body as sent)
"""
from __future__ import annotations

import http.client
import os
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
