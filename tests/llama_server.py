"""A real llama.cpp `llama-server` (CPU) on a tiny Gemma 4, for the remote backend's tests.

llama.cpp comes from the llama-cpp-python 0.3.36 sdist on PyPI, which vendors a llama.cpp that
knows `gemma4` (text, vision and audio towers) and ships its converter. Only the three tools
the project uses are built (`llama-server` for the tests, `llama-bench` and `llama-quantize`
for the benchmarks), statically, for this CPU, without curl/OpenSSL and without the web UI,
once per machine into `~/.cache/gemma_demo/llama-cpp-<hash>` (the hash covers what is built
and how) and reused while its completion marker is there. The object files are deleted after
the build: the folder keeps the binaries and the sources (the converter and its `gguf-py`).

A Hugging Face folder becomes GGUF with the vendored `convert_hf_to_gguf.py`, run by this
venv's python (it needs torch and transformers, which the app has) with the vendored
`gguf-py` first on `PYTHONPATH`: once for the text model, once with `--mmproj` for the towers.

`python tests/llama_server.py MODEL_DIR` builds, converts and serves a model by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vllm_server import _locked, _tail, free_port, serve_until_interrupted, stop_on_sigterm_too, wait_until_healthy

SDIST = "llama-cpp-python==0.3.36"
VENDORED = "vendor/llama.cpp"  # inside the sdist's top folder
TARGETS = ("llama-server", "llama-bench", "llama-quantize")
CMAKE_FLAGS = (
    "-G", "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_C_COMPILER=gcc-12",
    "-DCMAKE_CXX_COMPILER=g++-12",
    "-DBUILD_SHARED_LIBS=OFF",  # binaries that run from wherever they are
    "-DGGML_NATIVE=ON",  # this machine's vector units; the cache is per machine
    "-DLLAMA_OPENSSL=OFF",  # no model downloads from the binaries
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # or the build fetches the web UI from the Hub
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
BUILD_JOBS = "2"
ROOT_ENV = "GEMMA_DEMO_LLAMA_CPP_ROOT"
DEFAULT_ROOT = Path.home() / ".cache" / "gemma_demo"
COMPLETE_MARKER = "gemma-demo-complete.json"
PIP_TIMEOUT_S = 60  # per connection; no network fails in seconds, not minutes
DOWNLOAD_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 3600  # measured: 14 minutes on two cores busy with other work (10 CPU-minutes)
CONVERT_TIMEOUT_S = 600
HOST = "127.0.0.1"
CONTEXT_TOKENS = 4096
HEALTH_DEADLINE_S = 120.0
HEALTH_POLL_S = 0.2
STOP_DEADLINE_S = 15.0

SERVER_FLAGS = (
    "--jinja",  # the model's own chat template: Gemma 4's tool calls and thinking
    "--ctx-size", str(CONTEXT_TOKENS),
    "--parallel", "2",  # two answers at once (Stop is tested while another request may run)
    "--kv-unified",  # one KV pool for both slots, so each request may use the whole --ctx-size
    "--metrics",
    "--no-webui",
    "--threads", "2",
)


class LlamaCppUnavailableError(RuntimeError):
    """llama.cpp could not be downloaded or built here (no network, no compiler, …); says why."""


class LlamaServerStartError(RuntimeError):
    """The server died or never answered /health; carries its log's tail."""


@dataclass(frozen=True)
class LlamaCpp:
    """A built llama.cpp: its binaries and its sources (converter, gguf-py)."""

    directory: Path

    @property
    def source(self) -> Path:
        return self.directory / "llama.cpp"

    def binary(self, name: str) -> Path:
        return self.directory / "bin" / name

    @property
    def converter(self) -> Path:
        return self.source / "convert_hf_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.source / "gguf-py"


@dataclass(frozen=True)
class Gguf:
    """A converted checkpoint: the text model and, where it has towers, their projector."""

    model: Path
    mmproj: Path | None = None


def build_recipe() -> dict[str, object]:
    """Everything the build depends on; its hash names the cache folder."""
    return {
        "sdist": SDIST,
        "targets": TARGETS,
        "cmake": CMAKE_FLAGS,
        "machine": platform.machine(),
        "cpu": _cpu_flags_digest(),  # GGML_NATIVE: a copied cache on another CPU may not run
    }


def _cpu_flags_digest() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def build_dir(root: Path | None = None) -> Path:
    root = root or Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))
    digest = hashlib.sha256(json.dumps(build_recipe(), sort_keys=True).encode()).hexdigest()
    return root / f"llama-cpp-{digest[:12]}"


def ensure_llama_cpp(root: Path | None = None) -> LlamaCpp:
    """llama.cpp, downloaded and built on first use (about 14 minutes on 2 busy cores) and reused after.

    Raises `LlamaCppUnavailableError` with the log's tail when it cannot be built.
    """
    directory = build_dir(root)
    built = LlamaCpp(directory)
    if (directory / COMPLETE_MARKER).exists():
        return built
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.with_suffix(".lock")):
        if (directory / COMPLETE_MARKER).exists():  # another process built it meanwhile
            return built
        started = time.monotonic()
        shutil.rmtree(directory, ignore_errors=True)  # a half-built one from an interrupted run
        directory.mkdir()
        log_path = directory.with_suffix(".log")
        with log_path.open("w") as log:
            _build(built, log, log_path)
        record = {**build_recipe(), "build_seconds": round(time.monotonic() - started)}
        (directory / COMPLETE_MARKER).write_text(json.dumps(record, indent=2))
    return built


