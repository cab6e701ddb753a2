"""What ran where: git revision, device, library versions. Recorded with every result and benchmark."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import torch

from .data import prepared_manifest
from .paths import project_root

LIBRARIES = ("torch", "torchvision", "faiss-cpu", "numpy", "scikit-learn")


@cache
def git_revision() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git.

    Read once per process, when the package is imported: the revision of the code this process
    runs, even if the checkout moves on while a long run trains.
    """
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
    """Machine and library facts for a result file."""
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "device": cuda or f"{_cpu_name()}, {os.cpu_count()} cores",
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # the vector unit torch dispatches to (AVX2, AVX512, ...): precision "auto" trains in bf16 only where it has bf16
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": cuda,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def data_record(data_config) -> dict[str, object]:
    """Which data a result used: the dataset, and for Tiny-ImageNet a sha256 over the verified source
    checksums in the prepared cache's manifest (the same archive shards give the same digest)."""
    record: dict[str, object] = {"dataset": data_config.dataset, "image_size": data_config.image_size}
    if data_config.dataset == "tiny-imagenet":
        manifest = prepared_manifest() or {}
        checksums = manifest.get("source", {}).get("checksums", {})
        record["source_checksums_sha256"] = hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()
        record["counts"] = manifest.get("counts")
    return record


git_revision()  # at import: the code this process loaded
