"""Splitting long recordings into clips Gemma 4 can hear in full.

The model hears at most 30 s per clip and silently drops the rest, so longer
audio is cut into pieces. Each cut is placed at the quietest moment shortly
before the limit, so words are not split when a pause is nearby.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from gemma_demo.media.audio import (
    SILENCE_FRAME_LENGTH,
    fit_full_scale,
    frame_rms,
    level_db,
    loudest_frame_db,
)
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


@dataclass(frozen=True)
class CutPlan:
    """Where a recording read block by block is cut, and what the whole of it showed.

    `bounds` run from 0 to the length in samples; `peak` is the largest magnitude (a
    float source past full scale is scaled down by it, as `load_audio` scales the whole);
    `loudest_db` is the loudest 30 ms frame's level after that scaling.
    """

    bounds: tuple[int, ...]
    peak: float
    loudest_db: float

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    @property
    def length(self) -> int:
        return self.bounds[-1]


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
    if samples.ndim != 1:
        raise ValueError("split_audio needs mono samples; load them with load_audio first")
    hop = _hop(sample_rate)
    level_db = _smoothed_level_db(frame_rms(samples, hop) ** 2)
    bounds = _cut_bounds(level_db, hop, len(samples), sample_rate, (min_seconds, max_seconds))
    return [
        AudioChunk(index, first / sample_rate, last / sample_rate, samples[first:last])
        for index, (first, last) in enumerate(zip(bounds, bounds[1:]))
    ]


def plan_cuts(blocks: Iterable[np.ndarray]) -> CutPlan:
    """The cuts `split_audio` would make in the 16 kHz blocks joined, from one pass over them.

    Only frame levels are kept (4 bytes per 25 ms and per 30 ms), never the samples: about
    1 MB per hour of recording. `cut_pieces` then reads the recording again.
    """
    hop = _hop(SAMPLE_RATE)
    energy, loud = _Frames(hop), _Frames(SILENCE_FRAME_LENGTH)
    peak = 0.0
    for block in blocks:
        energy.add(block)
        loud.add(block)
        peak = max(peak, float(np.abs(block).max()))
    scale = max(peak, 1.0)
    levels = _smoothed_level_db(energy.rms() ** 2 / scale**2)
    bounds = _cut_bounds(levels, hop, energy.length, SAMPLE_RATE, (MIN_CHUNK_SECONDS, MAX_CLIP_SECONDS))
    return CutPlan(tuple(bounds), peak, loud.loudest_db() - level_db(scale))


def cut_pieces(blocks: Iterable[np.ndarray], plan: CutPlan) -> Iterator[AudioChunk]:
    """The planned pieces from a second pass over the same blocks, one piece held at a time."""
    pending: list[np.ndarray] = []
    held = start = index = 0
    for block in itertools.chain(blocks, [None]):
        if block is not None:
            pending.append(block)
            held += len(block)
        while index < plan.count and (start + held >= plan.bounds[index + 1] or (block is None and held)):
            joined = np.concatenate(pending)
            size = min(plan.bounds[index + 1] - start, len(joined))
            pending, held = [joined[size:].copy()], len(joined) - size
            piece = fit_full_scale(joined[:size], plan.peak)
            yield AudioChunk(index, start / SAMPLE_RATE, (start + size) / SAMPLE_RATE, piece)
            start, index = start + size, index + 1


class _Frames:
    """Non-overlapping frames' RMS over blocks of any size, as `frame_rms` over the blocks joined."""

    def __init__(self, size: int):
        self.size, self.length = size, 0
        self.carry = np.zeros(0, dtype=np.float32)
        self.parts: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        self.length += len(block)
        joined = np.concatenate([self.carry, block])
        whole = len(joined) // self.size * self.size
        self.parts.append(frame_rms(joined[:whole], self.size).astype(np.float32))
        self.carry = joined[whole:].copy()

    def rms(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)

    def loudest_db(self) -> float:
        """As `loudest_frame_db`: a recording shorter than one frame is judged whole."""
        frames = self.rms()
        if frames.size == 0:
            return loudest_frame_db(self.carry)
        return level_db(float(frames.max()))


def _hop(sample_rate: int) -> int:
    return max(1, round(FRAME_SECONDS * sample_rate))


def _cut_bounds(
    level_db: np.ndarray, hop: int, length: int, sample_rate: int, limits: tuple[float, float]
) -> list[int]:
    min_seconds, max_seconds = limits
    if not 0 <= min_seconds < max_seconds:
        raise ValueError("split_audio needs 0 <= min_seconds < max_seconds")
    longest, shortest = int(max_seconds * sample_rate), int(np.ceil(min_seconds * sample_rate))
    bounds = [0]
    while length - bounds[-1] > longest:
        bounds.append(_quietest_cut(level_db, hop, bounds[-1] + shortest, bounds[-1] + longest))
    bounds.append(length)
    return bounds


def _smoothed_level_db(energy: np.ndarray) -> np.ndarray:
    """Per-frame level in dB, averaged over ~0.2 s.

    Averaging keeps a single quiet frame inside a word (a stop consonant) from
    passing for a pause.
    """
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
