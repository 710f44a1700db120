#!/usr/bin/env python3
"""Benchmark: claude-process-exporter against process-exporter on a host with 2,000 processes,
in the same run, on the same host state.

The host: the script brings the number of processes in /proc to --processes (2,000) with
cheap long-lived children (`sleep 3600`), of which a handful are fake Claude Code instances
(/bin/sleep copied to a temporary directory as an executable named `claude`, so their comm is
`claude`); each has a child holding a loopback TCP listener and a connection (as a real
session holds its API connections, so the exporter reads the TCP tables), and the first has
a few `sleep` children too. All of them belong to one process
group, started by a small launcher process; the group is killed (SIGKILL) at the end, on
Ctrl-C, SIGTERM or an error, and if this script itself is killed the launcher and every child
die with it (PR_SET_PDEATHSIG at each level, and the launcher kills its group when its stdin
closes).

The exporters, all started once and scraped in turn, one scrape each (so each sees the same
process table and the same machine noise), each scrape as Prometheus does it: Accept-Encoding:
gzip over a kept-alive connection:

- process-exporter 0.7.10 (Debian `prometheus-process-exporter`) with its default flags
  (`-threads`, `-gather-smaps` and `-children` on) and a config naming every process group by
  its comm, as a user watching Claude Code among all other processes runs it:
      process_names: [{name: "{{.Comm}}", cmdline: ['.+']}]
- the same with `-threads=false -gather-smaps=false`;
- claude-process-exporter with its default collectors;
- claude-process-exporter with `--collector.pss` (proportional set size from smaps_rollup),
  reported separately.

Two scrapes of one exporter start at least --interval (1 s) apart: claude-process-exporter
serves a snapshot younger than 0.5 s again instead of scanning (so the collectors of one scrape
scan once), and scrapes back to back would mostly measure that reuse, not a scan; Prometheus
scrapes every 15 s or more. process-exporter reads /proc on every scrape whatever the interval.

Reported per exporter: CPU seconds per scrape, and the system (kernel) part of it (utime and
stime of the server process, all threads, from /proc/<pid>/stat: the delta from just before its
first measured scrape to 0.5 s after the last, over the scrapes; between scrapes every exporter
is idle, which the idle column checks), scrape latency p50/p99 seen by the client, resident
memory (VmRSS after the run, VmHWM peak), CPU per second while nobody scrapes, the series and
response size; then the ratios claude-process-exporter / process-exporter for CPU per scrape
and RSS against both peer configurations, and the issue's targets (CPU per scrape at most 1/20
of process-exporter with default flags, RSS at most half). Each exporter's own view of the host
is printed under the table (claude instances found, processes scanned) as a check that the
fakes were seen.

If target/release/claude-process-exporter cannot be built (or, with --no-build, is missing),
the peer is measured alone and the script says so.

Usage: python3 bench/claude_vs_process_exporter.py [--processes 2000] [--scrapes 100]
         [--rounds 10] [--idle-s 5] [--no-build | --ours-bin PATH]
(prints a Markdown table; a default run takes about 2 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import ctypes
import gzip
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, target_dir  # noqa: E402
from odin import measure  # noqa: E402
from odin.exporters import Proc, free_port, wait_http  # noqa: E402
from odin.measure import cpu_seconds, cpu_times, memory_kib  # noqa: E402

PEER_BIN = "/usr/bin/prometheus-process-exporter"
OURS = "claude-process-exporter"
PEER_CONFIG = """\
process_names:
  - name: "{{.Comm}}"
    cmdline:
    - '.+'
