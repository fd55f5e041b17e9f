"""The Chat tab: what the model gets from the history, the context budget, and the `/chat` API."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_helpers import generating, wait_until
from audio_factory import sine, write_audio
from gemma_demo.engine.base import Update
from gemma_demo.engine.local import build_inputs
from gemma_demo.engine.registry import LARGE, ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import CapabilityError, InvalidInputError
from gemma_demo.tasks.chat import DEFAULT_SETTINGS, answer_messages, chat, user_message
from gemma_demo.tasks.conversation import model_messages
from pdf_factory import BROKEN_PDF

INPUT = Path(__file__).resolve().parent.parent / "input"
TINY_TOKENS = 6


def two_turn_history() -> list[dict]:
    """A first exchange as the chat shows it: the answer's reasoning is its own collapsed message."""
    thought = Update(answer="It is a cat on a sofa.", reasoning="The fur and ears look feline.", done=True)
    return [user_message("What animal is this?", [INPUT / "chelsea.jpg"]), *answer_messages(thought)]


def test_the_second_prompt_holds_the_first_turn_without_its_reasoning(tiny_backend):
    history = [*two_turn_history(), user_message("And what colour is it?")]
    assert history[1]["metadata"]["title"] == "Reasoning" and history[1]["metadata"]["status"] == "done"
    messages = model_messages(history, tiny_backend.capabilities, tiny_backend.name)
    ids = build_inputs(tiny_backend.processor, messages, GenerationSettings())["input_ids"][0]
    prompt = tiny_backend.processor.tokenizer.decode(ids)
    assert "<|image>" in prompt.split("What animal is this?")[0]  # the picture comes before the words
    assert (
        "What animal is this?<turn|>\n<|turn>model\nIt is a cat on a sofa.<turn|>\n"
        "<|turn>user\nAnd what colour is it?<turn|>\n<|turn>model\n"
    ) in prompt
    assert "feline" not in prompt


def test_long_audio_is_cut_into_pieces_in_order(tmp_path, tiny_backend):
    path = write_audio(tmp_path / "long.wav", sine(440.0, 70.0), 16_000)
    messages = model_messages([user_message("Summarise.", [path])], tiny_backend.capabilities, tiny_backend.name)
    kinds = [part["type"] for part in messages[0]["content"]]
    assert kinds == ["audio", "audio", "audio", "text"]
    assert sum(len(part["audio"]) for part in messages[0]["content"][:3]) == 70 * 16_000


def test_audio_needs_e2b_or_e4b(tmp_path):
    path = write_audio(tmp_path / "short.wav", sine(440.0, 2.0), 16_000)
    with pytest.raises(CapabilityError, match="tiny-moe has no audio input"):
        model_messages([user_message("What is it?", [path])], LARGE, "tiny-moe")


@dataclass
class NarrowContext:
    """The tiny model with a small context, recording whether anything was generated."""

    inner: object
    capabilities: ModelCapabilities = ModelCapabilities(audio=True, context_tokens=400)
    name: str = "tiny"
    streamed: list = field(default_factory=list)

    def count_prompt(self, messages, settings):
        return self.inner.count_prompt(messages, settings)

    def stream(self, messages, settings):
        self.streamed.append(messages)
        yield from self.inner.stream(messages, settings)


def test_a_conversation_over_the_context_is_refused_before_anything_runs(tiny_backend):
    backend = NarrowContext(tiny_backend)
    settings = DEFAULT_SETTINGS.with_changes(max_new_tokens=TINY_TOKENS)
    results = list(chat(backend, [], user_message("Hello"), settings))
    assert results[-1].done and results[-1].context.limit == 400 and 0 < results[-1].context.tokens < 100
    history = [*results[-1].history]
    with pytest.raises(InvalidInputError, match=r"holds \d[\d,]* tokens.*Nothing was generated.*start a new chat"):
        list(chat(backend, history, user_message("And this? " * 200), settings))
    assert len(backend.streamed) == 1


def test_many_picture_tokens_bring_a_warning(tiny_backend):
    budget = GenerationSettings(max_new_tokens=TINY_TOKENS, image_budget=1120)
    pictures = [INPUT / name for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")] * 5
    messages = model_messages([user_message("Compare.", pictures)], tiny_backend.capabilities, tiny_backend.name)
    from gemma_demo.tasks.chat import measure_context

    assert measure_context(tiny_backend, messages, budget).warning().startswith("This turn carries")
    assert measure_context(tiny_backend, messages[:1], GenerationSettings(image_budget=70)).warning() == ""


# --- through the API ---------------------------------------------------------------------------


def resendable(history: list[dict]) -> list[dict]:
    """gradio_client hands files back as local paths; `handle_file` uploads them again."""
    for message in history:
        for part in message["content"]:
            if part["type"] == "file":
                part["file"] = handle_file(part["file"])
    return history


def say(client: Client, text: str, history: list, files=()) -> list[dict]:
    message = {"text": text, "files": [handle_file(f) for f in files]}
    history, meter, stats = client.predict(
        message, resendable(history), api_name="/chat", max_new_tokens=TINY_TOKENS,
        sampling="off",  # greedy, so no sampled end token stops the tiny model early
    )
    assert meter.startswith("Context: ") and " new tokens" in stats
    return history


def texts(history: list[dict]) -> list[str]:
    return [p["text"] for m in history if m["role"] == "user" for p in m["content"] if p["type"] == "text"]


def test_two_sessions_chat_at_once_and_keep_their_own_histories(app):
    histories: dict[str, list] = {}

    def converse(name: str) -> None:
        client = Client(app.local_url, verbose=False)
        history = say(client, f"{name} one", [], [INPUT / "chelsea.jpg"])
        histories[name] = say(client, f"{name} two", history)

    threads = [threading.Thread(target=converse, args=(name,)) for name in ("ada", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert texts(histories["ada"]) == ["ada one", "ada two"]
    assert texts(histories["bob"]) == ["bob one", "bob two"]
    assert [m["role"] for m in histories["ada"]] == ["user", "assistant", "user", "assistant"]


def test_export_then_import_gives_back_the_same_conversation(client):
    history = say(client, "Describe it.", [], [INPUT / "coffee.jpg"])
    history = say(client, "Shorter, please.", history)
    history.insert(1, {"role": "assistant", "content": [{"type": "text", "text": "Looking at the cup."}],
                       "metadata": {"title": "Reasoning", "status": "done"}})
    exported = client.predict(resendable(history), api_name="/export_chat")
    loaded = client.predict(handle_file(exported), api_name="/import_chat")
    assert [(m["role"], (m["metadata"] or {}).get("title")) for m in loaded] == [
        (m["role"], (m.get("metadata") or {}).get("title")) for m in history
    ]
    assert texts(loaded) == ["Describe it.", "Shorter, please."]
    back = loaded[0]["content"][0]["file"]
    assert Path(back).read_bytes() == (INPUT / "coffee.jpg").read_bytes() and Path(back).name == "coffee.jpg"


def test_a_broken_pdf_gets_a_clear_message_and_the_app_keeps_serving(client, tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(BROKEN_PDF)
    with pytest.raises(AppError, match="broken.pdf could not be read as a PDF"):
        say(client, "Summarise this.", [], [broken])
    assert wait_until(lambda: not generating())
    assert texts(say(client, "Hello again", [])) == ["Hello again"]
