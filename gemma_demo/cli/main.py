"""Command line: every task over one or many files, one JSON line per file.

`python -m gemma_demo caption photos/ --model tiny` prints a JSON object per picture and
exits 1 when any input could not be used (its line then carries an `error`), so scripts
can tell a bad file from a good one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from gemma_demo.cli.agent import add_agent_parser, run_agent_command
from gemma_demo.cli.commands import COMMANDS
from gemma_demo.cli.documents import reads_documents, run_documents
from gemma_demo.config import add_model_arguments, load_options_from
from gemma_demo.errors import GemmaDemoError
from gemma_demo.engine.settings import IMAGE_BUDGETS, GenerationSettings

EXIT_OK, EXIT_FAILED_INPUT = 0, 1


class BadFlagError(ValueError):
    """A flag value the CLI cannot use; reported like a bad input file, not with a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag value ends as the CLI's JSON error line and exit 1."""

    def error(self, message: str):
        raise BadFlagError(f"{self.prog}: {message}")

def expand_inputs(paths: Sequence[str], suffixes: set[str]) -> list[Path]:
    """Files as given, and the matching files of any folder, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file()))
        else:
            files.append(path)
    return files


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, help="upper bound on generated tokens")
    parser.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=None,
                        help="let the model reason before answering")
    parser.add_argument("--sampling", action=argparse.BooleanOptionalAction, default=None,
                        help="sample (on by default for open-ended tasks) or decode greedily (extraction tasks)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--system-prompt")
    parser.add_argument("--image-budget", type=int, choices=IMAGE_BUDGETS, help="soft tokens per image")


def settings_from(args: argparse.Namespace, defaults: GenerationSettings) -> GenerationSettings:
    """The task's defaults with the flags given; raises `BadFlagError` for values out of range."""
    if args.temperature is not None and not args.temperature > 0:
        raise BadFlagError("--temperature must be above 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise BadFlagError("--top-p must be above 0 and at most 1")
    if args.top_k is not None and args.top_k < 1:
        raise BadFlagError("--top-k must be at least 1")
    changes = {
        "max_new_tokens": args.max_new_tokens,
        "thinking": args.thinking,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "system_prompt": args.system_prompt,
        "image_budget": args.image_budget,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if args.sampling is not None:
        changes["sampling"] = args.sampling
    elif {"temperature", "top_p", "top_k"} & changes.keys():  # a sampling value given alone means sampling
        changes["sampling"] = True
    try:
        return defaults.with_changes(**changes)
    except ValueError as error:
        raise BadFlagError(str(error).replace("max_new_tokens", "--max-new-tokens")) from error


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gemma_demo", description="Gemma 4 Studio from the shell")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny-model", help="build a tiny random-weight Gemma 4 for offline tests")
    tiny.add_argument("directory")
    tiny.add_argument("--variant", choices=("e2b", "moe", "dense"), default="e2b")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        sub.add_argument("inputs", nargs="+", help="files or folders")
        add_model_arguments(sub, os.environ)
        _add_generation_arguments(sub)
        command.add_arguments(sub)
    add_agent_parser(commands, _add_generation_arguments)
    return parser


def _result_line(path: Path, result) -> dict:
    return {"file": str(path), **result.to_json()}


def _final_result(results: Iterator, path: Path):
    """Drain a task's stream, telling stderr each time its status changes (e.g. "Chunk 2 of 3").

    Never stdout: that carries one JSON line per file, for scripts.
    """
    final, shown = None, ""
    for final in results:
        status = final.update.status
        if status and status != shown:
            print(f"{path}: {status}", file=sys.stderr, flush=True)
            shown = status
    return final


def run_task(name: str, args: argparse.Namespace) -> int:
    from gemma_demo.engine.cache import ModelCache

    command = COMMANDS[name]
    settings = settings_from(args, command.default_settings())
    files = expand_inputs(args.inputs, command.suffixes)
    if not files:
        print(f"error: no {name} inputs found in {' '.join(args.inputs)}", file=sys.stderr)
        return EXIT_FAILED_INPUT
    cache = ModelCache()
    if name == "ocr" and reads_documents(files, args):
        read = run_documents(files, args, settings, lambda: cache.get(args.model, load_options_from(args)), args.mode)
        return EXIT_OK if read else EXIT_FAILED_INPUT
    failed = 0
    for path in files:
        try:
            backend = cache.get(args.model, load_options_from(args))
            line = _result_line(path, _final_result(command.run(backend, path, args, settings), path))
        except GemmaDemoError as error:
            failed += 1
            line = {"file": str(path), "error": str(error)}
            print(f"error: {path}: {error}", file=sys.stderr)
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return EXIT_FAILED_INPUT if failed else EXIT_OK


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(json.dumps({"error": message}, ensure_ascii=False), flush=True)
    return EXIT_FAILED_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(build_parser().parse_args(argv))
    except BadFlagError as error:
        return _refuse(str(error))


def _run(args: argparse.Namespace) -> int:
    if args.command == "tiny-model":
        from gemma_demo.tiny.model import build_tiny_model

        print(build_tiny_model(args.directory, args.variant))
        return EXIT_OK
    if args.command == "agent":
        return run_agent_command(args, settings_from(args, GenerationSettings()))
    return run_task(args.command, args)
