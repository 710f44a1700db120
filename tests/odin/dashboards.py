"""Check the PromQL of ODIN's Grafana dashboards, offline and against a live Prometheus.

Reads dashboards/*.json (or the files given) and finds every query: panel targets (rows and
collapsed rows included) and template-variable queries (`label_values(...)`,
`query_result(...)`, `metrics(...)`, `label_names(...)`). Template variables are replaced by
values that suit the Prometheus being asked: `--var instance=host:19102` (or
`--instance-regex`), otherwise the variable's "All" value, otherwise `.+`.

Modes (Python standard library only; from the repository root, PYTHONPATH=tests
python3 -m odin.dashboards ...; the tests import it):

  odin.dashboards                             print every query, variables substituted
  odin.dashboards --list-metrics              every metric name an exporter must serve
  odin.dashboards --list-metrics=all          ... plus series Prometheus makes itself (up, ALERTS)
  odin.dashboards --lint                      static checks (datasource, ids, $instance, names
                                              documented in docs/metrics.md, =~ for multi-values;
                                              with --allow-empty, that each entry names a panel)
  odin.dashboards --prometheus URL            run every query; exit 1 if one errors or returns
                                              nothing, unless listed in --allow-empty FILE
  ... --prefix PREFIX                         any mode, on the queries that need no exporter but
                                              the one with that metric prefix (select_by_prefix):
                                              what an end-to-end run of that exporter alone can
                                              check (dashboards/token.json holds two exporters'
                                              panels)

An --allow-empty file has one entry a line, tab-separated: `uid<TAB>panel title<TAB>reason`
(a template variable's "title" is `$name`); `#` starts a comment.
"""

import argparse
import glob
import json
import math
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

if __package__ in (None, ""):  # run as a file: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from odin import REPO as _REPO, manifest, metricsdoc  # noqa: E402
from odin.prometheus import Client  # noqa: E402
from odin.promql import PROMETHEUS_SERIES, metric_names  # noqa: E402,F401

REPO = str(_REPO)

PROMETHEUS_DS_TYPES = {"prometheus"}
VAR_DATASOURCE_UIDS = {"${datasource}", "$datasource"}


class Query:
    """One PromQL expression found in a dashboard."""

    def __init__(self, uid, title, ref, expr, kind="panel", var_form=None, var_args=None):
        self.uid = uid
        self.title = title  # panel title, or `$name` for a template variable
        self.ref = ref  # target refId, or "" for a template variable
        self.expr = expr  # as written in the dashboard
        self.kind = kind  # "panel" or "variable"
        self.var_form = var_form  # label_values, query_result, metrics, label_names
        self.var_args = var_args or []

    def where(self):
        if self.kind == "variable":
            return f"{self.uid} variable {self.title}"
        return f'{self.uid} "{self.title}" {self.ref}'


class Dashboard:
    def __init__(self, path, data):
        self.path = path
        self.data = data
        self.uid = data.get("uid", "")
        self.title = data.get("title", "")
        self.variables = data.get("templating", {}).get("list", [])
        self.queries = []
        self.panels = []  # every panel, rows and nested ones included
        self._walk(data.get("panels", []))
        for row in data.get("rows", []):  # pre-5.0 layout
            self._walk(row.get("panels", []))
        for var in self.variables:
            q = variable_query(self.uid, var)
            if q:
                self.queries.append(q)

    def _walk(self, panels):
        for panel in panels:
            self.panels.append(panel)
            for target in panel.get("targets", []) or []:
                expr = target.get("expr")
                if not expr or not is_prometheus(target.get("datasource", panel.get("datasource"))):
                    continue
                self.queries.append(
                    Query(self.uid, panel.get("title", ""), target.get("refId", ""), expr)
                )
            self._walk(panel.get("panels", []) or [])

    def variable(self, name):
        for var in self.variables:
            if var.get("name") == name:
                return var
        return None


def is_prometheus(ds):
    """A target's datasource is Prometheus (or unset, which means the panel's / default)."""
    if ds is None:
        return True
    if isinstance(ds, str):
        return ds in VAR_DATASOURCE_UIDS or ds.lower().startswith("prometheus")
    return ds.get("type", "prometheus") in PROMETHEUS_DS_TYPES


VAR_FUNC = re.compile(r"^\s*(label_values|query_result|metrics|label_names)\s*\((.*)\)\s*$", re.S)


