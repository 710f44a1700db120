"""ODIN's test helpers: one package for the end-to-end, differential and consistency tests.

    odin.manifest     exporters.toml (through scripts/manifest.py)
    odin.exposition   Prometheus text format: parse, look up samples, promtool check metrics
    odin.exporters    start real binaries (and any other process) and stop them again
    odin.prometheus   one Prometheus HTTP client and one stack: exporters plus a real Prometheus
    odin.metricsdoc   the one parser of docs/metrics.md
    odin.promql       the one extractor of metric names from PromQL
    odin.rules        the rule files of rules/
    odin.checks       checks every end-to-end scenario makes (rules loaded and healthy)
    odin.dashboards   the dashboards' queries: list, lint, run (also a CLI: python3 -m odin.dashboards)
    odin.docexporter  a stand-in exporter serving every metric of docs/metrics.md
    odin.deploychecks deploy/ against exporters.toml: one parametrised DaemonSet check, systemd
                      units, scrape jobs, ServiceMonitors (also a CLI for deploy/test.sh)
    odin.layout       what every exporter must have in the repository (tests/test_layout.py)
    odin.fakeapi      a fake Anthropic Messages API on loopback (streaming and not)
    odin.claude       the real Claude Code client and ccusage, installed by scripts/setup.sh;
                      a live interactive instance with a tool and an MCP server (LiveInstance)
    odin.transcripts  seeded generator of Claude Code transcript trees, with what must be counted
    odin.fleet        every exporter of exporters.toml started alike, its files under one root
    odin.gpufakes     gpu-exporter's fake NVML and fake nvidia-smi, for every test that reads GPUs
    odin.mcpserver    a minimal stdio MCP server (claude-process-exporter's orphan test)
    odin.measure      what the benchmarks measure of a server process, and how they scrape it
    odin.alerting     Alertmanager, amtool and the webhook logger (tests/test_alert*.py)
    odin.runbooks     following alerts' runbook_url links to headings of docs/runbooks.md
    odin.dnsmasq      a dnsmasq on loopback answering the names a test gives it
    odin.procs        a process's children, tree, comm and start time from /proc

Standard library only, except where YAML is read (odin.rules, odin.deploychecks, odin.layout:
PyYAML, in .venv).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def shared_dir() -> Path:
    """The project's shared/ folder (real captures for tests): $ODIN_SHARED_DIR, else ../shared
    beside the repository."""
    for cand in (os.environ.get("ODIN_SHARED_DIR"), REPO.parent / "shared", Path("/work/shared")):
        if cand and Path(cand).is_dir():
            return Path(cand)
    raise FileNotFoundError("shared/ not found: set ODIN_SHARED_DIR")


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
