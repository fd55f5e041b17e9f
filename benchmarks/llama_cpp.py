"""llama.cpp on the real-size random-weight E2B: its GGUFs, `llama-bench`'s figures, and P17s.

What a CPU user would otherwise run is llama.cpp with a Q4_0 GGUF. The same random-weight
folder as our own real-size rows (`benchmarks.models.real_size_checkpoint`) is converted with
llama.cpp's converter and quantized with its `llama-quantize`, so the two engines read the
same weights. llama.cpp is the build `tests/llama_server.py` makes (one per machine, cached).

The folder carries the tiny tokenizer (a few hundred tokens) beside 262,144 embedding rows, so
the converter runs from a copy whose `conversion/gemma.py` pads the token list to the config's
`vocab_size` and keeps every row of `embed_tokens` (it trims them to the tokenizer's size).
Neither changes the model: the extra rows are what a real vocabulary's would cost.

- `real_size_gguf(kind)`: "BF16" (the converter's output, 9.3 GB) or "Q4_0" (quantized from it,
  3.3 GB), built once (3 + 3 minutes on 2 busy cores) into the benchmark cache and reused;
- `llama_bench(gguf, threads)`: pp256 and tg64 tokens/s from `llama-bench -o json`;
- P17s: the app's decode through `llama-server`, streamed to the page (the app's own server,
  through `gradio_client`), over llama-bench's tg64 of the same GGUF.

`python -m benchmarks.llama_cpp [--quick] [--bench-only]` (`--bench-only`: llama-bench on both GGUFs).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from benchmarks.common import CACHE_DIR, Row, Target, median, not_measured
from benchmarks.models import REAL_SIZE_MARKER, real_size_checkpoint
from benchmarks.server import APP, ROOT, running_server

TESTS = ROOT / "tests"
GGUF_ROOT = CACHE_DIR / "llama-cpp"
KINDS = ("BF16", "Q4_0")
PROMPT_TOKENS = 256
DECODE_TOKENS = 64
BENCH_TIMEOUT_S = 1800
QUANTIZE_TIMEOUT_S = 1800
P17S_TARGET = Target(0.9, at_most=False)
P17S_WHAT = "app's decode through llama-server, streamed to the page ÷ llama-bench tg64, same Q4_0 GGUF"
P17S_TOKENS = 128
P17S_PROMPT = "Tell a long story about the sea."
NEW_TOKENS = re.compile(r"(\d+) new tokens")
# A copy of the converter with these two replacements in `conversion/gemma.py` (see the docstring).
PAD_ANCHOR = "        assert len(tokens) == vocab.vocab_size\n"
PAD_PATCH = '''\
        # Patched by gemma_demo's benchmarks: as many tokens as the config's embedding rows.
        for index in range(len(tokens), self.find_hparam(["vocab_size"])):
            tokens.append(f"[gemma-demo-unused{index}]".encode())
            scores.append(-1000.0)
            toktypes.append(gguf.TokenType.UNUSED)
'''
TRIM_ANCHOR = "            data_torch = data_torch[:n_vocab_real]\n"
TRIM_PATCH = "            pass  # patched by gemma_demo's benchmarks: every row stays\n"


@dataclass(frozen=True)
class LlamaBench:
    """`llama-bench -p 256 -n 64` on one GGUF: prompt reading and decode, tokens per second."""

    gguf: Path
    threads: int
    prompt_tok_s: float  # pp256
    decode_tok_s: float  # tg64


def llama_server_module() -> ModuleType:
    """tests/llama_server.py, the one place that knows how to build and start llama.cpp here."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))  # it imports its neighbour, tests/vllm_server.py
    return importlib.import_module("llama_server")


def real_size_gguf(kind: str) -> Path:
    """The real-size E2B folder as a text-only GGUF of `kind` ("BF16" or "Q4_0"), built once."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    helper = llama_server_module()
    llama = helper.ensure_llama_cpp()
    folder = real_size_checkpoint()
    out_dir = GGUF_ROOT / f"real-e2b-{_gguf_key(llama, folder)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    bf16, q4 = out_dir / f"{folder.name}-bf16.gguf", out_dir / f"{folder.name}-q4_0.gguf"
    with open(out_dir / "build.lock", "w") as lock:  # two benchmark processes build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(bf16):
            converter = patched_converter(llama)
            helper.convert_to_gguf(folder, out_dir, llama, outtype="bf16", towers=False, converter=converter)
            _mark_complete(bf16)
        if kind == "Q4_0" and not _complete(q4):
            _quantize(llama, bf16, q4)
            _mark_complete(q4)
    return bf16 if kind == "BF16" else q4


def _quantize(llama, source: Path, target: Path) -> None:
    command = [str(llama.binary("llama-quantize")), str(source), str(target), "Q4_0", "2"]  # 2 threads
    result = subprocess.run(command, capture_output=True, text=True, timeout=QUANTIZE_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"llama-quantize failed on {source}:\n{result.stderr[-2000:]}")


def _gguf_key(llama, folder: Path) -> str:
    """A change of llama.cpp build, of the folder's weights or of the patch makes new GGUFs."""
    parts = [llama.directory.name, (folder / REAL_SIZE_MARKER).read_text(), PAD_PATCH, TRIM_PATCH]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _complete(path: Path) -> bool:
    return path.exists() and path.with_suffix(".complete").exists()


def _mark_complete(path: Path) -> None:
    path.with_suffix(".complete").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))


