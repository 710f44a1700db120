"""The one extractor of metric names from PromQL (dashboards, alert and recording rules)."""
from __future__ import annotations

import re

# Words of PromQL that look like identifiers but are not metric names.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
}
# Series that Prometheus itself produces; no exporter serves them.
PROMETHEUS_SERIES = {
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')
# {__name__=~".+_collector_success"}: a shared metric under any exporter's prefix.
_GENERIC = re.compile(r"^\.\+(_[a-z0-9_]+)$")


def metric_names(expr: str) -> tuple[list[str], list[str]]:
    """(metric names an expression selects, `__name__=~` regexes it uses). Recording-rule
    names (with colons) count as names; functions, keywords and label names do not."""
    names, regexes = [], []
    for op, value in _NAME_MATCHER.findall(expr):
        (names if op == "=" else regexes).append(value)
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", "{}", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)", s):
        name = m.group(1)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if name.lower() in KEYWORDS:
            continue
        names.append(name)
    return names, regexes


def exporter_names(expr: str, prefixes) -> set[str]:
    """The names an expression reads that belong to an exporter: `<prefix>_...` for one of
    `prefixes` (DCGM_* compatibility names too when "DCGM" is one of them)."""
    names, _ = metric_names(expr)
    return {n for n in names if any(n.startswith(p + "_") for p in prefixes)}


def generic_suffixes(expr: str) -> set[str]:
    """`_suffix` of each `{__name__=~".+_suffix"}` selector (a shared metric of every exporter)."""
    _, regexes = metric_names(expr)
    out = set()
    for rx in regexes:
        m = _GENERIC.match(rx)
        if m:
            out.add(m.group(1))
    return out
