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

from odin import REPO, dashboards, manifest, promql
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


def test_select_by_prefix_splits_the_claude_code_dashboard():
    """dashboards/token.json holds token-collector's panels (llm_) and claude-process-exporter's
    (claude_): each panel query goes to exactly one exporter's end-to-end run; the $instance
    variable (a __name__ regex, no exporter's own) to both."""
    d = dashboards.load([str(REPO / "dashboards/token.json")])[0]
    llm = {id(q) for q in dashboards.select_by_prefix(d, "llm")}
    claude = {id(q) for q in dashboards.select_by_prefix(d, "claude")}
    for q in d.queries:
        if q.kind == "panel":
            assert (id(q) in llm) != (id(q) in claude), f"{q.where()} in {'both' if id(q) in llm else 'neither'}"
    titles = {p: {q.title for q in d.queries if id(q) in ids} for p, ids in (("llm", llm), ("claude", claude))}
    assert "Cost today" in titles["llm"] and "Cost today" not in titles["claude"]
    assert "CPU per instance" in titles["claude"] and "CPU per instance" not in titles["llm"]
    assert "$instance" in titles["llm"] and "$instance" in titles["claude"]
    assert [q.title for q in dashboards.select_by_prefix(d, "network")] == ["$instance"]


def test_query_prefixes_knows_compatibility_names():
    """DCGM_FI_* names belong to gpu-exporter (its section of docs/metrics.md), Prometheus's own
    series and __name__ regexes to none."""
    q = dashboards.Query("x", "t", "A", 'DCGM_FI_DEV_GPU_TEMP{instance=~"$instance"} '
                                        '+ on () group_left count(up{instance=~"$instance"}) '
                                        '+ on () group_left count({__name__=~".+_collector_success"})')
    assert dashboards.query_prefixes(q) == {"nvidia_gpu"}


def test_query_prefixes_counts_an_exact_job_as_its_exporters():
    """`up{job="<name>"}` needs that exporter's run (the overview's health panels); a job regex
    names none, and a job of no exporter of exporters.toml is nobody's."""
    for e in manifest.load():
        q = dashboards.Query("x", "t", "A", f'max by (instance) (up{{job="{e["name"]}", instance=~"$instance"}})')
        assert dashboards.query_prefixes(q) == {e["prefix"]}, e["name"]
    for expr in ('up{job=~".*exporter.*|token-collector", instance=~"$instance"}',
                 'up{job="prometheus", instance=~"$instance"}', 'up{job!="gpu-exporter", instance=~"$instance"}'):
        assert dashboards.query_prefixes(dashboards.Query("x", "t", "A", expr)) == set(), expr


def test_lint_catches_a_query_of_two_exporters(capsys, tmp_path):
    d = json.loads((REPO / "dashboards/token.json").read_text())
    p = next(x for x in d["panels"] if x.get("title") == "Cost today")
    p["targets"][0]["expr"] = ('sum(llm_day_cost_usd{instance=~"$instance"}) '
                               '/ sum(claude_instances{instance=~"$instance"})')
    broken = tmp_path / "two.json"
    broken.write_text(json.dumps(d))
    rc, out = run(capsys, "--lint", broken)
    assert rc != 0 and "several exporters (claude, llm)" in out, out


def test_prefix_must_be_an_exporters(capsys):
    with pytest.raises(SystemExit):
        dashboards.main(["--prefix", "no_such_prefix", str(REPO / "dashboards/token.json")])
    assert "no exporter of exporters.toml" in capsys.readouterr().err


def test_list_metrics(capsys):
    rc, out = run(capsys, "--list-metrics")
    names = out.split()
    assert rc == 0
    assert "network_receive_bytes_total" in names
    assert "network_dns_lookup_duration_seconds_bucket" in names
    assert "up" not in names


# ------------------------------------------------------------------ the overview

INSTANCE_IN_URL = re.compile(r"[?&](?:\$\{instance:queryparam\}|var-instance=\$\{?instance\b)")


