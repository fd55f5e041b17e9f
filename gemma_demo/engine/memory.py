"""How much memory is free on a device now: what shared, growing things (kept caches, a chat
turn's decoded media) are bounded by. Imports no torch until a GPU is asked about, so the
page can check a request's budget without it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MEMINFO = Path("/proc/meminfo")


def available_bytes(device: Any = "cpu") -> int | None:
    """Free memory on `device` (for the CPU, what the kernel could give without swapping); None where unknown."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if kind == "cpu":
        return _system_available()
    return None


def _system_available() -> int | None:
    """`MemAvailable` from /proc/meminfo, or free pages where there is none (POSIX but not Linux)."""
    try:
        for line in MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
