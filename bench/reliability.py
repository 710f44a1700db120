#!/usr/bin/env python3
"""Abuse and load: every ODIN exporter, and node_exporter as the reference, under clients that
misbehave, measured as an outside client would.

Each exporter runs alone on loopback (release build, its manifest run_args, HOME in a
temporary directory), then node_exporter with its default collectors. Against each, in turn:

  idle-1000, idle-10000  connections that send half a request head and wait
  slow-bytes             50 connections sending a request one byte per second
  oversized              request lines of 64 KiB, headers of 1 MiB, a POST with a 10 MiB body
  random-bytes           200 connections sending 4 KiB of random bytes
  http-1.0               100 HTTP/1.0 requests
  pipelined              50 connections sending 10 requests each in one write
  scrapers-50            50 concurrent scrapers looping for the whole hold time

While each runs, a probe scrapes /metrics every 250 ms on a new connection (as a restarted
Prometheus would): its slowest answer and failures are the headline (a scrape must succeed in
under 1 s throughout). Also per scenario: the server's peak resident memory (VmHWM after the
scenario, VmRSS sampled during it), its open file descriptors after the clients left, and
whether it is still running and has logged no panic.

Usage: python3 bench/reliability.py [--hold 5] [--only NAME ...] [--skip-node]
Prints Markdown tables; docs/reliability.md has the results of a run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, manifest, target_dir  # noqa: E402
from odin.exporters import Proc, free_port, wait_http  # noqa: E402
from odin.measure import memory_kib  # noqa: E402

HALF = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"


def rss_kib(pid: int) -> tuple[int, int]:
    """odin.measure.memory_kib, but (0, 0) for a process already a zombie (no Vm lines)."""
    try:
        return memory_kib(pid)
    except KeyError:
        return 0, 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def read_response(reader: asyncio.StreamReader) -> int:
    """Status of one HTTP/1.x response, its body consumed (Content-Length, chunked, or to EOF)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        await reader.read()
    return status


