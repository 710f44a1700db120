"""Checks of deploy/ against exporters.toml: the Kubernetes DaemonSets (one parametrised
check for every exporter), the systemd units and the static Prometheus config.

The manifest's optional host keys `home` (users' home directories, read-only) and `state`
(a writable state directory, /var/lib/<name>) are checked too: in the DaemonSet as hostPath
mounts at /host/home and /var/lib/<name> (and the pod's uid: the home owner's instead of
65534), in the systemd unit as ProtectHome=read-only and StateDirectory=<name>.

Supplementary groups are SUPPLEMENTARY_GROUPS, exactly: the listed exporters' pods join one
group of the node by its numeric gid (supplementalGroups), their units by name
(SupplementaryGroups=); no other exporter joins any.

Devices (the manifest's `devices`): a systemd unit allows exactly their DeviceAllow= classes
(DEVICE_CLASSES); a DaemonSet gets them from the GPU runtime, or, for those listed in
K8S_DEVICE_COMPONENTS, not at all in the base (no /dev hostPath, no device plugin resource)
and from an optional component's device plugin resource.

Capabilities are this file's tables, exactly: K8S_CAPABILITIES (the container adds those and
drops every other one, and runs as uid 0, since Kubernetes gives a non-root user none) and
SYSTEMD_CAPABILITIES (a unit's CapabilityBoundingSet= and AmbientCapabilities=). Every
exporter not listed has none.

A web configuration (--web.config.file, docs/web-config.md) is optional everywhere: the base
DaemonSets, the shipped ServiceMonitors and units serve plain HTTP. With `--web-config` the
DaemonSet and ServiceMonitor checks expect instead what the optional components
deploy/kubernetes/components/web-config and prometheus-operator-web-config make of them (the
Secret mounted whole at WEB_CONFIG_DIR, the environment twins, HTTPS probes; HTTPS scrapes
with a CA, a server name and basic auth), everything else unchanged. `web-config-secrets`
checks the components' example Secrets, `systemd-web-config` the LoadCredential= drop-in
deploy/systemd/web-config.conf.example and its web-config.yml.example against every unit.

Each check returns a list of problems (empty: fine), so the tests can show that it fails on a
broken copy. deploy/test.sh runs them from the command line:

    python3 tests/odin/deploychecks.py daemonsets [--web-config] RENDERED.yaml  (kubectl kustomize output)
    python3 tests/odin/deploychecks.py servicemonitors [--web-config] RENDERED.yaml  (prometheus-operator)
    python3 tests/odin/deploychecks.py web-config-secrets          (the components' secret.example.yaml)
    python3 tests/odin/deploychecks.py systemd [DIR]              (default deploy/systemd)
    python3 tests/odin/deploychecks.py systemd-web-config [DIR]   (DIR/web-config.conf.example, web-config.yml.example)
    python3 tests/odin/deploychecks.py prometheus [FILE]          (default deploy/prometheus/prometheus.yml)
"""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from odin import REPO, manifest  # noqa: E402

NAMESPACE = "monitoring"
# systemd DeviceAllow= classes and the device nodes (as the manifest writes them) they open.
DEVICE_CLASSES = {
    "char-nvidia-frontend": {"/dev/nvidiactl", "/dev/nvidia[0-9]*"},
    "char-nvidia-caps": {"/dev/nvidia-caps/*"},
    "char-hidraw": {"/dev/hidraw*"},
}
# Devices of the manifest that a DaemonSet without the GPU runtime does not get, and the
# optional component (deploy/kubernetes/components/<name>) that requests them from a device
# plugin. Kubernetes lets an unprivileged container open no host device node it was not
# handed by the runtime or a device plugin: a hostPath mount of /dev or of the node gives the
# file, and the container's device cgroup refuses to open it. The base takes no device
# plugin resource either (a node without the plugin would never schedule the pod), so such
# an exporter runs there without the devices and reports them absent (its /health says so);
# the DaemonSet must then neither mount anything of /dev nor take an extended resource.
K8S_DEVICE_COMPONENTS = {
    "/dev/hidraw*": "razer-hidraw",
}
K8S_PLAIN_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


