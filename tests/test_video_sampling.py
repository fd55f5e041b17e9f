"""Frame sampling, seeking, rotation, errors and audio extraction (`media.video_sampling`, `media.video_file`)."""

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformers import Gemma4VideoProcessor
from video_factory import (
    AUDIO_TONE_HZ,
    read_index,
    write_audio_only,
    write_empty_video,
    write_undecodable_video,
    write_video,
)

from gemma_demo.errors import InvalidInputError
from gemma_demo.media import video_sampling
from gemma_demo.media.video_file import extract_audio_track, probe_video
from gemma_demo.media.video_sampling import FrameSampling, SampledVideo, sample_video

FPS = 25
TEN_SECONDS = 10 * FPS
LONG_SECONDS = 120
LONG_GOP = 25
AUDIO_RATE = 16_000
VFR_GAPS_MS = (100, 20, 60)
VFR_FRAMES = 40


def vfr_pts_ms() -> list[int]:
    """Irregular gaps, so a frame's real time differs from index / average fps."""
    return [sum(VFR_GAPS_MS[k % len(VFR_GAPS_MS)] for k in range(i)) for i in range(VFR_FRAMES)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "ten": write_video(folder / "ten.mp4", TEN_SECONDS, with_audio=True),
        "webm": write_video(folder / "ten.webm", TEN_SECONDS, codec="libvpx-vp9", with_audio=True),
        "twelve": write_video(folder / "twelve.mp4", 12, codec="mpeg4"),
        "vfr": write_video(folder / "vfr.mp4", VFR_FRAMES, pts_ms=vfr_pts_ms()),
        "long": write_video(folder / "long.mp4", LONG_SECONDS * FPS, gop=LONG_GOP),
        "one_gop": write_video(folder / "one_gop.mp4", TEN_SECONDS, gop=TEN_SECONDS),
    }


def expected_index(seconds: float) -> int:
    return math.floor(seconds * FPS)


def assert_frames_match_timestamps(sampled: SampledVideo) -> list[int]:
    """Every frame is the source frame its timestamp names, and none repeats."""
    indices = [read_index(frame) for frame in sampled.frames]
    assert indices == [round(t * FPS) for t in sampled.timestamps]
    assert len(set(indices)) == len(indices)
    return indices


def test_eight_frames_from_ten_seconds_are_the_frame_centres(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=8))
    centres = [(k + 0.5) * 10 / 8 for k in range(8)]
    indices = assert_frames_match_timestamps(sampled)
    assert len(sampled.frames) == 8
    for index, centre in zip(indices, centres):
        assert abs(index - expected_index(centre)) <= 1
    assert sampled.frames[0].shape == (64, 64, 3) and sampled.frames[0].dtype == np.uint8


def test_fps_mode_samples_two_frames_per_second(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=None, fps=2))
    assert len(sampled.frames) == 20
    assert np.allclose(np.diff(sampled.timestamps), 0.5, atol=1 / FPS)
    assert_frames_match_timestamps(sampled)


def test_fps_mode_is_capped_by_num_frames(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=5, fps=2))
    assert len(sampled.frames) == 5
    assert np.allclose(np.diff(sampled.timestamps), 2.0, atol=1 / FPS)


def test_time_range_keeps_frames_inside_it(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=6, start=2.0, end=5.0))
    assert len(sampled.frames) == 6
    assert all(2.0 <= t < 5.0 for t in sampled.timestamps)
    assert sampled.timestamps[0] < 2.5 and sampled.timestamps[-1] > 4.5
    assert_frames_match_timestamps(sampled)


def test_end_past_the_clip_means_to_the_end(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=4, start=8.0, end=60.0))
    assert len(sampled.frames) == 4
    assert all(8.0 <= t < 10.0 for t in sampled.timestamps)


def test_short_clip_gives_each_frame_once(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["twelve"], FrameSampling(num_frames=32))
    assert assert_frames_match_timestamps(sampled) == list(range(12))


def test_webm_is_sampled_like_mp4(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["webm"], FrameSampling(num_frames=8))
    assert len(sampled.frames) == 8
    assert_frames_match_timestamps(sampled)


