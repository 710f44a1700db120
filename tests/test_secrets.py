"""Secrets never leave the host: one fake Anthropic key, planted everywhere an exporter looks,
must come out of no exporter by any path.

The key is `sk-ant-api03-` plus random characters, new on every run (MARKER). It is planted:

  - in the environment and on the command line of a running stand-in Claude Code instance
    (a copy of bash named `claude`, started with `-p` and the key as arguments, the key in
    ANTHROPIC_API_KEY, with a child marked as the Bash tool's), which
    claude-process-exporter finds and reads;
  - in a Claude Code transcript under HOME/.claude/projects (the prompt, the answer, a tool
    input, a summary, and a malformed line) that token-collector reads;
  - in terminal output captured by `token-collector wrap` (a Messages API response and a
    `claude -p` result whose texts hold the key), and in a malformed line of the spool;
  - in the environment of every exporter (ANTHROPIC_API_KEY);
  - as the password of a `--web.config.file` with `basic_auth_users` (a bcrypt hash of it),
    on every exporter whose --help has the flag; requests carry it (and a wrong password
    that contains it) in their Authorization header. Skipped, with the reason, where no
    exporter has the flag yet.

Every exporter of exporters.toml then runs (target/debug) with --log.level=debug, once with
--log.format=logfmt and once with json, all at once, with HOME, XDG directories and
token-collector's database and spool under one temporary root and that HOME as working
directory; `/`, `/metrics` (plain and gzip), `/health`, `/ready` and `/healthz` are scraped;
then SIGTERM. Each also runs `--once` in both formats. Searched, as bytes: every answer (its
headers too, gzip unpacked), stdout and stderr of every run and of `wrap`, `token-collector
report session --json`, and every file under the temporary HOME and state directories
(SQLite database, WAL, spool; planted inputs only if an exporter changed them). The needles
(needles()): the key, its random middle (a truncated or re-quoted copy), the bare prefix
`sk-ant-api03-`, the middle in base64 at each alignment and in hex, and the Authorization
header's base64.

Not vacuous: the stand-in is found (its claude_instance_info series, headless: its command
line was read), the transcript and the captures are counted (llm_tokens_total of both
sources > 0, the malformed lines counted), and with a web config, /metrics answers 401
without the password and with a wrong one, 200 with it.
"""
from __future__ import annotations

import base64
import errno
import gzip
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from odin import manifest, procs
from odin.exporters import binary, free_port, http_get
from odin.exposition import parse
from odin.fleet import Isolated
from odin.transcripts import compact, encode_cwd

EXPORTERS = manifest.load()
NAMES = [e["name"] for e in EXPORTERS]
PREFIX = {e["name"]: e["prefix"] for e in EXPORTERS}
FORMATS = ["logfmt", "json"]
PATHS = ["/", "/metrics", "/health", "/ready", "/healthz"]
_ALNUM = string.ascii_letters + string.digits
# 63 bytes: bcrypt takes at most 72 (Go's bcrypt refuses longer passwords).
RANDOM = "".join(secrets.choice(_ALNUM) for _ in range(48))
MARKER = f"sk-ant-api03-{RANDOM}AA"
MIDDLE = RANDOM[12:36]
USER = "odin"
WRONG = f"{MARKER}-wrong"
MODEL = "claude-sonnet-4-5-20250929"
PROJECT_CWD = "/home/odin/src/vault"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def needles() -> dict[str, bytes]:
    """What must appear nowhere, by name. Base64 of any text holding MIDDLE holds one of the
    three aligned encodings of its tail (cut to whole 3-byte groups)."""
    out = {"key": MARKER, "key's middle": MIDDLE, "key prefix": "sk-ant-api03-",
           "Authorization header": _b64(f"{USER}:{MARKER}"),
           "wrong password's header": _b64(f"{USER}:{WRONG}"),
           "key's middle in hex": MIDDLE.encode().hex()}
    for k in range(3):
        tail = MIDDLE[k:]
        out[f"key's middle in base64 ({k})"] = _b64(tail[: len(tail) - len(tail) % 3])
    return {name: v.encode() for name, v in out.items()}


def find_leaks(where: str, data: bytes) -> list[str]:
    found = []
    for name, needle in needles().items():
        i = data.find(needle)
        if i >= 0:
            around = data[max(0, i - 60): i + len(needle) + 60].replace(MARKER.encode(), b"<KEY>")
            found.append(f"{where}: {name} at byte {i}: ...{around!r}...")
    return found


