"""The one piece of process-wide state: the currently loaded model.

Loading is lazy (first request), happens once even when several requests arrive
together, and switching models frees the previous one before the next is loaded, so a
GPU never holds two checkpoints at once.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gemma_demo.engine.base import Backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.loading import load_local_backend

Loader = Callable[[str, LoadOptions], Backend]


def _load_openai_backend(name: str, options: LoadOptions) -> Backend:
    from gemma_demo.engine.remote.client import load_openai_backend

    return load_openai_backend(name, options)


LOADERS: dict[str, Loader] = {"local": load_local_backend, "openai": _load_openai_backend}


@dataclass(frozen=True)
class CacheKey:
    name: str
    options: LoadOptions


class ModelCache:
    """Holds at most one backend; `get` loads or switches under a lock."""

    def __init__(self, loaders: dict[str, Loader] | None = None):
        self._loaders = loaders or LOADERS
        self._lock = threading.Lock()
        self._key: CacheKey | None = None
        self._backend: Backend | None = None
        self.loads = 0

    @property
    def loaded_name(self) -> str | None:
        return self._key.name if self._key else None

    def get(self, name: str, options: LoadOptions | None = None) -> Backend:
        key = CacheKey(name, options or LoadOptions())
        with self._lock:
            if self._key == key and self._backend is not None:
                return self._backend
            self._release()
            loader = self._loaders.get(key.options.backend)
            if loader is None:
                raise ValueError(f"Unknown backend {key.options.backend!r}; use one of {sorted(self._loaders)}")
            self._backend = loader(key.name, key.options)
            self._key = key
            self.loads += 1
            return self._backend

    def clear(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Drop our reference and return the memory; requests still running keep theirs."""
        self._backend = None
        self._key = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