def variable_query(uid, var):
    if var.get("type") != "query":
        return None
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
    q = q or var.get("definition", "")
    if not q:
        return None
    m = VAR_FUNC.match(q)
    if not m:
        return Query(uid, "$" + var.get("name", ""), "", q, kind="variable", var_form="unsupported")
    form, inner = m.group(1), m.group(2).strip()
    args = split_top_level(inner) if inner else []
    if form == "query_result":
        args = [inner]
    return Query(uid, "$" + var.get("name", ""), "", q, kind="variable", var_form=form, var_args=args)


def split_top_level(s):
    """Split on commas outside (), {}, [] and quotes."""
    out, depth, cur, quote = [], 0, [], None
    i = 0
    while i < len(s):
        c = s[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            cur.append(c)
        elif c in "({[":
            depth += 1
            cur.append(c)
        elif c in ")}]":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur).strip())
    return out


# ------------------------------------------------------------------ substitution

VAR_REF = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")


def builtin_values(args):
    def seconds(d):
        total = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", d):
            total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400,
                                   "w": 604800, "y": 31536000}[unit]
        return total

    return {
        "__rate_interval": args.rate_interval,
        "__interval": args.interval,
        "__interval_ms": str(int(seconds(args.interval) * 1000)),
        "__range": args.range,
        "__range_s": str(int(seconds(args.range))),
        "__range_ms": str(int(seconds(args.range) * 1000)),
        "__auto": args.interval,
    }


def substitute(expr, values):
    """Replace $var, ${var}, ${var:fmt}, [[var]] by values[var]; return (text, unknown names)."""
    unknown = []

    def repl(m):
        name = m.group(1) or m.group(3) or m.group(5)
        if name in values:
            return values[name]
        unknown.append(name)
        return m.group(0)

    return VAR_REF.sub(repl, expr), unknown


def regex_escape(value):
    # Prometheus regexes are RE2; escape the metacharacters Grafana escapes. The value lands
    # inside a double-quoted PromQL string, where a backslash must itself be escaped
    # (`"127\\.0\\.0\\.1"` is the regex 127\.0\.0\.1), as Grafana does.
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


# ------------------------------------------------------------------ metric names

def query_metric_names(q, values):
    expr, _ = substitute(q.expr, values)
    if q.kind == "panel":
        return metric_names(expr)
    if q.var_form == "label_values" and len(q.var_args) == 2:
        return metric_names(substitute(q.var_args[0], values)[0])
    if q.var_form == "query_result":
        return metric_names(substitute(q.var_args[0], values)[0])
    return [], []


def documented_metrics(path):
    """docs/metrics.md (odin.metricsdoc) as {name: set(labels)} with every series name of a
    histogram (`_bucket` with `le`); `<prefix>` rows under each prefix of exporters.toml."""
    if not os.path.exists(path):
        return None
    prefixes = manifest.prefixes()
    exact = {}
    for row in metricsdoc.rows(path):
        for n in metricsdoc.series_names(row):
            labels = set(row.labels) | ({"le"} if n.endswith("_bucket") and row.type == "histogram" else set())
            for name in ([n.replace("<prefix>", p) for p in prefixes] if "<prefix>" in n else [n]):
                exact[name] = labels
    return exact, []


def doc_labels(doc, name):
    exact, patterns = doc
    if name in exact:
        return exact[name]
    for rx, ls in patterns:
        if rx.match(name):
            return ls
    return None


# ------------------------------------------------------------------ queries by exporter

def metric_owners(path=None):
    """Metric name -> metric prefix of the exporter whose section of docs/metrics.md lists it
    (histogram series and compatibility names such as DCGM_FI_* included)."""
    path = path or os.path.join(REPO, "docs", "metrics.md")
    sections = {metricsdoc.section_of(e["name"], path): e["prefix"] for e in manifest.load()}
    owners = {}
    for row in metricsdoc.rows(path):
        if row.section in sections:
            for n in metricsdoc.series_names(row):
                owners[n] = sections[row.section]
    return owners


JOB_MATCHER = re.compile(r'\bjob\s*=\s*"([^"]*)"')


