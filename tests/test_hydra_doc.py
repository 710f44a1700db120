"""docs/hydra.md against the repository: the scrape snippet a Hydra operator pastes into an
existing static configuration must name every exporter of exporters.toml with its job name
and port, must make a configuration that promtool accepts together with ODIN's rules, and
the page must list every dashboard there is.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from odin import REPO, manifest

DOC = REPO / "docs/hydra.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def snippet_jobs() -> list[dict]:
    """The scrape snippet: the block of job entries (indented as they sit under
    scrape_configs:)."""
    blocks = [b for b in yaml_blocks() if "job_name:" in b]
    assert len(blocks) == 1, f"docs/hydra.md: one scrape snippet expected, found {len(blocks)}"
    jobs = yaml.safe_load("scrape_configs:\n" + blocks[0])["scrape_configs"]
    assert isinstance(jobs, list) and jobs
    return jobs


def test_one_job_per_exporter_with_its_name_and_port():
    jobs = {j["job_name"]: j for j in snippet_jobs()}
    assert sorted(jobs) == sorted(manifest.names())
    for name in manifest.names():
        port = int(manifest.get(name)["port"])
        targets = [t for sc in jobs[name]["static_configs"] for t in sc["targets"]]
        assert targets, name
        for t in targets:
            assert t.rsplit(":", 1)[1] == str(port), f"{name}: {t} is not on port {port}"
    gpu = [t for sc in jobs["gpu-exporter"]["static_configs"] for t in sc["targets"]]
    assert all(t.endswith(":9835") for t in gpu), "Hydra's GPU queries expect port 9835"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_snippet_makes_a_configuration_promtool_accepts(tmp_path: Path):
    rules = tmp_path / "odin-rules"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests", "*.sh", "*.md"))
    rule_blocks = [b for b in yaml_blocks() if "rule_files:" in b]
    assert len(rule_blocks) == 1
    config = {
        "global": {"scrape_interval": "15s", "scrape_timeout": "10s"},
        # What Hydra already scrapes stays as it is; one stand-in job here.
        "scrape_configs": [{"job_name": "hydra-existing", "static_configs": [{"targets": ["hydra-gpu-01:9100"]}]}]
        + snippet_jobs(),
        **yaml.safe_load(rule_blocks[0]),
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    p = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    rule_files = sorted(rules.glob("*.rules.yml"))
    assert rule_files, "no rule file copied"
    for f in rule_files:
        assert f.name in p.stdout + p.stderr, f"{f.name} not loaded:\n{p.stdout}{p.stderr}"


def test_every_dashboard_listed_with_its_title():
    text = DOC.read_text()
    for f in sorted((REPO / "dashboards").glob("*.json")):
        title = json.loads(f.read_text())["title"]
        row = re.search(rf"^\| \[dashboards/{re.escape(f.name)}\]\([^)]*\) \| ([^|]+) \|", text, flags=re.M)
        assert row, f"docs/hydra.md does not list dashboards/{f.name}"
        assert row.group(1).strip() == title, f"{f.name}: listed as {row.group(1).strip()!r}, titled {title!r}"


def test_port_table_matches_the_manifest():
    text = DOC.read_text()
    for name in manifest.names():
        port = manifest.get(name)["port"]
        assert re.search(rf"^\| {re.escape(name)} \| {port} \|", text, flags=re.M), f"{name} {port}"
