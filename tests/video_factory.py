"""Writes small test clips with PyAV whose frames can be identified after decoding.

Each frame carries its own index as a 4×4 grid of black/white cells: the top-left
corner cell is white and the other three corners black (so a frame shown upside
down or sideways is recognisable), and the twelve remaining cells hold the index
in binary. Black/white cells survive lossy codecs and downscaling, so a decoded
frame tells us exactly which source frame it came from.
"""

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4
CORNERS = ((0, 0), (0, GRID - 1), (GRID - 1, 0), (GRID - 1, GRID - 1))
BIT_CELLS = tuple((r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in CORNERS)
MAX_INDEX = 2 ** len(BIT_CELLS) - 1
WHITE = 255
DEFAULT_FPS = 25
AUDIO_RATE = 48_000
AUDIO_TONE_HZ = 440.0
MS = Fraction(1, 1000)
FAST_X264 = {"preset": "ultrafast", "x264-params": "scenecut=0"}
EMPTY_PACKET_BYTES = 100


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame showing `index`; width and height must be multiples of the grid."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index {index} does not fit in {len(BIT_CELLS)} bits")
    cells = np.zeros((GRID, GRID), np.uint8)
    cells[0, 0] = WHITE
    for bit, (r, c) in enumerate(reversed(BIT_CELLS)):
        cells[r, c] = WHITE if (index >> bit) & 1 else 0
    grey = np.kron(cells, np.ones((height // GRID, width // GRID), np.uint8))
    return np.repeat(grey[:, :, None], 3, axis=2)


def read_index(frame: np.ndarray) -> int | None:
    """The index a decoded frame shows, or None when it is not upright."""
    h, w = frame.shape[:2]
    grey = frame.mean(axis=2)
    bright = [
        [grey[r * h // GRID:(r + 1) * h // GRID, c * w // GRID:(c + 1) * w // GRID].mean() > WHITE / 2
         for c in range(GRID)]
        for r in range(GRID)
    ]
    corners = [bright[r][c] for r, c in CORNERS]
    if corners != [True, False, False, False]:
        return None
    return int("".join("1" if bright[r][c] else "0" for r, c in BIT_CELLS), 2)


def write_video(
    path: Path,
    num_frames: int,
    *,
    fps: int = DEFAULT_FPS,
    width: int = 64,
    height: int = 64,
    codec: str = "libx264",
    gop: int | None = None,
    with_audio: bool = False,
    rotation: int | None = None,
    pts_ms: Sequence[int] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Writes `num_frames` index frames; `pts_ms` gives explicit (variable) frame times.

    `rotation` is a display-matrix rotation in degrees counter-clockwise, the way
    phones tag portrait video; `metadata` sets stream tags such as an old `rotate`.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=None if pts_ms else fps)
        tone = _add_tone_stream(container, _audio_codec(path)) if with_audio else None
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts_ms:
            stream.codec_context.time_base = MS
        if gop:
            stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.codec_context.options = FAST_X264
        if rotation is not None:
            stream.set_display_rotation(rotation)
        stream.metadata.update(metadata or {})
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[i], MS
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if tone:
            _write_tone(container, tone, _clip_seconds(num_frames, fps, pts_ms))
    return path


def write_audio_only(path: Path, seconds: float) -> Path:
    """An audio-only file (mp4 or m4a with AAC) — something a person might upload as 'video'."""
    with av.open(str(path), "w", format="mp4") as container:
        _write_tone(container, _add_tone_stream(container, "aac"), seconds)
    return path


def write_empty_video(path: Path, width: int = 64, height: int = 64) -> Path:
    """A container that declares a video stream but holds no packets.

    Written as AVI whatever the suffix: MP4 and MOV drop a track without
    samples and Matroska refuses to open, so only AVI keeps the empty stream.
    """
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=DEFAULT_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()
    return path


def write_undecodable_video(path: Path, num_packets: int = 5) -> Path:
    """An MP4 whose video packets hold zero bytes where pictures should be."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=DEFAULT_FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
        for i in range(num_packets):
            packet = av.Packet(bytes(EMPTY_PACKET_BYTES))
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.time_base, packet.is_keyframe = Fraction(1, DEFAULT_FPS), True
            container.mux(packet)
    return path


def _add_tone_stream(container: av.container.OutputContainer, codec: str) -> av.AudioStream:
    stream = container.add_stream(codec, rate=AUDIO_RATE)
    stream.layout = "mono"
    return stream


def _write_tone(container: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    chunk = stream.codec_context.frame_size or 1024
    total = int(seconds * AUDIO_RATE)
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / AUDIO_RATE
        samples = (0.5 * np.sin(2 * np.pi * AUDIO_TONE_HZ * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _audio_codec(path: Path) -> str:
    return "libopus" if path.suffix == ".webm" else "aac"


def _clip_seconds(num_frames: int, fps: int, pts_ms: Sequence[int] | None) -> float:
    if pts_ms:
        return (pts_ms[-1] + 1000 / fps) / 1000
    return num_frames / fps