# --- what is planted ---------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_transcript(home: Path) -> Path:
    """One session: a prompt holding the key, an answer and a tool call repeating it (with a
    usage, so it is counted), a summary, and a malformed line holding it."""
    session = str(uuid.uuid4())
    base = {"isSidechain": False, "userType": "external", "cwd": PROJECT_CWD, "sessionId": session,
            "version": "2.1.332", "gitBranch": "main"}
    user = {**base, "parentUuid": None, "type": "user", "timestamp": now_iso(), "uuid": str(uuid.uuid4()),
            "message": {"role": "user", "content": f"deploy it, ANTHROPIC_API_KEY={MARKER}"}}
    answer = {**base, "parentUuid": user["uuid"], "type": "assistant", "timestamp": now_iso(),
              "uuid": str(uuid.uuid4()), "requestId": f"req_011{secrets.token_hex(8)}",
              "message": {"id": f"msg_01{secrets.token_hex(10)}", "type": "message", "role": "assistant",
                          "model": MODEL, "stop_reason": "tool_use", "stop_sequence": None,
                          "content": [{"type": "text", "text": f"I will not repeat {MARKER}."},
                                      {"type": "tool_use", "id": f"toolu_01{secrets.token_hex(6)}",
                                       "name": "Bash",
                                       "input": {"command": f"ANTHROPIC_API_KEY={MARKER} ./deploy"}}],
                          "usage": {"input_tokens": 1200, "output_tokens": 340,
                                    "cache_read_input_tokens": 5000, "cache_creation_input_tokens": 0}}}
    summary = {"type": "summary", "summary": f"Deploying with {MARKER}", "leafUuid": answer["uuid"]}
    malformed = '{"type":"assistant","message":{"content":"' + MARKER + '",'
    path = home / ".claude" / "projects" / encode_cwd(PROJECT_CWD) / f"{session}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([compact(user), compact(answer), compact(summary), malformed]) + "\n")
    return path


def captured_output() -> bytes:
    """What a wrapped command prints: a Messages API response and a `claude -p` result (of a
    session the collector has no transcript of), their texts holding the key."""
    api = {"id": f"msg_01{secrets.token_hex(10)}", "type": "message", "role": "assistant", "model": MODEL,
           "content": [{"type": "text", "text": f"Your key is {MARKER}"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 50, "output_tokens": 20}}
    result = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
              "result": f"Set ANTHROPIC_API_KEY={MARKER}", "session_id": str(uuid.uuid4()),
              "total_cost_usd": 0.0012, "usage": {"input_tokens": 100, "output_tokens": 60},
              "modelUsage": {MODEL: {"inputTokens": 100, "outputTokens": 60, "cacheReadInputTokens": 0,
                                     "cacheCreationInputTokens": 0, "costUSD": 0.0012}}}
    return (json.dumps(api, indent=2) + "\n" + json.dumps(result) + "\n").encode()


