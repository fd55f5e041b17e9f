"""Every bad flag value is a JSON error line and exit 1, never a traceback; video and audio flags mean what they say."""

from __future__ import annotations

import json

import pytest

from gemma_demo.cli import commands
from gemma_demo.cli.main import EXIT_FAILED_INPUT, EXIT_OK, main
from gemma_demo.tasks import transcription
from gemma_demo.tasks.video_question import MAX_VIDEO_SOFT_TOKENS
from test_api import INPUT
from video_factory import write_video

CLIP = str(INPUT / "clip.mp4")
PICTURE = str(INPUT / "scene.jpg")
FAST = ["--model", "tiny", "--max-new-tokens", "2"]


@pytest.fixture(autouse=True)
def tiny_env(monkeypatch, tiny_root):
    monkeypatch.setenv("GEMMA_DEMO_TINY_ROOT", str(tiny_root))


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(("argv", "says"), [
    (["video", CLIP, "--frame-budget", "100"], "--frame-budget: invalid choice: 100"),
    (["caption", PICTURE, "--image-budget", "99"], "--image-budget: invalid choice: 99"),
    (["caption", PICTURE, "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["caption", PICTURE, "--max-new-tokens", "many"], "--max-new-tokens: invalid int value"),
    (["caption", PICTURE, "--temperature", "-1"], "--temperature must be above 0"),
    (["caption", PICTURE, "--top-p", "1.5"], "--top-p must be above 0 and at most 1"),
    (["caption", PICTURE, "--top-k", "0"], "--top-k must be at least 1"),
    (["caption", PICTURE, "--device", "tpu"], "--device: invalid choice"),
    (["caption", PICTURE, "--preset", "poem"], "--preset: invalid choice"),
    (["video", CLIP, "--frames", "0"], "number of video frames must be at least 1"),
    (["video", CLIP, "--fps", "0"], "sampling rate (frames per second) must be above 0"),
    (["video", CLIP, "--start", "-2"], "start time cannot be negative"),
    (["video", CLIP, "--start", "3", "--end", "1"], "end time must be later than the start time"),
    (["video", CLIP, "--frames", "40", "--frame-budget", "1120"], "40 frames at 1120 soft tokens each make 44,800"),
    (["translate", str(INPUT / "speech.wav")], "the following arguments are required: --target"),
    (["draw", PICTURE], "invalid choice: 'draw'"),
])
def test_a_bad_flag_value_is_a_json_error_line_and_exit_1(capsys, argv, says):
    code, lines = run(capsys, argv[0], *FAST, *argv[1:])  # the row's own flags come last and win
    assert code == EXIT_FAILED_INPUT
    assert len(lines) == 1 and says in lines[0]["error"]


def test_a_video_too_big_for_the_vision_encoder_is_refused_with_the_numbers(capsys, tmp_path):
    clip = str(write_video(tmp_path / "clip.mp4", 100, fps=25))
    code, lines = run(capsys, "video", clip, "--frames", "64", "--frame-budget", "1120", *FAST)
    assert code == EXIT_FAILED_INPUT
    assert "64 frames at 1120 soft tokens each make 71,680 soft tokens" in lines[0]["error"]
    assert f"more than the vision encoder can take at once ({MAX_VIDEO_SOFT_TOKENS:,})" in lines[0]["error"]
    assert f"at most {MAX_VIDEO_SOFT_TOKENS // 1120} frames at this budget" in lines[0]["error"]
    code, lines = run(capsys, "video", clip, "--frames", "8", "--frame-budget", "1120", *FAST)
    assert code == EXIT_OK and len(lines[0]["frames"]) == 8


def test_fps_keeps_the_frame_cap(capsys, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 100, fps=25)  # 4 s: 2 fps would give 8 frames
    code, lines = run(capsys, "video", str(clip), "--fps", "2", "--frames", "3", *FAST)
    assert code == EXIT_OK and len(lines[0]["frames"]) == 3
    code, lines = run(capsys, "video", str(clip), "--fps", "1", "--frames", "32", *FAST)
    assert code == EXIT_OK and len(lines[0]["frames"]) == 4


@pytest.mark.parametrize("command", ["transcribe", "translate"])
def test_transcription_commands_start_from_the_tasks_own_settings(command):
    assert commands.COMMANDS[command].default_settings() == transcription.DEFAULT_SETTINGS
