"""Long recordings are read piece by piece: the same cuts and samples as reading them whole,
with memory that does not grow with the recording (issue 22, item 2)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from audio_factory import sine
from gemma_demo.engine.base import Stats, Update
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.audio import load_audio
from gemma_demo.media.chunks import split_audio
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.tasks.transcription import read_in_pieces, transcribe

WORD_SECONDS, PAUSE_SECONDS = 0.35, 0.15


def speech_like(seconds: int, rate: int, seed: int = 0) -> np.ndarray:
    """Word-length noise bursts of varying loudness with short pauses, so the cuts have quiet places to choose."""
    rng = np.random.default_rng(seed)
    period = round((WORD_SECONDS + PAUSE_SECONDS) * rate)
    words = seconds * rate // period + 1
    gate = np.tile((np.arange(period) < round(WORD_SECONDS * rate)).astype(np.float32), words)
    loudness = np.repeat(rng.uniform(0.1, 1.0, words).astype(np.float32), period)
    return (0.3 * rng.standard_normal(seconds * rate) * (gate * loudness)[: seconds * rate]).astype(np.float32)


@dataclass
class InstantBackend:
    """Answers every piece at once and keeps nothing of it."""

    name: str = "instant"
    capabilities: ModelCapabilities = SMALL
    requests: int = 0

    def stream(self, messages, settings) -> Iterator[Update]:
        self.requests += 1
        yield Update(answer="words", stats=Stats(prompt_tokens=1, new_tokens=1), done=True)


@pytest.mark.parametrize(("rate", "subtype", "gain"), [(44_100, "PCM_16", 1.0), (16_000, "FLOAT", 4.0)])
def test_pieces_read_twice_equal_the_whole_recording_cut(tmp_path, rate, subtype, gain):
    """A float recording past full scale (gain 4) is scaled by its whole peak in both ways."""
    path = tmp_path / "talk.wav"
    sf.write(path, speech_like(150, rate) * gain, rate, subtype=subtype)
    whole = split_audio(load_audio(path))
    plan, pieces = read_in_pieces(str(path))
    pieces = list(pieces)
    assert plan.count == len(whole) == len(pieces) >= 6
    assert [(p.start, p.end) for p in pieces] == [(w.start, w.end) for w in whole]
    for piece, expected in zip(pieces, whole):
        np.testing.assert_array_equal(piece.samples, expected.samples)


def write_beeps(path, seconds: int) -> None:
    """A tone for the first second of every ten, written ten seconds at a time."""
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16", format="FLAC") as out:
        ten = np.concatenate([sine(440.0, 1.0), np.zeros(9 * SAMPLE_RATE, dtype=np.float32)])
        for _ in range(seconds // 10):
            out.write(ten)


def transcribing_peak(path) -> int:
    """Peak traced memory over a whole transcription; the backend keeps nothing."""
    backend = InstantBackend()
    tracemalloc.start()
    try:
        results = [result.done for result in transcribe(backend, str(path))]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert results[-1] and backend.requests >= len(results) - 1 > 0  # the last piece may be silent
    return peak


def test_transcription_memory_does_not_grow_with_the_recording(tmp_path):
    short, long = tmp_path / "short.flac", tmp_path / "long.flac"
    write_beeps(short, 5 * 60)
    write_beeps(long, 20 * 60)
    short_peak, long_peak = transcribing_peak(short), transcribing_peak(long)
    assert long_peak < 1.3 * short_peak
    assert long_peak < 20 * 60 * SAMPLE_RATE * 4 / 8  # an eighth of the recording as 16 kHz float32


def test_silence_is_refused_before_the_model_is_asked(tmp_path):
    path = tmp_path / "quiet.flac"
    sf.write(path, np.zeros(95 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    backend = InstantBackend()
    with pytest.raises(InvalidInputError, match="The audio is silent"):
        next(transcribe(backend, str(path)))
    assert backend.requests == 0
