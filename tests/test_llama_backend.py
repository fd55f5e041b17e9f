"""The app's `--backend openai` against a real llama.cpp `llama-server` serving the tiny model as GGUF.

`llama_cpp` (conftest) builds llama.cpp once per machine (about 15 minutes on two busy cores);
where it cannot (no network), these tests skip and say why, except under CI, where they fail.
The tiny E2B is converted by llama.cpp's own converter: a text GGUF and an mmproj GGUF for its
vision and audio towers. One server serves the module (it starts in seconds); the test that
kills it runs last. The tiny model's words are gibberish: the tests check the plumbing (what
reaches the server, what comes back, in what shape), not the words.
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from app_helpers import wait_until
from audio_factory import sine, write_audio, write_with_pyav
from gemma_demo.engine.base import last_update
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.remote.client import OpenAIBackend, load_openai_backend
from gemma_demo.engine.remote.llama_cpp import BUDGET_NOTE
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import CapabilityError, GenerationError, InvalidInputError, ModelUnavailableError
from gemma_demo.media.video_sampling import FrameSampling
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.audio_question import ask_audio
from gemma_demo.tasks.caption import caption
from gemma_demo.tasks.chat import chat, user_message
from gemma_demo.tasks.detection import GroundingMode, detect
from gemma_demo.tasks.html_page import image_to_html
from gemma_demo.tasks.ocr import ocr
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import toolbox
from gemma_demo.tasks.transcription import translate
from gemma_demo.tasks.video_question import describe_video
from gemma_demo.tiny.model import ensure_tiny_model
from llama_server import CONTEXT_TOKENS, Gguf, LlamaServerStartError, convert_to_gguf, serve_llama
from remote_helpers import PERSON, answer_is_clean, final

# The first test waits for the build on a fresh machine.
pytestmark = pytest.mark.timeout(3600)

SHORT = GenerationSettings(max_new_tokens=8)
LONG_ANSWER_TOKENS = 3000  # with the prompt, inside the server's --ctx-size 4096
ABORT_CEILING_S = 60.0  # generous: only a server that never notices the client left fails
PICTURE = Image.new("RGB", (640, 480), "teal")
PICTURE_TOKENS = 100  # llama.cpp reads a 640×480 picture as ~144 soft tokens, whatever the budget
FRAME_TOKENS = 70  # the least it reads any picture as (the clip's frames are 64×64)
AUDIO_TOKENS = 40  # 2 s of audio are 50 frames of 40 ms
THOUGHT, ANSWER = "Let me think.", "The answer is 4."
PROCESSING = "llamacpp:requests_processing"
PREDICTED = "llamacpp:tokens_predicted_total"  # a stopped request counts the tokens it made


@pytest.fixture(scope="module")
def model_folder(tiny_root) -> Path:
    return ensure_tiny_model("e2b", tiny_root)


@pytest.fixture(scope="module")
def gguf(llama_cpp, model_folder, tmp_path_factory) -> Gguf:
    return convert_to_gguf(model_folder, tmp_path_factory.mktemp("gguf"), llama_cpp)


@pytest.fixture(scope="module")
def server(llama_cpp, gguf, model_folder, tmp_path_factory):
    try:
        with serve_llama(gguf, tmp_path_factory.mktemp("llama"), llama=llama_cpp, alias=str(model_folder)) as running:
            yield running
    except LlamaServerStartError as error:
        pytest.fail(str(error))


@pytest.fixture
def remote(server, model_folder) -> OpenAIBackend:
    return load_openai_backend(str(model_folder), LoadOptions(backend="openai", base_url=server.base_url))


def with_extra_body(backend: OpenAIBackend, monkeypatch, **extra) -> list[dict]:
    """Add fields the backend never sends (a grammar, `ignore_eos`) to its requests; returns what was sent."""
    completions = backend.client.chat.completions
    create, sent = completions.create, []

    def create_with_extra(**options):
        options = {**options, "extra_body": {**options.get("extra_body", {}), **extra}}
        sent.append(options)
        return create(**options)

    monkeypatch.setattr(completions, "create", create_with_extra)
    return sent


def metric(server, name: str) -> float:
    """A counter or gauge from llama-server's Prometheus endpoint (`--metrics`)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def rendered_prompt(server, request: dict) -> str:
    """The prompt llama-server renders for a chat request, from its own /apply-template."""
    body = {key: request[key] for key in ("messages", "tools") if key in request}
    http = urllib.request.Request(f"{server.url}/apply-template", json.dumps(body).encode(),
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=60) as response:
        return json.loads(response.read())["prompt"]


def text_prompt_tokens(backend: OpenAIBackend, question: str) -> int:
    return last_update(backend.stream([{"role": "user", "content": question}], SHORT)).stats.prompt_tokens


def tokens_starting_with(model_folder: Path, prefix: str) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    return [index for token, index in tokenizer.get_vocab().items()
            if tokenizer.convert_tokens_to_string([token]).startswith(prefix)]