"""
FAKE_CLAUDES = 5        # fake Claude Code instances
CLAUDE_CHILDREN = 3     # children of the first one
LIFETIME_S = 3600       # how long every child sleeps if nothing kills it first

# The launcher: started in its own session (so its process group holds every child), it dies
# with this script (PR_SET_PDEATHSIG), and so does each child it forks (and each grandchild,
# with its own parent). Protocol on stdin/stdout: first line "CLAUDE_EXE LIFETIME"; then each
# line "N" forks N more `sleep` children and answers "ok"; "claude N K" forks N fake claudes,
# each with a socket-holding child, the first also with K `sleep` children, and answers their
# pids; EOF kills the whole group.
LAUNCHER = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
def die_with_parent(parent):
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    if os.getppid() != parent:               # the parent died before prctl
        os._exit(0)
def hold_sockets():
    # A Claude Code session holds TCP connections (to the API); this child of a fake claude
    # holds a loopback listener and one connection to it, so that the exporter reads the
    # namespace's TCP tables as it does for a real session.
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    signal.pause()
def spawn(path, argv, children=0, sockets=False):
    me = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        die_with_parent(me)
        child = os.getpid()
        if sockets and os.fork() == 0:
            try:
                die_with_parent(child)
                hold_sockets()
            finally:
                os._exit(127)
        for _ in range(children):
            if os.fork() == 0:
                try:
                    die_with_parent(child)
                    os.execv("/bin/sleep", ["sleep", lifetime])
                finally:
                    os._exit(127)
        os.execv(path, argv)
    finally:
        os._exit(127)
die_with_parent(int(sys.argv[1]))
signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children that die are reaped by the kernel
claude_exe, lifetime = sys.stdin.readline().split()
for line in sys.stdin:
    w = line.split()
    if w and w[0] == "claude":
        pids = [spawn(claude_exe, ["claude", lifetime], int(w[2]) if i == 0 else 0, sockets=True)
                for i in range(int(w[1]))]
        print(" ".join(map(str, pids)), flush=True)
    elif w:
        for _ in range(int(w[0])):
            spawn("/bin/sleep", ["sleep", lifetime])
        print("ok", flush=True)
os.killpg(0, signal.SIGKILL)
"""


def proc_count() -> int:
    return sum(1 for e in os.scandir("/proc") if e.name.isdigit())


def group_members(pgid: int) -> int:
    n = 0
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                fields = Path(f"/proc/{e.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            n += int(fields[2]) == pgid  # pgrp
    return n


class Fleet:
    """The filler processes: one launcher and its process group."""

    def __init__(self, work: Path):
        exe = work / "claude"
        shutil.copy2("/bin/sleep", exe)
        exe.chmod(0o755)
        self.p = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(os.getpid())],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self._send(f"{exe} {LIFETIME_S}")
        self.claude_pids: list[int] = []
        self.spawned = 0

    def _send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def _answer(self) -> str:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"launcher exited (status {self.p.poll()})")
        return line.strip()

    def claudes(self, n: int, children: int) -> None:
        self._send(f"claude {n} {children}")
        self.claude_pids = [int(x) for x in self._answer().split()]
        self.spawned += n + children + n  # each fake claude also has a socket-holding child

    def sleepers(self, n: int) -> None:
        if n > 0:
            self._send(str(n))
            self._answer()
            self.spawned += n

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        # the kernel tears 2,000 processes down over a few seconds: wait for the group to go
        deadline = time.time() + 30
        while group_members(self.p.pid) and time.time() < deadline:
            time.sleep(0.2)
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except OSError:
                pass


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_us() -> None:
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Exporter(Proc):
    """odin.exporters.Proc, but the process also dies (SIGKILL) if this script is killed."""

    def __init__(self, argv: list, log: Path):
        self.argv = [str(a) for a in argv]
        self.log_path = log
        self.log = open(log, "wb")
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=_die_with_us)
        self.returncode = None


def scrape_once(port: int) -> tuple[float, bytes]:
    dt, body, encoding = measure.scrape(port)
    if encoding == "gzip":
        return dt, body
    return dt, gzip.compress(body)  # not expected: both compress when asked


def samples(body_gz: bytes) -> list[str]:
    return [ln for ln in gzip.decompress(body_gz).decode().splitlines()
            if ln and not ln.startswith("#")]


