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


# glibc's `mallopt` parameter for the number of malloc arenas (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8
SERVER_ARENAS = 2


def bound_malloc_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process; False where there is no glibc.

    glibc gives each thread that allocates an arena of its own, up to eight per core, and
    keeps what is freed in it. Gradio serves from up to 40 worker threads, so a server's
    resident memory climbed for hundreds of requests: 12-17% from the second quarter of the
    soak (200 mixed requests) to the last on a 2-core Xeon. With two arenas it stays near 5%,
    about 200 MiB lower, at the same latency (docs/reliability.md).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1)
