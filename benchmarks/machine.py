"""What the figures were measured on, printed and stored next to them."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total memory in GiB from /proc/meminfo; None where there is none."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def describe(embedding_device: str | None = None) -> dict:
    """The machine as a dict: CPU, usable cores, memory, torch and its threads, GPU, Python,
    platform, and `embedding_device` when given."""
    import torch  # heavy: torch

    cuda = torch.cuda.is_available()
    info = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if embedding_device:
        info["embedding_device"] = embedding_device
    return info


def one_line(info: dict) -> str:
    """describe()'s dict as one line for printed reports."""
    gpu = info["gpu"] or "no GPU"
    dev = f", embedding on {info['embedding_device']}" if info.get("embedding_device") else ""
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {gpu}, "
            f"torch {info['torch']} ({info['torch_threads']} threads){dev}")
