"""What a provider machine has: CPU, memory, GPUs and onnxruntime execution providers.

The probe is read-only and quick (≤ a few seconds even when ``nvidia-smi``
hangs: it runs with a timeout). Its result becomes the node's capabilities
document, whose sha256 is registered on chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GpuInfo", "Hardware", "capabilities_hash", "probe_hardware"]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_mb: int


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_cores: int
    memory_mb: int
    gpus: list[GpuInfo] = field(default_factory=list)
    onnx_providers: list[str] = field(default_factory=list)
    platform: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    except (ValueError, OSError, AttributeError):
        return 0


def _gpus(timeout: float) -> list[GpuInfo]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append(GpuInfo(name.strip(), int(float(mem))))
        except ValueError:
            continue
    return gpus


def _onnx_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return [str(p) for p in onnxruntime.get_available_providers()]


def probe_hardware(*, gpu_timeout: float = 5.0) -> Hardware:
    """Probe this machine."""
    return Hardware(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count() or 1,
        memory_mb=_memory_mb(),
        gpus=_gpus(gpu_timeout),
        onnx_providers=_onnx_providers(),
        platform=f"{platform.system()} {platform.machine()} python {platform.python_version()}",
    )


def capabilities_hash(document: dict[str, Any]) -> bytes:
    """sha256 of the canonical JSON of a capabilities document (registered on chain)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).digest()
