"""P8: transcribing ten minutes costs, per second of audio, what thirty seconds cost.

Everything around the model (decoding the file, finding quiet cuts, building each
chunk's prompt, merging texts and cues) must grow linearly with the recording, or a
long lecture would stall before the model hears a word. The model is replaced by a
backend that answers at once, so only that pipeline is timed.

`python -m benchmarks.long_audio` runs this group alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from benchmarks.common import CACHE_DIR, Row, Target, paired, seconds, spread, timed
from gemma_demo.engine.base import Stats, Update
from gemma_demo.engine.registry import SMALL, ModelCapabilities
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.transcription import transcribe

TARGET = Target(1.2)
SHORT_SECONDS, LONG_SECONDS = 30, 600
RATE = 44_100  # a common upload rate, so resampling to 16 kHz is part of the work
WORD_S, PAUSE_S = 0.35, 0.15
SEED = 0
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog")


@dataclass
class InstantBackend:
    """Answers every chunk at once with a fixed sentence, streamed word by word like a model."""

    name: str = "instant"
    capabilities: ModelCapabilities = SMALL
    chunks: int = 0

    def stream(self, messages, settings: GenerationSettings) -> Iterator[Update]:
        self.chunks += 1
        words = WORDS
        for count in range(1, len(words) + 1):
            stats = Stats(prompt_tokens=100, new_tokens=count, time_to_first_token=0.0, elapsed=0.0)
            yield Update(answer=" ".join(words[:count]), stats=stats, done=count == len(words))


def speech_like(seconds_long: int) -> np.ndarray:
    """Word-length noise bursts with short pauses: loud and quiet stretches like speech."""
    rng = np.random.default_rng(SEED)
    period = round((WORD_S + PAUSE_S) * RATE)
    gate = (np.arange(period) < round(WORD_S * RATE)).astype(np.float32)
    envelope = np.tile(gate, seconds_long * RATE // period + 1)[: seconds_long * RATE]
    return (0.3 * rng.standard_normal(seconds_long * RATE).astype(np.float32) * envelope).astype(np.float32)


def recording(seconds_long: int):
    path = CACHE_DIR / "audio" / f"speech-like-{seconds_long}s-{RATE}.wav"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speech_like(seconds_long), RATE, subtype="PCM_16")
    return path


def transcribe_all(path) -> int:
    backend = InstantBackend()
    for result in transcribe(backend, str(path), "English"):
        pass
    assert result.done, result.progress
    return result.chunk_count


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    short, long = recording(SHORT_SECONDS), recording(LONG_SECONDS)
    result = paired(timed(lambda: transcribe_all(long)), timed(lambda: transcribe_all(short)), reps)
    per_long, per_short = result.a_median / LONG_SECONDS, result.b_median / SHORT_SECONDS
    scaled = [(a / LONG_SECONDS) / (b / SHORT_SECONDS) for a, b in zip(result.a, result.b)]
    chunks = transcribe_all(long)
    return [Row("P8", f"transcription pipeline without the model, per second of audio: 10-min vs 30-s WAV "
                      f"({RATE // 1000}.1 kHz)", f"{per_long * 1000:.2f} ms per audio s ({seconds(result.a_median)} total)",
                f"{per_short * 1000:.2f} ms per audio s ({seconds(result.b_median)} total)", sorted(scaled)[len(scaled) // 2],
                TARGET, f"{spread(result).replace('pairs', 'raw pairs')} (not per second); {chunks} chunks")]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
