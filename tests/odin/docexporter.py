"""A stand-in exporter that serves every metric of docs/metrics.md, for checking that the
dashboards need nothing the metric reference does not promise.

Each row becomes one family with the documented type and labels (shared `<prefix>_` rows once
per prefix of exporters.toml); counters grow every second, histograms get two buckets. Runs in
a thread of the test process: `with DocExporter() as e: e.port`.
"""
from __future__ import annotations

import http.server
import itertools
import threading
import time

from . import manifest, metricsdoc

# One value per label, or a list: one series per value (dashboards that select each value).
VALUES = {"device": "eth0", "family": "ipv4", "state": "established", "cpu": "0",
          "collector": "netdev", "name": "example.com", "server": "system", "result": "failure",
          "rcode": "servfail", "reason": "retry", "operstate": "up", "duplex": "full",
          "address": "02:00:00:00:00:01", "version": "0.1.0",
          # gpu-exporter
          "gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000001",
          "pci_bus_id": "00000000:01:00.0", "driver_version": "595.71.05",
          "vbios_version": "95.03.1f.00.01", "compute_capability": "8.9", "serial": "0",
          "cuda_version": "13.0", "backend": "nvml", "threshold": ["slowdown", "shutdown"],
          "engine": "memory", "clock": "sm", "fan": "0", "link": ["current", "max"],
          "direction": "rx",
          # gpu-exporter's ECC `type`, and token-collector's token types (one series each)
          "type": ["uncorrected", "input", "output", "cache_read", "cache_write_5m", "cache_write_1h"], "scope": "volatile",
          "kind": "correctable", "xid": "13", "pid": "4242", "process": "python3",
          "mig_uuid": "MIG-00000000-0000-0000-0000-000000000001", "gpu_instance": "1",
          "compute_instance": "0", "profile": "1g.10gb", "UUID": "GPU-00000000-0000-0000-0000-000000000001",
          "modelName": "NVIDIA GeForce RTX 4080 SUPER", "Hostname": "ws1", "cause": "double_bit_ecc",
          # token-collector
          "source": "claude_code", "provider": "anthropic", "model": "claude-sonnet-4-5",
          "project": "odin", "outcome": "counted",
          # claude-process-exporter (`mode`: an instance's mode, or a CPU mode; `scope`, `pid`,
          # `family`, `state` and `version` as above)
          "install": "native", "mode": ["interactive", "user"], "role": "mcp", "port": "3000",
          # power-exporter (`device`, `type`, `scope`, `state` and `model` as above; `label`
          # is a CPU package sensor's, as the dashboards select them)
          "package": "0", "domain": "package", "constraint": "long_term", "supply": "BAT0",
          "technology": "Li-ion", "manufacturer": "SMP", "converted": "none", "zone": "0",
          "trip": "0", "trip_type": ["passive", "critical"], "chip": "platform_coretemp_0",
          "sensor": "temp1", "label": "Package id 0", "chip_name": "coretemp",
          # razer-exporter (`device`, `type`, `name`, `zone`, `mode`, `kind`, `source` as above)
          "axis": "x", "component": "cpu", "level": "high", "firmware": "v1.2",
          "driver": "razermouse",
          # every exporter's build info: demo data or not
          "demo": "false"}


def documented_families() -> list[tuple[str, str, list[str]]]:
    """(name, type, labels) of every family the stand-in serves."""
    prefixes = manifest.prefixes()
    out = []
    for row in metricsdoc.rows():
        labels = sorted(row.labels)
        if row.name.startswith("<prefix>_"):
            out += [(row.name.replace("<prefix>", p), row.type, labels) for p in prefixes]
        elif row.name.startswith(tuple(p + "_" for p in prefixes)) or row.name.startswith("DCGM_"):
            out.append((row.name, row.type, labels))
    return out


def _labelsets(labels):
    choices = [[(lb, v) for v in (VALUES[lb] if isinstance(VALUES[lb], list) else [VALUES[lb]])]
               for lb in labels]
    for combo in itertools.product(*choices):
        yield ",".join(f'{lb}="{v}"' for lb, v in combo)


def exposition(rows, elapsed: float) -> str:
    out = []
    for name, mtype, labels in rows:
        out.append(f"# TYPE {name} {mtype}")
        for ls in _labelsets(labels):
            if mtype == "histogram":
                n = int(elapsed) + 1
                sep = "," if ls else ""
                out.append(f'{name}_bucket{{{ls}{sep}le="0.05"}} {n}')
                out.append(f'{name}_bucket{{{ls}{sep}le="+Inf"}} {n}')
                out.append(f"{name}_sum{{{ls}}} {0.01 * n}")
                out.append(f"{name}_count{{{ls}}} {n}")
            else:
                out.append(f"{name}{{{ls}}} {100 * elapsed + 1 if mtype == 'counter' else 1}")
    return "\n".join(out) + "\n"


class DocExporter:
    def __init__(self):
        self.rows = documented_families()
        missing = sorted({lb for _, _, labels in self.rows for lb in labels} - set(VALUES))
        if missing:
            raise ValueError(f"odin/docexporter.py: no example value for labels {missing}")
        start = time.time()
        rows = self.rows

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = exposition(rows, time.time() - start).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
