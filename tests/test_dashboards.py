"""The Grafana dashboards (dashboards/*.json) without a real exporter: valid JSON, the lint of
odin.dashboards (and that it catches broken panels), the metric list, and every query run
against a real Prometheus scraping a stand-in exporter that serves each metric of
docs/metrics.md (odin.docexporter): the dashboards only need what the reference promises.
The end-to-end tests run the same queries against the real binaries.
"""
from __future__ import annotations

import json
import re

import pytest

from odin import REPO, dashboards, manifest
from odin.docexporter import DocExporter
from odin.exporters import Proc
from odin.prometheus import Client
from odin.exporters import free_port

FILES = dashboards.default_files()
ALLOW_LISTS = sorted(p.name for p in (REPO / "dashboards").glob("e2e-allow-empty*.tsv"))


def run(capsys, *argv):
    rc = dashboards.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_valid_json(path):
    json.loads(open(path, encoding="utf-8").read())


@pytest.mark.parametrize("allow", ALLOW_LISTS)
def test_lint(capsys, allow):
    """datasource ${datasource}, unique ids, $instance everywhere, names in docs/metrics.md,
    and every entry of the end-to-end allow-list names a panel."""
    rc, out = run(capsys, "--lint", "--allow-empty", REPO / "dashboards" / allow)
    assert rc == 0, out


def test_lint_catches_broken_panels(capsys, tmp_path):
    """A panel on a fixed datasource, a duplicate id, a query without $instance and an
    undocumented metric are all reported."""
    d = json.loads((REPO / "dashboards/network.json").read_text())
    p = [x for x in d["panels"] if x["type"] != "row"]
    p[0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    p[1]["id"] = p[0]["id"]
    p[2]["targets"][0]["expr"] = "rate(network_receive_bytes_total[5m])"
    p[3]["targets"][0]["expr"] = 'network_no_such_metric{instance=~"$instance", device=~"$device"}'
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(d))
    rc, out = run(capsys, "--lint", broken)
    assert rc != 0
    for finding in ("not ${datasource}", "panel id", "does not use $instance",
                    "network_no_such_metric is not in docs/metrics.md"):
        assert finding in out, f"lint did not report {finding!r}:\n{out}"


def test_list_metrics(capsys):
    rc, out = run(capsys, "--list-metrics")
    names = out.split()
    assert rc == 0
    assert "network_receive_bytes_total" in names
    assert "network_dns_lookup_duration_seconds_bucket" in names
    assert "up" not in names


@pytest.fixture(scope="module")
def doc_prometheus(tmp_path_factory):
    """A real Prometheus scraping the stand-in under every exporter's job name, with one alert
    that always fires (so the ALERTS panels have data too)."""
    work = tmp_path_factory.mktemp("dashboards")
    job = manifest.names()[0]
    (work / "rules.yml").write_text(f"""groups:
  - name: selftest
    rules:
      - alert: SelfTestAlwaysFiring
        expr: up{{job="{job}"}} == 1
        labels:
          severity: info
""")
    with DocExporter() as stand_in:
        jobs = "".join(f"""  - job_name: {name}
    static_configs:
      - targets: ["127.0.0.1:{stand_in.port}"]
""" for name in manifest.names())
        (work / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
{jobs}""")
        port = free_port()
        with Proc(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                   f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                   "--log.level=warn"], work / "prometheus.log") as prom:
            client = Client(f"http://127.0.0.1:{port}")
            try:
                client.wait_ready(timeout=60)
            except TimeoutError:
                pytest.fail(prom.tail())
            yield client.url


def test_every_query_returns_data_from_the_documented_metrics(capsys, doc_prometheus):
    rc, out = run(capsys, "--prometheus", doc_prometheus, "--rate-interval", "5s", "--wait", "30")
    assert rc == 0, "\n".join(ln for ln in out.splitlines() if not ln.startswith("OK"))


def test_allow_empty_excuses_exactly_the_listed_panels(capsys, doc_prometheus, tmp_path):
    """A device that does not exist empties the device panels: reported, exit 1, unless each
    of those panels is in an --allow-empty file."""
    rc, out = run(capsys, "--prometheus", doc_prometheus, "--rate-interval", "5s",
                  "--var", "device=no-such-device")
    assert rc != 0, "no failure for an unknown device"
    assert re.search(r'^EMPTY   odin-network "Receive throughput" A', out, re.M), out
    entries = sorted({f"{m.group(1)}\t{m.group(2)}\tselftest: device absent"
                      for m in re.finditer(r'^EMPTY   (\S+) "(.*)" [A-Z]*: ', out, re.M)})
    allow = tmp_path / "allow.tsv"
    allow.write_text("\n".join(entries) + "\n")
    rc, out = run(capsys, "--prometheus", doc_prometheus, "--rate-interval", "5s",
                  "--var", "device=no-such-device", "--allow-empty", allow)
    assert rc == 0, out
    assert re.search(r'^ALLOWED odin-network "Receive throughput" A', out, re.M), out