def sample_sum(lines: list[str], prefix: str) -> float | None:
    vals = [float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(prefix)]
    return sum(vals) if vals else None


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def build_ours(no_build: bool, given: str | None) -> Path | None:
    path = Path(given) if given else target_dir() / "release" / OURS
    if not no_build and not given:
        if not (REPO / "exporters" / OURS / "Cargo.toml").exists():
            print(f"note: exporters/{OURS} does not exist yet: measuring process-exporter alone",
                  file=sys.stderr)
            return None
        r = subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", OURS], cwd=REPO)
        if r.returncode != 0:
            print(f"note: `cargo build --release -p {OURS}` failed: measuring process-exporter "
                  "alone", file=sys.stderr)
            return None
    if not path.exists():
        print(f"note: {path} missing: measuring process-exporter alone", file=sys.stderr)
        return None
    return path


def peer_spec(work: Path, cheap: bool = False):
    """process-exporter with the comm-per-group config (written to `work`), its default flags
    or (`cheap`) `-threads=false -gather-smaps=false`: (name, port -> argv)."""
    config = work / "process-exporter.yml"
    config.write_text(PEER_CONFIG)
    extra = ["-threads=false", "-gather-smaps=false"] if cheap else []
    name = "process-exporter" + (" " + " ".join(extra) if extra else "")
    return name, lambda port: [PEER_BIN, f"-web.listen-address=127.0.0.1:{port}",
                               f"-config.path={config}", *extra]


def our_spec(ours_bin: Path, pss: bool = False):
    """claude-process-exporter with its default collectors, or with `--collector.pss` too:
    (name, port -> argv)."""
    extra = ["--collector.pss"] if pss else []
    name = OURS + (" " + " ".join(extra) if extra else "")
    return name, lambda port: [ours_bin, f"--web.listen-address=127.0.0.1:{port}",
                               "--log.level=warn", *extra]


def stop_host(fleet: Fleet | None, procs: dict) -> None:
    """Stops the exporters, closes the scrape connections, kills the fillers."""
    for proc, _ in procs.values():
        proc.stop()
    measure.close_all()
    if fleet:
        fleet.kill()


def start_host(work: Path, processes: int, specs: list) -> tuple[Fleet, dict]:
    """The host: the fake Claude Code instances, sleepers up to `processes` processes in /proc,
    and the exporters of `specs` ([(name, port -> argv)]) started on it and serving:
    (fleet, {name: (Exporter, port)}). On an error everything started is stopped first."""
    fleet = None
    procs: dict[str, tuple[Exporter, int]] = {}
    try:
        before = proc_count()
        fleet = Fleet(work)
        fleet.claudes(FAKE_CLAUDES, CLAUDE_CHILDREN)
        # the exporters count as processes of the host too
        fleet.sleepers(processes - proc_count() - len(specs))
        for name, argv in specs:
            port = free_port()
            procs[name] = (Exporter(argv(port), work / f"{name.split()[0]}-{len(procs)}.log"), port)
        fleet.sleepers(processes - proc_count())  # top up what came and went meanwhile
        print(f"host: {before} processes before, {proc_count()} with the fillers "
              f"({fleet.spawned} spawned, {len(fleet.claude_pids)} fake claude, "
              f"{CLAUDE_CHILDREN} children under pid {fleet.claude_pids[0]})", file=sys.stderr)
        for name, (proc, port) in procs.items():
            deadline = time.time() + 60
            while True:
                if proc.p.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.p.returncode}")
                try:
                    wait_http(f"http://127.0.0.1:{port}/metrics", timeout=1)
                    break
                except TimeoutError:
                    if time.time() > deadline:
                        raise
        return fleet, procs
    except BaseException:
        explain_deaths(procs)
        stop_host(fleet, procs)
        raise


def explain_deaths(procs: dict) -> None:
    for proc, _ in procs.values():
        if proc.p.poll() is not None:  # an exporter that died: say why
            print(proc.tail(), file=sys.stderr)