def overview_rows(data):
    """[(row panel, panels under it)] as Grafana shows them: a collapsed row holds its panels,
    an open one is followed by the top-level panels below it, up to the next row."""
    rows = []
    for p in sorted(data["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if p.get("type") == "row":
            rows.append((p, list(p.get("panels") or [])))
        elif rows:
            rows[-1][1].append(p)
    return rows


def overview_problems(data):
    """What keeps the overview from being the single pane exporters.toml asks for: for every
    exporter a row whose panels read that exporter alone (its metrics, or `job="<name>"`), among
    them a health panel (`up{job="<name>"}` and `<prefix>_collector_success`), and a link to the
    exporter's dashboard (exporters.toml's `dashboard`) that carries $instance there, which must
    have an `instance` variable; and a panel of firing alerts."""
    owners = dashboards.metric_owners()
    problems = []
    rows = overview_rows(data)

    def prefixes(panel):
        out = set()
        for t in panel.get("targets") or []:
            if t.get("expr"):
                out |= dashboards.query_prefixes(dashboards.Query("odin-overview", panel.get("title", ""),
                                                                  t.get("refId", ""), t["expr"]), owners)
        return out

    def names(panel):
        return [(set(promql.metric_names(t["expr"])[0]), set(dashboards.JOB_MATCHER.findall(t["expr"])))
                for t in panel.get("targets") or [] if t.get("expr")]

    for e in manifest.load():
        name, prefix = e["name"], e["prefix"]
        target = json.loads((REPO / "dashboards" / f"{e['dashboard']}.json").read_text())
        if not any(v.get("name") == "instance" for v in target.get("templating", {}).get("list", [])):
            problems.append(f"dashboards/{e['dashboard']}.json ({name}'s) has no `instance` variable to link to")
        mine = [(row, panels) for row, panels in rows
                if panels and all(prefixes(p) == {prefix} for p in panels)]
        if not mine:
            problems.append(f"{name}: no row whose panels all read {name} alone")
            continue
        row, panels = mine[0]
        where = f'{name}: row "{row.get("title")}"'
        if not any(any("up" in n and name in jobs for n, jobs in names(p))
                   and any(f"{prefix}_collector_success" in n for n, _ in names(p)) for p in panels):
            problems.append(f'{where} has no health panel (up{{job="{name}"}} and {prefix}_collector_success)')
        urls = [link.get("url", "") for p in panels for link in p.get("links") or []]
        if not any(f"/d/{target['uid']}" in u and INSTANCE_IN_URL.search(u) for u in urls):
            problems.append(f"{where} links to no /d/{target['uid']} with the instance kept "
                            f"(${{instance:queryparam}} or var-instance=$instance): {urls}")
    if not any('ALERTS{alertstate="firing"' in (t.get("expr") or "").replace(" ", "")
               for _, panels in rows for p in panels for t in p.get("targets") or []):
        problems.append("no panel of firing alerts")
    return problems


def test_overview_has_a_row_per_exporter():
    """dashboards/overview.json: a row per exporter of exporters.toml with its health, its
    headline values and a link into its dashboard that keeps the instance."""
    data = json.loads((REPO / "dashboards/overview.json").read_text())
    assert not overview_problems(data), "\n".join(overview_problems(data))


def test_overview_check_catches_a_missing_link_health_panel_and_row():
    """The check above fails on an overview that loses a link, a health query or a whole row."""
    data = json.loads((REPO / "dashboards/overview.json").read_text())
    first, last = manifest.load()[0], manifest.load()[-1]
    rows = overview_rows(data)
    for _, panels in rows:
        for p in panels:
            for t in p.get("targets") or []:
                t["expr"] = t["expr"].replace(f'up{{job="{first["name"]}"', 'up{job="elsewhere"')
            for link in p.get("links") or []:
                link["url"] = link["url"].replace("${instance:queryparam}", "")
    last_row = next(i for i, (row, panels) in enumerate(rows)
                    if panels and all(last["prefix"] + "_" in json.dumps(p.get("targets")) for p in panels))
    data["panels"] = [p for p in data["panels"] if p not in rows[last_row][1]]
    found = "\n".join(overview_problems(data))
    assert f'{first["name"]}: row' in found and "no health panel" in found, found
    assert "with the instance kept" in found, found
    assert f"{last['name']}: no row" in found, found


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


@pytest.mark.parametrize("prefix", ["llm", "claude"])
def test_prefix_runs_only_that_exporters_queries(capsys, doc_prometheus, prefix):
    """What the end-to-end tests call (check_prefix_queries): the Claude Code dashboard's
    queries of one exporter, every one with data, none of the other's."""
    rc = dashboards.check_prefix_queries(doc_prometheus, prefix, [REPO / "dashboards/token.json"],
                                         wait=30, rate_interval="5s")
    out = capsys.readouterr().out
    assert rc == 0, "\n".join(ln for ln in out.splitlines() if not ln.startswith("OK"))
    mine, other = ('"Cost today"', '"CPU per instance"') if prefix == "llm" else ('"CPU per instance"', '"Cost today"')
    assert mine in out and other not in out, out


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
