"""exporters.toml tells the truth about deploy/: every exporter's DaemonSet, systemd unit and
static scrape job agree with its entry (odin.deploychecks, which deploy/test.sh also runs on
the rendered kustomize output). Each check is also shown to fail on a broken copy.
"""
from __future__ import annotations

import copy

import pytest
import yaml

from odin import REPO, manifest
from odin.deploychecks import (APPARMOR_ANNOTATION, K8S_CAPABILITIES, SUPPLEMENTARY_GROUPS,
                               SYSTEMD_CAPABILITIES, daemonset_problems, prometheus_problems,
                               servicemonitor_problems, systemd_problems)

BASE = REPO / "deploy/kubernetes/base"
NAMES = manifest.names()


def objects(name: str) -> list[dict]:
    """An exporter's base objects as kustomize renders them (namespace set)."""
    out = []
    for f in sorted((BASE / name).glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                d["metadata"]["namespace"] = "monitoring"
                out.append(d)
    return out


def pod(objs: list[dict], name: str) -> dict:
    return next(d for d in objs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", NAMES)
def test_daemonset_matches_manifest(name):
    assert daemonset_problems(objects(name), manifest.get(name)) == []


@pytest.mark.parametrize("name", NAMES)
def test_systemd_unit_matches_manifest(name):
    assert systemd_problems(REPO / "deploy/systemd" / f"{name}.service", manifest.get(name)) == []


def test_prometheus_static_config_scrapes_every_exporter():
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert prometheus_problems(config, manifest.load()) == []


def test_manifest_rejects_duplicates_and_missing_keys(tmp_path):
    text = (REPO / "exporters.toml").read_text()
    starts = [i for i in range(len(text)) if text.startswith("\n[[exporter]]", i)]
    first = text[starts[0]:starts[1]]
    dup = tmp_path / "dup.toml"
    dup.write_text(text.rstrip() + "\n\n" + first.replace(f'name = "{NAMES[0]}"', 'name = "other-exporter"'))
    with pytest.raises(ValueError, match="used by"):
        manifest.load(dup)
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("prefix = ", "prefixx = ", 1))
    with pytest.raises(ValueError, match="prefix"):
        manifest.load(missing)


# ------------------------------------------------------------------ the checks can fail

def _break(what):
    """Mutations of an exporter's objects (or its manifest entry) the check must report."""
    def flip_network(objs, e):
        e["host"]["network"] = not e["host"]["network"]

    def flip_pid(objs, e):
        e["host"]["pid"] = not e["host"]["pid"]

    def flip_gpu_runtime(objs, e):
        e["host"]["gpu_runtime"] = not e["host"]["gpu_runtime"]

    def flip_sysfs(objs, e):
        e["host"]["sysfs"] = not e["host"]["sysfs"]

    def privileged(objs, e):
        pod(objs, e["name"])["containers"][0]["securityContext"]["privileged"] = True

    def add_capability(objs, e):
        pod(objs, e["name"])["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]

    def other_user(objs, e):
        # root where no capability needs it; where one does (K8S_CAPABILITIES), nobody, who
        # gets none of them
        pod(objs, e["name"])["securityContext"]["runAsUser"] = 65534 if e["name"] in K8S_CAPABILITIES else 0

    def container_user(objs, e):
        pod(objs, e["name"])["containers"][0]["securityContext"]["runAsUser"] = 4321

    def extra_capability(objs, e):
        sc = pod(objs, e["name"])["containers"][0]["securityContext"]["capabilities"]
        sc["add"] = [*(sc.get("add") or []), "SYS_ADMIN"]

    def missing_capability(objs, e):
        # one capability fewer; an exporter without any keeps dropping ALL but drops less
        sc = pod(objs, e["name"])["containers"][0]["securityContext"]["capabilities"]
        if sc.get("add"):
            sc["add"] = sc["add"][1:]
        else:
            sc["drop"] = ["NET_RAW"]

    def flip_apparmor(objs, e):
        p = pod(objs, e["name"])
        meta = next(d for d in objs if d["kind"] == "DaemonSet")["spec"]["template"]["metadata"]
        key = APPARMOR_ANNOTATION + p["containers"][0]["name"]
        ann = meta.setdefault("annotations", {})
        if key in ann:
            del ann[key]
        else:
            ann[key] = "unconfined"

    def flip_supplemental_groups(objs, e):
        # a group where none is due (SUPPLEMENTARY_GROUPS); none where one is
        psc = pod(objs, e["name"])["securityContext"]
        psc["supplementalGroups"] = [] if psc.get("supplementalGroups") else [19101]

    def group_by_name(objs, e):
        # a pod names groups by number only
        pod(objs, e["name"])["securityContext"]["supplementalGroups"] = ["odin-power"]

    def extra_supplemental_group(objs, e):
        psc = pod(objs, e["name"])["securityContext"]
        psc["supplementalGroups"] = [*(psc.get("supplementalGroups") or []), 44]

    def writable_root(objs, e):
        pod(objs, e["name"])["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False

    def token(objs, e):
        pod(objs, e["name"])["automountServiceAccountToken"] = True

    def other_port(objs, e):
        e["port"] += 1

    def extra_run_arg(objs, e):
        e["run_args"] = [*e["run_args"], "--log.level=debug"]

    def no_probe(objs, e):
        del pod(objs, e["name"])["containers"][0]["readinessProbe"]

    def service_not_headless(objs, e):
        next(d for d in objs if d["kind"] == "Service")["spec"]["clusterIP"] = "10.0.0.1"

    def no_service_account(objs, e):
        objs[:] = [d for d in objs if d["kind"] != "ServiceAccount"]

    def other_namespace(objs, e):
        objs[0]["metadata"]["namespace"] = "default"

    return locals()[what]


BREAKS = ["flip_network", "flip_pid", "flip_gpu_runtime", "flip_sysfs", "privileged", "add_capability",
          "other_user", "container_user", "extra_capability", "missing_capability", "flip_apparmor",
          "flip_supplemental_groups", "extra_supplemental_group", "group_by_name",
          "writable_root", "token", "other_port", "extra_run_arg", "no_probe",
          "service_not_headless", "no_service_account", "other_namespace"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what", BREAKS)
def test_daemonset_check_fails_on_a_broken_copy(name, what):
    objs, e = objects(name), copy.deepcopy(manifest.get(name))
    _break(what)(objs, e)
    assert daemonset_problems(objs, e), f"{what} went unnoticed"


# Exporters with devices that no runtime hands out (razer-exporter's hidraw nodes): the base
# must neither mount /dev nor take a device plugin resource.
PLUGIN_DEVICES = [e["name"] for e in manifest.load() if e["host"]["devices"] and not e["host"]["gpu_runtime"]]


@pytest.mark.parametrize("name", PLUGIN_DEVICES)
@pytest.mark.parametrize("what", ["dev_hostpath", "plugin_resource", "unknown_device"])
def test_device_check_fails_on_a_broken_copy(name, what):
    objs, e = objects(name), copy.deepcopy(manifest.get(name))
    p = pod(objs, name)
    if what == "dev_hostpath":
        p.setdefault("volumes", []).append({"name": "dev", "hostPath": {"path": "/dev"}})
    elif what == "plugin_resource":
        c = p["containers"][0]
        c.setdefault("resources", {}).setdefault("limits", {})["squat.ai/razer-hidraw"] = "3"
    else:
        e["host"]["devices"] = [*e["host"]["devices"], "/dev/bus/usb/*"]
    assert daemonset_problems(objs, e), f"{what} went unnoticed"


def test_some_exporter_has_plugin_devices():
    assert PLUGIN_DEVICES, "the device checks above would test nothing"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what", ["pid", "devices", "unit", "more_capabilities", "no_capabilities",
                                  "inverted_capabilities", "group"])
def test_systemd_check_fails_on_a_lie(name, what, tmp_path):
    e = copy.deepcopy(manifest.get(name))
    unit = REPO / "deploy/systemd" / f"{name}.service"
    text = unit.read_text()
    if what == "pid":
        e["host"]["pid"] = not e["host"]["pid"]
    elif what == "devices":
        e["host"]["devices"] = [] if e["host"]["devices"] else ["/dev/nvidiactl"]
    elif what == "unit":
        unit = tmp_path / "none.service"
    elif what == "group":
        # a supplementary group where none is due; another one where one is
        # (SUPPLEMENTARY_GROUPS)
        unit = tmp_path / f"{name}.service"
        group = "video" if SUPPLEMENTARY_GROUPS.get(name) else "odin-power"
        unit.write_text(text.replace("\n[Install]", f"\nSupplementaryGroups={group}\n[Install]", 1))
    else:
        # a later assignment at the end of [Service]: adds to the set, or (empty) resets it
        line = {"more_capabilities": "CAP_SYS_ADMIN", "inverted_capabilities": "~CAP_SYS_ADMIN",
                "no_capabilities": ""}[what]
        if what == "no_capabilities" and not SYSTEMD_CAPABILITIES.get(name):
            line = "CAP_NET_RAW"  # it has none to lose: give it one instead
        unit = tmp_path / f"{name}.service"
        unit.write_text(text.replace("\n[Install]", f"\nAmbientCapabilities={line}\n[Install]", 1))
    assert systemd_problems(unit, e)


def test_prometheus_check_fails_without_a_job_or_on_another_port():
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    exporters = manifest.load()
    no_job = copy.deepcopy(config)
    no_job["scrape_configs"] = no_job["scrape_configs"][1:]
    assert prometheus_problems(no_job, exporters)
    moved = copy.deepcopy(exporters)
    moved[0]["port"] += 1
    assert prometheus_problems(config, moved)


def servicemonitors() -> list[dict]:
    d = REPO / "deploy/kubernetes/components/prometheus-operator"
    return [x for f in sorted(d.glob("*-servicemonitor.yaml")) for x in yaml.safe_load_all(f.read_text()) if x]


def test_a_servicemonitor_per_exporter():
    assert servicemonitor_problems(servicemonitors(), manifest.load()) == []


def test_servicemonitor_check_fails_without_one():
    assert servicemonitor_problems(servicemonitors()[1:], manifest.load())
