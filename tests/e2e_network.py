#!/usr/bin/env python3
"""End to end: a real Prometheus scrapes the real network-exporter binary.

Two exporters run: one on the live host, one on the fixture tree (which has a wireless
interface, so every dashboard panel has something to show), both probing DNS against a real
dnsmasq on loopback. Prometheus loads every rule file of rules/. Then:
- both targets are up, every rule group loaded, no rule evaluation errors;
- `promtool check metrics` prints nothing for either exporter's output;
- every metric a rule or a dashboard references exists in the live output;
- every dashboard query (and template variable) returns data;
- the exporter exits 0 on SIGTERM.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from odintest import (REPO, Checks, Proc, binary, free_port, http_get, prom_query,  # noqa: E402
                      parse_exposition, family_of, wait_http)

FIXTURE = REPO / "exporters/network-exporter/tests/fixtures/host-a"


def rule_files() -> list[Path]:
    return sorted(p for p in (REPO / "rules").glob("*.yml"))


def metrics_in_promql(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (ours only: prefixed names)."""
    return set(re.findall(r"\b(network_[a-z0-9_]+)", expr))


def normalize(name: str, families: set[str]) -> str:
    """Maps a histogram's series name (`x_bucket`) to its family (`x`) when that family exists."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


def rule_exprs() -> list[str]:
    exprs = []
    for f in rule_files():
        text = f.read_text()
        # Rule files are YAML; expressions are either one line or a literal block.
        for m in re.finditer(r"^(\s*)expr:\s*(\|[-+]?\s*\n((?:\1\s+.*\n?)+)|(.*))$", text, re.M):
            exprs.append(m.group(3) or m.group(4) or "")
    return exprs


def documented(section_title: str, prefix: str) -> dict[str, tuple[str, set[str]]]:
    """Rows of docs/metrics.md under a '## ' section: name -> (type, labels)."""
    text = (REPO / "docs/metrics.md").read_text()
    rows: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            continue
        if current is None or not current.startswith(section_title):
            continue
        m = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", line)
        if m:
            name = m.group(1).replace("<prefix>", prefix)
            labels = {l.strip() for l in m.group(3).split(",") if l.strip()}
            rows[name] = (m.group(2), labels)
    return rows


def metrics_doc_problems(text: str) -> list[str]:
    """Differences between docs/metrics.md and what the exporter serves."""
    docs = documented("Shared by every exporter", "network") | documented("network-exporter", "network")
    samples, types = parse_exposition(text)
    seen: dict[str, set[str]] = {}
    for (name, labels) in samples:
        fam = family_of(name, types)
        seen.setdefault(fam, set()).update(k for k, _ in labels if k != "le")
    problems = []
    for fam, labels in sorted(seen.items()):
        if fam not in docs:
            problems.append(f"{fam} is served but not documented")
            continue
        typ, doc_labels = docs[fam]
        if types.get(fam) != typ:
            problems.append(f"{fam}: documented as {typ}, served as {types.get(fam)}")
        if labels != doc_labels:
            problems.append(f"{fam}: documented labels {sorted(doc_labels)}, served {sorted(labels)}")
    for fam in sorted(set(docs) - set(seen)):
        problems.append(f"{fam} is documented but not served")
    return problems


def main() -> int:
    c = Checks("e2e-network")
    exporter = binary("network-exporter")
    work = Path(tempfile.mkdtemp(prefix="odin-e2e-"))
    dns_port, live_port, fix_port, prom_port = free_port(), free_port(), free_port(), free_port()

    dnsmasq = Proc(["/usr/sbin/dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                    "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={dns_port}",
                    "--local=/odin.test/", "--address=/ok.odin.test/127.0.0.9", "--user=root",
                    "--pid-file="], work / "dnsmasq.log")
    deadline = time.time() + 10
    while "started" not in dnsmasq.output() and time.time() < deadline:
        time.sleep(0.05)
    dns_flags = ["--dns.probe-name=ok.odin.test", "--dns.probe-name=missing.odin.test",
                 f"--dns.server=127.0.0.1:{dns_port}", "--dns.interval=1s", "--dns.timeout=1s"]
    live = Proc([exporter, f"--web.listen-address=127.0.0.1:{live_port}", *dns_flags],
                work / "live.log")
    fixture = Proc([exporter, f"--web.listen-address=127.0.0.1:{fix_port}",
                    f"--path.procfs={FIXTURE / 'proc'}", f"--path.sysfs={FIXTURE / 'sys'}",
                    *dns_flags], work / "fixture.log")
    rules = ", ".join(f"'{p}'" for p in rule_files())
    (work / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: network-exporter
    static_configs:
      - targets: ['127.0.0.1:{live_port}']
        labels: {{host: live}}
      - targets: ['127.0.0.1:{fix_port}']
        labels: {{host: fixture}}
""")
    prom = Proc(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                work / "prometheus.log")
    base = f"http://127.0.0.1:{prom_port}"
    try:
        for port in (live_port, fix_port):
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=30)
        wait_http(f"{base}/-/ready", timeout=60)
        # Let Prometheus take enough samples for rate() over the dashboards' windows.
        deadline = time.time() + 60
        while time.time() < deadline:
            res = prom_query(base, 'count_over_time(up{job="network-exporter"}[1m])')
            if len(res) == 2 and min(float(r["value"][1]) for r in res) >= 8:
                break
            time.sleep(1)

        ups = prom_query(base, 'up{job="network-exporter"}')
        c.check(len(ups) == 2 and all(r["value"][1] == "1" for r in ups),
                "Prometheus scrapes both exporters (up == 1)", str(ups))

        status, _, body = http_get(f"{base}/api/v1/rules")
        import json
        groups = json.loads(body)["data"]["groups"]
        loaded = sum(len(g["rules"]) for g in groups)
        declared = sum(len(re.findall(r"^\s*- (alert|record):", f.read_text(), re.M))
                       for f in rule_files())
        c.check(loaded == declared and loaded > 0,
                f"every rule of rules/*.yml loaded ({loaded}/{declared})")
        bad = [r["name"] for g in groups for r in g["rules"] if r.get("health") not in ("ok", None)]
        c.check(not bad, "no rule evaluation errors", str(bad))

        live_text = http_get(f"http://127.0.0.1:{live_port}/metrics")[2].decode()
        fix_text = http_get(f"http://127.0.0.1:{fix_port}/metrics")[2].decode()
        for name, text in (("live", live_text), ("fixture", fix_text)):
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True)
            findings = (p.stdout + p.stderr).decode().strip()
            c.check(p.returncode == 0 and not findings,
                    f"promtool check metrics is silent on the {name} exporter", findings)

        live_fams = set()
        for text in (live_text, fix_text):
            samples, types = parse_exposition(text)
            live_fams |= {family_of(n, types) for (n, _) in samples}
        wanted_by_rules = {normalize(m, live_fams)
                           for m in set().union(*(metrics_in_promql(e) for e in rule_exprs()))}
        missing = sorted(wanted_by_rules - live_fams)
        c.check(not missing and bool(wanted_by_rules),
                f"every metric the rules use exists ({len(wanted_by_rules)} names)", str(missing))

        p = subprocess.run([sys.executable, str(REPO / "tests/dashboard_queries.py"), "--list-metrics"],
                           capture_output=True, text=True)
        dash_metrics = {normalize(m, live_fams) for m in p.stdout.split() if m.startswith("network_")}
        missing = sorted(dash_metrics - live_fams)
        c.check(p.returncode == 0 and bool(dash_metrics) and not missing,
                f"every metric the dashboards use exists ({len(dash_metrics)} names)",
                str(missing) + p.stderr)

        problems = metrics_doc_problems(live_text + "\n" + fix_text)
        c.check(not problems, "docs/metrics.md matches the live output (names, types, labels)",
                "\n    ".join(problems))

        p = subprocess.run([sys.executable, str(REPO / "tests/dashboard_queries.py"),
                            "--prometheus", base, "--rate-interval", "1m", "--wait", "60",
                            "--allow-empty", "dashboards/e2e-allow-empty.tsv",
                            "dashboards/network.json", "dashboards/overview.json"],
                           capture_output=True, text=True, cwd=REPO)
        print(p.stdout)
        c.check(p.returncode == 0, "every dashboard query returns data", p.stderr[-2000:])
    finally:
        rc_live = live.stop()
        rc_fix = fixture.stop()
        prom.stop()
        dnsmasq.stop()
    c.check(rc_live == 0 and rc_fix == 0, "exporters exit 0 on SIGTERM", f"{rc_live} {rc_fix}")
    if c.failed:
        for p in (live, fixture, prom):
            print(f"--- {p.log_path} (tail)")
            print(p.output()[-3000:])
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
