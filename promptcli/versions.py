"""Facts that make a number reproducible: package versions and peak memory."""
from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from typing import Any


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("promptcli", "torch", "transformers", "tokenizers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def peak_memory_mb(device: Any) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation when on a GPU)."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)  # Linux reports KiB, macOS bytes
    peak = {"peak_rss_mb": round(rss_kb * scale, 1)}
    if device.type == "cuda":
        import torch

        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak
