"""The app's `--backend openai` against a real vLLM (its CPU build) serving the tiny model.

One server serves the whole module (its start-up is most of the module's time); the test
that kills it mid-stream and starts it again runs last. `vllm_server` builds vLLM's venv once per machine;
where it cannot (no network), these tests skip and say why, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from app_helpers import wait_until
from audio_factory import beeps_with_pauses, sine, write_audio, write_with_pyav
from gemma_demo.engine.base import Update, last_update
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.remote.client import OpenAIBackend, load_openai_backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GenerationError, InvalidInputError, ModelUnavailableError
from gemma_demo.media.video_sampling import FrameSampling
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.audio_question import ask_audio
from gemma_demo.tasks.caption import caption
from gemma_demo.tasks.chat import chat, user_message
from gemma_demo.tasks.conversation import model_messages
from gemma_demo.tasks.detection import GroundingMode, detect
from gemma_demo.tasks.html_page import image_to_html
from gemma_demo.tasks.ocr import ocr
from gemma_demo.tasks.transcription import transcribe, translate
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import toolbox
from gemma_demo.tasks.video_question import describe_video
from gemma_demo.tiny.model import ensure_tiny_model
from remote_helpers import PERSON, answer_is_clean, final
from vllm_server import VllmStartError, serve_vllm

# The first test waits for the venv build (3–4 min on a fresh machine) and the start-up.
pytestmark = pytest.mark.timeout(1200)

SHORT = GenerationSettings(max_new_tokens=8)
LONG_ANSWER_TOKENS = 3000  # with the prompt, inside the server's --max-model-len 4096
ABORT_CEILING_S = 60.0  # generous: only a server that never notices the client left fails
PICTURE = Image.new("RGB", (640, 480), "teal")
# Forcing a thought: vLLM applies the regex with thinking off; the bias makes the model write
# the markers as the special tokens the streaming parser looks for, not spelled out in pieces.
THOUGHT, ANSWER = "Let me think.", "The answer is 4."
THOUGHT_REGEX = r"<\|channel>thought\n" + re.escape(THOUGHT) + r"<channel\|>" + re.escape(ANSWER)
MARKERS = ("<|channel>", "<channel|>")
# A forced call to the built-in calculator, then a forced answer once its result is back.
CALL_REGEX = r'<\|tool_call>call:calculate\{expression:<\|"\|>6\*7<\|"\|>\}<tool_call\|>'
CALL_MARKERS = ("<|tool_call>", "<tool_call|>", '<|"|>')
FINAL_ANSWER = "6 times 7 is 42."
FINISHED = "vllm:request_success_total"  # requests that ran to their end (a client's abort is not one)
RUNNING = "vllm:num_requests_running"


@pytest.fixture(scope="module")
def model_folder(tiny_root) -> Path:
    return ensure_tiny_model("e2b", tiny_root)


@pytest.fixture(scope="module")
def server(vllm_python, model_folder, tmp_path_factory):
    try:
        with serve_vllm(model_folder, tmp_path_factory.mktemp("vllm"), python=vllm_python) as running:
            yield running
    except VllmStartError as error:
        pytest.fail(str(error))


@pytest.fixture
def remote(server, model_folder) -> OpenAIBackend:
    return load_openai_backend(str(model_folder), LoadOptions(backend="openai", base_url=server.base_url))


def with_extra_body(backend: OpenAIBackend, monkeypatch, **extra) -> None:
    """Add fields the backend never sends (a regex, a bias) to its requests, through its client."""
    completions = backend.client.chat.completions
    create = completions.create

    def create_with_extra(**options):
        options["extra_body"] = {**options.get("extra_body", {}), **extra}
        return create(**options)

    monkeypatch.setattr(completions, "create", create_with_extra)


def script_requests(backend: OpenAIBackend, monkeypatch, *extras: dict) -> list[dict]:
    """Add `extras[i]` to the backend's i-th request (a regex per round); returns what was sent."""
    completions = backend.client.chat.completions
    create, sent = completions.create, []

    def create_scripted(**options):
        extra = extras[len(sent)]
        options = {**options, **{key: value for key, value in extra.items() if key != "extra_body"},
                   "extra_body": {**options.get("extra_body", {}), **extra.get("extra_body", {})}}
        sent.append(options)
        return create(**options)

    monkeypatch.setattr(completions, "create", create_scripted)
    return sent