async def scrape(port: int, timeout: float = 5.0) -> tuple[float, int | None]:
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        w.write(GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        status = await asyncio.wait_for(read_response(r), timeout)
        w.close()
        return time.perf_counter() - t0, status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        return time.perf_counter() - t0, None


async def probe(port: int, pid: int, stop: asyncio.Event, out: dict) -> None:
    while not stop.is_set():
        dt, status = await scrape(port)
        out["max"] = max(out["max"], dt)
        out["n"] += 1
        if status != 200:
            out["fail"] += 1
        elif dt > 1.0:
            out["slow"] += 1
        try:
            out["rss"] = max(out["rss"], rss_kib(pid)[0])
        except OSError:
            pass
        await asyncio.sleep(0.25)


async def hold_open(port: int, n: int, payload: bytes, stop: asyncio.Event, stats: dict) -> None:
    """Open n connections sending `payload`, keep them until stop (reopening none)."""
    sem = asyncio.Semaphore(500)
    conns = []

    async def one():
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(payload)
                await w.drain()
                conns.append(w)
            except OSError:
                stats["refused"] += 1
    await asyncio.gather(*(one() for _ in range(n)))
    stats["opened"] = len(conns)
    await stop.wait()
    for w in conns:
        w.close()


async def slow_bytes(port: int, stop: asyncio.Event, stats: dict) -> None:
    async def one():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            for b in GET:
                if stop.is_set():
                    break
                w.write(bytes([b]))
                await w.drain()
                await asyncio.sleep(1)
            w.close()
        except OSError:
            stats["dropped"] += 1
    await asyncio.gather(*(one() for _ in range(50)))


async def one_shot(port: int, payload: bytes) -> int | None:
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(payload)
        await w.drain()
        status = await asyncio.wait_for(read_response(r), 10)
        w.close()
        return status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        return None


async def oversized(port: int, stop: asyncio.Event, stats: dict) -> None:
    cases = {
        "line": b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (1 << 20) + b"\r\n\r\n",
        "body": b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n" + b"c" * (10 << 20),
    }
    for name, payload in cases.items():
        got = await asyncio.gather(*(one_shot(port, payload) for _ in range(5)))
        stats[name] = sorted({str(s) if s else "closed" for s in got})


async def random_bytes(port: int, stop: asyncio.Event, stats: dict) -> None:
    rnd = random.Random(7)
    got = await asyncio.gather(*(one_shot(port, rnd.randbytes(4096)) for _ in range(200)))
    stats["statuses"] = sorted({str(s) if s else "closed" for s in got})


async def http10(port: int, stop: asyncio.Event, stats: dict) -> None:
    got = await asyncio.gather(*(one_shot(port, b"GET /metrics HTTP/1.0\r\n\r\n") for _ in range(100)))
    stats["ok"] = sum(1 for s in got if s == 200)


async def pipelined(port: int, stop: asyncio.Event, stats: dict) -> None:
    async def one():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(GET * 10)
            await w.drain()
            n = 0
            for _ in range(10):
                if await asyncio.wait_for(read_response(r), 10) == 200:
                    n += 1
            w.close()
            return n
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            return 0
    got = await asyncio.gather(*(one() for _ in range(50)))
    stats["answered"] = f"{sum(got)}/500"


async def scrapers(port: int, stop: asyncio.Event, stats: dict) -> None:
    lat, bad = [], 0

    async def one():
        nonlocal bad
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            t0 = time.perf_counter()
            w.write(GET)
            try:
                s = await asyncio.wait_for(read_response(r), 10)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                bad += 1
                r, w = await asyncio.open_connection("127.0.0.1", port)
                continue
            lat.append(time.perf_counter() - t0)
            if s != 200:
                bad += 1
        w.close()
    await asyncio.gather(*(one() for _ in range(50)))
    lat.sort()
    stats["scrapes"] = len(lat)
    stats["not_200"] = bad
    stats["p99_ms"] = round(lat[int(0.99 * (len(lat) - 1))] * 1000, 1) if lat else None


SCENARIOS = {
    "idle-1000": lambda port, stop, st: hold_open(port, 1000, HALF, stop, st),
    "idle-10000": lambda port, stop, st: hold_open(port, 10000, HALF, stop, st),
    "slow-bytes": slow_bytes,
    "oversized": oversized,
    "random-bytes": random_bytes,
    "http-1.0": http10,
    "pipelined": pipelined,
    "scrapers-50": scrapers,
}


async def run_scenario(name: str, port: int, pid: int, hold: float) -> dict:
    stop = asyncio.Event()
    stats = {"refused": 0, "dropped": 0}
    pr = {"max": 0.0, "n": 0, "fail": 0, "slow": 0, "rss": 0}
    abuse = asyncio.create_task(SCENARIOS[name](port, stop, stats))
    await asyncio.sleep(0.5)
    probe_task = asyncio.create_task(probe(port, pid, stop, pr))
    await asyncio.sleep(hold)
    stop.set()
    await asyncio.wait_for(asyncio.gather(abuse, probe_task, return_exceptions=True), 60)
    await asyncio.sleep(1.0)
    stats = {k: v for k, v in stats.items() if v}
    return {"probe": pr, "stats": stats}


def start(name: str, argv: list, work: Path, port: int) -> Proc:
    home = work / f"home-{name}"
    home.mkdir(exist_ok=True)
    p = Proc(argv, work / f"{name}.log", env={**os.environ, "HOME": str(home)})
    wait_http(f"http://127.0.0.1:{port}/metrics")
    return p


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hold", type=float, default=5, help="seconds each scenario lasts")
    ap.add_argument("--only", nargs="*", help="exporters to test (names; node_exporter too)")
    ap.add_argument("--skip-node", action="store_true", help="leave node_exporter out")
    args = ap.parse_args()

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "--bins"], cwd=REPO, check=True)
    targets = []
    for e in manifest.load():
        argv = [target_dir() / "release" / e["name"], *e["run_args"], "--log.level=warn"]
        targets.append((e["name"], argv))
    if not args.skip_node and shutil.which("prometheus-node-exporter"):
        targets.append(("node_exporter", ["prometheus-node-exporter"]))
    if args.only:
        targets = [t for t in targets if t[0] in args.only]

    work = Path(tempfile.mkdtemp(prefix="odin-reliability-"))
    results = {}
    try:
        for name, argv in targets:
            port = free_port()
            p = start(name, [*argv, f"--web.listen-address=127.0.0.1:{port}"], work, port)
            pid = p.p.pid
            base_fds, base_rss = fds(pid), rss_kib(pid)[0]
            rows = {}
            for sc in SCENARIOS:
                r = asyncio.run(run_scenario(sc, port, pid, args.hold))
                alive = p.p.poll() is None
                r["fds_after"] = fds(pid) if alive else None
                r["hwm"] = rss_kib(pid)[1] if alive else None
                r["alive"] = alive
                rows[sc] = r
                print(f"{name} {sc}: probe max {r['probe']['max'] * 1000:.0f} ms, "
                      f"fail {r['probe']['fail']}, slow {r['probe']['slow']}, {r['stats']}", flush=True)
                if not alive:
                    break
            rc = p.stop()
            log = (work / f"{name}.log").read_text(errors="replace")
            results[name] = (rows, base_fds, base_rss, rc, "panicked" in log)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nhold {args.hold:.0f} s per scenario; probe: a new-connection scrape every 250 ms\n")
    for name, (rows, base_fds, base_rss, rc, panicked) in results.items():
        print(f"### {name}\n")
        print(f"at rest: {base_fds} fds, {base_rss / 1024:.1f} MiB RSS; exit status on SIGTERM: {rc}; "
              f"panic in log: {'yes' if panicked else 'no'}\n")
        hwm = max((r["hwm"] or 0) for r in rows.values())
        print(f"peak resident memory over the whole run (VmHWM): {hwm / 1024:.1f} MiB\n")
        print("| scenario | probe scrapes | slowest probe (ms) | probes failed or > 1 s | RSS during (MiB, sampled max) | fds after | what the abusers got |")
        print("|---|---|---|---|---|---|---|")
        for sc, r in rows.items():
            pr = r["probe"]
            rss = f"{pr['rss'] / 1024:.1f}" if pr["rss"] else "-"
            stats = ", ".join(f"{k} {v}" for k, v in r["stats"].items()) or "-"
            print(f"| {sc} | {pr['n']} | {pr['max'] * 1000:.0f} | {pr['fail'] + pr['slow']} | {rss} | "
                  f"{r['fds_after'] if r['alive'] else 'DIED'} | {stats} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
