"""`python -m gemma_demo agent`: one JSON line per tool step and one for the answer; bad input
gives a JSON error line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import QueuedBackend
from app_helpers import LOCALHOST, free_port
from scripted_backend import TABLE_ANSWER

from gemma_demo.cli.main import main
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks import ocr
from gemma_demo.tasks.tools import mcp

EXIT_OK, EXIT_FAILED = 0, 1
INPUT = Path(__file__).resolve().parents[1] / "input"


@pytest.fixture()
def backend(monkeypatch) -> QueuedBackend:
    """The scripted model, handed out by the model cache instead of loading one."""
    scripted = QueuedBackend()
    monkeypatch.setattr(ModelCache, "get", lambda self, name, options: scripted)
    return scripted


def run(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(["agent", *argv])
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines() if line.strip()], out.err


def test_a_line_per_step_and_one_for_the_answer(capsys, backend):
    backend.enqueue(write_call("calculate", {"expression": "6*7"}), "6*7 is 42.")
    code, lines, _ = run(capsys, "What is 6*7?", "--tools", "calculate")
    assert code == EXIT_OK
    assert [line["kind"] for line in lines] == ["tool", "answer"]
    assert lines[0]["call"]["name"] == "calculate" and lines[0]["response"] == {"expression": "6*7", "result": 42}
    assert lines[1]["answer"] == "6*7 is 42."
    assert [tool["function"]["name"] for tool in backend.requests[0][1].tools] == ["calculate"]


def test_an_unknown_tool_is_a_json_error_line_and_exit_1(capsys, backend):
    code, lines, err = run(capsys, "Launch", "--tools", "calculate,launch_rockets")
    assert code == EXIT_FAILED
    assert len(lines) == 1 and "Unknown tool 'launch_rockets'" in lines[0]["error"]
    assert "launch_rockets" in err and backend.requests == []


@pytest.mark.parametrize("text, message", [
    ("{not json", "Cannot read the JSON schema"),
    ('{"type": "no-such-type"}', "The JSON answer schema is not valid"),
])
def test_a_bad_schema_file_is_a_json_error_line_and_exit_1(capsys, tmp_path, backend, text, message):
    schema = tmp_path / "schema.json"
    schema.write_text(text)
    code, lines, _ = run(capsys, "Pick a colour", "--json-schema", str(schema), "--model", "tiny")
    assert code == EXIT_FAILED
    assert len(lines) == 1 and message in lines[0]["error"]
    assert backend.requests == []  # refused before the model was asked


def test_a_missing_schema_file_is_a_json_error_line(capsys, tmp_path, backend):
    code, lines, _ = run(capsys, "Pick a colour", "--json-schema", str(tmp_path / "absent.json"))
    assert code == EXIT_FAILED and "absent.json" in lines[0]["error"]


def test_an_mcp_server_that_is_down_is_named_and_the_run_goes_on(capsys, backend):
    url = f"http://{LOCALHOST}:{free_port()}/gradio_api/mcp/"
    backend.enqueue("Nothing to call.")
    code, lines, err = run(capsys, "Hello", "--mcp-server", url)
    assert code == EXIT_OK and lines[-1]["answer"] == "Nothing to call."
    assert f"MCP server {url} is left out: cannot connect" in err
    assert "calculate" in {tool["function"]["name"] for tool in backend.requests[0][1].tools}


def test_a_tool_runs_its_tasks_settings_under_the_token_cap_not_the_chats(capsys, backend):
    backend.enqueue(write_call("read_text", {"attachment": "0"}), TABLE_ANSWER, "It is a receipt.")
    code, lines, _ = run(capsys, "Read it", "--files", str(INPUT / "document.png"), "--tools", "read_text",
                         "--system-prompt", "Answer like a pirate.", "--thinking", "--sampling",
                         "--image-budget", "140", "--max-new-tokens", "2000")
    assert code == EXIT_OK and "Coffee" in lines[0]["response"]["markdown"]
    assert backend.requests[0][1].system_prompt == "Answer like a pirate."  # the chat's own round keeps them
    assert backend.requests[1][1] == ocr.DEFAULT_SETTINGS.with_changes(max_new_tokens=2000)


def test_mcp_urls_are_refused_unless_the_flag_or_variable_allows_them(monkeypatch, backend):
    calls = []
    monkeypatch.setattr(mcp, "connect_servers", lambda urls, **kwargs: calls.append(kwargs) or mcp.McpTools())
    monkeypatch.delenv("GEMMA_DEMO_MCP_ALLOW_URLS", raising=False)
    for variable, flags in ((None, []), (None, ["--mcp-allow-urls"]), ("1", [])):
        if variable:
            monkeypatch.setenv("GEMMA_DEMO_MCP_ALLOW_URLS", variable)
        backend.enqueue("Hello.")
        assert main(["agent", "Hi", *flags]) == EXIT_OK
    assert [kwargs["allow_urls"] for kwargs in calls] == [False, True, True]


def test_the_module_entry_point_reports_an_unknown_tool(tmp_path):
    env = {**os.environ, "GEMMA_DEMO_TINY_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "gemma_demo", "agent", "Hi", "--tools", "nope", "--model", "tiny"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == EXIT_FAILED
    assert "Unknown tool 'nope'" in json.loads(out.stdout.strip())["error"]