def _build(built: LlamaCpp, log, log_path: Path) -> None:
    def run(*command: str | Path, timeout: float = BUILD_TIMEOUT_S) -> None:
        log.write(f"$ {' '.join(map(str, command))}\n")
        log.flush()
        try:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            raise LlamaCppUnavailableError(
                f"Could not build llama.cpp in {built.directory} ({error}). Its log, {log_path}, "
                f"ends:\n{_tail(log_path)}"
            ) from error

    with tempfile.TemporaryDirectory(dir=built.directory) as scratch:
        scratch = Path(scratch)
        # pip checks the sdist against PyPI's hash.
        run(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--timeout",
            str(PIP_TIMEOUT_S), "--retries", "1", "--dest", scratch, SDIST, timeout=DOWNLOAD_TIMEOUT_S)
        (archive,) = scratch.glob("*.tar.gz")
        _extract_vendored(archive, built.source)
        build = scratch / "build"
        run("cmake", "-S", built.source, "-B", build, *CMAKE_FLAGS)
        # Niced: the test session starts this build beside its other tests (conftest.py).
        run("nice", "-n", "10", "ninja", "-C", build, "-j", BUILD_JOBS, *TARGETS)
        (built.directory / "bin").mkdir()
        for target in TARGETS:
            shutil.move(build / "bin" / target, built.binary(target))


def _extract_vendored(archive: Path, destination: Path) -> None:
    """Only the sdist's `vendor/llama.cpp`, as `destination`."""
    with tarfile.open(archive) as sdist:
        top = sdist.getmembers()[0].name.split("/")[0]
        prefix = f"{top}/{VENDORED}/"
        members = [member for member in sdist.getmembers() if member.name.startswith(prefix)]
        for member in members:
            member.name = member.name[len(prefix):]
        sdist.extractall(destination, members=members, filter="data")


def convert_to_gguf(
    model_dir: str | Path, out_dir: str | Path, llama: LlamaCpp, *, outtype: str = "f32",
    towers: bool = True, converter: Path | None = None,
) -> Gguf:
    """`model_dir` as GGUF in `out_dir`, plus its towers' mmproj when `towers` and the config has some.

    `converter` replaces the vendored `convert_hf_to_gguf.py` (the benchmarks run a patched copy).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((model_dir / "config.json").read_text())
    has_towers = towers and bool(config.get("vision_config") or config.get("audio_config"))
    gguf = Gguf(out_dir / f"{model_dir.name}-{outtype}.gguf",
                out_dir / f"mmproj-{model_dir.name}-{outtype}.gguf" if has_towers else None)
    for target, extra in ((gguf.model, ()), (gguf.mmproj, ("--mmproj",))):
        if target is not None:
            _convert(model_dir, target, llama, outtype, converter or llama.converter, extra)
    return gguf


def _convert(model_dir: Path, target: Path, llama: LlamaCpp, outtype: str, converter: Path,
             extra: tuple[str, ...]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(llama.gguf_py), os.environ.get("PYTHONPATH"))))}
    command = [sys.executable, str(converter), str(model_dir), "--outfile", str(target), "--outtype", outtype, *extra]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    if result.returncode != 0:
        raise LlamaCppUnavailableError(
            f"llama.cpp's converter failed on {model_dir} ({' '.join(command)}):\n{result.stderr[-3000:]}"
        )


@dataclass
class LlamaServer:
    """A started server; `stop()` may be called early (a test killing it mid-stream)."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log_tail(self) -> str:
        return _tail(self.log_path)

    def wait_healthy(self, deadline_s: float = HEALTH_DEADLINE_S) -> None:
        """Until /health answers 200 (503 while the model loads)."""
        wait_until_healthy(self.process, f"{self.url}/health", "llama-server", self.log_path,
                           LlamaServerStartError, deadline_s, HEALTH_POLL_S)

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(deadline_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


@contextmanager
def serve_llama(
    gguf: Gguf,
    work_dir: str | Path,
    *,
    llama: LlamaCpp | None = None,
    port: int | None = None,
    alias: str | None = None,
    extra_args: tuple[str, ...] = (),
    health_deadline_s: float = HEALTH_DEADLINE_S,
) -> Iterator[LlamaServer]:
    """llama-server serving `gguf` (named `alias`, which the app sends as its model) until the block ends.

    Raises `LlamaServerStartError` with the log's tail when the server dies or is not healthy in time.
    """
    llama = llama or ensure_llama_cpp()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [str(llama.binary("llama-server")), "--model", str(gguf.model), "--host", HOST,
               "--port", str(port), *SERVER_FLAGS, *extra_args]
    if gguf.mmproj is not None:
        command += ["--mmproj", str(gguf.mmproj)]
    if alias:
        command += ["--alias", alias]
    log_path = work_dir / f"llama-server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LlamaServer(process=process, port=port, log_path=log_path)
    try:
        server.wait_healthy(health_deadline_s)
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Build llama.cpp's server, convert a model to GGUF and serve it.")
    parser.add_argument("model_dir", nargs="?", help="a checkpoint folder; omit to only build llama.cpp")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    stop_on_sigterm_too()
    llama = ensure_llama_cpp()
    print(f"llama.cpp: {llama.directory}")
    if args.model_dir:
        work = Path(tempfile.mkdtemp(prefix="llama-"))
        gguf = convert_to_gguf(args.model_dir, work, llama)
        with serve_llama(gguf, work, llama=llama, port=args.port, alias=str(args.model_dir)) as server:
            serve_until_interrupted(args.model_dir, server)


if __name__ == "__main__":
    main()
