"""Small helpers shared by ODIN's end-to-end tests (stdlib only).

Processes started here are real binaries on 127.0.0.1; every helper cleans up after itself.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The project's shared/ folder: $ODIN_SHARED_DIR, else ../shared beside the repo."""
    for cand in (os.environ.get("ODIN_SHARED_DIR"), REPO.parent / "shared", Path("/work/shared")):
        if cand and Path(cand).is_dir():
            return Path(cand)
    raise SystemExit("shared/ not found: set ODIN_SHARED_DIR")


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def binary(name: str, profile: str = "debug") -> Path:
    path = target_dir() / profile / name
    if not path.exists():
        raise SystemExit(f"{path} missing: build it first (cargo build -p {name})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Checks:
    """Counts named checks and prints the plain 'N passed, M failed' summary."""

    def __init__(self, suite: str):
        self.suite = suite
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok   {what}")
        else:
            self.failed.append(what)
            print(f"  FAIL {what}" + (f": {detail}" if detail else ""))
        return ok

    def finish(self) -> int:
        print(f"{self.suite}: {self.passed} passed, {len(self.failed)} failed")
        for f in self.failed:
            print(f"  failed: {f}")
        return 1 if self.failed else 0


def http_get(url: str, headers: dict | None = None, timeout: float = 10.0):
    """Returns (status, headers, body bytes) without raising on HTTP errors."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_http(url: str, timeout: float = 30.0, want=(200,)) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            status, _, _ = http_get(url, timeout=2)
            if status in want:
                return
            last = status
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last})")


class Proc:
    """A child process that is always stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, argv: list[str], log: Path, env: dict | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=full_env, start_new_session=True)

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str):
    """Parses Prometheus text format into ({(name, labels): value}, {family: type})."""
    samples: dict[tuple[str, tuple], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            types[fam] = typ
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable exposition line: {line!r}")
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def family_of(name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name


def scrape(url: str):
    status, _, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return parse_exposition(body.decode())


def prom_query(base: str, expr: str):
    q = urllib.parse.urlencode({"query": expr})
    status, _, body = http_get(f"{base}/api/v1/query?{q}")
    data = json.loads(body)
    if data.get("status") != "success":
        raise RuntimeError(f"query {expr!r}: {data.get('error')}")
    return data["data"]["result"]


def gunzip(b: bytes) -> bytes:
    return gzip.decompress(b)


def log(msg: str) -> None:
    print(msg, flush=True)
    sys.stdout.flush()
