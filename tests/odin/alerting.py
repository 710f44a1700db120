"""Alertmanager and the webhook logger, for the tests of deploy/alertmanager/alertmanager.yml
(tests/test_alertmanager.py) and of alerts delivered end to end (tests/test_alerting.py).

    alertmanager_binary()   Debian's prometheus-alertmanager (or an `alertmanager` on PATH)
    amtool(*args)           amtool's CompletedProcess
    shorten(out, ...)       scripts/shorten-rules.py run into `out`: (rule files, AM config)
    Alertmanager            one on loopback (cluster port off), its API v2
    WebhookLogger           scripts/webhook-logger.py on loopback, its lines read back

Standard library only.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import REPO
from .exporters import Proc, free_port, wait_http

CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
SHORTEN = REPO / "scripts/shorten-rules.py"
LOGGER = REPO / "scripts/webhook-logger.py"


def alertmanager_binary() -> str:
    for name in ("alertmanager", "prometheus-alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("alertmanager not installed (Debian: prometheus-alertmanager; scripts/setup.sh)")


def amtool(*args, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["amtool", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def shorten(out: Path, webhook_url: str | None = None, factor: float = 60) -> tuple[list[Path], Path]:
    """The repository's rules and Alertmanager config with waiting times divided by `factor`
    (scripts/shorten-rules.py), written under `out`."""
    argv = [sys.executable, str(SHORTEN), "--out", str(out), "--factor", str(factor)]
    if webhook_url:
        argv += ["--webhook-url", webhook_url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"shorten-rules failed:\n{p.stdout}{p.stderr}"
    return sorted((out / "rules").glob("*.rules.yml")), out / "alertmanager.yml"


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Alertmanager:
    """An Alertmanager on a free loopback port with `config`, no cluster, state under `work`."""

    def __init__(self, config: Path, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        self.proc = Proc([alertmanager_binary(), f"--config.file={config}",
                          f"--storage.path={work / 'data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}",
                          "--cluster.listen-address=", "--log.level=debug"],
                         work / "alertmanager.log")
        wait_http(f"{self.url}/-/ready", timeout=30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, method: str, path: str, body=None, params: dict | None = None):
        qs = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/api/v2{path}{qs}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from None
        return json.loads(raw) if raw.strip() else None

    def post(self, alerts: list[dict], minutes: float = 10) -> None:
        """Posts alerts ({"labels": ..., "annotations": ...}) firing from now for `minutes`."""
        now = datetime.now(timezone.utc)
        self._call("POST", "/alerts", [
            {"labels": a["labels"], "annotations": a.get("annotations", {}),
             "startsAt": iso(now), "endsAt": iso(now + timedelta(minutes=minutes))}
            for a in alerts])

    def alerts(self, **labels) -> list[dict]:
        """Every alert Alertmanager holds (active, silenced and inhibited), or those whose
        labels include `labels`."""
        got = self._call("GET", "/alerts", params={"active": "true", "silenced": "true",
                                                   "inhibited": "true", "unprocessed": "true"})
        return [a for a in got if all(a["labels"].get(k) == v for k, v in labels.items())]

    def silences(self) -> list[dict]:
        return self._call("GET", "/silences")

    def stop(self) -> int:
        return self.proc.stop()


class WebhookLogger:
    """scripts/webhook-logger.py on a free loopback port, writing its lines to `work`."""

    def __init__(self, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.file = work / "notifications.jsonl"
        self.proc = Proc([sys.executable, str(LOGGER), f"--listen=127.0.0.1:{self.port}",
                          f"--file={self.file}"], work / "webhook-logger.log")
        wait_http(self.url, timeout=30)

    def records(self) -> list[dict]:
        """Every line written so far, in order."""
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text(encoding="utf-8").splitlines() if line]

    def wait_for(self, match, timeout: float = 30, since: int = 0) -> dict | None:
        """The first record from index `since` on for which match(record) is true, waiting up
        to `timeout` seconds; None if none came."""
        deadline = time.time() + timeout
        while True:
            for r in self.records()[since:]:
                if match(r):
                    return r
            if time.time() >= deadline:
                return None
            time.sleep(0.25)

    def stop(self) -> int:
        return self.proc.stop()
