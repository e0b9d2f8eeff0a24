"""A short description of the machine, recorded with every run (``fcn train``'s history, ``fcn sweep``'s summary)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from .backend import has_gpu

__all__ = ["machine_info"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    if not has_gpu():
        return None
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id).get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python version, platform, and the GPU's name (``None`` without a usable GPU)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": _gpu_name(),
    }
