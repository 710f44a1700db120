"""Every alert's runbook link reaches its section of docs/runbooks.md, and every section there
belongs to an alert (odin.runbooks: links followed as GitHub resolves them). The follower is
also tried on small synthetic repositories where a link is broken in each way it can be.
"""
from __future__ import annotations

import pytest

from odin import rules
from odin.runbooks import follow, github_anchor, headings, problems

BASE = "https://example.invalid/odin/blob/main"


def test_every_runbook_link_reaches_its_section():
    found = problems(rules.files())
    assert not found, "\n".join(found)


def test_every_alert_has_a_link():
    from odin.runbooks import alert_links
    links = alert_links(rules.files())
    assert links and all(links.values()), [a for a, u in links.items() if not u]


@pytest.mark.parametrize("text, anchor", [
    ("OdinExporterDown", "odinexporterdown"),
    ("Check: the GPU's temperature (°C)", "check-the-gpus-temperature-c"),
    ("snake_case and-hyphens", "snake_case-and-hyphens"),
    ("Ünïcode heading", "ünïcode-heading"),
])
def test_github_anchor(text, anchor):
    assert github_anchor(text) == anchor


def test_headings_as_github_names_them():
    md = ("# Top\n## Same\n## Same\n## Same-1\n```sh\n# a shell comment\n```\n"
          "## `code`, [a link](x) and *stress* ##\n### Deeper\n")
    assert headings(md) == [
        (1, "Top", "top"), (2, "Same", "same"), (2, "Same", "same-1"), (2, "Same-1", "same-1-1"),
        (2, "code, a link and stress", "code-a-link-and-stress"), (3, "Deeper", "deeper"),
    ]


# ------------------------------------------------------------------ the follower can fail

RULE = """groups:
  - name: demo
    rules:
      - alert: DemoDown
        expr: up == 0
        annotations:
          runbook_url: "{url}"
"""


def repo(tmp_path, md="# Runbooks\n\n## DemoDown\n\nStart it.\n",
         url=f"{BASE}/docs/runbooks.md#demodown"):
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs/runbooks.md").write_text(md)
    (tmp_path / "demo.rules.yml").write_text(RULE.format(url=url))
    return problems([tmp_path / "demo.rules.yml"], repo=tmp_path)


def test_a_complete_synthetic_repository_passes(tmp_path):
    assert repo(tmp_path) == []


@pytest.mark.parametrize("md, url, want", [
    ("# Runbooks\n\n## Demo Down\n", None, "no heading with the anchor #demodown"),
    ("# Runbooks\n\n```\n## DemoDown\n```\n", None, "no heading with the anchor #demodown"),
    ("# Runbooks\n\n### DemoDown\n", None, "not the section ## DemoDown"),
    ("# Runbooks\n\n## DemoDown\n\n## Spare\n", None, "'## Spare' (#spare) belongs to no alert"),
    (None, f"{BASE}/docs/runbook.md#demodown", "is not <base>/docs/runbooks.md#<anchor>"),
    (None, f"{BASE}/docs/runbooks.md#demo-down", "no heading with the anchor #demo-down"),
    (None, "docs/runbooks.md#demodown", "is not <base>/docs/runbooks.md#<anchor>"),
])
def test_each_broken_link_is_found(tmp_path, md, url, want):
    kw = {}
    if md is not None:
        kw["md"] = md
    if url is not None:
        kw["url"] = url
    found = repo(tmp_path, **kw)
    assert any(want in p for p in found), found


def test_a_repeated_heading_is_reached_by_its_numbered_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/runbooks.md").write_text("## A\n## A\n")
    assert follow(f"{BASE}/docs/runbooks.md#a-1", BASE, tmp_path) == (2, "A", "a-1")
    assert "not a file" in follow(f"{BASE}/../outside.md#a", BASE, tmp_path)