def query_prefixes(q, owners=None, prefixes=None):
    """The exporters, by metric prefix (exporters.toml), whose metrics query `q` names: a name
    belongs to the prefix it starts with (the longest, should two match), else to the exporter
    whose section of docs/metrics.md lists it (DCGM_* to gpu-exporter). Prometheus's own series
    (up, ALERTS) and `{__name__=~...}` regexes belong to no exporter, unless the query names an
    exporter's job exactly (`up{job="gpu-exporter"}`): then it is that exporter's, as only its
    run can answer it. A job regex (`job=~".*exporter.*"`) names no one exporter."""
    owners = metric_owners() if owners is None else owners
    prefixes = sorted(manifest.prefixes() if prefixes is None else prefixes, key=len, reverse=True)
    names, _ = query_metric_names(q, {})
    out = set()
    for name in names:
        prefix = next((p for p in prefixes if name.startswith(p + "_")), None) or owners.get(name)
        if prefix:
            out.add(prefix)
    jobs = {e["name"]: e["prefix"] for e in manifest.load()}
    for job in JOB_MATCHER.findall(q.expr):
        if jobs.get(job) in prefixes:
            out.add(jobs[job])
    return out


def select_by_prefix(dashboard, prefix, owners=None):
    """The queries of `dashboard` that need no exporter but the one whose metric prefix is
    `prefix` ("llm" for token-collector, "claude" for claude-process-exporter): those whose
    every exporter metric has that prefix, and those naming none (Prometheus's own series, a
    `{__name__=~...}` selector: any exporter answers them). These are what an end-to-end run of
    that exporter alone must see return data; a query reading another exporter's metrics is
    that exporter's run's to check, not an allow-empty entry of this one."""
    owners = metric_owners() if owners is None else owners
    return [q for q in dashboard.queries if query_prefixes(q, owners) <= {prefix}]


def check_prefix_queries(prometheus_url, prefix, files, allow_empty=None, wait=60,
                         rate_interval="1m"):
    """Run against a live Prometheus the queries of the dashboard `files` that need only the
    exporter with metric prefix `prefix` (select_by_prefix), retrying empty ones for `wait`
    seconds; prints one line per query like `--prometheus` and returns its exit status (0: every
    selected query returned data or is in `allow_empty`). The end-to-end tests call it with
    their exporter's prefix: test_e2e_token with "llm", the claude-process-exporter one with
    "claude", both on dashboards/token.json."""
    argv = ["--prometheus", prometheus_url, "--prefix", prefix, "--rate-interval", rate_interval,
            "--wait", str(wait)]
    if allow_empty:
        argv += ["--allow-empty", str(allow_empty)]
    return main(argv + [str(f) for f in files])


# ------------------------------------------------------------------ lint