# Capabilities a DaemonSet's container adds (Kubernetes names), exactly; every other one is
# dropped. Kubernetes gives a container running as a non-root user no capabilities (no ambient
# set), so such a container runs as uid 0 (runAsNonRoot false); every other exporter runs as a
# non-root user with none. CAP_SYS_PTRACE's read check also goes through AppArmor, whose
# default container profile refuses it towards processes outside containers, so an exporter
# adding SYS_PTRACE runs AppArmor-unconfined and no other does.
K8S_CAPABILITIES = {
    # Other users' /proc/<pid>/fd, environ, io, exe, cwd, root: modes 0400/0500 (DAC), and the
    # ptrace read check when the uids differ.
    "claude-process-exporter": {"SYS_PTRACE", "DAC_READ_SEARCH"},
}
# A systemd unit's CapabilityBoundingSet= and AmbientCapabilities= (each exactly this set;
# empty for the exporters not listed). The units run as a DynamicUser, so ambient capabilities
# are how they get any.
SYSTEMD_CAPABILITIES = {
    # other users' ~/.claude: home directories are 0700 or 0750
    "token-collector": {"CAP_DAC_READ_SEARCH"},
    # as K8S_CAPABILITIES
    "claude-process-exporter": {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"},
}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# The node group an exporter reads files through instead of a capability: the systemd unit's
# SupplementaryGroups= (exactly this group), the DaemonSet pod's supplementalGroups (exactly
# one gid: a pod knows groups by number only, and the number is the node's, so the check asks
# for one positive gid, not a particular one). Exporters not listed join no group.
SUPPLEMENTARY_GROUPS = {
    # RAPL's energy_uj is root-only since CVE-2020-8694 (PLATYPUS);
    # deploy/udev/70-odin-power-rapl.rules or deploy/tmpfiles/odin-power-rapl.conf make it
    # readable by this group, so the exporter needs no capability.
    "power-exporter": "odin-power",
    # openrazer's sysfs attributes (its own udev setup) and a Blade's hidraw nodes
    # (deploy/udev/70-odin-razer-hidraw.rules) are root:plugdev, not world-readable.
    "razer-exporter": "plugdev",
}


# The optional web configuration (docs/web-config.md). In Kubernetes: the Secret the web-config
# component mounts, whole, at WEB_CONFIG_DIR in every exporter's pod, its keys (ca.crt, for
# client certificates, is optional) and the file the exporters are pointed at; the Secret
# the prometheus-operator-web-config component's ServiceMonitors read, and its keys.
WEB_CONFIG_SECRET = "odin-web-config"
WEB_CONFIG_DIR = "/etc/odin/web"
WEB_CONFIG_FILE = f"{WEB_CONFIG_DIR}/web-config.yml"
WEB_CONFIG_KEYS = {"web-config.yml", "tls.crt", "tls.key"}
WEB_CONFIG_OPTIONAL_KEYS = {"ca.crt"}
SCRAPE_SECRET = "odin-scrape"
SCRAPE_KEYS = {"ca.crt", "username", "password"}
# The files a web configuration names (tls_server_config).
WEB_CONFIG_FILE_KEYS = ("cert_file", "key_file", "client_ca_file")
# systemd: the drop-in hands the files over as credentials (LoadCredential=, read by systemd
# as root at start, copied to $CREDENTIALS_DIRECTORY for the DynamicUser) and points the flag
# at the copy. Nothing else may be in it, so it cannot loosen a unit's hardening.
SYSTEMD_WEB_CONFIG_FLAG = "--web.config.file=${CREDENTIALS_DIRECTORY}/web-config.yml"
SYSTEMD_WEB_CONFIG_KEYS = {"LoadCredential", "ExecStart"}


def env_prefix(name: str) -> str:
    """network-exporter -> NETWORK_EXPORTER_ (the flags' environment twins)."""
    return name.upper().replace("-", "_") + "_"


def expected_args(e: dict) -> list[str]:
    """The container's args: host paths first, the listen address, then run_args."""
    args = []
    if e["host"]["procfs"]:
        args.append("--path.procfs=/host/proc")
    if e["host"]["sysfs"]:
        args.append("--path.sysfs=/host/sys")
    return args + [f"--web.listen-address=:{e['port']}", *e["run_args"]]


# Settings only one exporter has, beyond what the manifest says (name -> {what: check(pod, env)}).
EXTRA = {
    "network-exporter": {
        "env twin example NETWORK_EXPORTER_DNS_PROBE_NAME":
            lambda pod, env: bool(env.get("NETWORK_EXPORTER_DNS_PROBE_NAME", {}).get("value")),
    },
    "token-collector": {
        # Per-user files: it runs only on nodes labelled for it, never on every node.
        "opt-in nodes only (nodeSelector odin.dev/claude-code=true)":
            lambda pod, env: pod.get("nodeSelector", {}).get("odin.dev/claude-code") == "true",
        "config dirs under /host/home (TOKEN_COLLECTOR_CLAUDE_CONFIG_DIR)":
            lambda pod, env: all(d.startswith("/host/home/") for d in
                                 env.get("TOKEN_COLLECTOR_CLAUDE_CONFIG_DIR", {}).get("value", "-").split(",")),
        "database in the state directory (TOKEN_COLLECTOR_STORAGE_PATH)":
            lambda pod, env: env.get("TOKEN_COLLECTOR_STORAGE_PATH", {}).get("value", "")
            .startswith("/var/lib/token-collector/"),
    },
    "claude-process-exporter": {
        # The Claude Code processes of the people working on a node: where they work only.
        "opt-in nodes only (nodeSelector odin.dev/claude-code=true)":
            lambda pod, env: pod.get("nodeSelector", {}).get("odin.dev/claude-code") == "true",
    },
    "razer-exporter": {
        # Razer laptops and peripherals: workstations, not every node.
        "opt-in nodes only (nodeSelector odin.dev/razer=true)":
            lambda pod, env: pod.get("nodeSelector", {}).get("odin.dev/razer") == "true",
    },
    "gpu-exporter": {
        "NODE_NAME from spec.nodeName":
            lambda pod, env: env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
            .get("fieldPath") == "spec.nodeName",
        "DCGM Hostname is the node":
            lambda pod, env: env.get("GPU_EXPORTER_METRICS_DCGM_HOSTNAME", {}).get("value") == "$(NODE_NAME)",
    },
}


def _host_path_mount(pod: dict, container: dict, mount_path: str, host_path: str,
                     read_only: bool = True) -> bool:
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    m = mounts.get(mount_path)
    return (m is not None and (m.get("readOnly") is True) == read_only
            and vols.get(m["name"], {}).get("hostPath", {}).get("path") == host_path)


def apparmor_unconfined(template: dict, container: dict) -> bool:
    """The container runs without an AppArmor profile: the (pre-1.30, still honoured)
    annotation or securityContext.appArmorProfile, of the container or the pod."""
    ann = template.get("metadata", {}).get("annotations", {}) or {}
    if ann.get(APPARMOR_ANNOTATION + container.get("name", "")) == "unconfined":
        return True
    for sc in (container.get("securityContext", {}), template["spec"].get("securityContext", {})):
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            return True
    return False


def daemonset_problems(objects: list[dict], e: dict, web_config: bool = False) -> list[str]:
    """One exporter's DaemonSet, Service and ServiceAccount (rendered objects) against the
    manifest entry `e` and the security settings every exporter shares; with `web_config`,
    as the web-config component leaves them (web_config_items), else with no web
    configuration at all."""
    name, port, host = e["name"], e["port"], e["host"]
    docs = {(d["kind"], d["metadata"]["name"]): d for d in objects if d}
    missing = [k for k in ("DaemonSet", "Service", "ServiceAccount") if (k, name) not in docs]
    if missing:
        return [f"{name}: no {', '.join(missing)} named {name}"]
    ds, svc, sa = docs[("DaemonSet", name)], docs[("Service", name)], docs[("ServiceAccount", name)]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    env = {x["name"]: x for x in c.get("env", [])}
    res = c.get("resources", {})
    no_gpu_taken = not any("nvidia.com/gpu" in res.get(k, {}) for k in ("requests", "limits"))
    caps = K8S_CAPABILITIES.get(name, set())
    cap_sc = sc.get("capabilities", {})
    added = cap_sc.get("add") or []
    if caps:
        # Capabilities need uid 0 (see K8S_CAPABILITIES).
        user = ("uid 0, runAsNonRoot false (its capabilities need it)",
                psc.get("runAsUser") == 0 and psc.get("runAsNonRoot") is False
                and sc.get("runAsNonRoot") is not True)
    elif host.get("home"):
        # An exporter reading users' home directories runs as the uid owning them (home
        # directories are 0700 or 0750 on current distributions); every other one as nobody.
        user = ("runAsNonRoot, the home owner's uid (not 0)",
                psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0)
    else:
        user = ("runAsNonRoot 65534", psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65534)
    probe_get, probe_scheme = ({"scheme": "HTTPS"}, " over HTTPS") if web_config else ({}, "")
    groups = psc.get("supplementalGroups")
    if name in SUPPLEMENTARY_GROUPS:
        group = (f"supplementalGroups: one gid, the node's {SUPPLEMENTARY_GROUPS[name]} (SUPPLEMENTARY_GROUPS)",
                 isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], int)
                 and not isinstance(groups[0], bool) and groups[0] > 0)
    else:
        group = ("no supplementalGroups", not groups)
    want = {
        # shared by every exporter
        f"namespace {NAMESPACE}": all(d["metadata"].get("namespace") == NAMESPACE for d in (ds, svc, sa)),
        "tolerates every taint": {"operator": "Exists"} in pod.get("tolerations", []),
        user[0]: user[1],
        group[0]: group[1],
        "the container keeps the pod's user and group": all(
            sc.get(k) in (None, psc.get(k)) for k in ("runAsUser", "runAsGroup")),
        "seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
        "not privileged": not sc.get("privileged"),
        (f"drop ALL capabilities, add exactly {sorted(caps)}" if caps else "drop ALL capabilities"):
            cap_sc.get("drop") == ["ALL"] and len(added) == len(set(added)) and set(added) == caps,
        ("AppArmor unconfined (its ptrace read check towards host processes)" if "SYS_PTRACE" in caps
         else "AppArmor not unconfined"):
            apparmor_unconfined(ds["spec"]["template"], c) == ("SYS_PTRACE" in caps),
        "command": c.get("command") == [f"/usr/local/bin/{name}"],
        f"args {expected_args(e)}": c.get("args") == expected_args(e),
        f"port metrics {port}": {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c.get("ports", []),
        f"liveness /healthz{probe_scheme}": c.get("livenessProbe", {}).get("httpGet")
            == {"path": "/healthz", "port": "metrics", **probe_get},
        f"readiness /ready{probe_scheme}": c.get("readinessProbe", {}).get("httpGet")
            == {"path": "/ready", "port": "metrics", **probe_get},
        "requests and limits": all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
        f"env twin example ({env_prefix(name)}*)": any(k.startswith(env_prefix(name)) and v.get("value")
                                                      for k, v in env.items()),
        "rolling update": ds["spec"].get("updateStrategy", {}).get("type") == "RollingUpdate"
            and "maxUnavailable" in ds["spec"]["updateStrategy"].get("rollingUpdate", {}),
        "no service account token": pod.get("automountServiceAccountToken") is False,
        "headless service": svc["spec"].get("clusterIP") == "None",
        "service selects the pods": bool(svc["spec"].get("selector")) and all(
            ds["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items()),
        f"service port metrics {port}": any(p.get("name") == "metrics" and p.get("port") == port
                                            for p in svc["spec"].get("ports", [])),
        "no GPU resource taken": no_gpu_taken,
    }
    # what the manifest says it needs from the host
    if host["network"]:
        want["hostNetwork"] = pod.get("hostNetwork") is True
        want["dnsPolicy ClusterFirstWithHostNet"] = pod.get("dnsPolicy") == "ClusterFirstWithHostNet"
    else:
        want["not on the host network"] = not pod.get("hostNetwork")
    want["hostPID" if host["pid"] else "no hostPID"] = bool(pod.get("hostPID")) == host["pid"]
    for key, path in (("procfs", "/proc"), ("sysfs", "/sys")):
        mount = f"/host{path}"
        if host[key]:
            want[f"{path} read-only at {mount}"] = _host_path_mount(pod, c, mount, path)
        else:
            want[f"no {mount} mount"] = mount not in {m["mountPath"] for m in c.get("volumeMounts", [])}
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    if host.get("home"):
        want["/home read-only at /host/home"] = _host_path_mount(pod, c, "/host/home", "/home")
    else:
        want["no /host/home mount"] = "/host/home" not in mounts
    state = f"/var/lib/{name}"
    if host.get("state"):
        want[f"{state} writable from the host's {state}"] = _host_path_mount(pod, c, state, state, read_only=False)
    else:
        want[f"no {state} mount"] = state not in mounts
    gpu_node = pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true"
    if host["gpu_runtime"]:
        want["runtimeClassName nvidia"] = pod.get("runtimeClassName") == "nvidia"
        want["GPU nodes only"] = gpu_node
        want["NVIDIA_VISIBLE_DEVICES=all"] = env.get("NVIDIA_VISIBLE_DEVICES", {}).get("value") == "all"
        want["NVIDIA_DRIVER_CAPABILITIES=utility"] = env.get("NVIDIA_DRIVER_CAPABILITIES", {}).get("value") == "utility"
    else:
        want["no runtimeClassName"] = "runtimeClassName" not in pod
        want["not limited to GPU nodes"] = not gpu_node
    if host["devices"] and not host["gpu_runtime"]:
        # Not handed out in the base (K8S_DEVICE_COMPONENTS): no optional component for a
        # device is a device no pod can ever get.
        for dev in host["devices"]:
            comp = K8S_DEVICE_COMPONENTS.get(dev)
            want[f"device {dev}: an optional component requests it (K8S_DEVICE_COMPONENTS)"] = (
                comp is not None
                and (REPO / "deploy/kubernetes/components" / comp / "kustomization.yaml").exists())
        want["no hostPath under /dev (an unprivileged container may not open host devices)"] = not any(
            (v.get("hostPath") or {}).get("path", "").rstrip("/") == "/dev"
            or (v.get("hostPath") or {}).get("path", "").startswith("/dev/")
            for v in pod.get("volumes", []))
        want["no device plugin resource in the base (a node without the plugin would not schedule it)"] = all(
            set(res.get(k, {})) <= K8S_PLAIN_RESOURCES for k in ("requests", "limits"))
    for what, check in EXTRA.get(name, {}).items():
        want[what] = check(pod, env)
    want.update(web_config_items(ds["spec"]["template"], c, env, name, web_config))
    return [f"{name}: {what}" for what, ok in want.items() if not ok]


def web_config_items(template: dict, c: dict, env: dict, name: str, on: bool) -> dict[str, bool]:
    """What the web-config component does to a DaemonSet (`on`), or that nothing of it is
    there (the base: plain HTTP, no Secret a cluster would first have to create). The flags
    come as environment twins like the DaemonSets' other settings, so the args stay what
    exporters.toml says (checked above)."""
    pod = template["spec"]
    secret_vols = {v["name"]: v["secret"] for v in pod.get("volumes", [])
                   if (v.get("secret") or {}).get("secretName") == WEB_CONFIG_SECRET}
    mounts = [m for m in c.get("volumeMounts", []) if m.get("name") in secret_vols]
    p = env_prefix(name)
    file_twin, probes_twin = p + "WEB_CONFIG_FILE", p + "WEB_UNAUTHENTICATED_PROBES"
    if not on:
        return {"no web configuration (the base serves plain HTTP and needs no Secret)":
                not secret_vols and file_twin not in env and probes_twin not in env}
    m = mounts[0] if len(mounts) == 1 else {}
    annotations = template.get("metadata", {}).get("annotations") or {}
    return {
        # No subPath (its file never changes after the pod starts) and no items list (every
        # key present, ca.crt only if it exists): the kubelet's updates of the Secret reach
        # the exporter's watcher.
        f"Secret {WEB_CONFIG_SECRET} mounted once, read-only, whole at {WEB_CONFIG_DIR} (no subPath, no items)":
            m.get("mountPath") == WEB_CONFIG_DIR and m.get("readOnly") is True
            and not m.get("subPath") and not m.get("subPathExpr")
            and not secret_vols.get(m.get("name"), {}).get("items"),
        f"{file_twin}={WEB_CONFIG_FILE}": env.get(file_twin, {}).get("value") == WEB_CONFIG_FILE,
        # The kubelet's probes carry no password.
        f"{probes_twin}=true": env.get(probes_twin, {}).get("value") == "true",
        "pod annotation prometheus.io/scheme: https": annotations.get("prometheus.io/scheme") == "https",
    }


def _web_config_files(text: str) -> dict[str, str]:
    """The files a web configuration's tls_server_config names: key -> path as written."""
    import yaml
    tls = (yaml.safe_load(text) or {}).get("tls_server_config") or {}
    return {k: tls[k] for k in WEB_CONFIG_FILE_KEYS if tls.get(k)}


def _secret_data(secret: dict) -> dict[str, str]:
    import base64
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def web_config_secret_problems(secret: dict) -> list[str]:
    """The web-config component's example Secret: named as the DaemonSets mount it, the keys
    they need, and a web-config.yml whose certificate, key (and client CA) are keys of the
    same Secret under WEB_CONFIG_DIR, where the pod sees them."""
    where = f"Secret {secret.get('metadata', {}).get('name')}"
    problems = []
    if secret.get("kind") != "Secret" or secret["metadata"].get("name") != WEB_CONFIG_SECRET:
        problems.append(f"{where}: not the Secret {WEB_CONFIG_SECRET}")
    if secret.get("metadata", {}).get("namespace") != NAMESPACE:
        problems.append(f"{where}: not in namespace {NAMESPACE}")
    data = _secret_data(secret)
    if not WEB_CONFIG_KEYS <= set(data):
        problems.append(f"{where}: keys {sorted(data)} lack {sorted(WEB_CONFIG_KEYS - set(data))}")
    if set(data) - WEB_CONFIG_KEYS - WEB_CONFIG_OPTIONAL_KEYS:
        problems.append(f"{where}: unknown keys {sorted(set(data) - WEB_CONFIG_KEYS - WEB_CONFIG_OPTIONAL_KEYS)}")
    files = _web_config_files(data.get("web-config.yml", ""))
    for k in ("cert_file", "key_file"):
        if k not in files:
            problems.append(f"{where}: web-config.yml has no tls_server_config.{k}")
    for k, path in files.items():
        head, _, key = path.rpartition("/")
        if head != WEB_CONFIG_DIR or key not in data:
            problems.append(f"{where}: web-config.yml's {k} {path} is not a key of this Secret in {WEB_CONFIG_DIR}/")
    return problems


def scrape_secret_problems(secret: dict) -> list[str]:
    """The prometheus-operator-web-config component's example Secret: the keys its
    ServiceMonitors read (servicemonitor_problems holds them to SCRAPE_KEYS)."""
    data = _secret_data(secret)
    problems = []
    if secret.get("kind") != "Secret" or secret["metadata"].get("name") != SCRAPE_SECRET:
        problems.append(f"not the Secret {SCRAPE_SECRET}")
    if secret.get("metadata", {}).get("namespace") != NAMESPACE:
        problems.append(f"Secret {SCRAPE_SECRET}: not in namespace {NAMESPACE}")
    if not SCRAPE_KEYS <= set(data):
        problems.append(f"Secret {SCRAPE_SECRET}: keys {sorted(data)} lack {sorted(SCRAPE_KEYS - set(data))}")
    return problems


def base_problems(objects: list[dict], exporters: list[dict], web_config: bool = False) -> list[str]:
    """Every object of the rendered base in the namespace; every exporter's check."""
    problems = [f"{d['kind']} {d['metadata']['name']}: not in namespace {NAMESPACE}"
                for d in objects if d and d["metadata"].get("namespace") != NAMESPACE]
    for e in exporters:
        problems += daemonset_problems(objects, e, web_config)
    names = {e["name"] for e in exporters}
    problems += [f"DaemonSet {d['metadata']['name']} is not in exporters.toml"
                 for d in objects if d and d["kind"] == "DaemonSet" and d["metadata"]["name"] not in names]
    return problems


def servicemonitor_problems(objects: list[dict], exporters: list[dict], web_config: bool = False) -> list[str]:
    """The Prometheus Operator overlay has a ServiceMonitor per exporter, named after it (so
    the job is the exporter's name), scraping the Service's `metrics` port: over plain HTTP,
    or with `web_config` as the prometheus-operator-web-config component makes it: HTTPS, the
    certificate checked against the CA of the Secret SCRAPE_SECRET for a fixed server name
    (targets are pod IPs), basic auth from the same Secret."""
    monitors = {d["metadata"]["name"]: d for d in objects if d and d["kind"] == "ServiceMonitor"}
    problems = []
    for e in exporters:
        m = monitors.get(e["name"])
        if m is None:
            problems.append(f"no ServiceMonitor {e['name']}")
            continue
        endpoints = m["spec"].get("endpoints", [])
        if [ep.get("port") for ep in endpoints] != ["metrics"]:
            problems.append(f"ServiceMonitor {e['name']}: endpoints are not the one port `metrics`")
            continue
        ep = endpoints[0]
        tls, auth = ep.get("tlsConfig") or {}, ep.get("basicAuth") or {}
        if not web_config:
            if ep.get("scheme", "http") != "http" or tls or auth:
                problems.append(f"ServiceMonitor {e['name']}: not plain HTTP (the web config is optional)")
            continue
        ref = lambda key: {"name": SCRAPE_SECRET, "key": key}  # noqa: E731
        want = {
            "scheme https": ep.get("scheme") == "https",
            f"tlsConfig.ca from Secret {SCRAPE_SECRET} (ca.crt)": (tls.get("ca") or {}).get("secret") == ref("ca.crt"),
            "tlsConfig.serverName set (targets are IPs)": bool(tls.get("serverName")),
            "certificate checked (no insecureSkipVerify)": not tls.get("insecureSkipVerify"),
            f"basicAuth from Secret {SCRAPE_SECRET} (username, password)":
                auth.get("username") == ref("username") and auth.get("password") == ref("password"),
        }
        problems += [f"ServiceMonitor {e['name']}: {what}" for what, ok in want.items() if not ok]
    return problems


def read_unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's [Service] settings: key -> every value given (repeatable keys)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          dict_type=_MultiDict, empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(Path(path).read_text())
    return {k: v if isinstance(v, list) else [v] for k, v in parser["Service"].items()}


class _MultiDict(dict):
    """Keeps every value of a repeated key (DeviceAllow=, SystemCallFilter=)."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self and isinstance(self[key], list):
            super().__getitem__(key).extend(value)
        else:
            super().__setitem__(key, value)


def service_lines(unit: Path) -> list[tuple[str, str]]:
    """Every assignment of the unit's (or drop-in's) [Service] section, in order, as (key,
    value), empty values included; comments skipped."""
    out, section = [], ""
    for line in Path(unit).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


def service_assignments(unit: Path, key: str) -> list[str]:
    """Every value given to `key` in the unit's [Service] section, in order, empty ones
    included (read_unit's parser drops a trailing empty one, which for capabilities is a
    reset)."""
    return [v for k, v in service_lines(unit) if k == key]


def unit_capabilities(values: list[str]) -> set[str] | str:
    """The capability set that repeated CapabilityBoundingSet=/AmbientCapabilities= lines
    leave (an empty assignment resets it, later ones add), or a string saying why it cannot be
    told (a `~` inverted list)."""
    found: set[str] = set()
    for value in values:
        words = value.split()
        if not words:
            found = set()
        elif words[0].startswith("~"):
            return f"an inverted list ({value}), which keeps every capability not named"
        else:
            found |= set(words)
    return found


def systemd_problems(unit: Path, e: dict) -> list[str]:
    """An exporter's systemd unit against what the manifest says it needs from the host."""
    name, host = e["name"], e["host"]
    if not Path(unit).exists():
        return [f"{name}: no systemd unit {unit}"]
    svc = {k: [x.strip() for v in vs for x in str(v).splitlines() if x.strip()]
           for k, vs in read_unit(unit).items()}
    one = {k: v[-1] if v else "" for k, v in svc.items()}
    problems = []
    if not one.get("ExecStart", "").startswith(f"/usr/local/bin/{name}"):
        problems.append(f"{name}: ExecStart is not /usr/local/bin/{name}")
    classes = {v.split()[0] for v in svc.get("DeviceAllow", [])}
    need = set()
    for dev in host["devices"]:
        cls = [c for c, nodes in DEVICE_CLASSES.items() if dev in nodes]
        if not cls:
            problems.append(f"{name}: no DeviceAllow class known for device {dev} (odin/deploychecks.py)")
        need.update(cls)
    if host["devices"]:
        if one.get("PrivateDevices") != "no" or one.get("DevicePolicy") != "closed":
            problems.append(f"{name}: devices {host['devices']} need PrivateDevices=no and DevicePolicy=closed")
        if classes != need:
            problems.append(f"{name}: DeviceAllow {sorted(classes)}, the manifest's devices need {sorted(need)}")
    elif one.get("PrivateDevices") != "yes" or classes:
        problems.append(f"{name}: no devices in the manifest, so PrivateDevices=yes and no DeviceAllow")
    want_home = "read-only" if host.get("home") else "yes"
    if one.get("ProtectHome") != want_home:
        problems.append(f"{name}: host.home is {str(bool(host.get('home'))).lower()}, so ProtectHome={want_home} "
                        f"(found {one.get('ProtectHome')!r})")
    if host.get("state") and one.get("StateDirectory") != name:
        problems.append(f"{name}: host.state is true, so StateDirectory={name} (found {one.get('StateDirectory')!r})")
    if not host.get("state") and one.get("StateDirectory"):
        problems.append(f"{name}: host.state is false, but StateDirectory={one.get('StateDirectory')}")
    want_caps = SYSTEMD_CAPABILITIES.get(name, set())
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        found = unit_capabilities(service_assignments(unit, key))
        if found != want_caps:
            problems.append(f"{name}: {key}={' '.join(sorted(want_caps))} expected "
                            f"(odin/deploychecks.py SYSTEMD_CAPABILITIES), found "
                            f"{' '.join(sorted(found)) if isinstance(found, set) else found}")
    want_group = SUPPLEMENTARY_GROUPS.get(name)
    found_groups = [g for v in svc.get("SupplementaryGroups", []) for g in v.split()]
    if found_groups != ([want_group] if want_group else []):
        problems.append(f"{name}: SupplementaryGroups={want_group or ''} expected "
                        f"(odin/deploychecks.py SUPPLEMENTARY_GROUPS), found {' '.join(found_groups) or 'none'}")
    want_proc = "default" if host["pid"] else "invisible"
    if one.get("ProtectProc") != want_proc:
        problems.append(f"{name}: host.pid is {str(host['pid']).lower()}, so ProtectProc={want_proc} "
                        f"(found {one.get('ProtectProc')!r})")
    return problems


def systemd_web_config_problems(dropin: Path, unit: Path, e: dict, web_config_yml: Path | None = None) -> list[str]:
    """The web configuration drop-in (deploy/systemd/web-config.conf.example) on an exporter's
    unit: only LoadCredential= and ExecStart= (SYSTEMD_WEB_CONFIG_KEYS); the credentials
    web-config.yml, tls.crt and tls.key from the same-named files in WEB_CONFIG_DIR; ExecStart=
    cleared, then the unit's own command line (the binary named %N, after the unit) with
    SYSTEMD_WEB_CONFIG_FLAG right after the binary, so nothing of the unit's command line is
    lost. With `web_config_yml`, that file must name its files by credential name: a relative
    name, taken from the folder of the file the flag names, the credentials directory."""
    name = e["name"]
    if not Path(dropin).exists():
        return [f"no drop-in {dropin}"]
    lines = service_lines(dropin)
    problems = [f"{name}: {k}= in the web config drop-in (only {', '.join(sorted(SYSTEMD_WEB_CONFIG_KEYS))})"
                for k in dict(lines) if k not in SYSTEMD_WEB_CONFIG_KEYS]
    creds = {}
    for k, v in lines:
        if k == "LoadCredential":
            cid, _, src = v.partition(":")
            creds[cid] = src
    for cid in sorted(WEB_CONFIG_KEYS):
        if creds.get(cid) != f"{WEB_CONFIG_DIR}/{cid}":
            problems.append(f"{name}: no LoadCredential={cid}:{WEB_CONFIG_DIR}/{cid}")
    execs = [v for k, v in lines if k == "ExecStart"]
    own = service_assignments(unit, "ExecStart")
    if not own:
        problems.append(f"{name}: the unit has no ExecStart=")
    else:
        binary, _, rest = own[-1].partition(" ")
        want = " ".join(x for x in (binary, SYSTEMD_WEB_CONFIG_FLAG, rest) if x)
        if binary != f"/usr/local/bin/{name}" or len(execs) != 2 or execs[0] != "" \
                or execs[1].replace("%N", name) != want:
            problems.append(f"{name}: the drop-in's ExecStart= is not an empty one, then "
                            f"{want.replace(name, '%N', 1)!r} (the unit's {own[-1]!r} with the flag), found {execs}")
    if web_config_yml is not None:
        files = _web_config_files(Path(web_config_yml).read_text())
        for k in ("cert_file", "key_file"):
            if k not in files:
                problems.append(f"{web_config_yml}: no tls_server_config.{k}")
        for k, path in files.items():
            if "/" in path or path not in creds:
                problems.append(f"{web_config_yml}: {k} {path} is not the name of a credential of the drop-in "
                                f"({', '.join(sorted(creds))})")
    return problems


def prometheus_problems(config: dict, exporters: list[dict]) -> list[str]:
    """The static config scrapes every exporter as job <name> on localhost:<port>, and no
    job is named after an exporter the manifest does not know."""
    jobs = {j.get("job_name"): j for j in config.get("scrape_configs", []) or []}
    problems = []
    for e in exporters:
        job = jobs.get(e["name"])
        if job is None:
            problems.append(f"no scrape job {e['name']}")
            continue
        targets = [t for sc in job.get("static_configs", []) or [] for t in sc.get("targets", [])]
        if f"localhost:{e['port']}" not in targets:
            problems.append(f"job {e['name']}: targets {targets}, want localhost:{e['port']}")
    known = {e["name"] for e in exporters}
    problems += [f"job {j} names no exporter of exporters.toml" for j in jobs if j.endswith("exporter") and j not in known]
    return problems


def _main(argv: list[str]) -> int:
    import yaml
    exporters = manifest.load()
    web_config = "--web-config" in argv[1:2]
    if web_config:
        argv = argv[:1] + argv[2:]
    if argv[:1] == ["daemonsets"] and len(argv) == 2:
        objects = [d for d in yaml.safe_load_all(Path(argv[1]).read_text()) if d]
        problems = base_problems(objects, exporters, web_config)
        what = f"DaemonSet, Service and ServiceAccount of {len(exporters)} exporters" + \
            (" with the web config" if web_config else "")
    elif argv[:1] == ["servicemonitors"] and len(argv) == 2:
        objects = [d for d in yaml.safe_load_all(Path(argv[1]).read_text()) if d]
        problems = servicemonitor_problems(objects, exporters, web_config)
        what = f"ServiceMonitors of {len(exporters)} exporters" + (" with the web config" if web_config else "")
    elif argv[:1] == ["web-config-secrets"] and len(argv) == 1 and not web_config:
        comps = REPO / "deploy" / "kubernetes" / "components"
        problems = web_config_secret_problems(
            yaml.safe_load((comps / "web-config" / "secret.example.yaml").read_text()))
        problems += scrape_secret_problems(
            yaml.safe_load((comps / "prometheus-operator-web-config" / "secret.example.yaml").read_text()))
        what = "example Secrets of the web config components"
    elif argv[:1] == ["systemd"] and len(argv) <= 2 and not web_config:
        d = Path(argv[1]) if len(argv) == 2 else REPO / "deploy" / "systemd"
        problems = [p for e in exporters for p in systemd_problems(d / f"{e['name']}.service", e)]
        what = f"systemd units of {len(exporters)} exporters"
    elif argv[:1] == ["systemd-web-config"] and len(argv) <= 2 and not web_config:
        d = Path(argv[1]) if len(argv) == 2 else REPO / "deploy" / "systemd"
        problems = [p for e in exporters for p in systemd_web_config_problems(
            d / "web-config.conf.example", d / f"{e['name']}.service", e, d / "web-config.yml.example")]
        what = f"web config drop-in on the systemd units of {len(exporters)} exporters"
    elif argv[:1] == ["prometheus"] and len(argv) <= 2:
        f = Path(argv[1]) if len(argv) == 2 else REPO / "deploy" / "prometheus" / "prometheus.yml"
        problems = prometheus_problems(yaml.safe_load(f.read_text()), exporters)
        what = f"scrape jobs of {len(exporters)} exporters"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    print(f"{what}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