def patched_converter(llama) -> Path:
    """A copy of llama.cpp's converter whose Gemma code keeps the config's vocabulary size."""
    folder = GGUF_ROOT / f"converter-{llama.directory.name}"
    script = folder / llama.converter.name
    if script.exists():
        return script
    GGUF_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=GGUF_ROOT))  # renamed into place when whole
    shutil.copy(llama.converter, scratch / llama.converter.name)
    shutil.copytree(llama.source / "conversion", scratch / "conversion")
    gemma = scratch / "conversion" / "gemma.py"
    source = gemma.read_text()
    for anchor in (PAD_ANCHOR, TRIM_ANCHOR):
        if source.count(anchor) != 1:
            raise RuntimeError(f"{gemma} no longer holds {anchor.strip()!r} once; update benchmarks/llama_cpp.py")
    gemma.write_text(source.replace(PAD_ANCHOR, PAD_ANCHOR + PAD_PATCH).replace(TRIM_ANCHOR, TRIM_PATCH))
    scratch.rename(folder)
    return script


def llama_bench(gguf: Path, threads: int = 2) -> LlamaBench:
    """pp256 and tg64 of `gguf` on `threads` threads (llama-bench's own repetitions, its mean)."""
    llama = llama_server_module().ensure_llama_cpp()
    command = [str(llama.binary("llama-bench")), "-m", str(gguf), "-p", str(PROMPT_TOKENS),
               "-n", str(DECODE_TOKENS), "-t", str(threads), "-o", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"llama-bench failed on {gguf}:\n{result.stderr[-2000:]}")
    rates = {_test_name(entry): entry["avg_ts"] for entry in json.loads(result.stdout)}
    return LlamaBench(gguf, threads, rates[f"pp{PROMPT_TOKENS}"], rates[f"tg{DECODE_TOKENS}"])


def _test_name(entry: dict) -> str:
    """llama-bench's name for a test: pp256 reads 256 prompt tokens, tg64 generates 64."""
    return f"pp{entry['n_prompt']}" if entry["n_gen"] == 0 else f"tg{entry['n_gen']}"


def run(quick: bool = False) -> list[Row]:
    """P17s on the real-size Q4_0 GGUF (built on first use); a failure is a row saying why."""
    try:
        return [p17s_row(reps=2 if quick else 3)]
    except Exception as error:  # noqa: BLE001 - reported as a row, as run_all does for a group
        return [not_measured("P17s", P17S_WHAT, P17S_TARGET, f"{type(error).__name__}: {error}"[:300])]


def p17s_row(reps: int) -> Row:
    """llama-server on the Q4_0 GGUF, the app pointed at it, answers streamed through `/chat`."""
    from gradio_client import Client

    helper = llama_server_module()
    gguf = real_size_gguf("Q4_0")
    bench = llama_bench(gguf)
    name = gguf.stem
    # --ignore-eos: every answer runs to its token limit, as llama-bench's tg64 does.
    with tempfile.TemporaryDirectory(prefix="llama-p17s-") as work, \
            helper.serve_llama(helper.Gguf(gguf), work, alias=name, extra_args=("--ignore-eos",)) as server, \
            running_server([str(APP), "--backend", "openai", "--base-url", server.base_url, "--model", name]) as (url, _):
        client = Client(url, verbose=False, analytics_enabled=False)
        streamed_rate(client, P17S_TOKENS // 4)  # warm-up: the app's first request, llama.cpp's first graph
        rates = [streamed_rate(client, P17S_TOKENS) for _ in range(reps)]
    rate = median(rates)
    return Row("P17s", P17S_WHAT, f"{rate:.2f} tok/s", f"{bench.decode_tok_s:.2f} tok/s (tg{DECODE_TOKENS})",
               rate / bench.decode_tok_s, P17S_TARGET,
               f"{P17S_TOKENS} new tokens each, greedy, {reps} runs ({', '.join(f'{r:.2f}' for r in rates)}); "
               f"page-side rate: tokens between the first and the last streamed update over the time between "
               f"them; 2 threads on both sides; load average {os.getloadavg()[0]:.1f} at the end")


def streamed_rate(client, max_new_tokens: int) -> float:
    """Decode tokens/s as the page sees it: from the first update with text to the last one."""
    job = client.submit({"text": P17S_PROMPT, "files": []}, [], api_name="/chat",
                        max_new_tokens=max_new_tokens, sampling="off", thinking="off")
    seen: list[tuple[float, int]] = []  # (arrival, new tokens so far) of each update
    for _history, _meter, stats in job:
        found = NEW_TOKENS.search(stats or "")
        if found and int(found.group(1)) > 0:
            seen.append((time.perf_counter(), int(found.group(1))))
    job.result()  # raises what the app raised
    if len(seen) < 2 or seen[-1][1] != max_new_tokens:
        raise RuntimeError(f"streamed {seen[-1][1] if seen else 0} of {max_new_tokens} tokens in {len(seen)} updates")
    (first_at, first_tokens), (last_at, last_tokens) = seen[0], seen[-1]
    return (last_tokens - first_tokens) / (last_at - first_at)


if __name__ == "__main__":
    from benchmarks.report import print_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bench-only", action="store_true", help="llama-bench on both GGUFs, no P17s")
    arguments = parser.parse_args()
    if arguments.bench_only:
        for kind in KINDS:
            print(llama_bench(real_size_gguf(kind)))
    else:
        print_rows(run(arguments.quick))