def lint(dashboards, doc):
    errors = []
    owners = metric_owners() if doc is not None else {}
    uids = {}
    for d in dashboards:
        where = os.path.relpath(d.path)
        if not d.uid:
            errors.append(f"{where}: no uid")
        elif d.uid in uids:
            errors.append(f"{where}: uid {d.uid} also used by {uids[d.uid]}")
        uids[d.uid] = where
        if not d.title:
            errors.append(f"{where}: no title")
        for cruft in ("__inputs", "__requires"):
            if cruft in d.data:
                errors.append(f"{where}: export leftover {cruft}")
        if "${DS_" in json.dumps(d.data):
            errors.append(f"{where}: export leftover ${{DS_...}} datasource reference")
        ds_var = d.variable("datasource")
        if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
            errors.append(f"{where}: no `datasource` variable of type datasource (prometheus)")
        if not d.variable("instance"):
            errors.append(f"{where}: no `instance` variable")
        ids, titles = {}, set()
        for p in d.panels:
            title = p.get("title", "")
            pid = p.get("id")
            if pid is None:
                errors.append(f'{where}: panel "{title}" has no id')
            elif pid in ids:
                errors.append(f'{where}: panel id {pid} used by "{title}" and "{ids[pid]}"')
            ids[pid] = title
            gp = p.get("gridPos", {})
            if not all(k in gp for k in ("h", "w", "x", "y")):
                errors.append(f'{where}: panel "{title}" has no complete gridPos')
            if p.get("type") == "row":
                continue
            if title in titles:
                errors.append(f'{where}: two panels titled "{title}" (--allow-empty entries name panels by title)')
            titles.add(title)
            ds = p.get("datasource")
            if not isinstance(ds, dict) or ds.get("uid") not in VAR_DATASOURCE_UIDS:
                errors.append(f'{where}: panel "{title}" datasource is {json.dumps(ds)}, not ${{datasource}}')
            for t in p.get("targets", []) or []:
                tds = t.get("datasource")
                if tds is not None and (not isinstance(tds, dict) or tds.get("uid") not in VAR_DATASOURCE_UIDS):
                    errors.append(f'{where}: panel "{title}" target {t.get("refId")} datasource is not ${{datasource}}')
            if not p.get("targets"):
                errors.append(f'{where}: panel "{title}" has no query')
        multi = {v.get("name") for v in d.variables if v.get("multi") or v.get("includeAll")}
        for q in d.queries:
            mixed = query_prefixes(q, owners)
            if len(mixed) > 1:
                errors.append(f"{q.where()}: reads the metrics of several exporters ({', '.join(sorted(mixed))}): "
                              "no end-to-end run of one exporter checks it (select_by_prefix)")
            if q.kind == "panel" and not re.search(r"\$\{?instance\b", q.expr):
                errors.append(f"{q.where()}: query does not use $instance: {q.expr}")
            if q.kind == "variable" and q.var_form == "unsupported":
                errors.append(f"{q.where()}: variable query form not understood: {q.expr}")
            for m in re.finditer(r'(\w+)\s*(!=|=)(?![=~])\s*"[^"]*(?:\$\{?|\[\[)(\w+)', q.expr):
                if m.group(3) in multi:
                    errors.append(f"{q.where()}: multi-value variable ${m.group(3)} used with "
                                  f"`{m.group(2)}` on label {m.group(1)}; use `=~`")
            if doc is None:
                continue
            names, _ = query_metric_names(q, {})
            for name in names:
                labels = doc_labels(doc, name)
                if labels is None:
                    if name not in PROMETHEUS_SERIES:
                        errors.append(f"{q.where()}: metric {name} is not in docs/metrics.md")
                    continue
                if (q.kind == "panel" and "device" in labels and d.variable("device")
                        and not re.search(r"\$\{?device\b", q.expr)):
                    errors.append(f"{q.where()}: {name} has a device label but the query ignores $device")
    return errors


# ------------------------------------------------------------------ live queries

class Prometheus(Client):
    """odin.prometheus.Client plus running a dashboard's queries."""

    def run(self, q, values):
        """Return (status, detail, count): status is OK, EMPTY, NAN or ERROR."""
        if q.kind == "panel" or q.var_form == "query_result":
            expr = substitute(q.var_args[0] if q.kind == "variable" else q.expr, values)[0]
            data, err = self.api("/api/v1/query", {"query": expr})
            if err:
                return "ERROR", err, 0
            rtype, result = data.get("resultType"), data.get("result")
            if rtype in ("scalar", "string"):
                return "OK", f"{rtype} {result[1]}", 1
            n = len(result)
            if n == 0:
                return "EMPTY", "no series", 0
            values_seen = []
            for series in result:
                samples = [series["value"]] if "value" in series else series.get("values", [])
                values_seen += [float(v) for _, v in samples]
            if values_seen and all(math.isnan(v) for v in values_seen):
                return "NAN", f"{n} series, every value NaN", n
            return "OK", f"{n} series", n
        if q.var_form == "label_values":
            if len(q.var_args) == 1:
                label, params = q.var_args[0], {}
            else:
                label = q.var_args[1]
                params = {"match[]": substitute(q.var_args[0], values)[0]}
            data, err = self.api(f"/api/v1/label/{urllib.parse.quote(label)}/values", params)
        elif q.var_form == "metrics":
            data, err = self.api("/api/v1/label/__name__/values", {})
            if not err:
                rx = re.compile(substitute(q.var_args[0], values)[0] if q.var_args else ".*")
                data = [n for n in data if rx.search(n)]
        elif q.var_form == "label_names":
            params = {"match[]": substitute(q.var_args[0], values)[0]} if q.var_args and q.var_args[0] else {}
            data, err = self.api("/api/v1/labels", params)
        else:
            return "ERROR", "variable query form not understood", 0
        if err:
            return "ERROR", err, 0
        if not data:
            return "EMPTY", "no values", 0
        return "OK", f"{len(data)} values", len(data)

    def variable_values(self, q, values):
        """The values a template variable's query yields (for variables without an override)."""
        if q.var_form == "query_result":
            expr = substitute(q.var_args[0], values)[0]
            data, err = self.api("/api/v1/query", {"query": expr})
            return [] if err else [json.dumps(s.get("metric", {})) for s in data.get("result", [])]
        if q.var_form == "label_values" and q.var_args:
            label = q.var_args[-1]
            params = {"match[]": substitute(q.var_args[0], values)[0]} if len(q.var_args) == 2 else {}
            data, err = self.api(f"/api/v1/label/{urllib.parse.quote(label)}/values", params)
            return [] if err else data
        return []


