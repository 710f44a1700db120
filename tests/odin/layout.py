"""What every exporter must have in the repository (docs/adding-an-exporter.md lists the same,
in the order to write it). `problems(root)` returns one line per missing piece, for every
crate under exporters/ in the Cargo workspace and every exporter of exporters.toml.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from . import REPO, metricsdoc
from . import manifest as manifest_mod


def workspace_exporters(root: Path = REPO) -> list[str]:
    """The crates of the Cargo workspace under exporters/ (their directory names)."""
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    out = []
    for m in members:
        if m.startswith("exporters/"):
            if "*" in m:
                out += sorted(p.name for p in root.glob(m) if (p / "Cargo.toml").exists())
            else:
                out.append(m.split("/", 1)[1])
    return out


def _yaml(path: Path):
    import yaml
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def readme_rows(root: Path) -> dict[str, str]:
    """The README's exporter table: exporter name -> port column."""
    rows, in_table = {}, False
    for line in (root / "README.md").read_text(encoding="utf-8").splitlines():
        if re.match(r"^\|\s*exporter\s*\|\s*port\s*\|", line):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            m = re.match(r"^\[?([a-z0-9-]+)\]?", cells[0])
            if m and len(cells) > 1:
                rows[m.group(1)] = cells[1]
    return rows


def exporter_problems(root: Path, name: str, entry: dict | None) -> list[str]:
    """Every piece exporter `name` lacks (entry: its manifest entry, None if absent)."""
    if entry is None:
        return [f"{name}: no [[exporter]] entry in exporters.toml"]
    short, out = entry["short"], []

    def need(ok: bool, what: str):
        if not ok:
            out.append(f"{name}: {what}")

    need((root / "exporters" / name / "Cargo.toml").exists(), f"no crate exporters/{name}/")
    need(metricsdoc.section_of(name, root / "docs/metrics.md") is not None,
         f"no section '## {name} ...' in docs/metrics.md")
    rules = root / "rules" / f"{short}.rules.yml"
    need(rules.exists(), f"no rules file rules/{short}.rules.yml")
    need((root / "rules" / "tests" / f"{short}.test.yml").exists(), f"no rule tests rules/tests/{short}.test.yml")
    if rules.exists():
        alerts = [r["alert"] for g in _yaml(rules).get("groups", []) or [] for r in g.get("rules", []) or []
                  if "alert" in r]
        headings = {ln[3:].strip() for ln in (root / "docs/runbooks.md").read_text(encoding="utf-8").splitlines()
                    if ln.startswith("## ")}
        for a in alerts:
            need(a in headings, f"alert {a} has no section '## {a}' in docs/runbooks.md")
    board = entry.get("dashboard", short)
    need((root / "dashboards" / f"{board}.json").exists(), f"no dashboard dashboards/{board}.json")
    base = root / "deploy/kubernetes/base"
    need((base / name / "daemonset.yaml").exists(), f"no Kubernetes base deploy/kubernetes/base/{name}/daemonset.yaml")
    if (base / "kustomization.yaml").exists():
        resources = _yaml(base / "kustomization.yaml").get("resources", []) or []
        need(f"{name}/daemonset.yaml" in resources,
             f"deploy/kubernetes/base/kustomization.yaml does not list {name}/daemonset.yaml")
    need((root / "deploy/systemd" / f"{name}.service").exists(), f"no systemd unit deploy/systemd/{name}.service")
    prom = root / "deploy/prometheus/prometheus.yml"
    jobs = [j.get("job_name") for j in (_yaml(prom).get("scrape_configs", []) or [])] if prom.exists() else []
    need(name in jobs, f"no job {name} in deploy/prometheus/prometheus.yml")
    readme = readme_rows(root)
    need(name in readme, "no row in the README's exporter table")
    if name in readme:
        need(readme[name] == str(entry["port"]), f"README's table gives port {readme[name]}, exporters.toml {entry['port']}")
    need((root / "docs" / f"{name}.md").exists(), f"no page docs/{name}.md")
    return out


def problems(root: Path = REPO) -> list[str]:
    """Everything missing, for every exporter of the workspace and of the manifest."""
    entries = {e["name"]: e for e in manifest_mod.load(root / "exporters.toml")}
    crates = workspace_exporters(root)
    out = []
    for name in crates:
        out += exporter_problems(root, name, entries.get(name))
    for name in entries:
        if name not in crates:
            out.append(f"{name}: in exporters.toml but not a workspace member exporters/{name}")
    return out


def prefix_problems(name: str, prefix: str, exposition: str) -> list[str]:
    """The binary's output names its prefix as the manifest does: exactly one
    `*_exporter_build_info` family, `<prefix>_exporter_build_info`."""
    found = sorted(set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*_exporter_build_info)\b", exposition, re.M)))
    want = f"{prefix}_exporter_build_info"
    if found != [want]:
        return [f"{name}: --once serves {found or 'no *_exporter_build_info'}, exporters.toml's prefix "
                f"{prefix!r} wants {want}"]
    return []
