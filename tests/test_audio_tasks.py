"""Transcription, translation and audio questions.

A scripted backend checks the logic; the tiny model checks the real path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from audio_factory import beeps_with_pauses, sine, write_audio
from gemma_demo.engine.base import Message, Stats, Update, audio_unsupported_message
from gemma_demo.errors import CapabilityError, InvalidInputError
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.audio_question import ask_audio
from gemma_demo.tasks.transcription import (
    ASR_PROMPT,
    AST_PROMPT,
    split_translation,
    transcribe,
    translate,
    write_subtitles,
)

CHUNK_CHARS = 5
PROMPT_TOKENS = 120
SECONDS_PER_TOKEN = 0.01
FIRST_TOKEN_SECONDS = 0.05
BEEP_SECONDS = 24.0
PAUSE_SECONDS = 1.0
CLIP_SECONDS = 3 * (BEEP_SECONDS + PAUSE_SECONDS)
MAX_CLIP_SAMPLES = round(MAX_CLIP_SECONDS * SAMPLE_RATE)
TINY_SETTINGS = GenerationSettings(max_new_tokens=4)
ASR_ANSWERS = ["The first part.", "Then the second part,", "and 3 at the end."]
AST_ANSWERS = [
    "Good morning.\nFrench: Bonjour.",
    "How are you?\nfrench:  Comment allez-vous ?",
    "Goodbye.\nFrench: Au revoir.",
]
SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})$", re.MULTILINE)


@dataclass
class FakeAudioBackend:
    """Streams the next queued answer a few characters at a time and records every request."""

    answers: list[str]
    name: str = "fake-e2b"
    capabilities: ModelCapabilities = field(
        default_factory=lambda: ModelCapabilities(audio=True, context_tokens=131_072)
    )
    requests: list[list[Message]] = field(default_factory=list)

    def stream(self, messages: list[Message], settings: GenerationSettings) -> Iterator[Update]:
        self.requests.append(messages)
        answer = self.answers.pop(0)
        pieces = range(CHUNK_CHARS, len(answer) + CHUNK_CHARS, CHUNK_CHARS)
        for count, end in enumerate(pieces, start=1):
            yield Update(answer=answer[:end], stats=_stats(count))
        yield Update(answer=answer, stats=_stats(len(pieces)), done=True)


def _stats(tokens: int) -> Stats:
    return Stats(
        prompt_tokens=PROMPT_TOKENS,
        new_tokens=tokens,
        time_to_first_token=FIRST_TOKEN_SECONDS,
        elapsed=FIRST_TOKEN_SECONDS + tokens * SECONDS_PER_TOKEN,
        decode_tokens=tokens - 1,
        decode_time=(tokens - 1) * SECONDS_PER_TOKEN,
    )


def sent_audio(messages: list[Message]) -> np.ndarray:
    [message] = messages
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["audio", "text"], "the sound must come before the text"
    return message["content"][0]["audio"]


def sent_text(messages: list[Message]) -> str:
    return messages[0]["content"][-1]["text"]


def srt_spans(srt: str) -> list[tuple[float, float]]:
    def seconds(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(seconds(*match[:4]), seconds(*match[4:])) for match in SRT_TIME.findall(srt)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> tuple[Path, tuple[tuple[float, float], ...]]:
    beeps = beeps_with_pauses([BEEP_SECONDS] * 3, PAUSE_SECONDS)
    path = write_audio(tmp_path_factory.mktemp("audio") / "talk.wav", beeps.samples, beeps.rate)
    return path, beeps.pauses


@pytest.fixture(scope="module")
def tiny_moe(tiny_options):
    return ModelCache().get("tiny-moe", tiny_options)


# Transcription with scripted answers


def test_a_75_s_clip_becomes_three_chunks_cut_in_the_pauses(long_clip):
    path, pauses = long_clip
    backend = FakeAudioBackend(list(ASR_ANSWERS))
    final = list(transcribe(backend, path, language="French"))[-1]

    assert final.done and final.chunk_count == 3 and len(backend.requests) == 3
    lengths = [len(sent_audio(request)) for request in backend.requests]
    assert all(0 < length <= MAX_CLIP_SAMPLES for length in lengths)
    assert sum(lengths) == round(CLIP_SECONDS * SAMPLE_RATE)
    assert all(sent_text(r) == ASR_PROMPT.format(language="French") for r in backend.requests)
    assert "speech segment in French into French text" in sent_text(backend.requests[0])
    cues = final.cues
    assert [cue.text for cue in cues] == ASR_ANSWERS
    assert cues[0].start == 0 and cues[-1].end == pytest.approx(CLIP_SECONDS)
    assert all(before.end == after.start for before, after in zip(cues, cues[1:]))
    assert all(cue.end - cue.start <= MAX_CLIP_SECONDS for cue in cues)
    for cue, (pause_start, pause_end) in zip(cues, pauses):
        assert pause_start <= cue.end <= pause_end
    assert final.text == final.transcript == " ".join(ASR_ANSWERS) and final.translation is None


def test_the_srt_has_one_cue_per_chunk_covering_the_clip(long_clip, tmp_path):
    final = list(transcribe(FakeAudioBackend(list(ASR_ANSWERS)), long_clip[0]))[-1]
    spans = srt_spans(final.srt())
    assert len(spans) == 3
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(CLIP_SECONDS, abs=1e-3)
    assert all(first[1] == second[0] for first, second in zip(spans, spans[1:]))
    assert all(answer in final.srt() and answer in final.vtt() for answer in ASR_ANSWERS)
    assert final.txt().splitlines()[0] == f"[00:00] {ASR_ANSWERS[0]}"

    paths = write_subtitles(final, tmp_path / "out", "../../My talk?")
    assert set(paths) == {"srt", "vtt", "txt"}
    assert all(path.parent == tmp_path / "out" and path.stem == "My_talk" for path in paths.values())
    assert paths["srt"].read_text(encoding="utf-8") == final.srt()
    assert paths["vtt"].read_text(encoding="utf-8").startswith("WEBVTT")
    assert json.loads(json.dumps(final.to_json()))["cues"][2]["text"] == ASR_ANSWERS[2]


def test_results_stream_with_progress_and_stats_summed_over_chunks(long_clip):
    results = list(transcribe(FakeAudioBackend(list(ASR_ANSWERS)), long_clip[0]))
    progress = list(dict.fromkeys(result.progress for result in results))
    assert progress == ["Chunk 1 of 3", "Chunk 2 of 3", "Chunk 3 of 3"]
    assert [r.chunk_index for r in results] == sorted(r.chunk_index for r in results)
    assert [r.done for r in results].count(True) == 1 and results[-1].done
    texts = [r.text for r in results]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    in_second = [r for r in results if r.chunk_index == 1 and not r.update.done]
    assert in_second[0].text.startswith(ASR_ANSWERS[0]) and len(in_second[0].cues) == 1

    per_chunk = [r.update.stats for r in results if r.update.done]
    final = results[-1].stats
    assert final.prompt_tokens == 3 * PROMPT_TOKENS
    assert final.new_tokens == sum(s.new_tokens for s in per_chunk)
    assert final.elapsed == pytest.approx(sum(s.elapsed for s in per_chunk))
    assert final.time_to_first_token == FIRST_TOKEN_SECONDS
    # Each chunk's wait for its first token (its encoding and prefill) is not decoding time.
    assert final.tokens_per_second == pytest.approx(1 / SECONDS_PER_TOKEN)


def test_a_silent_stretch_is_not_sent_to_the_model(tmp_path):
    loud, quiet = sine(440.0, 20.0), np.zeros(round(35.0 * SAMPLE_RATE), np.float32)
    clip = np.concatenate([loud, quiet, loud])
    backend = FakeAudioBackend(["Hello.", "Goodbye."])
    final = list(transcribe(backend, clip))[-1]
    assert final.chunk_count == 3 and len(backend.requests) == 2
    assert [cue.text for cue in final.cues] == ["Hello.", "", "Goodbye."]
    assert len(srt_spans(final.srt())) == 2 and final.done


# Translation with scripted answers


def test_translation_keeps_the_transcript_and_subtitles_the_translation(long_clip):
    backend = FakeAudioBackend(list(AST_ANSWERS))
    results = list(translate(backend, long_clip[0], "English", "French"))
    final = results[-1]
    assert sent_text(backend.requests[0]) == AST_PROMPT.format(source="English", target="French")
    assert "then output the string 'French: '" in sent_text(backend.requests[0])
    assert final.transcript == "Good morning. How are you? Goodbye."
    assert final.translation == final.text == "Bonjour. Comment allez-vous ? Au revoir."
    assert [cue.text for cue in final.cues] == ["Bonjour.", "Comment allez-vous ?", "Au revoir."]
    streaming = [r for r in results if r.chunk_index == 0 and not r.update.done]
    assert streaming[0].translation == "" and streaming[0].transcript


@pytest.mark.parametrize(
    ("answer", "finished", "transcript", "translation"),
    [
        ("Hi.\nGerman: Hallo.", True, "Hi.", "Hallo."),
        ("German: the word\nGerman: Das Wort", True, "German: the word", "Das Wort"),
        ("Hallo zusammen.", True, "", "Hallo zusammen."),
        ("Hi every", False, "Hi every", ""),
        ("Hi.\nGERMAN : Hallo", False, "Hi.", "Hallo"),
    ],
)
def test_split_translation(answer, finished, transcript, translation):
    parts = split_translation(answer, "German", finished)
    assert (parts.transcript, parts.translation) == (transcript, translation)


def test_translating_into_the_spoken_language_is_refused_before_any_work(long_clip):
    backend = FakeAudioBackend([])
    with pytest.raises(InvalidInputError, match="already in English"):
        list(translate(backend, long_clip[0], "English", " english "))
    assert backend.requests == []


# Refusals before the model is asked


SILENCE = np.zeros(5 * SAMPLE_RATE, np.float32)
EMPTY_INPUTS = {
    "silent array": SILENCE,
    "empty array": np.zeros(0, np.float32),
    "silent microphone": (44_100, np.zeros(44_100, np.int16)),
}
RUNS = {
    "transcribe": lambda backend, audio: transcribe(backend, audio),
    "translate": lambda backend, audio: translate(backend, audio, "English", "Spanish"),
    "ask": lambda backend, audio: ask_audio(backend, audio, "What do you hear?"),
}


@pytest.mark.parametrize("audio", EMPTY_INPUTS.values(), ids=EMPTY_INPUTS.keys())
@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_silent_or_empty_audio_is_refused_without_calling_the_model(run, audio):
    backend = FakeAudioBackend(["never"])
    with pytest.raises(InvalidInputError, match="empty|silent"):
        list(run(backend, audio))
    assert backend.requests == []


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_a_model_without_audio_is_refused_before_decoding(run, tiny_moe, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a recording")
    with pytest.raises(CapabilityError) as refused:
        list(run(tiny_moe, not_audio))
    assert str(refused.value) == audio_unsupported_message(tiny_moe.name)
    with pytest.raises(InvalidInputError):
        list(run(FakeAudioBackend(["never"]), not_audio))


# Audio questions with scripted answers


def test_a_long_clip_question_hears_the_first_30_s_and_says_so():
    backend = FakeAudioBackend(["A steady tone."])
    microphone = (44_100, (sine(330.0, 40.0, rate=44_100) * 20_000).astype(np.int16))
    results = list(ask_audio(backend, microphone, "  What do you hear?  "))
    [request] = backend.requests
    assert len(sent_audio(request)) == MAX_CLIP_SAMPLES and sent_text(request) == "What do you hear?"
    assert "first 30 s" in results[-1].note and results[-1].clip_seconds == MAX_CLIP_SECONDS
    assert results[-1].text == "A steady tone." and results[-1].done
    assert json.loads(json.dumps(results[-1].to_json()))["note"] == results[-1].note


def test_a_short_clip_question_has_no_note_and_an_empty_question_is_refused():
    backend = FakeAudioBackend(["A beep."])
    final = list(ask_audio(backend, sine(440.0, 3.0), "Describe the sound."))[-1]
    assert final.note == "" and len(sent_audio(backend.requests[0])) == 3 * SAMPLE_RATE
    with pytest.raises(InvalidInputError, match="question"):
        list(ask_audio(backend, sine(440.0, 3.0), "   "))
    assert len(backend.requests) == 1


# The real tiny model


def test_tiny_model_transcribes_three_chunks_end_to_end(tiny_backend, long_clip):
    results = list(transcribe(tiny_backend, long_clip[0], settings=TINY_SETTINGS))
    final = results[-1]
    assert final.done and final.chunk_count == 3 and len(final.cues) == 3
    assert len(srt_spans(final.srt())) == 3
    assert {r.progress for r in results} == {"Chunk 1 of 3", "Chunk 2 of 3", "Chunk 3 of 3"}
    assert 3 <= final.stats.new_tokens <= 3 * TINY_SETTINGS.max_new_tokens
    assert final.stats.prompt_tokens > 0


def test_tiny_model_answers_an_audio_question_while_streaming(tiny_backend):
    results = list(ask_audio(tiny_backend, sine(440.0, 4.0), "What is this sound?", TINY_SETTINGS))
    assert len(results) >= 2 and results[-1].done and not results[0].done
    assert results[-1].update.stats.new_tokens <= TINY_SETTINGS.max_new_tokens