def variable_values(d, args, prom):
    """Value of each of the dashboard's template variables, in definition order."""
    values = builtin_values(args)
    overrides = dict(args.var)
    for var in d.variables:
        name = var.get("name", "")
        if name in overrides:
            values[name] = overrides[name]
            continue
        if var.get("type") == "datasource":
            values[name] = "prometheus"
            continue
        if var.get("includeAll") and var.get("allValue"):
            values[name] = var["allValue"]
            continue
        found = []
        q = variable_query(d.uid, var)
        if prom and q:
            found = prom.variable_values(q, values)
        if not found:
            values[name] = ".+"
        elif var.get("multi") or var.get("includeAll"):
            values[name] = "(" + "|".join(regex_escape(v) for v in found) + ")"
        else:
            values[name] = found[0]
    return values


def read_allow_empty(path):
    allowed = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                sys.exit(f"{path}:{n}: expected `uid<TAB>panel title<TAB>reason`")
            allowed[(parts[0], parts[1])] = parts[2]
    return allowed


def run_live(dashboards, args):
    prom = Prometheus(args.prometheus, args.timeout)
    allowed = read_allow_empty(args.allow_empty) if args.allow_empty else {}
    used_allow = set()
    pending = []
    for d in dashboards:
        values = variable_values(d, args, prom)
        for q in d.queries:
            pending.append((q, values))
    results = {}
    deadline = time.monotonic() + args.wait
    while True:
        retry = []
        for q, values in pending:
            status, detail, _ = prom.run(q, values)
            results[id(q)] = (q, values, status, detail)
            # An empty query the allow-list permits is not waited for: it passes either way.
            if status != "OK" and not (status in ("EMPTY", "NAN") and (q.uid, q.title) in allowed):
                retry.append((q, values))
        if not retry or time.monotonic() >= deadline:
            break
        pending = retry
        time.sleep(min(5, max(0.1, deadline - time.monotonic())))
    counts = {"OK": 0, "ALLOWED": 0, "EMPTY": 0, "NAN": 0, "ERROR": 0}
    order = [q for d in dashboards for q in d.queries]
    for q in order:
        _, values, status, detail = results[id(q)]
        shown = status
        if status in ("EMPTY", "NAN"):
            reason = allowed.get((q.uid, q.title))
            if reason is not None:
                used_allow.add((q.uid, q.title))
                shown = "ALLOWED"
                detail = f"{detail} (allowed: {reason})"
        counts[shown] += 1
        line = f"{shown:<7} {q.where()}: {detail}"
        if shown != "OK" or args.verbose:
            line += "\n        " + substitute(q.expr, values)[0]
        print(line)
    for key in sorted(set(allowed) - used_allow):
        print(f"note: allow-empty entry {key[0]} \"{key[1]}\" matched nothing empty", file=sys.stderr)
    print(f"dashboard queries: {counts['OK']} ok, {counts['ALLOWED']} empty but allowed, "
          f"{counts['EMPTY']} empty, {counts['NAN']} NaN only, {counts['ERROR']} errors")
    return 1 if counts["EMPTY"] or counts["NAN"] or counts["ERROR"] else 0


