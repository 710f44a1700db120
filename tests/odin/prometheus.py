"""One Prometheus HTTP client, and one stack: exporters plus a real Prometheus scraping them.

`Stack` is what the end-to-end tests' `stack` fixture (tests/conftest.py) starts: every target
on a free loopback port, a Prometheus (scrape and evaluation every second) loading rules/,
and it waits until Prometheus holds enough samples for rate() over the dashboards' windows.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO
from .exporters import Proc, free_port, http_get, wait_http


class Client:
    """Prometheus's HTTP API. `api` returns (data, error) and never raises; the helpers
    built on it raise RuntimeError with Prometheus's error message."""

    def __init__(self, url: str, timeout: float = 10):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def api(self, path: str, params: dict | None = None):
        qs = urllib.parse.urlencode(params or {}, doseq=True)
        req = urllib.request.Request(f"{self.url}{path}?{qs}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)
            except ValueError:
                return None, f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return None, str(e)
        if body.get("status") != "success":
            return None, f"{body.get('errorType', 'error')}: {body.get('error', '?')}"
        return body.get("data"), None

    def _must(self, path: str, params: dict | None = None):
        data, err = self.api(path, params)
        if err:
            raise RuntimeError(f"{path} {params or ''}: {err}")
        return data

    def query(self, expr: str) -> list[dict]:
        """An instant query's result (a vector: [{metric, value}])."""
        return self._must("/api/v1/query", {"query": expr})["result"]

    def rule_groups(self) -> list[dict]:
        return self._must("/api/v1/rules")["groups"]

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        params = {"match[]": match} if match else {}
        return self._must(f"/api/v1/label/{urllib.parse.quote(label)}/values", params)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_http(f"{self.url}/-/ready", timeout=timeout)

    def wait_query(self, expr: str, timeout: float = 30) -> list[dict]:
        """Repeats a query until it returns something (or the time is up); its last result."""
        deadline = time.time() + timeout
        while True:
            res = self.query(expr)
            if res or time.time() >= deadline:
                return res
            time.sleep(1)


@dataclass
class Target:
    """One process Prometheus scrapes: `argv` without --web.listen-address (the stack adds
    it), its environment, and the `host` label its target gets; `job`, where it is not the
    stack's."""
    host: str
    argv: list
    env: dict = field(default_factory=dict)
    port: int = 0
    proc: Proc | None = None
    job: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str = "/metrics", **kw):
        return http_get(f"http://{self.address}{path}", **kw)

    def metrics(self) -> str:
        status, _, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"{self.host}: /metrics answered HTTP {status}")
        return body.decode()


def rule_files() -> list[Path]:
    return sorted((REPO / "rules").glob("*.yml"))


class Stack:
    """Targets under one job (or each its own) plus a Prometheus loading every rule file of
    rules/ (or the `rules` given: tests/test_alerting.py's shortened copies), sending its
    alerts to `alertmanager` (HOST:PORT) when one is given."""

    def __init__(self, work: Path, job: str, targets: list[Target], min_samples: int = 8,
                 rules: list[Path] | None = None, alertmanager: str | None = None):
        self.work = work
        self.job = job
        self.targets = targets
        self.min_samples = min_samples
        self.rules = rules
        self.alertmanager = alertmanager
        self.prometheus: Proc | None = None
        self.client: Client | None = None
        self._rcs: dict[str, int] | None = None

    def __getitem__(self, host: str) -> Target:
        return next(t for t in self.targets if t.host == host)

    def start(self) -> None:
        for t in self.targets:
            t.port = free_port()
            t.proc = Proc([*t.argv, f"--web.listen-address={t.address}"],
                          self.work / f"{t.host}.log", env=t.env)
        rules = ", ".join(f"'{p}'" for p in (rule_files() if self.rules is None else self.rules))
        alerting = (f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{self.alertmanager}']\n"
                    if self.alertmanager else "")
        jobs: dict[str, list[Target]] = {}
        for t in self.targets:
            jobs.setdefault(t.job or self.job, []).append(t)
        scrape = "\n".join(
            f"  - job_name: {job}\n    static_configs:\n"
            + "\n".join(f"      - targets: ['{t.address}']\n        labels: {{host: {t.host}}}" for t in ts)
            for job, ts in jobs.items())
        config = self.work / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
{alerting}scrape_configs:
{scrape}
""")
        port = free_port()
        self.prometheus = Proc(["prometheus", f"--config.file={config}",
                                f"--storage.tsdb.path={self.work / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               self.work / "prometheus.log")
        self.client = Client(f"http://127.0.0.1:{port}")
        for t in self.targets:
            wait_http(f"http://{t.address}/ready", timeout=30)
        self.client.wait_ready(timeout=60)
        # Enough samples for rate() over the dashboards' windows.
        deadline = time.time() + 60
        while time.time() < deadline:
            res = self.client.query(f'count_over_time(up{{job=~"{"|".join(jobs)}"}}[1m])')
            if len(res) == len(self.targets) and min(float(r["value"][1]) for r in res) >= self.min_samples:
                break
            time.sleep(1)

    @property
    def url(self) -> str:
        return self.client.url

    def stop_exporters(self) -> dict[str, int]:
        """Stops every target (SIGTERM) and returns host -> exit status."""
        if self._rcs is None:
            self._rcs = {t.host: t.proc.stop() for t in self.targets if t.proc}
        return self._rcs

    def stop(self) -> None:
        self.stop_exporters()
        if self.prometheus:
            self.prometheus.stop()

    def tails(self) -> str:
        procs = [t.proc for t in self.targets if t.proc] + ([self.prometheus] if self.prometheus else [])
        return "\n".join(p.tail() for p in procs)