IMAGE_TASKS: dict[str, Callable] = {
    "caption": lambda backend, settings: caption(backend, PICTURE, settings=settings),
    "detect": lambda backend, settings: detect(backend, PICTURE, "cat, dog", settings=settings),
    "point": lambda backend, settings: detect(backend, PICTURE, "cat", settings=settings, mode=GroundingMode.POINTS),
    "ocr": lambda backend, settings: ocr(backend, PICTURE, settings=settings),
    "html": lambda backend, settings: image_to_html(backend, PICTURE, settings=settings),
}


@pytest.mark.parametrize("task", sorted(IMAGE_TASKS))
def test_image_tasks_read_the_picture_at_llama_cpps_own_size_and_say_so(remote, task):
    updates = {budget: final(IMAGE_TASKS[task](remote, SHORT.with_changes(image_budget=budget))).update
               for budget in (70, 1120)}
    text_only = text_prompt_tokens(remote, "Describe.")
    for update in updates.values():
        assert update.stats.prompt_tokens > text_only + PICTURE_TOKENS
        assert update.stats.new_tokens > 0 and answer_is_clean(update)
        assert update.status == BUDGET_NOTE
    # llama.cpp takes no budget per request; the status line above tells the person so.
    assert updates[70].stats.prompt_tokens == updates[1120].stats.prompt_tokens


def test_text_answers_carry_no_budget_note(remote):
    assert last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT)).status == ""


def test_asking_about_and_translating_audio(remote, tmp_path):
    path = write_audio(tmp_path / "tone.wav", sine(440.0, 2.0), 16_000)
    answer = final(ask_audio(remote, path, "What do you hear?", settings=SHORT))
    assert answer.update.stats.prompt_tokens > text_prompt_tokens(remote, "What do you hear?") + AUDIO_TOKENS
    assert answer.update.stats.new_tokens > 0
    assert final(translate(remote, path, "English", "French", settings=SHORT)).chunk_count == 1


def test_video_goes_as_stamped_frames_with_its_sound(remote, tmp_path):
    path = write_with_pyav(tmp_path / "clip.mp4", sine(440.0, 4.0), 16_000, with_video=True)
    sampling = FrameSampling(num_frames=4)
    frames = final(describe_video(remote, path, "What happens?", sampling, False, SHORT))
    both = final(describe_video(remote, path, "What happens?", sampling, True, SHORT))
    text_only = text_prompt_tokens(remote, "What happens?")
    assert frames.update.stats.prompt_tokens > text_only + 4 * FRAME_TOKENS
    assert both.update.stats.prompt_tokens > frames.update.stats.prompt_tokens + AUDIO_TOKENS
    assert both.audio_seconds == 4.0 and frames.update.status == BUDGET_NOTE


def test_streaming_grows_to_what_a_plain_request_answers(remote, monkeypatch):
    with_extra_body(remote, monkeypatch, ignore_eos=True)  # no early end of turn: every token streams
    prompt = [{"role": "user", "content": [{"type": "text", "text": "Count to ten."}]}]
    updates = list(remote.stream(prompt, GenerationSettings(max_new_tokens=24)))
    assert len(updates) >= 3 and [u.done for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(b.answer.startswith(a.answer) for a, b in zip(updates, updates[1:]))
    plain = remote.client.with_options().chat.completions.create(
        model=remote.name, messages=[{"role": "user", "content": "Count to ten."}], max_tokens=24,
        temperature=0.0, extra_body={"ignore_eos": True, "chat_template_kwargs": {"enable_thinking": False}},
    )
    assert updates[-1].answer == plain.choices[0].message.content
    assert updates[-1].stats.new_tokens == plain.usage.completion_tokens == 24


def test_reasoning_from_llama_cpps_field_is_shown_apart_from_the_answer(remote, monkeypatch):
    # A grammar forces a thought: llama-server parses it into `reasoning_content` (its Gemma 4 parser).
    grammar = f'root ::= "<|channel>thought\\n{THOUGHT}<channel|>{ANSWER}"'
    with_extra_body(remote, monkeypatch, grammar=grammar)
    updates = list(remote.stream([{"role": "user", "content": "What is 2 + 2?"}],
                                 GenerationSettings(max_new_tokens=64)))
    assert (updates[-1].reasoning, updates[-1].answer) == (THOUGHT, ANSWER)
    assert not any(marker in u.answer + u.reasoning for u in updates for marker in ("<|channel>", "<channel|>"))


def test_stop_ends_the_request_and_the_server_keeps_serving(remote, server, monkeypatch):
    with_extra_body(remote, monkeypatch, ignore_eos=True)
    predicted = metric(server, PREDICTED)
    results = caption(remote, PICTURE, settings=GenerationSettings(max_new_tokens=LONG_ANSWER_TOKENS))
    next(results), next(results)
    assert wait_until(lambda: metric(server, PROCESSING) == 1, ABORT_CEILING_S)
    results.close()
    assert wait_until(lambda: metric(server, PROCESSING) == 0, ABORT_CEILING_S)
    assert metric(server, PREDICTED) - predicted < LONG_ANSWER_TOKENS, "the request ran to its end"
    assert last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT)).stats.new_tokens == 8


