"""Which piece of a long recording is running shows in the audio tab's status line and on the CLI's stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from audio_factory import beeps_with_pauses, sine, write_audio
from gemma_demo.cli.main import EXIT_OK, main
from gemma_demo.engine.base import Message, Stats, Update
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.ui.handlers import transcribe_speech, translate_speech

SETTINGS = GenerationSettings(sampling=False, max_new_tokens=16)
ANSWERS = ["The first part.", "Then the second part,", "and 3 at the end."]
TRANSLATIONS = ["Good morning.\nFrench: Bonjour.", "How are you?\nFrench: Ça va ?", "Goodbye.\nFrench: Au revoir."]


@dataclass
class ScriptedAudioBackend:
    """Streams each queued answer in two halves, then whole."""

    answers: list[str]
    name: str = "scripted-e2b"
    capabilities: ModelCapabilities = field(default_factory=lambda: ModelCapabilities(audio=True, context_tokens=131_072))

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        answer = self.answers.pop(0)
        yield Update(answer=answer[: len(answer) // 2], stats=Stats(prompt_tokens=100, new_tokens=1))
        yield Update(answer=answer, stats=Stats(prompt_tokens=100, new_tokens=2), done=True)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """75 s: three beeps of 24 s with pauses between, so three chunks."""
    beeps = beeps_with_pauses([24.0] * 3, 1.0)
    return write_audio(tmp_path_factory.mktemp("audio") / "talk.wav", beeps.samples, beeps.rate)


def _status_lines(outputs: list[tuple]) -> list[str]:
    return [output[-1] for output in outputs]


@pytest.mark.parametrize(("handler", "extra", "answers"), [
    (transcribe_speech, ("English",), ANSWERS),
    (translate_speech, ("English", "French"), TRANSLATIONS),
])
def test_the_status_line_names_the_running_chunk_while_it_runs(long_clip, handler, extra, answers):
    outputs = list(handler(ScriptedAudioBackend(list(answers)), SETTINGS, str(long_clip), *extra))
    statuses = _status_lines(outputs)
    pieces = [status.split(" · ")[0] for status in statuses]
    assert list(dict.fromkeys(pieces)) == ["Chunk 1 of 3", "Chunk 2 of 3", "Chunk 3 of 3"]
    second = pieces.index("Chunk 2 of 3")
    assert outputs[second][2] is None, "chunk 2's status must show before the end (no files yet)"
    assert statuses[second].endswith("tokens") and "prompt tokens" in statuses[second]  # the figures follow
    assert outputs[-1][2] and statuses[-1].startswith("Chunk 3 of 3 · ")


def test_a_skipped_silent_chunk_says_so(tmp_path):
    loud, quiet = sine(440.0, 20.0), np.zeros(round(35.0 * SAMPLE_RATE), np.float32)
    path = write_audio(tmp_path / "gap.wav", np.concatenate([loud, quiet, loud]), SAMPLE_RATE)
    statuses = _status_lines(list(transcribe_speech(ScriptedAudioBackend(["Hello.", "Bye."]), SETTINGS, str(path), "English")))
    assert "Chunk 2 of 3 (silent, not sent to the model)" in {status.split(" · ")[0] for status in statuses}


def test_the_cli_tells_stderr_each_chunk_and_keeps_stdout_to_json_lines(capsys, monkeypatch, tiny_root, long_clip):
    monkeypatch.setenv("GEMMA_DEMO_TINY_ROOT", str(tiny_root))
    code = main(["transcribe", str(long_clip), "--model", "tiny", "--max-new-tokens", "4"])
    captured = capsys.readouterr()
    assert code == EXIT_OK
    lines = [json.loads(line) for line in captured.out.splitlines()]  # every stdout line is JSON
    assert len(lines) == 1 and lines[0]["chunk_count"] == 3 and lines[0]["done"]
    # A slow chunk also tells what it is doing before its first token: "Chunk 1 of 3 (Reading the prompt…)".
    told = [line.split(" (")[0] for line in captured.err.splitlines() if line.startswith(f"{long_clip}: ")]
    assert list(dict.fromkeys(told)) == [f"{long_clip}: Chunk {n} of 3" for n in (1, 2, 3)]
