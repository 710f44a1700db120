"""exporters.toml tells the truth about deploy/: every exporter's DaemonSet, systemd unit and
static scrape job agree with its entry (odin.deploychecks, which deploy/test.sh also runs on
the rendered kustomize output). Each check is also shown to fail on a broken copy.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess

import pytest
import yaml

from odin import REPO, manifest
from odin.deploychecks import (APPARMOR_ANNOTATION, K8S_CAPABILITIES, SUPPLEMENTARY_GROUPS,
                               SYSTEMD_CAPABILITIES, daemonset_problems, env_prefix,
                               prometheus_problems, scrape_secret_problems,
                               servicemonitor_problems, systemd_problems,
                               systemd_web_config_problems, web_config_secret_problems)

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


# ------------------------------------------------------------------ the web configuration
# The optional components deploy/kubernetes/components/web-config and
# prometheus-operator-web-config, as kubectl renders them (deploy/test.sh renders and checks
# them too), their example Secrets, and the systemd drop-in web-config.conf.example.

COMPONENTS = REPO / "deploy/kubernetes/components"
SYSTEMD = REPO / "deploy/systemd"


@pytest.fixture(scope="module")
def web_config_render(tmp_path_factory):
    """base + prometheus-operator + web-config + prometheus-operator-web-config, rendered."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    d = tmp_path_factory.mktemp("web-config")
    # kustomize refuses absolute paths
    comps = [os.path.relpath(COMPONENTS / c, d)
             for c in ("prometheus-operator", "web-config", "prometheus-operator-web-config")]
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "monitoring",
        "resources": [os.path.relpath(BASE, d)], "components": comps}))
    out = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True, check=True).stdout
    return [x for x in yaml.safe_load_all(out) if x]


def exporter_objects(rendered: list[dict], name: str) -> list[dict]:
    return copy.deepcopy([d for d in rendered if d["kind"] in ("DaemonSet", "Service", "ServiceAccount")
                          and d["metadata"]["name"] == name])


@pytest.mark.parametrize("name", NAMES)
def test_web_config_component_on_every_daemonset(web_config_render, name):
    objs = exporter_objects(web_config_render, name)
    assert daemonset_problems(objs, manifest.get(name), web_config=True) == []
    # and it is not the base: the base check refuses it
    assert daemonset_problems(objs, manifest.get(name))


def test_base_check_refuses_a_web_config_in_the_base():
    for name in NAMES:
        objs = objects(name)
        c = pod(objs, name)["containers"][0]
        c["env"].append({"name": env_prefix(name) + "WEB_CONFIG_FILE", "value": "/etc/odin/web/web-config.yml"})
        assert daemonset_problems(objs, manifest.get(name)), name


def _break_web_config(what, objs, e):
    ds = next(d for d in objs if d["kind"] == "DaemonSet")
    p = ds["spec"]["template"]["spec"]
    c = p["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/odin/web")
    vol = next(v for v in p["volumes"] if v["name"] == mount["name"])
    env = {x["name"]: x for x in c["env"]}
    prefix = env_prefix(e["name"])
    if what == "sub_path":
        mount["subPath"] = "web-config.yml"
    elif what == "writable_mount":
        mount["readOnly"] = False
    elif what == "items":
        vol["secret"]["items"] = [{"key": "web-config.yml", "path": "web-config.yml"}]
    elif what == "other_secret":
        vol["secret"]["secretName"] = "other"
    elif what == "other_dir":
        mount["mountPath"] = "/etc/odin/tls"
    elif what == "http_probe":
        del c["livenessProbe"]["httpGet"]["scheme"]
    elif what == "no_open_probes":
        env[prefix + "WEB_UNAUTHENTICATED_PROBES"]["value"] = "false"
    elif what == "no_file_twin":
        c["env"] = [x for x in c["env"] if x["name"] != prefix + "WEB_CONFIG_FILE"]
    elif what == "flag_in_args":
        c["env"] = [x for x in c["env"] if x["name"] != prefix + "WEB_CONFIG_FILE"]
        c["args"].append("--web.config.file=/etc/odin/web/web-config.yml")
    elif what == "no_scheme_annotation":
        del ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"]