# ------------------------------------------------------------------ main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("files", nargs="*", help="dashboard JSON files (default: dashboards/*.json)")
    p.add_argument("--prometheus", metavar="URL", help="run every query against this Prometheus")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="value for a template variable (repeatable)")
    p.add_argument("--instance-regex", metavar="RE", help="same as --var instance=RE")
    p.add_argument("--device-regex", metavar="RE", help="same as --var device=RE")
    p.add_argument("--rate-interval", default="1m", help="value of $__rate_interval (default 1m)")
    p.add_argument("--interval", default="15s", help="value of $__interval (default 15s)")
    p.add_argument("--range", default="1h", help="value of $__range (default 1h)")
    p.add_argument("--allow-empty", metavar="FILE", help="queries allowed to return nothing")
    p.add_argument("--prefix", metavar="PREFIX",
                   help="only the queries that need no exporter but the one with this metric prefix "
                        "(exporters.toml), e.g. llm or claude")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="retry queries that return nothing until this many seconds have passed")
    p.add_argument("--timeout", type=float, default=10, help="HTTP timeout per request (s)")
    p.add_argument("--list-metrics", nargs="?", const="exporter", choices=["exporter", "all"],
                   help="print the metric names the dashboards use (all: with Prometheus's own series)")
    p.add_argument("--lint", action="store_true", help="static checks; exit 1 on any finding")
    p.add_argument("--metrics-doc", default=os.path.join(REPO, "docs", "metrics.md"),
                   help="metric reference for --lint (default docs/metrics.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every query with its result")
    args = p.parse_args(argv)
    pairs = []
    for item in args.var:
        if "=" not in item:
            p.error(f"--var {item}: expected NAME=VALUE")
        pairs.append(tuple(item.split("=", 1)))
    if args.instance_regex is not None:
        pairs.append(("instance", args.instance_regex))
    if args.device_regex is not None:
        pairs.append(("device", args.device_regex))
    args.var = pairs
    if args.prefix is not None and args.prefix not in manifest.prefixes():
        p.error(f"--prefix {args.prefix}: no exporter of exporters.toml has it "
                f"(known: {', '.join(manifest.prefixes())})")
    return args


def load(files):
    dashboards = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                dashboards.append(Dashboard(path, json.load(f)))
        except (OSError, ValueError) as e:
            sys.exit(f"{path}: {e}")
    return dashboards


def default_files():
    """dashboards/*.json."""
    return sorted(glob.glob(os.path.join(REPO, "dashboards", "*.json")))


def metric_names_used(dashboards, args=None, with_regexes=False):
    """Metric names the dashboards' queries and variables read (Prometheus's own series
    left out unless with_regexes, which returns (names with them, __name__ regexes))."""
    args = args or parse_args([])
    names, regexes = set(), set()
    for d in dashboards:
        values = variable_values(d, args, None)
        for q in d.queries:
            n, r = query_metric_names(q, values)
            names.update(n)
            regexes.update(r)
    if with_regexes:
        return names, regexes
    return names - PROMETHEUS_SERIES


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is not an error
    args = parse_args(sys.argv[1:] if argv is None else argv)
    files = args.files or default_files()
    if not files:
        sys.exit("no dashboard files")
    dashboards = load(files)
    if args.prefix:
        owners = metric_owners()
        left_out = 0
        for d in dashboards:
            kept = select_by_prefix(d, args.prefix, owners)
            left_out += len(d.queries) - len(kept)
            d.queries = kept
        if not any(d.queries for d in dashboards):
            sys.exit(f"--prefix {args.prefix}: no query of {', '.join(files)} needs only that exporter")
        print(f"--prefix {args.prefix}: {left_out} queries that need another exporter left out",
              file=sys.stderr)

    if args.list_metrics:
        names, regexes = metric_names_used(dashboards, args, with_regexes=True)
        if args.list_metrics == "exporter":
            names -= PROMETHEUS_SERIES
        for name in sorted(names):
            print(name)
        for rx in sorted(regexes):
            print(f'note: also selects {{__name__=~"{rx}"}}', file=sys.stderr)
        return 0

    if args.lint:
        doc = documented_metrics(args.metrics_doc)
        if doc is None:
            print(f"note: {args.metrics_doc} not found; metric names not checked", file=sys.stderr)
        errors = lint(dashboards, doc)
        if args.allow_empty:
            known = {(q.uid, q.title) for d in dashboards for q in d.queries}
            for uid, title in read_allow_empty(args.allow_empty):
                if (uid, title) not in known:
                    errors.append(f'{args.allow_empty}: no query in panel "{title}" of {uid}')
        for e in errors:
            print(e)
        nq = sum(len(d.queries) for d in dashboards)
        print(f"lint: {len(dashboards)} dashboards, {nq} queries, {len(errors)} problems")
        return 1 if errors else 0

    if args.prometheus:
        return run_live(dashboards, args)

    for d in dashboards:
        values = variable_values(d, args, None)
        for q in d.queries:
            print(f"{q.where()}\n    {substitute(q.expr, values)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
