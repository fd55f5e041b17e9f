"""The hostile-input corpus through the public API and the CLI.

Each case gets a clear message (or a normal result where the input is merely unusual),
the CLI exits 1 on an error, and the very next normal request succeeds. Both run the
real path on the tiny model: upload, Gradio's preprocessing, the task, streaming.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from gemma_demo.cli.commands import COMMANDS
from gemma_demo.cli.main import EXIT_FAILED_INPUT, EXIT_OK, main
from gemma_demo.ui.endpoints import GENERIC_ERROR
from hostile_inputs import CASES, ENDPOINTS, ERROR, FILE, Case, Endpoint

NEW_TOKENS = 2
FINISHED = re.compile(r"\b[1-9]\d* new tokens\b")

pytestmark = pytest.mark.timeout(120)


def test_the_corpus_reaches_every_file_task_of_the_app_and_the_cli(client):
    """Every CLI task (each reads files) has hostile cases, sent to the app's endpoint of the same task."""
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    covered = {case.endpoint for case in CASES}
    assert {ENDPOINTS[name].command for name in covered} == set(COMMANDS)
    assert {ENDPOINTS[name].api for name in covered} <= set(named)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {case.name: case.write(folder / case.name) for case in CASES}


@pytest.fixture(scope="module")
def normal_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("normal")
    return {name: endpoint.write_normal(folder / name) for name, endpoint in ENDPOINTS.items()}


def call(client: Client, endpoint: Endpoint, inputs: tuple, file: Path, options: dict) -> tuple:
    args = [handle_file(file) if item is FILE else item for item in inputs]
    return client.predict(*args, api_name=endpoint.api, max_new_tokens=NEW_TOKENS, **options)


def assert_normal_result(result: tuple) -> None:
    """Every endpoint ends with the stats line; it counts tokens only once generation finished."""
    assert isinstance(result, tuple) and FINISHED.search(result[-1]), result


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_through_the_api(client, corpus, normal_files, case: Case):
    endpoint = case.target
    if case.expect == ERROR:
        with pytest.raises(AppError) as failure:
            call(client, endpoint, case.api_inputs(), corpus[case.name], case.api_options())
        message = str(failure.value)
        assert re.search(case.message, message), message
        assert GENERIC_ERROR not in message
    else:
        assert_normal_result(call(client, endpoint, case.api_inputs(), corpus[case.name], case.api_options()))
    # The app keeps serving: the very next normal request on the same endpoint succeeds.
    assert_normal_result(call(client, endpoint, endpoint.normal_inputs, normal_files[case.endpoint], endpoint.options))


def run_cli(capsys, command: str, files: list[Path], arguments: tuple[str, ...]) -> tuple[int, list[dict], str]:
    argv = [command, *map(str, files), "--model", "tiny", "--max-new-tokens", str(NEW_TOKENS), *arguments]
    code = main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_through_the_cli(capsys, monkeypatch, tiny_root, corpus, normal_files, case: Case):
    monkeypatch.setenv("GEMMA_DEMO_TINY_ROOT", str(tiny_root))
    endpoint, hostile, normal = case.target, corpus[case.name], normal_files[case.endpoint]
    # A bad file must not cost the good file after it its result; a bad flag is tried alone.
    files = [hostile, normal] if case.cli is None else [hostile]
    code, lines, errors = run_cli(capsys, endpoint.command, files, case.cli_arguments())
    assert [line["file"] for line in lines] == list(map(str, files))
    if case.expect == ERROR:
        assert code == EXIT_FAILED_INPUT
        assert re.search(case.message, lines[0]["error"]), lines[0]
        assert f"error: {hostile}: " in errors
    else:
        assert code == EXIT_OK and "error" not in lines[0] and lines[0]["done"], lines[0]
    if case.cli is not None:
        code, lines, _ = run_cli(capsys, endpoint.command, [normal], (*endpoint.normal_cli, *endpoint.cli_options))
        assert code == EXIT_OK
    assert "error" not in lines[-1] and lines[-1]["done"] and lines[-1]["stats"]["new_tokens"] >= 1, lines[-1]
