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
from collections.abc import Sequence
from pathlib import Path

from gemma_demo.cli.commands import COMMANDS
from gemma_demo.config import add_model_arguments, load_options_from
from gemma_demo.errors import GemmaDemoError
from gemma_demo.engine.settings import IMAGE_BUDGETS, GenerationSettings

EXIT_OK, EXIT_FAILED_INPUT, EXIT_USAGE = 0, 1, 2
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
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--system-prompt")
    parser.add_argument("--image-budget", type=int, choices=IMAGE_BUDGETS, help="soft tokens per image")


def settings_from(args: argparse.Namespace, defaults: GenerationSettings) -> GenerationSettings:
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
    if args.sample:
        changes["sampling"] = True
    return defaults.with_changes(**changes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gemma_demo", description="Gemma 4 Studio from the shell")
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
    return parser


def _result_line(path: Path, result) -> dict:
    return {"file": str(path), **result.to_json()}


def run_task(name: str, args: argparse.Namespace) -> int:
    from gemma_demo.engine.base import last_update
    from gemma_demo.engine.cache import ModelCache

    command = COMMANDS[name]
    settings = settings_from(args, command.default_settings())
    files = expand_inputs(args.inputs, command.suffixes)
    if not files:
        print(f"error: no {name} inputs found in {' '.join(args.inputs)}", file=sys.stderr)
        return EXIT_FAILED_INPUT
    cache = ModelCache()
    failed = 0
    for path in files:
        try:
            backend = cache.get(args.model, load_options_from(args))
            line = _result_line(path, last_update(command.run(backend, path, args, settings)))
        except GemmaDemoError as error:
            failed += 1
            line = {"file": str(path), "error": str(error)}
            print(f"error: {path}: {error}", file=sys.stderr)
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return EXIT_FAILED_INPUT if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tiny-model":
        from gemma_demo.tiny.model import build_tiny_model

        print(build_tiny_model(args.directory, args.variant))
        return EXIT_OK
    return run_task(args.command, args)
