"""What a latency figure was measured on: CPU/GPU identity, threads and library versions."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import lru_cache
from typing import Any


def allowed_cpus() -> list[int]:
    """Logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (hyper-threads counted once)."""
    cpus = set(allowed_cpus())
    cores, cpu = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            phys = "0"
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id" and cpu in cpus:
                    cores.add((phys, value))
    except OSError:
        pass
    return max(1, len(cores) or len(cpus))


@lru_cache(maxsize=1)
def _cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    # the flags that decide which kernels run; the full list is long and adds nothing
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "f16c"))]
    return {"cpu": model, "cpu_flags": sorted(keep), "machine": platform.machine()}


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        versions["onnxruntime"] = "absent"
    return versions


RUNTIME_PACKAGES = {"executorch": {"executorch": "executorch"},
                    "litert": {"litert": "ai-edge-litert", "litert_torch": "litert-torch"}}  # fingerprint key: package


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def runtime_versions(runtime: str | None) -> dict[str, str]:
    """Versions of the libraries ``runtime`` needs beyond those every fingerprint carries (torch,
    ONNX Runtime): OpenVINO's for "openvino", ExecuTorch's for "executorch", the LiteRT interpreter's and
    converter's for "litert", nothing for the others."""
    if runtime == "openvino":
        from .openvino_runtime import openvino_version

        return {"openvino": openvino_version()}
    packages = RUNTIME_PACKAGES.get(runtime or "", {})
    return {key: _package_version(package) for key, package in packages.items()}
    return {}


def device_fingerprint(device: str = "cpu", threads: int | None = None, runtime: str | None = None) -> dict[str, Any]:
    """Identity of the device a figure is measured on (goes with every result and cache key); with
    ``runtime``, that runtime's library version too (``runtime_versions``).

    Taking it pins the process's malloc (``allocator.pin_allocator``) so that what it records holds.
    """
    import torch

    from .allocator import pin_allocator

    fp: dict[str, Any] = {"device": device, "allocator": pin_allocator()}
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        fp.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                  capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
    fp.update(_cpu_info())
    fp["threads"] = threads if threads is not None else torch.get_num_threads()
    fp["cpus_allowed"] = len(allowed_cpus())
    fp.update(_versions())
    fp.update(runtime_versions(runtime))
    return fp


def fingerprint_key(fp: dict[str, Any]) -> str:
    """Short stable hash of a fingerprint (for cache keys and table file names)."""
    canon = json.dumps(fp, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]
