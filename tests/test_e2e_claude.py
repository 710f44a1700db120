"""End to end: claude-process-exporter against the real Claude Code client and Prometheus.

The real client (scripts/setup.sh installs it into .tools/npm) runs interactive in tmux
against a fake Messages API on loopback (odin.fakeapi) that answers with a tool_use of the
Bash tool running a long sleep; one stdio MCP server (tests/odin/mcpserver.py, listening on a
loopback port, told to outlive its session) comes from --mcp-config. Then:

    -k finds       the exporter finds exactly that instance, with the version of its npm
                   package, its tool shell and its MCP server; its values agree with /proc
    -k peer        the tree totals agree with Debian's process-exporter (-children=true)
                   grouping the same processes: CPU, memory, threads, file descriptors
    -k secret      the key in its environment and a marker on its command line appear in no
                   answer and no log line of the exporter
    -k prometheus  a real Prometheus scrapes it with rules/ loaded; the metric reference
                   matches; every claude_ query of dashboards/token.json and of the overview's
                   claude-process-exporter row returns data
    -k lifecycle   killed (SIGKILL): its series go, the exit counter moves, the MCP server
                   and the tool shell it leaves behind are counted as orphans; started again
                   in the same directory: a restart is counted
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from odin import REPO, checks, manifest, metricsdoc, procs
from odin.claude import CLAUDE, NPM, FAKE_KEY, Home, Interactive, Tmux, tool, trust
from odin.exporters import Proc, binary, free_port, http_get, wait_http
from odin.exposition import families, parse, promtool_findings, sample
from odin.fakeapi import FakeAnthropic, tool_then_text
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("claude-process-exporter")
MARKER = "odin-e2e-cmdline-marker-5c1d"
PROMPT = "run the long command"


children_of = procs.children
tree_of = procs.tree
comm = procs.comm


def status_value(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(what: str, pred, timeout: float = 60, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Session:
    """The scenario's Claude Code: fake API, HOME, tmux, the instance, its MCP server."""

    def __init__(self, work: Path):
        tool(CLAUDE)
        self.work = work
        self.home = Home(work / "home")
        self.project = self.home.project("demo")
        trust(self.home, self.project)
        self.api = FakeAnthropic(script=tool_then_text("echo start; sleep 600")).start()
        self.mcp_config = work / "mcp.json"
        self.mcp_config.write_text(json.dumps({"mcpServers": {"pinger": {
            "command": sys.executable,
            "args": [str(REPO / "tests/odin/mcpserver.py"), "--ignore-eof", "--listen"]}}}))
        self.tmux = Tmux(work / "tmux.sock")
        self.left_behind: list[int] = []
        self.started: list[Interactive] = []
        self.first = self.start("first")

    def start(self, name: str) -> Interactive:
        s = Interactive(self.tmux, name, self.home, self.api, self.project,
                        extra=["--mcp-config", str(self.mcp_config), "--append-system-prompt", MARKER])
        self.started.append(s)
        return s

    def run_tool(self, s: Interactive) -> None:
        """Send the prompt and wait until the Bash tool's sleep and the MCP server run."""
        s.wait_screen("bypass permissions", timeout=90)
        s.send(PROMPT)
        wait_for("the tool's sleep and the MCP server under the instance", lambda: self.parts(s.pid), timeout=90)

    def parts(self, pid: int) -> dict | None:
        """{'mcp': pid, 'shell': pid, 'sleep': pid} when all three run under `pid`."""
        kids = children_of(pid)
        mcp = [k for k in kids if comm(k).startswith("python")]
        shells = [k for k in kids if comm(k) in ("bash", "zsh", "sh", "dash")]
        sleeps = [g for s in shells for g in children_of(s) if comm(g) == "sleep"]
        if mcp and shells and sleeps:
            return {"mcp": mcp[0], "shell": shells[0], "sleep": sleeps[0]}
        return None

    def close(self) -> None:
        # Their MCP servers ignore the hangup: everything under each instance goes explicitly.
        for s in self.started:
            self.left_behind += tree_of(s.pid)[1:]
        self.tmux.kill()
        for pid in self.left_behind:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.api.stop()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session(tmp_path_factory.mktemp("e2e-claude"))
    try:
        s.run_tool(s.first)
        # Recorded now: after the kill below they are orphans, no longer under the instance.
        s.left_behind += tree_of(s.first.pid)[1:]
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, session):
    work = tmp_path_factory.mktemp("e2e-claude-stack")
    return Stack(work, EXPORTER["name"], [
        Target("claude", [binary(EXPORTER["name"]), "--collector.pss", "--log.level=debug"]),
    ])


def metrics(stack) -> str:
    return stack["claude"].metrics()


