"""Starting ODIN's binaries (and the other processes the tests need) and stopping them again.

Every process started here is stopped (SIGTERM, then SIGKILL) by `Proc.stop()`, which the
context manager and the stack fixture call; its output goes to a log file for failures.
"""
from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import target_dir


class BinaryMissing(FileNotFoundError):
    pass


def binary(name: str, profile: str = "debug") -> Path:
    """target/<profile>/<name>; BinaryMissing (with the command that builds it) if absent."""
    path = target_dir() / profile / name
    if not path.exists():
        raise BinaryMissing(f"{path} missing: build it first (cargo build --workspace --bins --examples)")
    return path


def example(name: str, profile: str = "debug") -> Path:
    path = target_dir() / profile / "examples" / name
    if not path.exists():
        raise BinaryMissing(f"{path} missing: build it first (cargo build --workspace --bins --examples)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def gunzip(b: bytes) -> bytes:
    return gzip.decompress(b)


class Proc:
    """A child process in its own session, always stopped (SIGTERM, then SIGKILL) by stop()."""

    def __init__(self, argv: list, log: Path, env: dict | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=full_env, start_new_session=True)
        self.returncode: int | None = None

    def stop(self, timeout: float = 10.0) -> int:
        """Stops the process (if it still runs) and returns its exit status."""
        if self.returncode is not None:
            return self.returncode
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        self.returncode = self.p.returncode
        return self.returncode

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log_path} (tail)\n{self.output()[-chars:]}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_once(name: str, args: list, timeout: float = 30) -> subprocess.CompletedProcess:
    """`<name> --once ARGS`: one exposition on stdout (the binary from target/debug)."""
    return subprocess.run([str(binary(name)), "--once", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
