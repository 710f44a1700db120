"""gpu-exporter's GPU stand-ins, for the end-to-end tests of every exporter that reads GPUs
(gpu-exporter, power-exporter's gpu collector):

    build_fake_nvml(out)                 fake_nvml.c compiled into out/libnvidia-ml.so.1
    fake_nvml_data(capture, section, g)  the fake NVML's data file for an nvidia-smi capture
    FAKE_SMI                             the fake nvidia-smi (answers from a capture)
"""
from __future__ import annotations

import os
import subprocess

from . import REPO
from .exporters import example

FAKE_SMI = REPO / "exporters/gpu-exporter/tests/fake-nvidia-smi"
FAKE_NVML_C = REPO / "exporters/gpu-exporter/tests/fake-nvml/fake_nvml.c"


def build_fake_nvml(out):
    """fake_nvml.c compiled into `out`/libnvidia-ml.so.1 with $CC (else cc)."""
    lib = out / "libnvidia-ml.so.1"
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(lib),
                        str(FAKE_NVML_C), "-lpthread"], capture_output=True, text=True)
    assert p.returncode == 0, f"building the fake NVML with {cc} failed:\n{p.stderr}"
    return lib


def fake_nvml_data(capture, section: str, gpus: str) -> str:
    """The fake NVML's data file for a capture, from gpu-exporter's example `fake-nvml-data`."""
    p = subprocess.run([str(example("fake-nvml-data")), str(capture), section, gpus],
                       capture_output=True, text=True)
    assert p.returncode == 0, f"fake-nvml-data {capture.name} {section} {gpus} failed: {p.stderr}"
    return p.stdout
