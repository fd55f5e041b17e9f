"""The CLI runs every task over files and folders, prints JSON lines, exits non-zero on bad input."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from audio_factory import beeps_with_pauses, write_audio
from gemma_demo.cli.main import EXIT_FAILED_INPUT, EXIT_OK, main
from video_factory import write_video

FAST = ["--model", "tiny", "--max-new-tokens", "4"]


@pytest.fixture()
def tiny_env(monkeypatch, tiny_root):
    monkeypatch.setenv("GEMMA_DEMO_TINY_ROOT", str(tiny_root))


@pytest.fixture()
def beeps(tmp_path):
    return write_audio(tmp_path / "beeps.wav", beeps_with_pauses([1.0, 1.0], 0.5).samples, 16_000)


def run(capsys, *argv):
    code = main(list(argv))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, lines


@pytest.fixture()
def pictures(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (320, 240), "red").save(folder / "a.png")
    Image.new("RGB", (200, 300), "blue").save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not a picture")
    return folder


@pytest.mark.parametrize("command, extra", [
    ("detect", ["--objects", "cat, remote control"]),
    ("point", ["--objects", "cat"]),
    ("caption", ["--preset", "detailed"]),
    ("ocr", ["--mode", "table", "--image-budget", "280"]),
    ("html", ["--instruction", "dark theme", "--no-thinking"]),
])
def test_vision_commands_print_a_json_line_per_picture(capsys, tiny_env, pictures, command, extra):
    code, lines = run(capsys, command, str(pictures), *FAST, *extra)
    assert code == EXIT_OK
    assert [line["file"].rsplit("/", 1)[1] for line in lines] == ["a.png", "b.jpg"]
    assert all(line["done"] and line["stats"]["new_tokens"] > 0 for line in lines)


def test_bad_file_exits_non_zero_and_names_the_file(capsys, tiny_env, tmp_path, pictures):
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is text")
    code, lines = run(capsys, "caption", str(fake), str(pictures / "a.png"), *FAST)
    assert code == EXIT_FAILED_INPUT
    assert lines[0]["file"] == str(fake) and "image" in lines[0]["error"].lower()
    assert lines[1]["done"]


def test_audio_commands(capsys, tiny_env, beeps):
    for argv in (["transcribe", "--language", "English"], ["translate", "--target", "French"],
                 ["ask-audio", "--question", "What do you hear?"]):
        code, lines = run(capsys, argv[0], str(beeps), *FAST, *argv[1:])
        assert code == EXIT_OK, lines
        assert lines[0]["done"]


def test_audio_on_a_model_without_audio_exits_non_zero(capsys, tiny_env, beeps):
    code, lines = run(capsys, "transcribe", str(beeps), "--model", "tiny-moe", "--max-new-tokens", "4")
    assert code == EXIT_FAILED_INPUT and "E2B, E4B and 12B" in lines[0]["error"]


def test_video_command(capsys, tiny_env, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 50, fps=25)
    code, lines = run(capsys, "video", str(clip), *FAST, "--frames", "4")
    assert code == EXIT_OK
    assert [frame["label"] for frame in lines[0]["frames"]] == ["00:00", "00:00", "00:01", "00:01"]


def test_module_entry_point_builds_a_tiny_model(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gemma_demo", "tiny-model", str(tmp_path / "m"), "--variant", "moe"],
                         capture_output=True, text=True, check=True)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert out.stdout.strip() == str(tmp_path / "m")
    assert config["text_config"]["enable_moe_block"] and config.get("audio_config") is None


def test_usage_error_is_a_json_line_and_exit_1(capsys):
    code, lines = run(capsys, "caption")
    assert code == EXIT_FAILED_INPUT and "the following arguments are required: inputs" in lines[0]["error"]
