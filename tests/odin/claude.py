"""The real Claude Code client and ccusage, as scripts/setup.sh installs them (.tools/npm).

    home = Home(tmp)                      a HOME with first-run screens skipped
    run = run_claude(home, api, "hello")  `claude -p PROMPT --output-format json` against a
                                          FakeAnthropic; run.result is its JSON result object
    transcript_responses(home.config)     {message id: (model, largest Usage)} of every
                                          transcript under <config>/projects/
    live = LiveInstance(tmp); live.start(); live.wait(); ...; live.stop()
                                          one interactive instance that stays alive with a
                                          tree: a Bash tool's shell and sleep, an MCP server
                                          with a loopback port (tests/test_e2e_stack.py)
    ccusage_daily(config, tz)             `ccusage claude daily --json --offline --breakdown`:
                                          {(day, model): (Usage-like dict, cost)}

Claude Code runs with ANTHROPIC_BASE_URL at the fake, a fake key, IS_SANDBOX=1 (so that
--dangerously-skip-permissions is accepted as root) and auto-update, telemetry and other
non-essential traffic off; nothing leaves loopback.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import REPO, procs
from .fakeapi import FakeAnthropic, Usage, tool_then_text

NPM = REPO / ".tools/npm/node_modules"
CLAUDE = NPM / "@anthropic-ai/claude-code/bin/claude.exe"
CCUSAGE = NPM / "@ccusage/ccusage-linux-x64/bin/ccusage"
FAKE_KEY = "sk-ant-api03-FAKE-KEY-FOR-TESTS-ONLY"
MODEL = "claude-sonnet-4-5"


class ToolMissing(FileNotFoundError):
    pass


def tool(path: Path) -> Path:
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"{path} missing: run scripts/setup.sh (it installs Claude Code and "
                          "ccusage from npm into .tools/npm)")
    return path


class Home:
    """A HOME for Claude Code: ~/.claude.json says onboarding is done; transcripts go to
    ~/.claude/projects/ (the config directory)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True, "numStartups": 1, "autoUpdates": False,
            "bypassPermissionsModeAccepted": True}))
        self.config = self.path / ".claude"

    def project(self, name: str) -> Path:
        d = self.path / "src" / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def claude_env(home: Home, api: FakeAnthropic) -> dict:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home.path),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "IS_SANDBOX": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


@dataclass
class Run:
    argv: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    replies: list  # the fake API's replies during the run

    @property
    def result(self) -> dict:
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError(f"claude printed no JSON result (rc {self.returncode}):\n"
                                 f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}") from e


def run_claude(home: Home, api: FakeAnthropic, prompt: str, cwd: Path | None = None,
               prefix: list | None = None, env: dict | None = None, timeout: float = 120) -> Run:
    """`[prefix...] claude -p PROMPT --output-format json --model MODEL` in `cwd`."""
    argv = [*(prefix or []), str(tool(CLAUDE)), "-p", prompt, "--output-format", "json",
            "--model", MODEL, "--dangerously-skip-permissions"]
    before = len(api.replies)
    t = time.monotonic()
    p = subprocess.run([str(a) for a in argv], cwd=cwd or home.project("demo"),
                       env={**claude_env(home, api), **(env or {})}, capture_output=True,
                       text=True, timeout=timeout)
    return Run(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - t,
               api.replies[before:])


def transcript_lines(config: Path):
    for f in sorted((Path(config) / "projects").rglob("*.jsonl")):
        for raw in f.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                yield f, json.loads(raw)
            except ValueError:
                continue


def transcript_responses(config: Path) -> dict[str, tuple[str, Usage]]:
    """{message id: (model, usage)} of every response a transcript holds (largest output)."""
    out: dict[str, tuple[str, Usage]] = {}
    for _, d in transcript_lines(config):
        msg = d.get("message")
        if d.get("type") != "assistant" or not isinstance(msg, dict) or not isinstance(msg.get("usage"), dict):
            continue
        u = msg["usage"]
        cc = u.get("cache_creation") or {}
        one_hour = cc.get("ephemeral_1h_input_tokens", 0)
        five = cc.get("ephemeral_5m_input_tokens", u.get("cache_creation_input_tokens", 0) - one_hour)
        usage = Usage(input=u.get("input_tokens", 0), output=u.get("output_tokens", 0),
                      cache_read=u.get("cache_read_input_tokens", 0), cache_write_5m=five,
                      cache_write_1h=one_hour)
        prev = out.get(msg["id"])
        if prev is None or usage.output > prev[1].output:
            out[msg["id"]] = (msg.get("model"), usage)
    return out


def ccusage_daily(config: Path, tz: str) -> dict[tuple[str, str], tuple[dict, float]]:
    """ccusage's daily report of the tree under `config`, per (day, model): the token
    counts it prints (input, output, cache_read, cache_write = both durations) and its cost."""
    p = subprocess.run([str(tool(CCUSAGE)), "claude", "daily", "--json", "--offline", "--breakdown",
                        "--mode", "calculate", "--timezone", tz],
                       env={"PATH": "/usr/bin:/bin", "HOME": str(config), "TZ": tz,
                            "CLAUDE_CONFIG_DIR": str(config)},
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"ccusage failed (rc {p.returncode}): {p.stderr[-2000:]}")
    out = {}
    for day in json.loads(p.stdout)["daily"]:
        for m in day["modelBreakdowns"]:
            out[(day["date"], m["modelName"])] = (
                {"input": m["inputTokens"], "output": m["outputTokens"],
                 "cache_read": m["cacheReadTokens"], "cache_write": m["cacheCreationTokens"]},
                m["cost"])
    return out


