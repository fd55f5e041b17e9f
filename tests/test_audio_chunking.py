"""split_audio keeps every chunk within the model's 30 s and cuts in pauses."""

from __future__ import annotations


import numpy as np
import pytest
from audio_factory import ESPEAK, RATE, Beeps, beeps_with_pauses, espeak_speech, rms, sine

from gemma_demo.media.chunks import AudioChunk, split_audio
from gemma_demo.media.audio import load_audio
from gemma_demo.media.timing import MAX_CLIP_SECONDS

BEEP_PATTERN = [3.1, 4.3, 2.6, 3.8]
PAUSE_SECONDS = 0.7
CUT_MARGIN_SECONDS = 0.05
PAUSE_EDGE_SECONDS = 0.2


def assert_contiguous(chunks: list[AudioChunk], samples: np.ndarray) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0.0
    assert chunks[-1].end == pytest.approx(len(samples) / RATE)
    for before, after in zip(chunks, chunks[1:]):
        assert before.end == after.start
    for chunk in chunks:
        assert len(chunk.samples) <= MAX_CLIP_SECONDS * RATE
        assert len(chunk.samples) == round((chunk.end - chunk.start) * RATE)
    np.testing.assert_array_equal(np.concatenate([chunk.samples for chunk in chunks]), samples)


def energy_around(samples: np.ndarray, seconds: float) -> float:
    cut, margin = round(seconds * RATE), round(CUT_MARGIN_SECONDS * RATE)
    return rms(samples[cut - margin : cut + margin])


def assert_cuts_well_inside_pauses(chunks: list[AudioChunk], beeps: Beeps) -> None:
    for chunk in chunks[:-1]:
        inside = [
            start + PAUSE_EDGE_SECONDS <= chunk.end <= end - PAUSE_EDGE_SECONDS
            for start, end in beeps.pauses
        ]
        assert any(inside), f"cut at {chunk.end:.3f} s is not well inside a pause"


def beeps(seconds: float) -> Beeps:
    repeats = int(seconds // sum(BEEP_PATTERN)) + 1
    return beeps_with_pauses(BEEP_PATTERN * repeats, PAUSE_SECONDS)


def beep_clip(seconds: float) -> np.ndarray:
    return beeps(seconds).samples[: round(seconds * RATE)]


def speech_clip(tmp_path) -> np.ndarray:
    return load_audio(espeak_speech(tmp_path / "speech.wav", repeats=5))


SOURCES = {"beeps": lambda tmp_path: beep_clip(75.0)}
if ESPEAK is not None:
    SOURCES["espeak"] = speech_clip


def test_no_cut_splits_a_beep_where_a_naive_cut_would():
    clip = beep_clip(75.0)
    assert energy_around(clip, 30.0) > 0.1 and energy_around(clip, 60.0) > 0.1  # beeps sound at 30 s and 60 s
    cuts = [chunk.end for chunk in split_audio(clip)[:-1]]
    assert len(cuts) == 2 and 30.0 not in cuts and 60.0 not in cuts
    assert all(energy_around(clip, cut) < 0.01 for cut in cuts), cuts


def test_75_seconds_of_beeps_make_three_chunks_cut_in_pauses():
    clip = beep_clip(75.0)
    chunks = split_audio(clip)
    assert len(chunks) == 3
    assert_contiguous(chunks, clip)
    assert_cuts_well_inside_pauses(chunks, beeps(75.0))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_cuts_land_in_quiet_moments(tmp_path, source):
    clip = SOURCES[source](tmp_path)
    assert len(clip) > 2 * MAX_CLIP_SECONDS * RATE
    chunks = split_audio(clip)
    assert_contiguous(chunks, clip)
    loud = np.median(np.abs(clip[np.abs(clip) > 0]))
    for chunk in chunks[:-1]:
        assert energy_around(clip, chunk.end) < 0.01 * loud


def test_continuous_tone_is_cut_at_the_limit():
    clip = sine(440.0, 75.0)
    chunks = split_audio(clip)
    assert_contiguous(chunks, clip)
    assert [len(chunk.samples) for chunk in chunks] == [30 * RATE, 30 * RATE, 15 * RATE]


def test_short_clip_is_one_chunk():
    clip = beep_clip(12.0)
    chunks = split_audio(clip)
    assert len(chunks) == 1
    assert (chunks[0].start, chunks[0].end) == (0.0, 12.0)
    np.testing.assert_array_equal(chunks[0].samples, clip)


def test_clip_of_exactly_the_limit_is_one_chunk():
    assert len(split_audio(sine(440.0, MAX_CLIP_SECONDS))) == 1


def test_custom_limits_are_respected():
    clip = beep_clip(40.0)
    chunks = split_audio(clip, max_seconds=10.0, min_seconds=6.0)
    assert_contiguous(chunks, clip)
    assert all(len(chunk.samples) <= 10 * RATE for chunk in chunks)
    assert all(len(chunk.samples) >= 6 * RATE for chunk in chunks[:-1])


def test_other_sample_rates_report_seconds():
    clip = sine(440.0, 70.0, rate=8_000)
    chunks = split_audio(clip, sample_rate=8_000)
    spans = [(chunk.start, chunk.end) for chunk in chunks]
    assert spans == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]


def test_ten_minutes_split_into_short_chunks():
    """How fast it splits is measured in `benchmarks/` (long_audio), not here."""
    clip = beep_clip(600.0)
    chunks = split_audio(clip)
    assert len(chunks) >= 20
    assert_contiguous(chunks, clip)
    assert_cuts_well_inside_pauses(chunks, beeps(600.0))


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="min_seconds"):
        split_audio(sine(440.0, 1.0), max_seconds=10.0, min_seconds=10.0)
    with pytest.raises(ValueError, match="mono"):
        split_audio(np.zeros((RATE, 2), dtype=np.float32))