def test_variable_frame_rate_uses_each_frames_real_time(clips: dict[str, Path]) -> None:
    pts_seconds = [ms / 1000 for ms in vfr_pts_ms()]
    info = probe_video(clips["vfr"])
    sampled = sample_video(clips["vfr"], FrameSampling(num_frames=8))
    indices = [read_index(frame) for frame in sampled.frames]
    assert sampled.timestamps == pytest.approx([pts_seconds[i] for i in indices], abs=1e-3)
    centres = [(k + 0.5) * info.duration / 8 for k in range(8)]
    on_screen = [max(i for i, t in enumerate(pts_seconds) if t <= centre) for centre in centres]
    assert indices == on_screen
    assert sampled.metadata().timestamps == pytest.approx(sampled.timestamps, abs=0.5 / info.fps)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_matrix_rotation_turns_frames_upright(tmp_path: Path, rotation: int) -> None:
    path = write_video(tmp_path / "phone.mp4", 10, width=64, height=32, rotation=rotation)
    sampled = sample_video(path, FrameSampling(num_frames=3))
    quarter_turns = rotation // 90
    stored = [np.rot90(frame, k=-quarter_turns) for frame in sampled.frames]
    assert [read_index(frame) for frame in stored] == [round(t * FPS) for t in sampled.timestamps]
    expected_shape = (32, 64, 3) if quarter_turns % 2 == 0 else (64, 32, 3)
    assert sampled.frames[0].shape == expected_shape
    assert read_index(sampled.frames[0]) is None
    info = probe_video(path)
    assert (info.height, info.width) == expected_shape[:2]
    assert info.rotation == rotation % 360


def test_old_rotate_tag_is_read_as_clockwise(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tagged.mkv", 10, width=64, height=32, metadata={"rotate": "90"})
    sampled = sample_video(path, FrameSampling(num_frames=2))
    assert sampled.frames[0].shape == (64, 32, 3)
    assert read_index(np.rot90(sampled.frames[0], k=1)) == round(sampled.timestamps[0] * FPS)


def test_huge_frames_are_downscaled_keeping_aspect(tmp_path: Path) -> None:
    path = write_video(tmp_path / "huge.mp4", 2, width=3000, height=2000)
    sampled = sample_video(path, FrameSampling(num_frames=2), max_side=1280)
    height, width = sampled.frames[0].shape[:2]
    assert width == 1280 and abs(height - 1280 * 2000 / 3000) <= 1
    assert (sampled.width, sampled.height) == (width, height)
    assert [read_index(frame) for frame in sampled.frames] == [0, 1]


def test_small_frames_are_not_upscaled(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=1), max_side=1280)
    assert sampled.frames[0].shape[:2] == (64, 64)


def count_decoded_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counter = [0]
    decode = video_sampling.decoded_frames

    def counting(container, stream):
        for frame in decode(container, stream):
            counter[0] += 1
            yield frame

    monkeypatch.setattr(video_sampling, "decoded_frames", counting)
    return counter


def test_sparse_samples_of_a_long_clip_seek_instead_of_decoding_it(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = count_decoded_frames(monkeypatch)
    sampled = sample_video(clips["long"], FrameSampling(num_frames=4))
    assert len(sampled.frames) == 4
    assert_frames_match_timestamps(sampled)
    probe_frame = 1
    at_most_one_gop_each = len(sampled.frames) * (LONG_GOP + 1) + probe_frame
    assert counter[0] <= at_most_one_gop_each < sampled.total_frames / 10


def test_dense_samples_within_one_gop_decode_each_frame_once(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = count_decoded_frames(monkeypatch)
    sampled = sample_video(clips["one_gop"], FrameSampling(num_frames=32))
    assert len(sampled.frames) == 32
    assert counter[0] <= TEN_SECONDS + 1


def test_metadata_timestamps_and_labels(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["long"], FrameSampling(num_frames=4))
    meta = sampled.metadata()
    assert meta.timestamps == pytest.approx(list(sampled.timestamps), abs=0.5 / FPS)
    assert (meta.fps, meta.total_num_frames, meta.duration) == (FPS, LONG_SECONDS * FPS, LONG_SECONDS)
    assert sampled.stamp_labels() == ["00:15", "00:45", "01:15", "01:45"]


def test_metadata_reaches_the_gemma4_video_processor(clips: dict[str, Path]) -> None:
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=4))
    processor = Gemma4VideoProcessor()
    out = processor(
        videos=[list(sampled.frames)],
        video_metadata=[sampled.metadata()],
        do_sample_frames=False,
        return_metadata=True,
    )
    assert out["num_frames_per_video"] == [4]
    assert out["video_metadata"][0].timestamps == pytest.approx(list(sampled.timestamps), abs=1e-9)


