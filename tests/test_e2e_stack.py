"""End to end: the README's main command, scripts/run-stack.sh, run as a user runs it.

The script is started once for the module, in its own process group, with its state in a
temporary ODIN_RUN_DIR, ODIN_DEMO=all (every exporter that has demo data runs on it, whatever
this machine has) and free ports for Prometheus, Alertmanager and the webhook logger; the
exporters listen on their fixed default ports of exporters.toml, so no other stack may run at
the same time. It is held to what it promises (README.md, the script's header):

- every URL it prints answers; every exporter of exporters.toml is an `up == 1` target of its
  Prometheus, which has loaded every rule of rules/ and evaluates them without errors;
  Alertmanager is ready with deploy/alertmanager/alertmanager.yml, and an alert posted to it
  reaches the webhook logger, which writes it to the run directory's notifications.jsonl;
- each exporter the script gives demo data says so in the script's output, in its log, in
  /health ("demo": true) and as demo="true" on its build info series; the others say nothing
  of the kind;
- every query of every dashboard of dashboards/ returns data, save the few entries of
  dashboards/e2e-allow-empty-stack.tsv; claude-process-exporter reads the machine as it is,
  so for its panels a real Claude Code (odin.claude.LiveInstance: interactive in tmux against
  a fake API on loopback, with a Bash tool's shell and sleep and an MCP server listening on
  loopback) runs from before the script starts until the module ends;
- a second run while it runs exits non-zero at once, saying it is already running, and leaves
  the first alone;
- Ctrl-C (SIGINT to its process group) stops it: exit status 0, "stopped.", its lock file
  removed, no process of it left and nothing listening on its ports.

The tests run in the order written (the last one stops the stack). The script first runs
scripts/setup.sh and `cargo build --release --bins`; in scripts/test-all.sh this suite comes
after `images`, which has built the release binaries already.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from odin import REPO, checks, manifest
from odin.claude import LiveInstance, ToolMissing
from odin.exporters import free_port, http_get
from odin.prometheus import Client

SCRIPT = REPO / "scripts" / "run-stack.sh"
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALLOW_EMPTY = "dashboards/e2e-allow-empty-stack.tsv"
EXPORTERS = manifest.load()
READY_LINE = "Ctrl-C stops everything."
START_TIMEOUT = 1800  # setup.sh and a release build of the workspace, when not built yet
PORTS_FREE_TIMEOUT = 300  # another stack (a person's, another run's) may hold the exporter ports
DEMO_MARK = "*** DEMO DATA"
DEMO_LOG = "DEMO MODE"


def demo_exporters() -> set[str]:
    """The exporters run-stack.sh has demo data for (its `want_demo NAME ...` tests): with
    ODIN_DEMO=all, each of them runs on it."""
    code = "\n".join(ln.split("#", 1)[0] for ln in SCRIPT.read_text().splitlines())
    return set(re.findall(r"\bwant_demo\s+([\w-]+)\s", code))


def scrape_interval() -> float:
    text = yaml.safe_load(PROM_CONFIG.read_text())["global"]["scrape_interval"]
    m = re.fullmatch(r"(\d+)(s|m)", text)
    assert m, f"scrape_interval {text} not understood"
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_members(pgid: int, parent: int | None = None) -> dict[int, str]:
    """pid -> command line of every live (not zombie) process whose process group is pgid
    (and whose parent is `parent`, if given: the script's own children, not the nvidia-smi
    runs of the demo GPUs that come and go)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid and parent in (None, int(fields[1])):
            found[int(entry.name)] = cmd.strip()
    return found


