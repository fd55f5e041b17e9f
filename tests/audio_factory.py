"""Synthetic audio for the tests, written under pytest's tmp_path so no media is committed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

RATE = 16_000
AMPLITUDE = 0.5
ESPEAK = shutil.which("espeak-ng")
SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Pack my box with five dozen liquor jugs, then carry it up the hill. "
    "How vexingly quick daft zebras jump, said the keeper of the zoo. "
    "Sphinx of black quartz, judge my vow. "
    "A wizard's job is to vex chumps quickly in fog. "
)


@dataclass(frozen=True)
class Beeps:
    """Tone bursts separated by digital silence; `pauses` are (start, end) in seconds."""

    samples: np.ndarray
    rate: int
    pauses: tuple[tuple[float, float], ...]


def sine(
    frequency: float, seconds: float, rate: int = RATE, amplitude: float = AMPLITUDE
) -> np.ndarray:
    time = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def beeps_with_pauses(
    beep_seconds: Sequence[float], pause_seconds: float, rate: int = RATE
) -> Beeps:
    """Alternate one beep per entry of `beep_seconds` with a pause of `pause_seconds`."""
    pieces: list[np.ndarray] = []
    pauses: list[tuple[float, float]] = []
    position = 0
    for seconds in beep_seconds:
        pieces.append(sine(440.0, seconds, rate))
        position += len(pieces[-1])
        pieces.append(np.zeros(round(pause_seconds * rate), dtype=np.float32))
        pauses.append((position / rate, (position + len(pieces[-1])) / rate))
        position += len(pieces[-1])
    return Beeps(np.concatenate(pieces), rate, tuple(pauses))


def write_audio(path: Path, samples: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """Write with libsndfile; the format follows the file extension (wav, flac, ogg, mp3)."""
    sf.write(path, samples, rate, subtype=subtype)
    return path


def write_with_pyav(path: Path, samples: np.ndarray, rate: int, with_video: bool = False) -> Path:
    """AAC audio in an MP4/M4A container, optionally beside a small video track."""
    with av.open(str(path), "w") as container:
        audio = container.add_stream("aac", rate=rate, layout="mono")
        video = _add_video(container) if with_video else None
        planar = samples[np.newaxis, :].astype(np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            container.mux(packet)
        if video is not None:
            _encode_video(container, video, seconds=len(samples) / rate)
    return path


def write_silent_video(path: Path, seconds: float) -> Path:
    with av.open(str(path), "w") as container:
        _encode_video(container, _add_video(container), seconds)
    return path


def _add_video(container: av.container.OutputContainer) -> av.VideoStream:
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    return stream


def _encode_video(
    container: av.container.OutputContainer, stream: av.VideoStream, seconds: float
) -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    frames = [av.VideoFrame.from_ndarray(image, format="rgb24") for _ in range(round(seconds * 10))]
    for packet in [p for frame in frames for p in stream.encode(frame)] + list(stream.encode(None)):
        container.mux(packet)


def espeak_speech(path: Path, repeats: int = 1) -> Path:
    """Real speech with natural pauses, from espeak-ng (22.05 kHz mono WAV)."""
    if ESPEAK is None:
        raise RuntimeError("espeak-ng is not installed")
    command = [ESPEAK, "-w", str(path), SPEECH_TEXT * repeats]
    subprocess.run(command, check=True, capture_output=True)
    return path


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
