"""Every exporter is complete: for each crate under exporters/ in the Cargo workspace, its
manifest entry (exporters.toml), metric reference section, rules with tests and runbooks,
dashboard, Kubernetes base, systemd unit, scrape job, README row and docs page
(odin.layout). Fast: no binary runs, except the prefix check on a debug binary already built.

The checker itself is tested on a small synthetic repository: complete, it passes; without
any one piece, it says which.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from odin import manifest, target_dir
from odin.layout import prefix_problems, problems, workspace_exporters


def test_every_exporter_is_complete():
    found = problems()
    assert not found, "\n".join(found)


def test_workspace_has_exporters():
    assert workspace_exporters(), "no crate under exporters/ in Cargo.toml's workspace members"


@pytest.mark.parametrize("name", manifest.names())
def test_manifest_prefix_is_what_the_binary_serves(name):
    binary = target_dir() / "debug" / name
    if not binary.exists():
        pytest.skip(f"{binary} not built (test-all's build suite builds it)")
    e = manifest.get(name)
    p = subprocess.run([str(binary), "--once"],
                       capture_output=True, text=True, timeout=60)
    found = prefix_problems(name, e["prefix"], p.stdout)
    assert not found, "\n".join(found) + f"\n(exit {p.returncode}) {p.stderr[-1000:]}"


# ------------------------------------------------------------------ the checker can fail

NAME, SHORT, PORT = "demo-exporter", "demo", 19999
HOST = 'network = false\npid = false\nprocfs = false\nsysfs = false\ndevices = []\ngpu_runtime = false\n'
TREE = {
    "Cargo.toml": '[workspace]\nmembers = ["common", "exporters/demo-exporter"]\n',
    "exporters/demo-exporter/Cargo.toml": '[package]\nname = "demo-exporter"\n',
    "exporters.toml": f'[[exporter]]\nname = "{NAME}"\nport = {PORT}\nprefix = "demo"\nshort = "{SHORT}"\n'
                      f'run_args = []\n[exporter.host]\n{HOST}',
    "docs/metrics.md": "# Metric reference\n\n## demo-exporter (prefix `demo`, port 19999)\n\n"
                       "| name | type | labels | source | meaning |\n|---|---|---|---|---|\n"
                       "| `demo_things` | gauge | | demo | Things. |\n",
    "rules/demo.rules.yml": "groups:\n  - name: demo\n    rules:\n      - alert: DemoDown\n        expr: up == 0\n",
    "rules/tests/demo.test.yml": "rule_files: [../demo.rules.yml]\ntests: []\n",
    "docs/runbooks.md": "# Runbooks\n\n## DemoDown\n\nStart it.\n",
    "dashboards/demo.json": "{}\n",
    "deploy/kubernetes/base/demo-exporter/daemonset.yaml": "kind: DaemonSet\n",
    "deploy/kubernetes/base/kustomization.yaml": "resources:\n  - demo-exporter/daemonset.yaml\n",
    "deploy/systemd/demo-exporter.service": "[Service]\nExecStart=/usr/local/bin/demo-exporter\n",
    "deploy/prometheus/prometheus.yml": "scrape_configs:\n  - job_name: demo-exporter\n",
    "README.md": "# X\n\n| exporter | port | status |\n|---|---|---|\n| [demo-exporter](docs/demo-exporter.md) | 19999 | ready |\n",
    "docs/demo-exporter.md": "# demo-exporter\n",
}


def make_tree(root, drop=None, replace=None):
    for rel, text in TREE.items():
        if rel == drop:
            continue
        if replace and rel in replace:
            text = replace[rel]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_complete_tree_passes(tmp_path):
    assert problems(make_tree(tmp_path)) == []


# One case per required piece: (file left out or rewritten, words the problem must contain).
MISSING = {
    "manifest entry": ({"exporters.toml": ""}, "no [[exporter]] entry"),
    "metrics.md section": ({"docs/metrics.md": "# Metric reference\n"}, "docs/metrics.md"),
    "rules file": ("rules/demo.rules.yml", "rules/demo.rules.yml"),
    "rule tests": ("rules/tests/demo.test.yml", "rules/tests/demo.test.yml"),
    "runbook section": ({"docs/runbooks.md": "# Runbooks\n"}, "## DemoDown"),
    "dashboard": ("dashboards/demo.json", "dashboards/demo.json"),
    "kubernetes base": ("deploy/kubernetes/base/demo-exporter/daemonset.yaml", "deploy/kubernetes/base/demo-exporter"),
    "kustomization entry": ({"deploy/kubernetes/base/kustomization.yaml": "resources: []\n"}, "does not list"),
    "systemd unit": ("deploy/systemd/demo-exporter.service", "deploy/systemd/demo-exporter.service"),
    "scrape job": ({"deploy/prometheus/prometheus.yml": "scrape_configs: []\n"}, "no job demo-exporter"),
    "README row": ({"README.md": "# X\n\n| exporter | port | status |\n|---|---|---|\n"}, "README"),
    "README port": ({"README.md": TREE["README.md"].replace("19999", "19998")}, "port 19998"),
    "docs page": ("docs/demo-exporter.md", "docs/demo-exporter.md"),
}


@pytest.mark.parametrize("case", MISSING)
def test_checker_reports_a_missing_piece(tmp_path, case):
    change, words = MISSING[case]
    root = make_tree(tmp_path, drop=change if isinstance(change, str) else None,
                     replace=change if isinstance(change, dict) else None)
    found = problems(root)
    assert found and any(words in p for p in found), found


def test_checker_reports_a_manifest_entry_without_crate(tmp_path):
    root = make_tree(tmp_path)
    shutil.rmtree(root / "exporters")
    (root / "Cargo.toml").write_text('[workspace]\nmembers = ["common"]\n')
    assert any("not a workspace member" in p for p in problems(root))


def test_prefix_check_fails_on_another_prefix():
    out = "# TYPE other_exporter_build_info gauge\nother_exporter_build_info{version=\"1\"} 1\n"
    assert prefix_problems("demo-exporter", "demo", out)
    assert not prefix_problems("demo-exporter", "other", out)