def value(text: str, name: str, **labels) -> float | None:
    """The first sample of `name` with these labels (values compared as text), or None."""
    found = sample(parse(text)[0], name, **{k: str(v) for k, v in labels.items()})
    return found[0][1] if found else None


def instance_pids(text: str) -> set[int]:
    samples, _ = parse(text)
    return {int(dict(l)["pid"]) for (n, l), _ in samples.items() if n == "claude_instance_info"}


# --- finds --------------------------------------------------------------------------------


def test_finds_exactly_the_instance_with_version_tool_and_mcp(stack, session):
    text = metrics(stack)
    pid = session.first.pid
    assert instance_pids(text) == {pid}, text
    version = json.loads((NPM / "@anthropic-ai/claude-code/package.json").read_text())["version"]
    assert value(text, "claude_instance_info", pid=pid, version=version, install="npm",
                 mode="interactive") == 1, [l for l in text.splitlines() if "instance_info" in l]
    # The Bash tool's shell and its sleep; the MCP server.
    assert value(text, "claude_instance_processes", pid=pid, role="tool") == 2
    assert value(text, "claude_instance_processes", pid=pid, role="mcp") == 1
    assert value(text, "claude_instances", mode="interactive") == 1
    assert value(text, "claude_instances", mode="headless") == 0
    # The MCP server's connection to its own port, and the port, are the tree's.
    assert value(text, "claude_tree_tcp_connections", pid=pid, state="established") >= 2, [l for l in text.splitlines() if "tcp_conn" in l or "port_info" in l]
    # The MCP server's loopback port is the tree's.
    ports = [l for l in text.splitlines() if l.startswith("claude_listening_port_info{")]
    assert ports and all('scope="loopback"' in l and f'pid="{pid}"' in l for l in ports), ports


def test_finds_values_that_agree_with_proc(stack, session):
    pid = session.first.pid
    before = (status_value(pid, "Threads"), fd_count(pid), status_value(pid, "VmRSS") * 1024)
    text = metrics(stack)
    after = (status_value(pid, "Threads"), fd_count(pid), status_value(pid, "VmRSS") * 1024)
    threads = value(text, "claude_instance_threads", pid=pid)
    fds = value(text, "claude_instance_open_fds", pid=pid)
    rss = value(text, "claude_instance_resident_memory_bytes", pid=pid)
    assert min(before[0], after[0]) <= threads <= max(before[0], after[0])
    assert min(before[1], after[1]) <= fds <= max(before[1], after[1])
    lo, hi = min(before[2], after[2]), max(before[2], after[2])
    assert lo * 0.98 <= rss <= hi * 1.02, (rss, lo, hi)
    limit = int(next(l for l in Path(f"/proc/{pid}/limits").read_text().splitlines()
                     if l.startswith("Max open files")).split()[3])
    assert value(text, "claude_instance_open_fds_limit", pid=pid) == limit
    members = tree_of(pid)
    assert value(text, "claude_tree_threads", pid=pid) == sum(status_value(p, "Threads") for p in members)


# --- peer ---------------------------------------------------------------------------------