def measure_paced(procs: dict, scrapes: int, rounds: int, interval: float, warmup: int) -> dict:
    """Every exporter of `procs` scraped in turn, one scrape each, `scrapes` each in `rounds`
    rounds, two scrapes of one exporter at least `interval` s apart, after `warmup` unmeasured
    turns. Returns n (scrapes each), lat (s) and the last gzip body per name, cpu per name
    ((user, system) s from just before the first measured scrape to 0.5 s after the last),
    mem per name ((VmRSS, VmHWM) KiB after the run) and the process count at each round."""
    per_round = max(1, scrapes // rounds)
    last = {k: 0.0 for k in procs}
    t_start = time.time()

    def paced_scrape(name: str) -> tuple[float, bytes]:
        """A scrape at least `interval` after the start of the exporter's previous one."""
        wait = last[name] + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last[name] = time.monotonic()
        return scrape_once(procs[name][1])

    for _ in range(warmup):
        for name in procs:
            paced_scrape(name)
    lat = {k: [] for k in procs}
    body = {}
    counts = []
    cpu0 = {name: cpu_times(proc.p.pid) for name, (proc, _) in procs.items()}
    for r in range(rounds):
        counts.append(proc_count())
        for _ in range(per_round):
            for name in procs:
                dt, b = paced_scrape(name)
                lat[name].append(dt)
                body[name] = b
        print(f"round {r + 1}/{rounds} done ({time.time() - t_start:.0f} s)", file=sys.stderr)
    time.sleep(0.5)  # work an exporter does after its last response is still counted
    cpu = {name: tuple(b - a for a, b in zip(cpu0[name], cpu_times(proc.p.pid)))
           for name, (proc, _) in procs.items()}  # (user, system) over the scrapes
    counts.append(proc_count())
    mem = {name: memory_kib(proc.p.pid) for name, (proc, _) in procs.items()}
    return {"n": per_round * rounds, "lat": lat, "body": body, "cpu": cpu, "mem": mem,
            "counts": counts}


def summarize(m: dict) -> dict:
    """measure_paced's result as one row per exporter: CPU ms per scrape (and its system
    part), latency p50/p99 (ms), RSS and peak RSS (MiB), gzip body bytes, series."""
    rows = {}
    n = m["n"]
    for name, xs in m["lat"].items():
        xs = sorted(xs)
        rows[name] = {
            "cpu_ms": sum(m["cpu"][name]) / n * 1000,
            "sys_ms": m["cpu"][name][1] / n * 1000,
            "p50_ms": statistics.median(xs) * 1000,
            "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1000,
            "rss_mib": m["mem"][name][0] / 1024,
            "hwm_mib": m["mem"][name][1] / 1024,
            "gzip_bytes": len(m["body"][name]),
            "series": len(samples(m["body"][name])),
        }
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2000,
                    help="processes in /proc during the measurement (the script adds sleepers)")
    ap.add_argument("--scrapes", type=int, default=100, help="scrapes per exporter")
    ap.add_argument("--rounds", type=int, default=10,
                    help="rounds of --scrapes/--rounds turns (the process count is read each round)")
    ap.add_argument("--interval", type=float, default=1.0,
                    help="least seconds between the starts of two scrapes of one exporter "
                         f"(above {OURS}'s 0.5 s snapshot reuse, so each scrape scans /proc)")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured scrapes per exporter first")
    ap.add_argument("--idle-s", type=float, default=5.0,
                    help="seconds without scrapes over which idle CPU is measured (0: skip)")
    ap.add_argument("--no-build", action="store_true",
                    help=f"use target/release/{OURS} as it is instead of building it")
    ap.add_argument("--ours-bin", help=f"the {OURS} binary to measure (default: build "
                    f"target/release/{OURS})")
    args = ap.parse_args()

    ours_bin = build_ours(args.no_build, args.ours_bin)
    if not Path(PEER_BIN).exists():
        print(f"{PEER_BIN} missing (Debian package prometheus-process-exporter)", file=sys.stderr)
        return 2

    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, _interrupted)
    work = Path(tempfile.mkdtemp(prefix="odin-bench-claude-"))
    specs = [peer_spec(work), peer_spec(work, cheap=True)]
    if ours_bin:
        specs += [our_spec(ours_bin), our_spec(ours_bin, pss=True)]

    fleet, procs = None, {}
    try:
        fleet, procs = start_host(work, args.processes, specs)
        m = measure_paced(procs, args.scrapes, args.rounds, args.interval, args.warmup)
        idle = {}
        if args.idle_s > 0:
            c0 = {name: cpu_seconds(proc.p.pid) for name, (proc, _) in procs.items()}
            time.sleep(args.idle_s)
            idle = {name: (cpu_seconds(proc.p.pid) - c0[name]) / args.idle_s
                    for name, (proc, _) in procs.items()}
        # what each saw of the fake Claude Code processes (one unmeasured scrape)
        seen = {}
        for name, (_, port) in procs.items():
            lines = samples(scrape_once(port)[1])
            if name.startswith(OURS):
                seen[name] = (sample_sum(lines, "claude_instances{"),
                              sample_sum(lines, "claude_scan_processes"))
            else:
                seen[name] = (sample_sum(lines, 'namedprocess_namegroup_num_procs{groupname="claude"}'),
                              sample_sum(lines, "namedprocess_namegroup_num_procs{"))
    except BaseException:
        explain_deaths(procs)
        raise
    finally:
        stop_host(fleet, procs)
        shutil.rmtree(work, ignore_errors=True)

    n, counts = m["n"], m["counts"]
    rows = summarize(m)
    for name in rows:
        rows[name]["idle_ms_s"] = idle.get(name, float("nan")) * 1000

    print(f"\n{n} scrapes each, in turn, at least {args.interval:g} s apart per exporter, gzip, "
          "kept-alive connection; "
          f"processes in /proc at each round: min {min(counts)}, max {max(counts)}; "
          f"{os.cpu_count()} CPUs\n")
    print("| exporter | CPU ms / scrape | of it system | p50 latency (ms) | p99 latency (ms) | RSS (MiB) | "
          "peak RSS (MiB) | idle CPU (ms/s) | series | response (gzip bytes) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['cpu_ms']:.2f} | {r['sys_ms']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['rss_mib']:.1f} | {r['hwm_mib']:.1f} | {r['idle_ms_s']:.1f} | {r['series']} | "
              f"{r['gzip_bytes']} |")
    print("\nwhat each saw: " + "; ".join(
        f"{name}: {'claude instances' if name.startswith(OURS) else 'claude group procs'} "
        f"{a if a is None else int(a)}, {'processes scanned' if name.startswith(OURS) else 'procs in all groups'} "
        f"{b if b is None else int(b)}" for name, (a, b) in seen.items()))

    if not ours_bin:
        print(f"\n{OURS} not measured (binary missing or build failed): no ratios")
        return 0
    ratio = lambda a, b, k: rows[a][k] / rows[b][k] if rows[b][k] else float("nan")  # noqa: E731
    peers = [k for k in rows if k.startswith("process-exporter")]
    ours = [k for k in rows if k.startswith(OURS)]
    print("\n| ratio | CPU per scrape | p50 latency | p99 latency | RSS | peak RSS |")
    print("|---|---|---|---|---|---|")
    for o in ours:
        for p in peers:
            print(f"| {o} / {p} | {ratio(o, p, 'cpu_ms'):.3f} | {ratio(o, p, 'p50_ms'):.3f} | "
                  f"{ratio(o, p, 'p99_ms'):.3f} | {ratio(o, p, 'rss_mib'):.3f} | "
                  f"{ratio(o, p, 'hwm_mib'):.3f} |")
    print("\ntargets (against process-exporter with default flags): CPU per scrape <= 1/20, "
          "RSS <= 1/2")
    for o in ours:
        c, m = ratio(o, peers[0], "cpu_ms"), ratio(o, peers[0], "rss_mib")
        print(f"  {o}: CPU {c:.3f} ({'met' if c <= 0.05 else 'NOT met'}), "
              f"RSS {m:.3f} ({'met' if m <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