def marker_bias(model_folder: Path, markers: tuple[str, ...] = MARKERS) -> dict[str, int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    return {str(tokenizer.convert_tokens_to_ids(marker)): 100 for marker in markers}


def server_prompt(server, model: str, request: dict) -> tuple[int, str]:
    """The prompt vLLM renders for a chat request, from its own /tokenize: (token count, text)."""
    body = {"model": model, "messages": request["messages"], "tools": request.get("tools"),
            "chat_template_kwargs": request["extra_body"].get("chat_template_kwargs"),
            "add_generation_prompt": True, "return_token_strs": True}
    http = urllib.request.Request(f"http://127.0.0.1:{server.port}/tokenize", json.dumps(body).encode(),
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=60) as response:
        reply = json.loads(response.read())
    return reply["count"], "".join(reply["token_strs"])


def metric(server, name: str) -> float:
    """A counter or gauge from vLLM's Prometheus endpoint, summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


IMAGE_TASKS: dict[str, Callable] = {
    "caption": lambda backend, settings: caption(backend, PICTURE, settings=settings),
    "detect": lambda backend, settings: detect(backend, PICTURE, "cat, dog", settings=settings),
    "ocr": lambda backend, settings: ocr(backend, PICTURE, settings=settings),
}


@pytest.mark.parametrize("task", sorted(IMAGE_TASKS))
def test_image_tasks_at_two_budgets_count_the_tokens_the_local_engine_counts(remote, tiny_backend, task):
    counts = {}
    for budget in (280, 1120):
        settings = SHORT.with_changes(image_budget=budget)
        far = final(IMAGE_TASKS[task](remote, settings)).update
        near = final(IMAGE_TASKS[task](tiny_backend, settings.with_changes(max_new_tokens=1))).update
        assert far.stats.prompt_tokens == near.stats.prompt_tokens, f"budget {budget}"
        assert far.stats.new_tokens > 0 and answer_is_clean(far)
        counts[budget] = far.stats.prompt_tokens
    assert counts[1120] - counts[280] >= 700  # 640×480: 280 soft tokens, then 1078


@pytest.mark.parametrize("run", [
    lambda backend: image_to_html(backend, PICTURE, settings=SHORT),
    lambda backend: detect(backend, PICTURE, "cat", settings=SHORT, mode=GroundingMode.POINTS),
], ids=["html", "point"])
def test_other_image_tasks_finish(remote, run):
    assert answer_is_clean(final(run(remote)).update)


def test_streaming_grows_to_what_a_plain_request_answers(remote):
    prompt = [{"role": "user", "content": [{"type": "text", "text": "Count to ten."}]}]
    settings = GenerationSettings(max_new_tokens=24)
    updates = list(remote.stream(prompt, settings))
    assert len(updates) >= 2 and [u.done for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(b.answer.startswith(a.answer) for a, b in zip(updates, updates[1:]))
    plain = remote.client.chat.completions.create(
        model=remote.name, messages=[{"role": "user", "content": "Count to ten."}], max_tokens=24,
        temperature=0.0, extra_body={"skip_special_tokens": False,
                                     "chat_template_kwargs": {"enable_thinking": False}},
    )
    assert updates[-1].answer == plain.choices[0].message.content
    assert updates[-1].stats.new_tokens == plain.usage.completion_tokens


def test_reasoning_from_vllms_field_is_shown_apart_from_the_answer(remote, model_folder, monkeypatch):
    # The backend has no hook for a regex: the test adds it to the requests of the backend's client.
    with_extra_body(remote, monkeypatch, structured_outputs={"regex": THOUGHT_REGEX},
                    logit_bias=marker_bias(model_folder))
    updates = list(caption(remote, PICTURE, settings=GenerationSettings(max_new_tokens=64)))
    last = updates[-1].update
    assert (last.reasoning, last.answer) == (THOUGHT, ANSWER)
    assert not any(marker in r.update.answer + r.update.reasoning for r in updates for marker in MARKERS)


def test_transcribing_75_s_sends_three_pieces(remote, server, tmp_path):
    beeps = beeps_with_pauses([24.0] * 3, 1.0)
    path = write_audio(tmp_path / "talk.wav", beeps.samples, beeps.rate)
    before = metric(server, FINISHED)
    result = final(transcribe(remote, path, language="English", settings=SHORT))
    assert result.chunk_count == 3 and len(result.cues) == 3
    assert metric(server, FINISHED) - before == 3, "one request per piece"
    assert result.stats.prompt_tokens > 3 * 500, "each 25 s piece is ~625 audio tokens"


def test_translating_and_asking_about_audio(remote, tmp_path):
    path = write_audio(tmp_path / "tone.wav", sine(440.0, 2.0), 16_000)
    answer = final(ask_audio(remote, path, "What do you hear?", settings=SHORT))
    text_only = last_update(remote.stream([{"role": "user", "content": "What do you hear?"}], SHORT))
    assert answer.update.stats.prompt_tokens > text_only.stats.prompt_tokens + 40
    assert final(translate(remote, path, "English", "French", settings=SHORT)).chunk_count == 1


@pytest.mark.parametrize("include_audio", [False, True], ids=["frames", "frames-and-sound"])
def test_video_reads_as_the_local_engine_reads_it(remote, tiny_backend, tmp_path, include_audio):
    path = write_with_pyav(tmp_path / "clip.mp4", sine(440.0, 4.0), 16_000, with_video=True)
    sampling = FrameSampling(num_frames=4)
    far = final(describe_video(remote, path, "What happens?", sampling, include_audio, SHORT))
    near = final(describe_video(tiny_backend, path, "What happens?", sampling, include_audio,
                                SHORT.with_changes(max_new_tokens=1)))
    assert far.update.stats.prompt_tokens == near.update.stats.prompt_tokens
    assert far.audio_seconds == near.audio_seconds == (4.0 if include_audio else 0.0)


def test_four_people_at_once_each_get_their_own_answer(remote, tmp_path):
    sound = write_audio(tmp_path / "tone.wav", sine(440.0, 2.0), 16_000)
    jobs: dict[str, Callable[[], Update]] = {
        "caption": lambda: final(caption(remote, PICTURE, settings=SHORT)).update,
        "ocr": lambda: final(ocr(remote, PICTURE, settings=SHORT.with_changes(image_budget=70))).update,
        "audio": lambda: final(ask_audio(remote, sound, "What is it?", settings=SHORT)).update,
        "text": lambda: last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT)),
    }
    alone = {name: job().stats.prompt_tokens for name, job in jobs.items()}
    started = threading.Barrier(len(jobs))

    def run(name: str) -> int:
        started.wait()
        update = jobs[name]()
        assert update.done and answer_is_clean(update)
        return update.stats.prompt_tokens

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = dict(zip(jobs, pool.map(run, jobs)))
    assert together == alone


def test_stop_closes_the_stream_and_vllm_aborts_the_request(remote, server, monkeypatch):
    with_extra_body(remote, monkeypatch, min_tokens=LONG_ANSWER_TOKENS)  # no early end of turn
    finished = metric(server, FINISHED)
    results = caption(remote, PICTURE, settings=GenerationSettings(max_new_tokens=LONG_ANSWER_TOKENS))
    next(results), next(results)
    assert wait_until(lambda: metric(server, RUNNING) == 1, ABORT_CEILING_S)
    results.close()
    assert wait_until(lambda: metric(server, RUNNING) == 0, ABORT_CEILING_S)
    assert metric(server, FINISHED) == finished, "the request ran to its end instead of being aborted"


def test_a_prompt_longer_than_the_servers_context_is_explained(remote):
    with pytest.raises(InvalidInputError, match=r"context of 4096 tokens.*--max-model-len"):
        last_update(remote.stream([{"role": "user", "content": "word " * 5000}], SHORT))


def test_too_many_new_tokens_are_explained(remote):
    with pytest.raises(InvalidInputError, match="new tokens do not fit"):
        last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT.with_changes(max_new_tokens=5000)))


def test_a_two_turn_chat_about_a_picture(remote, tiny_backend, tmp_path):
    picture = tmp_path / "teal.png"
    PICTURE.save(picture)
    settings = GenerationSettings(max_new_tokens=8)
    first = final(chat(remote, [], user_message("What colour is this?", [picture]), settings))
    follow_up = user_message("And what shape?")
    second = final(chat(remote, first.history, follow_up, settings))
    assert second.history[:len(first.history)] == first.history and answer_is_clean(second.update)
    for result, asked in ((first, first.history[:1]), (second, [*first.history, follow_up])):
        messages = model_messages(list(asked), remote.capabilities, remote.name)
        # The server read the picture, the first answer and both questions as the local engine does.
        assert result.update.stats.prompt_tokens == tiny_backend.count_prompt(messages, settings).tokens
    assert second.update.stats.prompt_tokens > first.update.stats.prompt_tokens + first.update.stats.new_tokens


def test_a_forced_tool_call_is_run_by_the_agent_and_its_result_sent_back(remote, server, model_folder,
                                                                        monkeypatch):
    no_thinking = {"chat_template_kwargs": {"enable_thinking": False}}
    sent = script_requests(
        remote, monkeypatch,
        {"logit_bias": marker_bias(model_folder, CALL_MARKERS),
         "extra_body": {**no_thinking, "structured_outputs": {"regex": CALL_REGEX}}},
        {"extra_body": {**no_thinking, "structured_outputs": {"regex": re.escape(FINAL_ANSWER)}}},
    )
    question = [{"role": "user", "content": [{"type": "text", "text": "What is 6 times 7?"}]}]
    steps = list(run_agent(remote, question, toolbox(["calculate"]), GenerationSettings(max_new_tokens=64),
                           ToolContext()))
    (tool,) = [step for step in steps if step.kind is StepKind.TOOL]
    assert tool.call.arguments == {"expression": "6*7"} and tool.result.response["result"] == 42
    answer = steps[-1]
    assert (answer.kind, answer.round, answer.update.answer) == (StepKind.ANSWER, 2, FINAL_ANSWER)
    assert [request["tools"][0]["function"]["name"] for request in sent] == ["calculate", "calculate"]
    # What vLLM rendered for the second round holds the call and the calculator's result.
    count, prompt = server_prompt(server, remote.name, sent[1])
    assert count == answer.update.stats.prompt_tokens > tool.update.stats.prompt_tokens
    assert "<|tool_call>call:calculate" in prompt and re.search(r"<\|tool_response>response:calculate.*42", prompt)


def test_answers_follow_a_json_schema(remote):
    settings = GenerationSettings(max_new_tokens=120, json_schema=PERSON)
    last_update(remote.stream([{"role": "user", "content": "Describe someone."}], settings))  # compiles the grammar
    for question in ("Describe a person as JSON.", "Who is your friend?", "Invent a character."):
        answer = last_update(remote.stream([{"role": "user", "content": question}], settings)).answer
        jsonschema.validate(json.loads(answer), PERSON)


# Keep last: it kills the module's server, then starts one on the same port (a second start-up,
# 40–110 s, the price of seeing the app answer again). (A SIGTERM is no test of the app: vLLM 0.32
# then stops its engine but holds the open stream silent until the client's read timeout.)
def test_a_server_killed_mid_answer_gives_a_clear_error_then_answers_once_back(
    remote, server, vllm_python, model_folder, tmp_path, monkeypatch
):
    with_extra_body(remote, monkeypatch, min_tokens=LONG_ANSWER_TOKENS)
    updates = remote.stream([{"role": "user", "content": "Tell a long story."}],
                            GenerationSettings(max_new_tokens=LONG_ANSWER_TOKENS))
    next(updates)
    os.killpg(server.process.pid, signal.SIGKILL)  # a crash, or the kernel's OOM killer
    with pytest.raises(GenerationError, match="broke during the answer"):
        for _ in updates:
            pass
    with pytest.raises(ModelUnavailableError, match="Cannot reach the model server"):
        last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT))
    monkeypatch.undo()
    # The same address again (a supervisor restarting it): the same backend answers, no reload.
    with serve_vllm(model_folder, tmp_path, python=vllm_python, port=server.port):
        again = last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT))
    assert again.done and again.stats.new_tokens > 0