def alive(pid: int) -> bool:
    """pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


class RunStack:
    """scripts/run-stack.sh as a child in its own session and process group; its combined
    output is collected by a thread."""

    def __init__(self, run_dir: Path, env: dict):
        self.run_dir = run_dir
        self.env = env
        self.lines: list[str] = []
        self.p = subprocess.Popen([str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace",
                                  start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in ln for ln in self.lines):
                return True
            if self.p.poll() is not None:
                self.reader.join(5)
                return any(text in ln for ln in self.lines)
            time.sleep(0.2)
        return False

    def interrupt(self, timeout: float) -> int | None:
        """SIGINT to the process group (what Ctrl-C in its terminal does); its exit status, or
        None if it did not exit within timeout."""
        try:
            os.killpg(self.p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(5)
        return rc

    def kill(self):
        """Last resort after a failure: SIGINT, then SIGKILL to whatever of the group is left."""
        if self.p.poll() is None:
            self.interrupt(20)
        for pid in group_members(self.p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def wait_ports_free(ports: list[int]) -> None:
    deadline = time.monotonic() + PORTS_FREE_TIMEOUT
    while True:
        busy = [p for p in ports if port_open(p)]
        if not busy:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"exporter ports still in use after {PORTS_FREE_TIMEOUT}s: {busy} "
                        "(another run-stack.sh or exporter runs; this test needs the fixed ports)")
        time.sleep(5)


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    wait_ports_free([e["port"] for e in EXPORTERS])
    run_dir = tmp_path_factory.mktemp("run-stack")
    ports = {"PROMETHEUS_PORT": free_port(), "ALERTMANAGER_PORT": free_port(),
             "WEBHOOK_PORT": free_port()}
    assert len(set(ports.values())) == 3, ports
    env = dict(os.environ, ODIN_RUN_DIR=str(run_dir), ODIN_DEMO="all",
               **{k: str(v) for k, v in ports.items()})
    env.pop("ODIN_GPU_DEMO", None)
    env.pop("ODIN_GPU_DEMO_SECTION", None)
    # A real Claude Code for claude-process-exporter, started first so that its exporter
    # sees it from the first scrape (CPU rates need two samples of the live instance); where
    # Claude Code is not installed yet, the script's setup.sh installs it and it starts then.
    claude_dir = tmp_path_factory.mktemp("claude")
    try:
        claude = LiveInstance(claude_dir).start()
    except ToolMissing:
        claude = None
    stack = RunStack(run_dir, env)
    stack.ports = ports
    failed_before = request.session.testsfailed
    try:
        if not stack.wait_line(READY_LINE, START_TIMEOUT):
            pytest.fail(f"no {READY_LINE!r} line (status {stack.p.poll()}):\n{stack.output[-4000:]}")
        stack.started = time.monotonic()  # every process of the stack is up
        if claude is None:
            claude = LiveInstance(claude_dir).start()
        stack.claude = claude
        stack.claude_parts = claude.wait()
        yield stack
    finally:
        stack.kill()
        if claude is not None:
            claude.stop()
        if request.session.testsfailed > failed_before:
            logs = "\n".join(f"--- {f.name} (tail)\n{f.read_text(errors='replace')[-1500:]}"
                             for f in sorted(run_dir.glob("*.log")))
            print(f"\n--- run-stack.sh output\n{stack.output}\n{logs}")


@pytest.fixture(scope="module")
def prom(run) -> Client:
    return Client(f"http://127.0.0.1:{run.ports['PROMETHEUS_PORT']}")


def printed_urls(output: str) -> dict[str, str]:
    """What the script printed: `name: http://...` lines, name -> URL."""
    return dict(re.findall(r"^([\w -]+): (http://\S+)", output, re.M))


def test_prints_every_url(run):
    urls = printed_urls(run.output)
    want = {e["name"]: f"http://127.0.0.1:{e['port']}/" for e in EXPORTERS}
    want["prometheus"] = f"http://127.0.0.1:{run.ports['PROMETHEUS_PORT']}/"
    want["alertmanager"] = f"http://127.0.0.1:{run.ports['ALERTMANAGER_PORT']}/"
    want["webhook logger"] = f"http://127.0.0.1:{run.ports['WEBHOOK_PORT']}/"
    assert urls == want, run.output


def test_every_printed_url_answers(run):
    urls = printed_urls(run.output)
    assert urls, run.output
    # The pages each line names beside its URL: "(metrics /metrics, health /health; ...)",
    # "(targets /targets, ...)".
    pages = {name: re.findall(r"\b(?:metrics|health|targets|rules|alerts) /([\w/]+)", line)
             for line in run.lines for name in urls if line.startswith(f"{name}: http://")}
    for e in EXPORTERS:
        assert pages[e["name"]] == ["metrics", "health"], pages
    assert len(pages["prometheus"]) == 3, pages
    problems = []
    for name, url in urls.items():
        for path in ["", *pages[name]]:
            try:
                status, _, _ = http_get(url + path, timeout=10)
            except OSError as e:
                status = e
            if status != 200:
                problems.append(f"{name} {url}{path}: {status}")
    assert not problems, "\n".join(problems)


def test_every_exporter_is_an_up_target(run, prom):
    jobs = sorted(e["name"] for e in EXPORTERS)
    deadline = time.monotonic() + 3 * scrape_interval() + 10
    while True:
        up = {r["metric"]["job"]: r["value"][1] for r in prom.query("up")}
        down = [j for j in jobs if up.get(j) != "1"]
        if not down or time.monotonic() >= deadline:
            break
        time.sleep(1)
    assert not down, f"targets not up: {down}; up: {up}"
    assert sorted(up) == jobs, f"Prometheus scrapes {sorted(up)}, exporters.toml lists {jobs}"


def test_every_rule_loaded_and_healthy(run, prom):
    loaded, declared = checks.rules_loaded(prom)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"
    # Every rule evaluated at least once (health "unknown" before), none with an error.
    deadline = time.monotonic() + 3 * scrape_interval() + 10
    while True:
        groups = prom.rule_groups()
        unevaluated = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "unknown"]
        if not unevaluated or time.monotonic() >= deadline:
            break
        time.sleep(1)
    assert not unevaluated, f"rules never evaluated: {unevaluated}"
    assert not checks.rules_unhealthy(prom)
    files = {Path(g["file"]).name for g in groups}
    assert files == {p.name for p in (REPO / "rules").glob("*.yml")}, files


def test_prometheus_sends_alerts_to_the_stacks_alertmanager(run, prom):
    data = prom._must("/api/v1/alertmanagers")
    urls = [a["url"] for a in data["activeAlertmanagers"]]
    assert any(f"127.0.0.1:{run.ports['ALERTMANAGER_PORT']}/" in u for u in urls), urls


def test_alertmanager_ready_with_the_repository_config(run):
    base = f"http://127.0.0.1:{run.ports['ALERTMANAGER_PORT']}"
    status, _, _ = http_get(base + "/-/ready")
    assert status == 200
    status, _, body = http_get(base + "/api/v2/status")
    assert status == 200
    loaded = yaml.safe_load(json.loads(body)["config"]["original"])
    repo = yaml.safe_load(AM_CONFIG.read_text())

    def routes(r):
        return [(r.get("receiver"), tuple(r.get("matchers", [])), r.get("group_wait"))] + [
            x for sub in r.get("routes", []) for x in routes(sub)]

    assert routes(loaded["route"]) == routes(repo["route"])
    assert [r["name"] for r in loaded["receivers"]] == [r["name"] for r in repo["receivers"]]
    assert len(loaded["inhibit_rules"]) == len(repo["inhibit_rules"])
    # The receivers' webhooks point at this run's webhook logger (the script rewrites the
    # port when WEBHOOK_PORT is not 5001). Alertmanager may show the URLs as <secret>; the
    # copy the script made must then say it.
    hook = f"127.0.0.1:{run.ports['WEBHOOK_PORT']}"
    shown = [w["url"] for r in loaded["receivers"] for w in r.get("webhook_configs", [])]
    if all(u == "<secret>" for u in shown):
        copy = yaml.safe_load((run.run_dir / "alertmanager.yml").read_text())
        shown = [w["url"] for r in copy["receivers"] for w in r.get("webhook_configs", [])]
    assert shown and all(f"//{hook}/" in u for u in shown), shown


def test_demo_exporters_say_so_everywhere(run, prom):
    demo = demo_exporters()
    names = {e["name"] for e in EXPORTERS}
    assert demo and demo <= names, f"run-stack.sh's demo exporters {demo}, exporters.toml {names}"
    # The script's output: a DEMO DATA line right after the exporter's URL line.
    marked, current = set(), None
    for line in run.lines:
        m = re.match(r"^([\w-]+): http://", line)
        if m:
            current = m.group(1)
        elif DEMO_MARK in line and current:
            marked.add(current)
    problems = []
    if marked != demo:
        problems.append(f"output marks demo data for {sorted(marked)}, expected {sorted(demo)}")
    build = {}
    for r in prom.wait_query('{__name__=~".+_exporter_build_info"}', timeout=30):
        build[r["metric"].get("job")] = r["metric"].get("demo")
    for e in EXPORTERS:
        name, is_demo = e["name"], e["name"] in demo
        status, _, body = http_get(f"http://127.0.0.1:{e['port']}/health")
        health = json.loads(body) if status == 200 else {}
        if health.get("demo", False) is not is_demo:
            problems.append(f"{name}: /health demo={health.get('demo')!r} (HTTP {status})")
        if name not in build:
            problems.append(f"{name}: no {e['prefix']}_exporter_build_info series in Prometheus")
        elif (build[name] == "true") is not is_demo:
            problems.append(f"{name}: build info demo label {build[name]!r}")
        log = (run.run_dir / f"{name}.log").read_text(errors="replace")
        if (DEMO_LOG in log) is not is_demo:
            problems.append(f"{name}: {DEMO_LOG!r} {'missing from' if is_demo else 'in'} its log")
    assert not problems, "\n".join(problems)


def test_every_dashboard_query_returns_data(run, prom):
    # Enough samples for rate() over the dashboards' 1m windows: every target scraped at
    # least three times.
    interval = scrape_interval()
    deadline = time.monotonic() + 4 * interval + 20
    while time.monotonic() < deadline:
        counts = prom.query("count_over_time(up[1m])")
        if len(counts) == len(EXPORTERS) and min(float(r["value"][1]) for r in counts) >= 3:
            break
        time.sleep(1)
    # The demo GPU's XID at start fires GPUXidError (no `for:`) at the first evaluations:
    # the overview's "Firing alerts" panel has it to show.
    assert prom.wait_query('ALERTS{alertstate="firing"}', timeout=60), \
        "no alert firing: the demo GPU's XID should fire GPUXidError"
    # The Claude Code this module started is one of claude-process-exporter's instances.
    assert prom.wait_query(f'claude_instance_info{{pid="{run.claude.pid}"}}', timeout=30), \
        f"claude-process-exporter does not report the Claude Code of pid {run.claude.pid}"
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "dashboards").glob("*.json"))
    assert files
    rc, report = checks.query_dashboards(prom.url, files, allow_empty=ALLOW_EMPTY,
                                         wait=2 * interval)
    assert rc == 0, report


def test_alertmanager_delivers_to_the_receiver(run):
    """An alert posted to Alertmanager reaches the webhook logger: the critical route (group
    wait 5 s) to /odin/critical, written to notifications.jsonl and printed to its log."""
    name = f"OdinStackTest{os.getpid()}"
    now = time.time()

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    alert = [{"labels": {"alertname": name, "severity": "critical", "instance": "test:0",
                         "job": "test_e2e_stack"},
              "annotations": {"summary": "posted by tests/test_e2e_stack.py"},
              "startsAt": iso(now - 1), "endsAt": iso(now + 600)}]
    req = urllib.request.Request(
        f"http://127.0.0.1:{run.ports['ALERTMANAGER_PORT']}/api/v2/alerts",
        data=json.dumps(alert).encode(), headers={"Content-Type": "application/json"},
        method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    jsonl = run.run_dir / "notifications.jsonl"
    group_wait = 5  # the critical route's, deploy/alertmanager/alertmanager.yml
    deadline = time.monotonic() + group_wait + 30
    got = []
    while time.monotonic() < deadline and not got:
        if jsonl.exists():
            for line in jsonl.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("labels", {}).get("alertname") == name:
                    got.append(rec)
        time.sleep(0.5)
    assert got, f"{name} not in {jsonl} after {group_wait + 30}s"
    assert got[0]["path"] == "/odin/critical" and got[0]["receiver"] == "odin-critical", got[0]
    assert got[0]["status"] == "firing", got[0]
    assert name in (run.run_dir / "webhook-logger.log").read_text(), "not printed by the receiver"


def test_a_real_alert_from_the_demo_reaches_the_receiver(run, prom):
    """What a newcomer sees without doing anything: the demo GPU's XID at start fires
    GPUXidError (no `for:`) in Prometheus, and the warning route (group wait 1 m) delivers it
    from a real exporter, with its annotations, to /odin/warning."""
    jsonl = run.run_dir / "notifications.jsonl"
    deadline = run.started + 15 + 15 + 60 + 45  # scrape, evaluation, group wait, slack
    got = []
    while time.monotonic() < deadline and not got:
        if jsonl.exists():
            for line in jsonl.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("labels", {}).get("alertname") == "GPUXidError":
                    got.append(rec)
        time.sleep(1)
    firing = prom.query('ALERTS{alertname="GPUXidError", alertstate="firing"}')
    assert got, f"GPUXidError not in {jsonl} {time.monotonic() - run.started:.0f}s after the start; firing in Prometheus: {firing}"
    rec = got[0]
    assert rec["status"] == "firing" and rec["path"] == "/odin/warning", rec
    assert rec["labels"]["job"] == "gpu-exporter" and rec["labels"]["xid"], rec
    for key in ("summary", "description", "runbook_url"):
        assert rec.get("annotations", {}).get(key), (key, rec)


def test_second_run_says_it_is_already_running(run):
    members = group_members(run.p.pid, parent=run.p.pid)
    start = time.monotonic()
    second = subprocess.run([str(SCRIPT)], cwd=REPO, env=run.env, capture_output=True, text=True,
                            timeout=60)
    took = time.monotonic() - start
    out = second.stdout + second.stderr
    assert second.returncode != 0, out
    assert "already running" in out and str(run.p.pid) in out, out
    assert took < 10, f"the second run took {took:.1f}s to give up"
    # The first is untouched: still running, the same processes, its lock, its URLs.
    assert run.p.poll() is None, run.output
    assert group_members(run.p.pid, parent=run.p.pid) == members
    assert (run.run_dir / "run-stack.pid").read_text().strip() == str(run.p.pid)
    for e in EXPORTERS:
        assert http_get(f"http://127.0.0.1:{e['port']}/health")[0] == 200, e["name"]


def test_ctrl_c_stops_everything(run):
    members = group_members(run.p.pid, parent=run.p.pid)
    commands = " ".join(members.values())
    for e in EXPORTERS:
        assert f"/{e['name']} " in commands, f"no {e['name']} process in {members}"
    for prog in ("prometheus-alertmanager ", "prometheus ", "webhook-logger.py"):
        assert prog in commands, f"no {prog.strip()} process in {members}"
    lock = run.run_dir / "run-stack.pid"
    assert lock.exists()
    start = time.monotonic()
    rc = run.interrupt(timeout=30)
    took = time.monotonic() - start
    assert rc == 0, f"exit status {rc} after SIGINT:\n{run.output[-3000:]}"
    assert took < 15, f"took {took:.1f}s to stop"
    assert run.lines and run.lines[-1] == "stopped.", run.output[-2000:]
    assert not lock.exists(), "lock file left behind"
    left = {pid: cmd for pid, cmd in members.items() if alive(pid)}
    assert not left, f"processes left running: {left}"
    assert not group_members(run.p.pid), group_members(run.p.pid)
    ports = [e["port"] for e in EXPORTERS] + list(run.ports.values())
    listening = [p for p in ports if port_open(p)]
    assert not listening, f"still listening: {listening}"
