#!/usr/bin/env python3
"""Checks the Prometheus Operator objects of a rendered overlay (read from stdin).

kubernetes-validate has no schemas for custom resources, so ServiceMonitor and PrometheusRule
are checked here instead, against what they must agree with rather than a copied CRD schema:

- every ServiceMonitor selects a Service of the same rendering, in its namespace, and each
  endpoint's `port` is a named port of that Service; only fields of the monitoring.coreos.com/v1
  API that ODIN uses are accepted (a typo in a field name is an error, as --strict would make it),
  down into an endpoint's tlsConfig and basicAuth, whose Secret references need a name and a key;
- every PrometheusRule's spec.groups equals the `groups` of the rule file it came from
  (annotation odin/source; whitespace inside `expr` aside, see promql_spaces), and is
  written to OUTDIR/<name>.yml for `promtool check rules`.

Usage: kubectl kustomize OVERLAY | check-operator-objects.py REPO OUTDIR
Needs PyYAML (installed in .venv with yamllint).
"""
import os
import sys

import yaml

SERVICEMONITOR_SPEC = {"selector", "endpoints", "jobLabel", "namespaceSelector", "targetLabels",
                       "podTargetLabels", "sampleLimit"}
ENDPOINT = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
            "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig",
            "basicAuth", "bearerTokenSecret", "followRedirects", "enableHttp2"}
# An endpoint's scheme, tlsConfig and basicAuth (the prometheus-operator-web-config
# component): the fields of SafeTLSConfig/TLSConfig and BasicAuth, Secrets and ConfigMaps by
# SecretKeySelector/ConfigMapKeySelector.
SCHEMES = {"http", "https"}
TLS_CONFIG = {"ca", "cert", "keySecret", "serverName", "insecureSkipVerify", "caFile", "certFile",
              "keyFile", "minVersion", "maxVersion"}
SECRET_OR_CONFIGMAP = {"secret", "configMap"}
KEY_SELECTOR = {"name", "key", "optional"}
BASIC_AUTH = {"username", "password"}
RELABEL = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement",
           "action"}
ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase", "keepequal", "dropequal",
           "Replace", "Keep", "Drop", "HashMod", "LabelMap", "LabelDrop", "LabelKeep",
           "Lowercase", "Uppercase", "KeepEqual", "DropEqual"}


def promql_spaces(groups):
    """The groups with whitespace runs in `expr` collapsed, everything else as it is.

    kustomize's YAML library reads a folded (`>-`) scalar whose lines are indented more than
    its first one with an extra line break after the first line ("(\\n\\n  rate(...)"), so
    a multi-line PromQL expression can come out of `kubectl kustomize` with a blank line that
    the rule file does not have. Whitespace is insignificant in PromQL; labels, annotations
    and everything else must match exactly.
    """
    if isinstance(groups, dict):
        return {k: (" ".join(v.split()) if k == "expr" and isinstance(v, str) else promql_spaces(v))
                for k, v in groups.items()}
    if isinstance(groups, list):
        return [promql_spaces(x) for x in groups]
    return groups


def endpoint_auth_errors(where, ep):
    """Unknown fields and missing Secret references in an endpoint's scheme, tlsConfig and
    basicAuth."""
    errors = []
    if "scheme" in ep and ep["scheme"] not in SCHEMES:
        errors.append(f"{where}: scheme {ep['scheme']!r}")

    def selector(what, sel):
        if not isinstance(sel, dict) or set(sel) - KEY_SELECTOR or not sel.get("name") or not sel.get("key"):
            errors.append(f"{where}: {what} is not a Secret/ConfigMap key selector (name, key): {sel!r}")

    tls = ep.get("tlsConfig")
    if tls is not None:
        errors += [f"{where}: unknown field tlsConfig.{k}" for k in set(tls) - TLS_CONFIG]
        for k in ("ca", "cert"):
            if k in tls:
                src = tls[k]
                if not isinstance(src, dict) or len(src) != 1 or set(src) - SECRET_OR_CONFIGMAP:
                    errors.append(f"{where}: tlsConfig.{k} must name one secret or configMap: {src!r}")
                else:
                    selector(f"tlsConfig.{k}.{next(iter(src))}", next(iter(src.values())))
        if "keySecret" in tls:
            selector("tlsConfig.keySecret", tls["keySecret"])
    auth = ep.get("basicAuth")
    if auth is not None:
        errors += [f"{where}: unknown field basicAuth.{k}" for k in set(auth) - BASIC_AUTH]
        for k in sorted(BASIC_AUTH):
            selector(f"basicAuth.{k}", auth.get(k))
    return errors


def main():
    repo, outdir = sys.argv[1], sys.argv[2]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    errors, checked = [], 0
    services = [d for d in docs if d.get("kind") == "Service"]
    for d in docs:
        kind, meta = d.get("kind"), d.get("metadata", {})
        name, ns = meta.get("name"), meta.get("namespace")
        where = f"{kind}/{name}"
        if kind == "ServiceMonitor":
            checked += 1
            if d.get("apiVersion") != "monitoring.coreos.com/v1":
                errors.append(f"{where}: apiVersion {d.get('apiVersion')}")
            spec = d.get("spec", {})
            errors += [f"{where}: unknown field spec.{k}" for k in set(spec) - SERVICEMONITOR_SPEC]
            want = spec.get("selector", {}).get("matchLabels", {})
            if not want:
                errors.append(f"{where}: no spec.selector.matchLabels")
            matched = [s for s in services
                       if s["metadata"].get("namespace") == ns
                       and all(s["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
            if not matched:
                errors.append(f"{where}: selects no Service in namespace {ns}")
            if not spec.get("endpoints"):
                errors.append(f"{where}: no endpoints")
            for i, ep in enumerate(spec.get("endpoints", [])):
                errors += [f"{where}: unknown field endpoints[{i}].{k}" for k in set(ep) - ENDPOINT]
                for s in matched:
                    ports = {p.get("name") for p in s["spec"].get("ports", [])}
                    if ep.get("port") not in ports:
                        errors.append(f"{where}: endpoint port {ep.get('port')!r} not in Service "
                                      f"{s['metadata']['name']} ports {sorted(ports)}")
                errors += endpoint_auth_errors(f"{where}: endpoints[{i}]", ep)
                for j, r in enumerate(ep.get("relabelings", []) + ep.get("metricRelabelings", [])):
                    errors += [f"{where}: unknown relabeling field {k}" for k in set(r) - RELABEL]
                    if r.get("action", "replace") not in ACTIONS:
                        errors.append(f"{where}: relabeling action {r.get('action')}")
        elif kind == "PrometheusRule":
            checked += 1
            groups = d.get("spec", {}).get("groups")
            if not isinstance(groups, list):
                errors.append(f"{where}: spec.groups is not a list")
                continue
            src = meta.get("annotations", {}).get("odin/source")
            if src:
                with open(os.path.join(repo, src), encoding="utf-8") as f:
                    original = yaml.safe_load(f)
                if promql_spaces(original.get("groups")) != promql_spaces(groups):
                    errors.append(f"{where}: spec.groups differs from {src}")
            elif groups:
                errors.append(f"{where}: rules without an odin/source annotation")
            with open(os.path.join(outdir, f"{name}.yml"), "w", encoding="utf-8") as f:
                yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    for e in errors:
        print(e)
    print(f"operator objects: {checked} checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