def test_a_prompt_longer_than_the_servers_context_is_explained(remote):
    with pytest.raises(InvalidInputError, match=rf"context of {CONTEXT_TOKENS} tokens.*--ctx-size"):
        last_update(remote.stream([{"role": "user", "content": "word " * 5000}], SHORT))


def test_a_two_turn_chat_about_a_picture(remote, tmp_path):
    picture = tmp_path / "teal.png"
    PICTURE.save(picture)
    first = final(chat(remote, [], user_message("What colour is this?", [picture]), SHORT))
    second = final(chat(remote, first.history, user_message("And what shape?"), SHORT))
    assert second.history[:len(first.history)] == first.history and answer_is_clean(second.update)
    # The second prompt holds the picture, the first answer and both questions.
    assert second.update.stats.prompt_tokens > first.update.stats.prompt_tokens + first.update.stats.new_tokens


def test_a_tool_call_parsed_by_llama_cpp_is_run_by_the_agent_and_its_result_sent_back(remote, server,
                                                                                      monkeypatch):
    # `tool_choice: required` makes llama.cpp's grammar force a Gemma 4 call; its arguments are the
    # tiny model's gibberish (llama.cpp's grammar does not hold argument names to the schema).
    completions = remote.client.chat.completions
    create, sent = completions.create, []

    def create_forcing_a_call_first(**options):
        sent.append({**options, **({} if sent else {"tool_choice": "required"})})
        return create(**sent[-1])

    monkeypatch.setattr(completions, "create", create_forcing_a_call_first)
    question = [{"role": "user", "content": [{"type": "text", "text": "What is 6 times 7?"}]}]
    steps = list(run_agent(remote, question, toolbox(["calculate"]), GenerationSettings(max_new_tokens=64),
                           ToolContext()))
    (tool,) = [step for step in steps if step.kind is StepKind.TOOL]
    assert tool.call.name == "calculate" and tool.result.response  # a result or the call's error
    assert (steps[-1].kind, steps[-1].round) == (StepKind.ANSWER, 2)
    assert [request["tools"][0]["function"]["name"] for request in sent] == ["calculate", "calculate"]
    # What llama-server rendered for the second round holds the call and the calculator's reply.
    prompt = rendered_prompt(server, sent[1])
    assert "<|tool_call>call:calculate" in prompt and "<|tool_response>response:calculate" in prompt


def test_answers_follow_a_json_schema(remote, model_folder, monkeypatch):
    # llama.cpp's Gemma 4 grammar lets a thought come before the JSON even with thinking off, and the
    # tiny model opens one for some questions (spelled out, too): no token that starts with "<".
    with_extra_body(remote, monkeypatch, logit_bias=dict.fromkeys(tokens_starting_with(model_folder, "<"), -100))
    settings = GenerationSettings(max_new_tokens=120, json_schema=PERSON)
    for question in ("Describe a person as JSON.", "Who is your friend?", "Invent a character."):
        answer = last_update(remote.stream([{"role": "user", "content": question}], settings)).answer
        jsonschema.validate(json.loads(answer), PERSON)


def test_a_server_without_towers_explains_pictures_and_audio(llama_cpp, gguf, model_folder, tmp_path):
    with serve_llama(Gguf(gguf.model), tmp_path, llama=llama_cpp) as text_only:
        backend = load_openai_backend(str(model_folder), LoadOptions(backend="openai", base_url=text_only.base_url))
        with pytest.raises(CapabilityError, match="reads no pictures.*--mmproj"):
            final(caption(backend, PICTURE, settings=SHORT))
        with pytest.raises(CapabilityError, match="reads no audio.*--mmproj"):
            final(ask_audio(backend, write_audio(tmp_path / "tone.wav", sine(440.0, 1.0), 16_000), "What?",
                            settings=SHORT))


# Keep last: it kills the module's server, then starts one on the same port.
def test_a_server_killed_mid_answer_gives_a_clear_error_then_answers_once_back(
    remote, server, llama_cpp, gguf, tmp_path, monkeypatch
):
    with_extra_body(remote, monkeypatch, ignore_eos=True)
    updates = remote.stream([{"role": "user", "content": "Tell a long story."}],
                            GenerationSettings(max_new_tokens=LONG_ANSWER_TOKENS))
    next(updates)
    os.kill(server.process.pid, signal.SIGKILL)  # a crash, or the kernel's OOM killer
    with pytest.raises(GenerationError, match="broke during the answer"):
        for _ in updates:
            pass
    with pytest.raises(ModelUnavailableError, match="Cannot reach the model server"):
        last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT))
    monkeypatch.undo()
    # The same address again (a supervisor restarting it): the same backend answers, no reload.
    with serve_llama(gguf, tmp_path, llama=llama_cpp, port=server.port):
        again = last_update(remote.stream([{"role": "user", "content": "Hi"}], SHORT))
    assert again.done and again.stats.new_tokens > 0