WEB_CONFIG_BREAKS = ["sub_path", "writable_mount", "items", "other_secret", "other_dir", "http_probe",
                     "no_open_probes", "no_file_twin", "flag_in_args", "no_scheme_annotation"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what", WEB_CONFIG_BREAKS)
def test_web_config_check_fails_on_a_broken_copy(web_config_render, name, what):
    objs, e = exporter_objects(web_config_render, name), manifest.get(name)
    _break_web_config(what, objs, e)
    assert daemonset_problems(objs, e, web_config=True), f"{what} went unnoticed"


def test_web_config_servicemonitors(web_config_render):
    monitors = [d for d in web_config_render if d["kind"] == "ServiceMonitor"]
    assert servicemonitor_problems(monitors, manifest.load(), web_config=True) == []
    # the shipped ones stay plain, and the two checks tell them apart
    assert servicemonitor_problems(monitors, manifest.load())
    assert servicemonitor_problems(servicemonitors(), manifest.load(), web_config=True)


@pytest.mark.parametrize("what", ["http", "skip_verify", "no_server_name", "no_basic_auth", "other_secret"])
def test_web_config_servicemonitor_check_fails_on_a_broken_copy(web_config_render, what):
    monitors = copy.deepcopy([d for d in web_config_render if d["kind"] == "ServiceMonitor"])
    ep = monitors[-1]["spec"]["endpoints"][0]
    if what == "http":
        ep["scheme"] = "http"
    elif what == "skip_verify":
        ep["tlsConfig"]["insecureSkipVerify"] = True
    elif what == "no_server_name":
        del ep["tlsConfig"]["serverName"]
    elif what == "no_basic_auth":
        del ep["basicAuth"]
    else:
        ep["tlsConfig"]["ca"]["secret"]["name"] = "other"
    assert servicemonitor_problems(monitors, manifest.load(), web_config=True), f"{what} went unnoticed"


def example_secret(component: str) -> dict:
    return yaml.safe_load((COMPONENTS / component / "secret.example.yaml").read_text())


def test_example_secrets():
    assert web_config_secret_problems(example_secret("web-config")) == []
    assert scrape_secret_problems(example_secret("prometheus-operator-web-config")) == []


@pytest.mark.parametrize("what", ["file_elsewhere", "no_key", "no_cert_file", "ca_not_in_secret", "other_name"])
def test_example_secret_check_fails_on_a_broken_copy(what):
    secret = example_secret("web-config")
    data = secret["stringData"]
    if what == "file_elsewhere":
        data["web-config.yml"] = data["web-config.yml"].replace("/etc/odin/web/tls.key", "/etc/ssl/tls.key")
    elif what == "no_key":
        del data["tls.key"]
    elif what == "no_cert_file":
        data["web-config.yml"] = data["web-config.yml"].replace("cert_file:", "cert:")
    elif what == "ca_not_in_secret":
        data["web-config.yml"] = data["web-config.yml"].replace(
            "  min_version:", "  client_ca_file: /etc/odin/web/ca.crt\n  min_version:")
    else:
        secret["metadata"]["name"] = "web-config"
    assert web_config_secret_problems(secret), f"{what} went unnoticed"
    scrape = example_secret("prometheus-operator-web-config")
    del scrape["stringData"]["password"]
    assert scrape_secret_problems(scrape)


@pytest.mark.parametrize("name", NAMES)
def test_systemd_web_config_dropin(name):
    assert systemd_web_config_problems(SYSTEMD / "web-config.conf.example", SYSTEMD / f"{name}.service",
                                       manifest.get(name), SYSTEMD / "web-config.yml.example") == []


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what", ["loosened", "no_reset", "args_lost", "no_credential", "flag_elsewhere",
                                  "absolute_name", "unit_changed"])
def test_systemd_web_config_check_fails_on_a_broken_copy(name, what, tmp_path):
    dropin, yml = tmp_path / "web-config.conf", tmp_path / "web-config.yml"
    unit = SYSTEMD / f"{name}.service"
    text = (SYSTEMD / "web-config.conf.example").read_text()
    yml_text = (SYSTEMD / "web-config.yml.example").read_text()
    if what == "loosened":
        text += "ProtectSystem=no\n"
    elif what == "no_reset":
        text = text.replace("\nExecStart=\n", "\n")
    elif what == "args_lost":
        text = text.replace(" $ARGS\n", "\n")
    elif what == "no_credential":
        text = text.replace("LoadCredential=tls.key:", "#LoadCredential=tls.key:")
    elif what == "flag_elsewhere":
        text = text.replace("${CREDENTIALS_DIRECTORY}/web-config.yml", "/etc/odin/web/web-config.yml")
    elif what == "absolute_name":
        yml_text = yml_text.replace("cert_file: tls.crt", "cert_file: /etc/odin/web/tls.crt")
    else:
        # the unit's command line grows a flag the drop-in's copy of it would drop
        unit = tmp_path / f"{name}.service"
        own = f"ExecStart=/usr/local/bin/{name} $ARGS"
        assert own in (SYSTEMD / f"{name}.service").read_text()
        unit.write_text((SYSTEMD / f"{name}.service").read_text().replace(
            own, f"ExecStart=/usr/local/bin/{name} --log.format=json $ARGS"))
    dropin.write_text(text)
    yml.write_text(yml_text)
    assert systemd_web_config_problems(dropin, unit, manifest.get(name), yml), f"{what} went unnoticed"