def start_stand_in(where: Path) -> tuple[subprocess.Popen, Path]:
    """bash copied to .../claude/versions/9.9.9/claude (so its name is `claude`), run as
    `claude -c SCRIPT claude -p PROMPT --api-key=KEY` with the key in its environment; the
    script starts a child marked as the Bash tool's and sleeps."""
    exe = where / "claude/versions/9.9.9/claude"
    exe.parent.mkdir(parents=True)
    shutil.copy("/bin/bash", exe)
    exe.chmod(0o755)
    script = "CLAUDE_PID=$$ sleep 3600 & wait"
    for _ in range(50):  # ETXTBSY while another thread's fork still holds the copy open
        try:
            p = subprocess.Popen([str(exe), "-c", script, "claude", "-p", f"use {MARKER} to deploy",
                                  f"--api-key={MARKER}"],
                                 env={"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": MARKER},
                                 cwd=where, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            break
        except OSError as e:
            if e.errno != errno.ETXTBSY:
                raise
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while not children(p.pid):
        assert time.monotonic() < deadline, "the stand-in's child did not start"
        time.sleep(0.02)
    return p, exe


children = procs.children


def supports_web_config(name: str) -> bool:
    p = subprocess.run([str(binary(name)), "--help"], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    return "--web.config.file" in p.stdout + p.stderr


# --- the runs ------------------------------------------------------------------------------


class Planted:
    """Everything planted, every run made, and every blob collected (name -> bytes)."""

    def __init__(self, root: Path):
        self.root = root
        self.iso = Isolated(root)
        self.blobs: dict[str, bytes] = {}
        self.planted_files: dict[Path, bytes] = {}
        self.scrapes: dict[tuple[str, str], dict] = {}  # (format, exporter) -> {what: (status, body)}
        self.once: dict[tuple[str, str], subprocess.CompletedProcess] = {}
        self.web: dict[str, Path] = {}  # exporters given the web config
        self.web_missing: list[str] = []
        self.exit_codes: dict[tuple[str, str], int] = {}
        self.stand_in: subprocess.Popen | None = None
        self.spool_files: list[Path] = []
        self.proc_planted: dict[str, bool] = {}

    def env(self) -> dict:
        return self.iso.env({"ANTHROPIC_API_KEY": MARKER})

    def auth(self, name: str, password: str | None = MARKER) -> dict:
        if name not in self.web or password is None:
            return {}
        return {"Authorization": "Basic " + _b64(f"{USER}:{password}")}

    def plant(self) -> None:
        transcript = write_transcript(self.iso.home)
        self.planted_files[transcript] = transcript.read_bytes()
        inputs = self.root / "inputs"
        inputs.mkdir()
        out_file = inputs / "output.txt"
        out_file.write_bytes(captured_output())
        spool = self.iso.spool()
        wrap = subprocess.run([str(binary("token-collector")), "wrap", f"--spool.dir={spool}", "--",
                               "cat", str(out_file)], capture_output=True, env=self.env(),
                              cwd=self.iso.home, timeout=60)
        assert wrap.returncode == 0, f"wrap failed ({wrap.returncode}): {wrap.stderr[-2000:]!r}"
        assert MARKER.encode() in wrap.stdout, "wrap did not pass the output through"
        self.blobs["token-collector wrap: stderr"] = wrap.stderr
        self.spool_files = sorted(spool.glob("*.jsonl"))
        for f in self.spool_files:  # read now, in case anything later removes them
            self.blobs[f"spool file {f.name} right after wrap"] = f.read_bytes()
        bad_spool = spool / "0-planted-malformed.jsonl"
        bad_spool.write_text('{"identity":{"kind":"anonymous"},"note":"' + MARKER + '\n')
        self.planted_files[bad_spool] = bad_spool.read_bytes()
        self.stand_in, _ = start_stand_in(self.root / "stand-in")
        pid, child = self.stand_in.pid, children(self.stand_in.pid)[0]
        key = MARKER.encode()
        self.proc_planted = {
            "the stand-in's environment": key in Path(f"/proc/{pid}/environ").read_bytes(),
            "the stand-in's command line": key in Path(f"/proc/{pid}/cmdline").read_bytes(),
            "its tool child's environment": key in Path(f"/proc/{child}/environ").read_bytes(),
            "its name is claude": Path(f"/proc/{pid}/comm").read_text().strip() == "claude",
        }
        for name in NAMES:
            if supports_web_config(name):
                self.web[name] = self.web_config()
            else:
                self.web_missing.append(name)

    def web_config(self) -> Path:
        path = self.root / "inputs" / "web.yml"
        if not path.exists():
            import bcrypt  # scripts/setup.sh installs it into .venv

            hashed = bcrypt.hashpw(MARKER.encode(), bcrypt.gensalt(rounds=4)).decode()
            path.write_text(f"basic_auth_users:\n  {USER}: {hashed}\n")
        return path

    def argv(self, name: str, fmt: str, port: int | None) -> list[str]:
        extra = ["--log.level=debug", f"--log.format={fmt}"]
        if name == "claude-process-exporter":
            extra.append("--collector.pss")  # one more reader of the stand-in's files
        if name in self.web and port is not None:
            extra.append(f"--web.config.file={self.web[name]}")
        return self.iso.argv(name, port, extra)

    def serve(self, fmt: str) -> None:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        procs = {}
        for name in NAMES:
            port = free_port()
            out, err = open(logs / f"{fmt}-{name}.out", "wb"), open(logs / f"{fmt}-{name}.err", "wb")
            p = subprocess.Popen(self.argv(name, fmt, port), env=self.env(), cwd=self.iso.home,
                                 stdout=out, stderr=err, start_new_session=True)
            procs[name] = (p, port, out, err)
        try:
            for name, (p, port, _, _) in procs.items():
                self.wait_up(name, port, p)
            self.wait_counted(fmt, procs)
            for name, (_, port, _, _) in procs.items():
                self.scrape(fmt, name, port)
        finally:
            for name, (p, _, out, err) in procs.items():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for name, (p, _, out, err) in procs.items():
                try:
                    self.exit_codes[(fmt, name)] = p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    self.exit_codes[(fmt, name)] = p.wait()
                out.close()
                err.close()
                self.blobs[f"{name} --log.format={fmt}: stdout"] = (logs / f"{fmt}-{name}.out").read_bytes()
                self.blobs[f"{name} --log.format={fmt}: stderr"] = (logs / f"{fmt}-{name}.err").read_bytes()

    def get(self, name: str, port: int, path: str, headers: dict | None = None):
        return http_get(f"http://127.0.0.1:{port}{path}", headers={**self.auth(name), **(headers or {})},
                        timeout=30)

    def wait_up(self, name: str, port: int, p: subprocess.Popen) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert p.poll() is None, f"{name} exited ({p.returncode}) at start: {p.args}"
            try:
                status, _, _ = self.get(name, port, "/metrics")
                if status == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{name} did not answer /metrics with 200 in 30 s"
            time.sleep(0.1)

    def wait_counted(self, fmt: str, procs: dict) -> None:
        """Until claude-process-exporter shows the stand-in and token-collector has counted
        both the transcript and the captures (30 s at most; the tests say what is missing)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ok = True
            if "claude-process-exporter" in procs:
                text = self.get("claude-process-exporter", procs["claude-process-exporter"][1], "/metrics")[2]
                ok &= self.stand_in_found(text.decode(errors="replace"))
            if "token-collector" in procs:
                text = self.get("token-collector", procs["token-collector"][1], "/metrics")[2]
                ok &= all(v > 0 for v in tokens_by_source(text.decode(errors="replace")).values())
            if ok:
                return
            time.sleep(0.3)

    def stand_in_found(self, text: str) -> bool:
        return f'pid="{self.stand_in.pid}"' in text and "claude_instance_info{" in text

    def scrape(self, fmt: str, name: str, port: int) -> None:
        got = {}
        for path in PATHS:
            got[path] = self.get(name, port, path)
        status, headers, body = self.get(name, port, "/metrics", {"Accept-Encoding": "gzip"})
        if headers.get("Content-Encoding") == "gzip":
            self.blobs[f"{name} --log.format={fmt}: /metrics gzip (packed)"] = body
            body = gzip.decompress(body)
        got["/metrics (gzip)"] = (status, headers, body)
        if name in self.web:
            got["/metrics without a password"] = http_get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            got["/metrics with a wrong password"] = http_get(
                f"http://127.0.0.1:{port}/metrics", headers=self.auth(name, WRONG), timeout=30)
        for what, (status, headers, body) in got.items():
            head = "".join(f"{k}: {v}\n" for k, v in headers.items()).encode()
            self.blobs[f"{name} --log.format={fmt}: {what} (HTTP {status})"] = head + b"\n" + body
        self.scrapes[(fmt, name)] = {what: (status, body) for what, (status, _, body) in got.items()}

    def run_once(self, fmt: str) -> None:
        for name in NAMES:
            p = subprocess.run([*self.argv(name, fmt, None), "--once"], env=self.env(), cwd=self.iso.home,
                               capture_output=True, timeout=120)
            self.once[(fmt, name)] = p
            self.blobs[f"{name} --once --log.format={fmt}: stdout"] = p.stdout
            self.blobs[f"{name} --once --log.format={fmt}: stderr"] = p.stderr

    def report(self) -> None:
        db = self.iso.state_args("token-collector")[0].split("=", 1)[1]
        p = subprocess.run([str(binary("token-collector")), "report", "session", "--json",
                            f"--storage.path={db}"], env=self.env(), cwd=self.iso.home,
                           capture_output=True, timeout=60)
        self.blobs["token-collector report session --json: stdout"] = p.stdout
        self.blobs["token-collector report session --json: stderr"] = p.stderr

    def collect_files(self) -> None:
        for top in (self.iso.home, self.iso.state):
            for f in sorted(top.rglob("*")):
                if not f.is_file() or f.is_symlink():
                    continue
                data = f.read_bytes()
                if self.planted_files.get(f) == data:
                    continue  # an input as planted, untouched
                self.blobs[f"file {f.relative_to(self.root)}"] = data

    def stop(self) -> None:
        if self.stand_in is not None:
            for c in children(self.stand_in.pid):
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.stand_in.kill()
            self.stand_in.wait()


def tokens_by_source(text: str) -> dict[str, float]:
    out = {"claude_code": 0.0, "terminal": 0.0}
    for (name, labels), v in parse(text)[0].items():
        source = dict(labels).get("source")
        if name == "llm_tokens_total" and source in out:
            out[source] += v
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    pl = Planted(tmp_path_factory.mktemp("secrets"))
    try:
        pl.plant()
        for fmt in FORMATS:
            pl.serve(fmt)
        for fmt in FORMATS:
            pl.run_once(fmt)
        pl.report()
    finally:
        pl.stop()
    pl.collect_files()
    return pl


# --- not vacuous ---------------------------------------------------------------------------


def test_planted_where_the_exporters_read(planted):
    assert planted.proc_planted and all(planted.proc_planted.values()), planted.proc_planted
    assert all(MARKER.encode() in data for data in planted.planted_files.values())
    assert planted.spool_files, "wrap recognised nothing: no spool file (the capture path is untested)"


def test_stand_in_found_by_claude_process_exporter(planted):
    for fmt in FORMATS:
        status, body = planted.scrapes[(fmt, "claude-process-exporter")]["/metrics"]
        text = body.decode(errors="replace")
        assert planted.stand_in_found(text), f"--log.format={fmt}: the stand-in (pid {planted.stand_in.pid}) " \
                                             "is not among the instances"
        # Headless: the -p on its command line was read.
        info = [ln for ln in text.splitlines()
                if ln.startswith("claude_instance_info{") and f'pid="{planted.stand_in.pid}"' in ln]
        assert info and 'mode="headless"' in info[0], info
        once = planted.once[(fmt, "claude-process-exporter")].stdout.decode(errors="replace")
        assert planted.stand_in_found(once), f"--once --log.format={fmt}: the stand-in is missing"


def test_transcript_and_captures_counted_by_token_collector(planted):
    for fmt in FORMATS:
        status, body = planted.scrapes[(fmt, "token-collector")]["/metrics"]
        text = body.decode(errors="replace")
        by_source = tokens_by_source(text)
        assert by_source["claude_code"] > 0, f"--log.format={fmt}: the transcript was not counted: {by_source}"
        assert by_source["terminal"] > 0, f"--log.format={fmt}: the captures were not counted: {by_source}"
        malformed = sum(v for (n, ls), v in parse(text)[0].items()
                        if n == "llm_ingest_lines_total" and dict(ls).get("outcome") == "malformed")
        assert malformed >= 2, f"--log.format={fmt}: the malformed lines were not read ({malformed})"


def test_web_config_password_required(planted):
    if not planted.web:
        pytest.skip("no exporter has --web.config.file yet (odin-common: docs/web-config.md); "
                    "the password path runs once `<exporter> --help` lists the flag")
    problems = []
    for fmt in FORMATS:
        for name in planted.web:
            got = planted.scrapes[(fmt, name)]
            want = {"/metrics": 200, "/metrics without a password": 401, "/metrics with a wrong password": 401}
            for what, status in want.items():
                if got[what][0] != status:
                    problems.append(f"{name} --log.format={fmt}: {what}: HTTP {got[what][0]}, want {status}")
    assert not problems, "\n".join(problems)
    if planted.web_missing:
        pytest.fail(f"--web.config.file missing from {planted.web_missing} (it is in {sorted(planted.web)})")


# --- the search ----------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["logfmt", "json", "once", "files", "other"])
def test_key_appears_nowhere(planted, part):
    def belongs(where: str) -> bool:
        if part == "files":
            return where.startswith("file ") or where.startswith("spool file ")
        if part == "once":
            return "--once" in where
        if part in FORMATS:
            return f"--log.format={part}:" in where and "--once" not in where
        return not (where.startswith(("file ", "spool file ")) or "--log.format=" in where)

    mine = {where: data for where, data in planted.blobs.items() if belongs(where)}
    assert mine, f"nothing collected for {part}"
    leaks = [leak for where, data in sorted(mine.items()) for leak in find_leaks(where, data)]
    print(f"{part}: searched {len(mine)} outputs, {sum(map(len, mine.values()))} bytes"
          + (": " + ", ".join(sorted(mine)) if part in ("files", "other") else ""))
    assert not leaks, f"the planted key came out ({len(leaks)}):\n" + "\n".join(leaks[:30])


def test_needles_catch_a_copy_in_any_form():
    """The search itself: copies of the key cut short, quoted, in base64 at any offset or in
    hex are found; text without the key is not."""
    copies = [MARKER, MARKER[:40], json.dumps({"k": MARKER}), MIDDLE.encode().hex()]
    for pad in range(3):
        copies.append(_b64("x" * pad + f"Bearer {MARKER}"))
    for c in copies:
        assert find_leaks("t", b"before " + c.encode() + b" after"), c
    assert not find_leaks("t", b"sk-ant-FAKE " + RANDOM[:10].encode() + b" msg_01 llm_tokens_total")
