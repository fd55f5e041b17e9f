"""Splitting long recordings into clips Gemma 4 can hear in full.

The model hears at most 30 s per clip and silently drops the rest, so longer
audio is cut into pieces. Each cut is placed at the quietest moment shortly
before the limit, so words are not split when a pause is nearby.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemma_demo.media.audio import frame_rms
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE

MIN_CHUNK_SECONDS = 20.0
FRAME_SECONDS = 0.025
SMOOTHING_FRAMES = 7
QUIET_TOLERANCE_DB = 3.0
FLOOR_DB = -100.0


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A contiguous piece of the clip; `start` and `end` are seconds into the original."""

    index: int
    start: float
    end: float
    samples: np.ndarray


def split_audio(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float = MAX_CLIP_SECONDS,
    min_seconds: float = MIN_CHUNK_SECONDS,
) -> list[AudioChunk]:
    """Cut `samples` into contiguous chunks of at most `max_seconds`.

    Every cut but the last lies between `min_seconds` and `max_seconds` after
    the previous one, at the quietest point of that window; the chunks'
    samples concatenate back to the input exactly.
    """
    if not 0 <= min_seconds < max_seconds:
        raise ValueError("split_audio needs 0 <= min_seconds < max_seconds")
    if samples.ndim != 1:
        raise ValueError("split_audio needs mono samples; load them with load_audio first")
    hop = max(1, round(FRAME_SECONDS * sample_rate))
    level_db = _smoothed_level_db(samples, hop)
    longest, shortest = int(max_seconds * sample_rate), int(np.ceil(min_seconds * sample_rate))
    bounds = [0]
    while len(samples) - bounds[-1] > longest:
        bounds.append(_quietest_cut(level_db, hop, bounds[-1] + shortest, bounds[-1] + longest))
    bounds.append(len(samples))
    return [
        AudioChunk(index, first / sample_rate, last / sample_rate, samples[first:last])
        for index, (first, last) in enumerate(zip(bounds, bounds[1:]))
    ]


def _smoothed_level_db(samples: np.ndarray, hop: int) -> np.ndarray:
    """Per-frame level in dB, averaged over ~0.2 s.

    Averaging keeps a single quiet frame inside a word (a stop consonant) from
    passing for a pause.
    """
    energy = frame_rms(samples, hop) ** 2
    kernel = np.full(SMOOTHING_FRAMES, 1.0 / SMOOTHING_FRAMES)
    smoothed = np.convolve(energy, kernel, mode="same") if energy.size else energy
    return 10 * np.log10(np.maximum(smoothed, 10 ** (FLOOR_DB / 10)))


def _quietest_cut(level_db: np.ndarray, hop: int, earliest: int, latest: int) -> int:
    """Sample index of the cut: the middle of the latest quietest stretch in [earliest, latest].

    When that stretch runs into `latest` (no pause, or a pause across the
    limit) the cut goes at the limit, keeping chunks as long as allowed.
    """
    first = int(np.ceil((earliest - hop / 2) / hop))
    last = min(int(np.floor((latest - hop / 2) / hop)), len(level_db) - 1)
    if first > last:
        return latest
    window = level_db[first : last + 1]
    quiet = window <= window.min() + QUIET_TOLERANCE_DB
    run_end = int(np.flatnonzero(quiet)[-1])
    if run_end == len(window) - 1:
        return latest
    loud_before = np.flatnonzero(~quiet[:run_end])
    run_start = int(loud_before[-1]) + 1 if loud_before.size else 0
    return (first + (run_start + run_end) // 2) * hop + hop // 2