def trust(home: Home, project: Path) -> None:
    """Mark `project` trusted and the fake key approved in ~/.claude.json, so that an
    interactive session starts without asking."""
    cfg = json.loads((home.path / ".claude.json").read_text())
    cfg["customApiKeyResponses"] = {"approved": [FAKE_KEY[-20:]], "rejected": []}
    cfg.setdefault("projects", {})[str(project)] = {"hasTrustDialogAccepted": True, "allowedTools": []}
    (home.path / ".claude.json").write_text(json.dumps(cfg))


class Tmux:
    """A tmux server of the test's own (its socket under the test's directory)."""

    def __init__(self, socket: Path):
        self.socket = str(socket)

    def run(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {p.stderr}")
        return p.stdout

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


class Interactive:
    """Claude Code interactive in a tmux session (`claude --dangerously-skip-permissions
    [extra...]` in `cwd`), its pid the pane's (the command is exec'd)."""

    def __init__(self, tmux: Tmux, name: str, home: Home, api: FakeAnthropic, cwd: Path,
                 extra: list | None = None, env: dict | None = None):
        self.tmux, self.name = tmux, name
        environment = {**claude_env(home, api), "TERM": "xterm-256color", **(env or {})}
        argv = [str(tool(CLAUDE)), "--dangerously-skip-permissions", "--model", MODEL, *(extra or [])]
        command = "exec env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items()) + " " + \
            " ".join(shlex.quote(str(a)) for a in argv)
        tmux.run("new-session", "-d", "-s", name, "-x", "200", "-y", "50", "-c", str(cwd), command)
        self.pid = int(tmux.run("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def screen(self) -> str:
        return self.tmux.run("capture-pane", "-p", "-t", self.name, check=False)

    def wait_screen(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.screen():
                return
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never showed; screen:\n{self.screen()}")

    def send(self, text: str) -> None:
        self.tmux.run("send-keys", "-t", self.name, "-l", text)
        time.sleep(0.3)
        self.tmux.run("send-keys", "-t", self.name, "Enter")


class LiveInstance:
    """One real Claude Code, interactive in a tmux session of its own under `work`, that stays
    alive with a tree until stop(): the fake API answers its prompt with a Bash tool call
    running a long sleep (a tool shell and its child), and --mcp-config starts the stdio MCP
    server of tests/odin/mcpserver.py with --listen (a port on 127.0.0.1 and an established
    connection to it). start() returns once tmux runs it; wait() until the tool and the MCP
    server run under it; stop() ends the session and everything under it."""

    PROMPT = "run the long command"

    def __init__(self, work: Path, name: str = "live"):
        tool(CLAUDE)
        self.work, self.name = Path(work), name
        self.work.mkdir(parents=True, exist_ok=True)
        self.home = Home(self.work / "home")
        self.project = self.home.project("demo")
        trust(self.home, self.project)
        self.api = FakeAnthropic(script=tool_then_text("echo start; sleep 3600"))
        self.mcp_config = self.work / "mcp.json"
        self.mcp_config.write_text(json.dumps({"mcpServers": {"pinger": {
            "command": sys.executable,
            "args": [str(REPO / "tests/odin/mcpserver.py"), "--listen"]}}}))
        self.tmux = Tmux(self.work / "tmux.sock")
        self.session: Interactive | None = None
        self.tree: list[int] = []  # pids under the instance, as last seen by wait()

    @property
    def pid(self) -> int:
        assert self.session, "not started"
        return self.session.pid

    def start(self) -> "LiveInstance":
        self.api.start()
        self.session = Interactive(self.tmux, self.name, self.home, self.api, self.project,
                                   extra=["--mcp-config", str(self.mcp_config)])
        return self

    def parts(self) -> dict | None:
        """{'mcp': pid, 'shell': pid, 'sleep': pid} when all three run under the instance."""
        kids = procs.children(self.pid)
        mcp = [k for k in kids if procs.comm(k).startswith("python")]
        shells = [k for k in kids if procs.comm(k) in ("bash", "zsh", "sh", "dash")]
        sleeps = [g for sh in shells for g in procs.children(sh) if procs.comm(g) == "sleep"]
        if mcp and shells and sleeps:
            return {"mcp": mcp[0], "shell": shells[0], "sleep": sleeps[0]}
        return None

    def wait(self, timeout: float = 120) -> dict:
        """Sends the prompt once the session is ready; returns parts() once they all run."""
        deadline = time.monotonic() + timeout
        self.session.wait_screen("bypass permissions", timeout=timeout)
        self.session.send(self.PROMPT)
        while time.monotonic() < deadline:
            found = self.parts()
            if found:
                self.tree = [self.pid, *found.values()]
                return found
            time.sleep(0.5)
        raise AssertionError(f"no tool shell, sleep and MCP server under Claude Code "
                             f"(pid {self.pid}) after {timeout}s; screen:\n{self.session.screen()}")

    def stop(self) -> None:
        if not self.session:
            return
        # (pid, start time): a pid that a new process took in the meantime is left alone.
        left = {(p, procs.started(p)) for p in self.tree}
        todo = [self.session.pid]
        while todo:
            p = todo.pop()
            left.add((p, procs.started(p)))
            todo += procs.children(p)
        self.tmux.kill()
        for pid, started in left:
            if started is not None and procs.started(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.api.stop()
        self.session = None