def test_peer_tree_totals_agree_with_process_exporter(stack, session, tmp_path):
    """process-exporter with -children=true puts the instance's descendants in its group."""
    pid = session.first.pid
    cfg = tmp_path / "pe.yml"
    cfg.write_text("process_names:\n  - name: claude\n    comm: [claude.exe]\n")
    port = free_port()
    pe = Proc(["prometheus-process-exporter", f"-config.path={cfg}", "-children=true",
               f"-web.listen-address=127.0.0.1:{port}"], tmp_path / "pe.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        peer_at = lambda: http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()  # noqa: E731
        time.sleep(1.0)
        # Two readings 3 s apart: process-exporter counts CPU from when it first saw a
        # process, so CPU is compared as the increase between them.
        peer0, ours0 = peer_at(), (time.sleep(0.6), metrics(stack))[1]
        time.sleep(3)
        peer, ours = peer_at(), (time.sleep(0.6), metrics(stack))[1]
    finally:
        pe.stop()
    g = {"groupname": "claude"}
    n = len(tree_of(pid))
    assert value(peer, "namedprocess_namegroup_num_procs", **g) == n
    assert sum(value(ours, "claude_instance_processes", pid=pid, role=r) for r in
               ("tool", "mcp", "daemon", "other")) + 1 == n
    assert value(ours, "claude_tree_threads", pid=pid) == value(peer, "namedprocess_namegroup_num_threads", **g)
    ours_fds = value(ours, "claude_tree_open_fds", pid=pid)
    peer_fds = value(peer, "namedprocess_namegroup_open_filedesc", **g)
    assert abs(ours_fds - peer_fds) <= 2, (ours_fds, peer_fds)
    ours_rss = value(ours, "claude_tree_resident_memory_bytes", pid=pid)
    peer_rss = value(peer, "namedprocess_namegroup_memory_bytes", memtype="resident", **g)
    assert abs(ours_rss - peer_rss) <= 0.03 * peer_rss, (ours_rss, peer_rss)
    for mode in ("user", "system"):
        o = value(ours, "claude_tree_cpu_seconds_total", pid=pid, mode=mode) - \
            value(ours0, "claude_tree_cpu_seconds_total", pid=pid, mode=mode)
        p = value(peer, "namedprocess_namegroup_cpu_seconds_total", mode=mode, **g) - \
            value(peer0, "namedprocess_namegroup_cpu_seconds_total", mode=mode, **g)
        # The same 3 s, each read 0.6 s apart from the other's: an idle session's CPU.
        assert abs(o - p) <= 0.15, (mode, o, p)


# --- secret -------------------------------------------------------------------------------


def test_secret_appears_nowhere(stack, session):
    pid = session.first.pid
    assert FAKE_KEY.encode() in Path(f"/proc/{pid}/environ").read_bytes(), "the key was planted"
    assert MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes(), "the marker was planted"
    t = stack["claude"]
    answers = {path: t.get(path)[2].decode(errors="replace") for path in ("/metrics", "/health", "/", "/ready")}
    answers["log"] = t.proc.output()
    for what, text in answers.items():
        assert FAKE_KEY not in text and "sk-ant" not in text, f"{what} leaks the key"
        assert MARKER not in text, f"{what} shows the command line"


# --- prometheus ---------------------------------------------------------------------------


def test_prometheus_scrapes_the_exporter(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == 1 and ups[0]["value"][1] == "1", ups


def test_prometheus_rules_loaded_and_healthy(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"
    assert not checks.rules_unhealthy(stack.client)


def test_prometheus_promtool_check_metrics_silent(stack):
    rc, findings = promtool_findings(metrics(stack))
    assert rc == 0 and not findings, "\n".join(findings)


def test_prometheus_metrics_doc_matches_live_output(stack):
    text = metrics(stack)
    _, types = parse(text)
    # Its collectors run on scrape: the shared families of background collectors are not its.
    problems = metricsdoc.problems(EXPORTER["name"], EXPORTER["prefix"], families(text), types,
                                   background=False)
    # The instance process's own TCP connections come and go with its API requests (the
    # client closes idle ones); the tree's are held open by the MCP server.
    allowed = {"claude_instance_tcp_connections is documented but not served"}
    problems = [p for p in problems if p not in allowed]
    assert not problems, "\n".join(problems)


def test_prometheus_every_process_panel_query_returns_data(stack):
    rc, report = checks.query_dashboards(stack.url, ["dashboards/token.json", "dashboards/overview.json"],
                                         prefix=EXPORTER["prefix"], allow_empty="dashboards/e2e-allow-empty-claude.tsv")
    assert rc == 0, report


# --- lifecycle (last: it kills the instance) -------------------------------------------------


def test_lifecycle_kill_orphans_and_restart(stack, session):
    first = session.first
    parts = session.parts(first.pid)
    assert parts, "the tool and the MCP server run"
    before = metrics(stack)
    exits, restarts = value(before, "claude_instance_exits_total"), value(before, "claude_instance_restarts_total")
    os.kill(first.pid, signal.SIGKILL)
    text = wait_for("the instance's series to go", lambda: (lambda t: t if first.pid not in instance_pids(t) else None)(
        metrics(stack)), timeout=20)
    assert value(text, "claude_instance_exits_total") == exits + 1
    assert value(text, "claude_instance_threads", pid=first.pid) is None
    # What it leaves behind: the MCP server (it ignores the closed pipe) and the tool shell.
    assert value(text, "claude_orphan_processes", role="mcp") >= 1, text
    assert value(text, "claude_orphan_resident_memory_bytes", role="mcp") > 0
    assert value(text, "claude_orphan_processes", role="tool") >= 1
    # Started again in the same directory, within --restart.window: a restart.
    second = session.start("second")
    text = wait_for("the new instance", lambda: (lambda t: t if second.pid in instance_pids(t) else None)(
        metrics(stack)), timeout=60)
    assert value(text, "claude_instance_restarts_total") == restarts + 1
    assert value(text, "claude_instance_starts_total") >= 1
    # Prometheus saw it too.
    res = stack.client.wait_query(f'claude_instance_restarts_total{{job="{stack.job}"}} > 0', timeout=30)
    assert res


def test_lifecycle_exporter_exits_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
