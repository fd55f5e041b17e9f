"""`python -m gemma_demo agent "question" --files … --tools …`: the agent loop, one JSON line per step."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gemma_demo.config import (
    add_mcp_server_arguments,
    add_model_arguments,
    load_options_from,
    mcp_allow_urls_from,
    mcp_servers_from,
)
from gemma_demo.errors import GemmaDemoError, InvalidInputError

EXIT_OK, EXIT_FAILED = 0, 1


def add_agent_parser(commands, add_generation_arguments) -> None:
    from gemma_demo.tasks.agent import DEFAULT_MAX_STEPS
    from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS

    sub = commands.add_parser("agent", help="answer a question with tools (the app's tasks, calculate, current_time)")
    sub.add_argument("question")
    sub.add_argument("--files", nargs="*", default=[], help="attachments the tools may use, by number or name")
    sub.add_argument("--tools", help=f"comma-separated, from: {', '.join(BUILTIN_TOOLS)} and the MCP servers' "
                                      "tools (default: all of them)")
    sub.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="most model calls in the loop")
    sub.add_argument("--json-schema", type=Path, help="a JSON Schema file the final answer must match")
    add_model_arguments(sub, os.environ)
    add_mcp_server_arguments(sub)
    add_generation_arguments(sub)


def _schema(path: Path | None):
    from gemma_demo.engine.json_schema import read_schema

    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"Cannot read the JSON schema {path}: {error}") from None
    try:
        return read_schema(text)  # before the model loads, not at its first answer
    except InvalidInputError as error:
        raise InvalidInputError(f"Cannot read the JSON schema {path}: {error}") from None


def run_agent_command(args: argparse.Namespace, settings) -> int:
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.tasks.agent import AgentOptions, StepKind, run_agent
    from gemma_demo.tasks.tools.base import ToolContext

    try:
        files = tuple(Path(f) for f in args.files)
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InvalidInputError(f"No such file: {', '.join(missing)}")
        options = AgentOptions(max_steps=args.max_steps, json_schema=_schema(args.json_schema))
        tools = _toolbox(args)
        backend = ModelCache().get(args.model, load_options_from(args))
        # The tools run their tasks' own settings; the chat's only bound them by its token cap.
        context = ToolContext(backend=backend, attachments=files, max_new_tokens=settings.max_new_tokens)
        messages = [{"role": "user", "content": [{"type": "text", "text": _with_file_list(args.question, files)}]}]
        for step in run_agent(backend, messages, tools, settings, context, options):
            if step.kind in (StepKind.TOOL, StepKind.ANSWER):
                print(json.dumps(step.to_json(), ensure_ascii=False, default=str), flush=True)
        return EXIT_FAILED if step.message else EXIT_OK
    except GemmaDemoError as error:
        print(json.dumps({"error": str(error)}, ensure_ascii=False), flush=True)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _toolbox(args: argparse.Namespace):
    """The tools asked for (default: every built-in and every MCP server's); a server that is down
    is named on stderr and the run goes on without it."""
    from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS, toolbox
    from gemma_demo.tasks.tools.mcp import connect_servers

    served = connect_servers(mcp_servers_from(args, os.environ), taken=BUILTIN_TOOLS,
                             allow_urls=mcp_allow_urls_from(args, os.environ))
    for problem in served.problems:
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    names = args.tools.split(",") if args.tools else [*BUILTIN_TOOLS, *(tool.name for tool in served.tools)]
    return toolbox(names, extra=served.tools)


def _with_file_list(question: str, files: tuple[Path, ...]) -> str:
    """The model must know what it may name: the attachments by number and name."""
    if not files:
        return question
    listing = "\n".join(f"{index}: {path.name}" for index, path in enumerate(files))
    return f"{question}\n\nAttached files:\n{listing}"
