"""Transcript files in the exact syntax players expect."""

from __future__ import annotations

import pytest

from gemma_demo.media.subtitles import Cue, format_timestamp, to_srt, to_txt, to_vtt

CUES = [
    Cue(0.0, 2.5, "  Hello there.  "),
    Cue(2.5, 4.0, "   "),
    Cue(4.0, 7.25, "General Kenobi!"),
    Cue(3661.2, 3725.0, "An hour in."),
]


def test_srt():
    assert to_srt(CUES) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n"
        "\n"
        "2\n00:00:04,000 --> 00:00:07,250\nGeneral Kenobi!\n"
        "\n"
        "3\n01:01:01,200 --> 01:02:05,000\nAn hour in.\n"
    )


def test_vtt():
    assert to_vtt(CUES) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:02.500\nHello there.\n"
        "\n"
        "00:00:04.000 --> 00:00:07.250\nGeneral Kenobi!\n"
        "\n"
        "01:01:01.200 --> 01:02:05.000\nAn hour in.\n"
    )


def test_txt_with_and_without_timestamps():
    assert to_txt(CUES) == "[00:00] Hello there.\n[00:04] General Kenobi!\n[1:01:01] An hour in.\n"
    assert to_txt(CUES, timestamps=False) == "Hello there. General Kenobi! An hour in."


def test_no_cues():
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
    assert to_txt([]) == ""


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "00:00:00,000"),
        (59.9995, "00:01:00,000"),
        (59.9994, "00:00:59,999"),
        (3599.9999, "01:00:00,000"),
        (3600.0, "01:00:00,000"),
        (2.675, "00:00:02,675"),
        (0.0005, "00:00:00,001"),
        (-0.25, "00:00:00,000"),
        (100 * 3600 + 1.5, "100:00:01,500"),
    ],
)
def test_timestamp_rounding(seconds, expected):
    assert format_timestamp(seconds) == expected
    assert format_timestamp(seconds, sep=".") == expected.replace(",", ".")


def test_cue_rounding_never_shows_sixty_seconds():
    srt = to_srt([Cue(59.9995, 119.9999, "edge")])
    assert "00:01:00,000 --> 00:02:00,000" in srt
    assert ":60" not in srt


def test_txt_times_never_run_ahead_of_the_words():
    assert to_txt([Cue(59.4, 61.0, "late")]) == "[00:59] late\n"
    assert to_txt([Cue(59.9996, 61.0, "rounded")]) == "[01:00] rounded\n"


def test_cue_syntax_inside_text_is_neutralised():
    cue = Cue(1.0, 2.0, "a --> b ---> c\n\n\nnext line <i>&")
    srt_text = to_srt([cue]).split("\n", 2)[2]
    assert srt_text == "a -> b -> c\nnext line <i>&\n"
    vtt_text = to_vtt([cue]).split("\n", 3)[3]
    assert vtt_text == "a -&gt; b -&gt; c\nnext line &lt;i&gt;&amp;\n"


def test_cue_rejects_end_before_start():
    with pytest.raises(ValueError):
        Cue(2.0, 1.0, "backwards")
    with pytest.raises(ValueError):
        Cue(float("nan"), 1.0, "nowhere")
