"""Download names made from what people upload: never a path, never odd characters."""

from __future__ import annotations

import re
from pathlib import Path

MAX_STEM_CHARS = 100
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str, default: str) -> str:
    """The upload's base name without its extension, reduced to letters, digits, `._-`."""
    stem = Path(name.replace("\\", "/")).stem
    cleaned = _UNSAFE_CHARS.sub("_", stem).strip("._-")[:MAX_STEM_CHARS]
    return cleaned or default