def test_probe_reports_the_clip(clips: dict[str, Path]) -> None:
    info = probe_video(clips["ten"])
    assert (info.duration, info.fps, info.total_frames) == (10.0, FPS, TEN_SECONDS)
    assert (info.width, info.height, info.rotation, info.has_audio) == (64, 64, 0, True)
    webm = probe_video(clips["webm"])
    assert webm.total_frames == pytest.approx(TEN_SECONDS, abs=2) and webm.has_audio
    assert not probe_video(clips["twelve"]).has_audio


def broken_files(folder: Path) -> dict[str, Path]:
    good = write_video(folder / "good.mp4", 50)
    text, archive, cut = folder / "notes.mp4", folder / "archive.mp4", folder / "cut.mp4"
    text.write_text("this is not a video\n" * 50)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "not a video" * 100)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "empty.mp4").write_bytes(b"")
    return {
        "missing": folder / "missing.mp4",
        "zero_bytes": folder / "empty.mp4",
        "text": text,
        "zip": archive,
        "truncated": cut,
        "audio_mp4": write_audio_only(folder / "voice.mp4", 1.0),
        "audio_m4a": write_audio_only(folder / "voice.m4a", 1.0),
        "no_packets": write_empty_video(folder / "hollow.avi"),
        "undecodable": write_undecodable_video(folder / "undecodable.mp4"),
    }


@pytest.mark.parametrize(
    "kind",
    ["missing", "zero_bytes", "text", "zip", "truncated", "audio_mp4", "audio_m4a", "no_packets", "undecodable"],
)
def test_unusable_files_raise_a_readable_error(tmp_path: Path, kind: str) -> None:
    path = broken_files(tmp_path)[kind]
    with pytest.raises(InvalidInputError):
        sample_video(path, FrameSampling(num_frames=4))
    with pytest.raises(InvalidInputError):
        probe_video(path)


@pytest.mark.parametrize(
    "arguments",
    [
        {"num_frames": None, "fps": None},
        {"num_frames": 0},
        {"fps": 0.0},
        {"start": -1.0},
        {"start": 5.0, "end": 5.0},
        {"start": 6.0, "end": 2.0},
    ],
)
def test_impossible_sampling_settings_are_refused(arguments: dict) -> None:
    with pytest.raises(InvalidInputError):
        FrameSampling(**arguments)


def test_start_beyond_the_clip_is_refused(clips: dict[str, Path]) -> None:
    with pytest.raises(InvalidInputError, match="past the end"):
        sample_video(clips["ten"], FrameSampling(num_frames=4, start=10.0))


@settings(max_examples=25, deadline=None)
@given(
    num_frames=st.integers(1, 40),
    start=st.floats(0.0, 9.0),
    length=st.floats(0.05, 12.0),
)
def test_any_sampling_stays_in_range_without_duplicates(
    clips: dict[str, Path], num_frames: int, start: float, length: float
) -> None:
    end = start + length
    sampled = sample_video(clips["ten"], FrameSampling(num_frames=num_frames, start=start, end=end))
    frames_in_range = math.ceil(min(end, 10.0) * FPS) - math.ceil(start * FPS)
    assert 1 <= len(sampled.frames) <= min(num_frames, max(1, frames_in_range) + 1)
    assert list(sampled.timestamps) == sorted(set(sampled.timestamps))
    assert all(start - 1 / FPS < t < end for t in sampled.timestamps)
    assert_frames_match_timestamps(sampled)


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / AUDIO_RATE)[np.argmax(spectrum)])


def test_audio_window_is_16khz_mono_float(clips: dict[str, Path]) -> None:
    audio = extract_audio_track(clips["ten"], start=2.0, max_seconds=3.0)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 3 * AUDIO_RATE
    assert dominant_frequency(audio) == pytest.approx(AUDIO_TONE_HZ, abs=1.0)
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_audio_window_stops_at_the_end_of_the_clip(clips: dict[str, Path]) -> None:
    audio = extract_audio_track(clips["webm"], start=8.0, max_seconds=30.0)
    assert len(audio) == pytest.approx(2 * AUDIO_RATE, abs=0.05 * AUDIO_RATE)
    assert dominant_frequency(audio) == pytest.approx(AUDIO_TONE_HZ, abs=1.0)


def test_no_audio_track_gives_none(clips: dict[str, Path]) -> None:
    assert extract_audio_track(clips["twelve"]) is None


def test_audio_start_past_the_end_is_refused(clips: dict[str, Path]) -> None:
    with pytest.raises(InvalidInputError):
        extract_audio_track(clips["ten"], start=30.0)
