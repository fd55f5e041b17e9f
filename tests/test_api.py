"""The web app through its public API, as `gradio_client` users and browsers meet it.

The app runs in this process on the tiny model, so every endpoint runs the real path
(upload, preprocessing, task, streaming, files) in seconds, and generation threads
can be watched directly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageColor
from gradio_client import Client, handle_file
from gradio.utils import get_function_description
from gradio_client.exceptions import AppError

from app_helpers import generating, serve, wait_until
from scripted_backend import (
    SHAPES_ANSWER,
    SHAPES_PIXEL_BOXES,
    SHAPES_PIXEL_POINTS,
    SHAPES_SIZE,
    SPOKEN,
    TABLE_ANSWER,
    TABLE_HEADERS,
    TABLE_ROWS,
    TRANSLATED,
    ScriptedBackend,
    serve_scripted,
)
from gemma_demo.tasks import ocr
from gemma_demo.ui.layout import follow_audio_capability
import gemma_demo.ui.files as ui_files

INPUT = Path(__file__).resolve().parent.parent / "input"
TINY_TOKENS = 8
ENDPOINTS = {"/chat", "/export_chat", "/import_chat", "/detect", "/point", "/caption", "/ocr", "/ocr_document", "/html", "/transcribe", "/translate", "/ask_audio", "/video"}
USER, PASSWORD = "ada", "correct-horse"
CANCEL_TOKENS = 4000  # ~30 s on the tiny model: long enough that only Stop can end it early
SHAPES_OBJECTS = ", ".join(SHAPES_PIXEL_BOXES)

@pytest.fixture(scope="module")
def locked_app(tiny_options):
    demo = serve(tiny_options, auth=(USER, PASSWORD))
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def scripted_client():
    """The app over a backend that answers in Gemma 4's real formats, and that backend."""
    backend = ScriptedBackend(delay_s=0)
    demo = serve_scripted(backend)
    yield Client(demo.local_url, verbose=False), backend
    demo.close()


def approx_boxes(boxes: dict) -> dict:
    return {label: pytest.approx(box, abs=2) for label, box in boxes.items()}


def legend_colours(legend: list[dict]) -> dict[str, tuple[int, int, int]]:
    """The legend's labels and their colours (HighlightedText: the label, its colour as category)."""
    return {item["token"]: ImageColor.getrgb(item["class_or_confidence"]) for item in legend}


def close_colour(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def stream(client: Client, *args, api_name: str, **kwargs) -> tuple[list[tuple], tuple]:
    """Every streamed output and the final one, at the tiny token limit."""
    job = client.submit(*args, api_name=api_name, max_new_tokens=TINY_TOKENS, **kwargs)
    partials = list(job)
    return partials, job.result()


def test_every_task_is_a_documented_endpoint_and_nothing_else_is(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == ENDPOINTS
    assert not api["unnamed_endpoints"]
    for name in ENDPOINTS - {"/export_chat", "/import_chat"}:  # those two only move a file, with no model
        names = [parameter["parameter_name"] for parameter in api["named_endpoints"][name]["parameters"]]
        assert {"model", "max_new_tokens", "thinking", "image_budget"} <= set(names), name


def test_every_parameter_and_output_has_a_name(app):
    """Gradio names an unlabelled component `value_<n>`, which tells an API reader nothing."""
    info = httpx.get(f"{app.local_url}gradio_api/info").json()["named_endpoints"]
    unnamed = [
        (endpoint, name)
        for endpoint in ENDPOINTS
        for name in [p["parameter_name"] for p in info[endpoint]["parameters"]]
        + [r["label"] for r in info[endpoint]["returns"]]
        if not name or re.fullmatch(r"value_\d+", name)
    ]
    assert unnamed == []


def test_the_image_budget_offers_default_not_zero(app):
    info = httpx.get(f"{app.local_url}gradio_api/info").json()["named_endpoints"]
    budget = next(p for p in info["/caption"]["parameters"] if p["parameter_name"] == "image_budget")
    assert budget["parameter_default"] == "default"
    assert budget["type"]["enum"] == ["default", 70, 140, 280, 560, 1120]


@pytest.mark.parametrize("budget", ["default", 0])  # 0: what API clients sent before "default"
def test_the_task_default_image_budget_reaches_the_task(scripted_client, budget):
    client, backend = scripted_client
    stream(client, handle_file(INPUT / "document.png"), "table", image_budget=budget, api_name="/ocr")
    assert backend.settings[-1].image_budget == ocr.DEFAULT_SETTINGS.image_budget


def test_docstrings_describe_every_parameter(app):
    info = httpx.get(f"{app.local_url}gradio_api/info").json()["named_endpoints"]
    for name in ENDPOINTS:
        assert info[name]["description"], name
    for dependency in app.fns.values():
        if f"/{dependency.api_name}" in ENDPOINTS:
            _, parameters, _ = get_function_description(dependency.fn)  # what the MCP tools show
            assert all(parameters.values()), (dependency.api_name, parameters)


def test_caption_streams_then_finishes(client):
    partials, (caption, _, stats) = stream(client, handle_file(INPUT / "scene.jpg"), "short", api_name="/caption",
                                           sampling="off")  # greedy: a sampled end token could stop it early
    assert len(partials) >= 2
    assert len(partials[0][0]) <= len(caption)
    assert caption and f"{TINY_TOKENS} new tokens" in stats


def test_detect_returns_json_an_image_and_a_legend(scripted_client):
    client, backend = scripted_client
    _, final = stream(client, handle_file(INPUT / "shapes.jpg"), SHAPES_OBJECTS, api_name="/detect")
    image, legend, detections, answer, coco, _, stats = final
    assert "bounding boxes" in backend.prompts[-1] and answer == SHAPES_ANSWER
    assert {item["label"]: tuple(item["box"]) for item in detections} == approx_boxes(SHAPES_PIXEL_BOXES)
    assert sorted(legend_colours(legend)) == sorted(SHAPES_PIXEL_BOXES) and "prompt tokens" in stats
    colours = legend_colours(legend)
    with Image.open(image) as drawn, Image.open(INPUT / "shapes.jpg") as original:
        assert drawn.size == original.size == SHAPES_SIZE
        for label, (x0, y0, x1, y1) in SHAPES_PIXEL_BOXES.items():  # each box's bottom edge, in its colour
            assert close_colour(drawn.convert("RGB").getpixel(((x0 + x1) // 2, y1)), colours[label]), label
    document = json.loads(Path(coco).read_text(encoding="utf-8"))
    assert Path(coco).name == "shapes.coco.json"
    names = {category["id"]: category["name"] for category in document["categories"]}
    assert {names[item["category_id"]]: tuple(item["bbox"]) for item in document["annotations"]} == {
        label: pytest.approx((x0, y0, x1 - x0, y1 - y0), abs=2) for label, (x0, y0, x1, y1) in SHAPES_PIXEL_BOXES.items()
    }


def test_point_returns_points_as_json(scripted_client):
    client, backend = scripted_client
    _, (image, legend, detections, *_) = stream(client, handle_file(INPUT / "shapes.jpg"), SHAPES_OBJECTS, api_name="/point")
    assert "Point to" in backend.prompts[-1]
    assert {item["label"]: tuple(item["point"]) for item in detections} == {
        label: pytest.approx(point, abs=2) for label, point in SHAPES_PIXEL_POINTS.items()
    }
    colours = legend_colours(legend)
    with Image.open(image) as drawn:
        for label, point in SHAPES_PIXEL_POINTS.items():  # a dot in the label's colour on each point
            assert close_colour(drawn.convert("RGB").getpixel(point), colours[label]), label


def test_ocr_gives_markdown_text_and_a_table(scripted_client):
    client, backend = scripted_client
    _, (markdown, text, table, _, stats) = stream(client, handle_file(INPUT / "document.png"), "table", api_name="/ocr")
    assert "Transcribe every table" in backend.prompts[-1]
    assert text == TABLE_ANSWER and "Croissant" in markdown
    table = table["value"] if table.get("__type__") == "update" else table  # shown with its own label
    assert table["headers"] == TABLE_HEADERS and table["data"] == TABLE_ROWS
    assert "prompt tokens" in stats


def test_html_gives_code_a_sandboxed_preview_and_a_file(client):
    _, (code, preview, page, _, _) = stream(client, handle_file(INPUT / "sketch.png"), api_name="/html")
    assert preview.startswith('<iframe sandbox="allow-scripts"') and "allow-same-origin" not in preview
    assert Path(page).name == "sketch.html" and Path(page).read_text(encoding="utf-8") == code


def test_transcribe_streams_subtitles_and_files(client):
    partials, final = stream(client, handle_file(INPUT / "speech.wav"), "English", api_name="/transcribe")
    text, srt, files, _, stats = final
    assert len(partials) >= 2
    assert srt.startswith("1\n00:00:00,000 --> 00:00:") and text in srt
    assert sorted(Path(file).suffix for file in files) == [".srt", ".txt", ".vtt"]
    assert Path(next(file for file in files if file.endswith(".srt"))).read_text(encoding="utf-8") == srt
    assert stats.startswith("Chunk 1 of 1")


def test_translate_gives_subtitles_in_the_target_language(scripted_client):
    client, backend = scripted_client
    _, (text, srt, files, _, _) = stream(
        client, handle_file(INPUT / "speech.wav"), "English", "French", api_name="/translate"
    )
    assert "in English, then translate it into French" in backend.prompts[-1]
    assert text == TRANSLATED and SPOKEN not in srt
    assert srt.startswith("1\n00:00:00,000 --> ") and TRANSLATED in srt
    assert sorted(Path(file).suffix for file in files) == [".srt", ".txt", ".vtt"]


def test_ask_audio_answers_without_subtitles(client):
    _, (answer, srt, files, _, _) = stream(
        client, handle_file(INPUT / "speech.wav"), "When does the meeting start?", api_name="/ask_audio"
    )
    assert answer and srt is None and files is None


def test_video_shows_the_frames_it_sampled(client):
    _, (gallery, answer, _, _) = stream(
        client, handle_file(INPUT / "clip.mp4"), "What moves?", num_frames=4, include_audio=True, api_name="/video"
    )
    assert [frame["caption"] for frame in gallery] == ["00:00", "00:01", "00:02", "00:03"]
    assert all(Path(frame["image"]).is_file() for frame in gallery) and answer


def test_a_text_file_named_jpg_gets_a_clear_error_and_the_app_keeps_working(client, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture", encoding="utf-8")
    with pytest.raises(AppError, match="“holiday.jpg” is not a picture"):
        stream(client, handle_file(fake), "cat", api_name="/detect")
    _, final = stream(client, handle_file(INPUT / "shapes.jpg"), "cat", api_name="/detect")
    assert isinstance(final[2], list)


def test_bad_settings_from_api_clients_are_refused_with_a_reason(client):
    with pytest.raises(AppError, match="less than minimum"):
        stream(client, handle_file(INPUT / "scene.jpg"), "short", top_k=0, api_name="/caption")
    with pytest.raises(AppError, match="Choose a model"):
        stream(client, handle_file(INPUT / "scene.jpg"), "short", model=" ", api_name="/caption")
    with pytest.raises(AppError, match="image token budget must be 'default'"):  # any value reaches the check
        stream(client, handle_file(INPUT / "scene.jpg"), "short", image_budget=300, api_name="/caption")


def test_visitors_cannot_load_arbitrary_models(client):
    with pytest.raises(AppError, match="not one of this app's models"):
        stream(client, handle_file(INPUT / "scene.jpg"), "short", model="/etc", api_name="/caption")
    final = stream(client, handle_file(INPUT / "scene.jpg"), "short", api_name="/caption")[-1]
    assert final[0]


def test_a_model_without_audio_is_refused_clearly(client):
    with pytest.raises(AppError, match="no audio input"):
        stream(client, handle_file(INPUT / "speech.wav"), "English", model="tiny-moe", api_name="/transcribe")


def test_stop_ends_generation_in_the_backend(client):
    job = client.submit(handle_file(INPUT / "scene.jpg"), "short", max_new_tokens=CANCEL_TOKENS, api_name="/caption")
    assert wait_until(lambda: len(job.outputs()) >= 2) and generating()
    job.cancel()
    assert wait_until(lambda: not generating())


def test_downloads_do_not_pile_up_on_disk(client, tmp_path, monkeypatch):
    # A folder of this test's own: other test runs on the machine share the default one.
    monkeypatch.setattr(ui_files, "APP_TEMP_DIR", tmp_path)
    folders = []
    real_mkdtemp = ui_files.tempfile.mkdtemp
    monkeypatch.setattr(ui_files.tempfile, "mkdtemp", lambda **kw: folders.append(real_mkdtemp(**kw)) or folders[-1])
    stream(client, handle_file(INPUT / "sketch.png"), api_name="/html")
    assert [Path(folder).parent for folder in folders].count(tmp_path) == 1, "the request had a folder of its own"
    assert not list(tmp_path.glob("request-*"))


def test_switching_to_a_model_without_audio_greys_out_audio():
    note, *buttons, include_audio = follow_audio_capability("google/gemma-4-31B-it")
    assert note.visible and "E2B, E4B or 12B" in note.value
    assert all(button.interactive is False for button in buttons)
    assert include_audio.interactive is False and include_audio.value is False
    note, *buttons, _ = follow_audio_capability("E4B")
    assert note.visible is False and all(button.interactive for button in buttons)


@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd"])
def test_files_outside_the_app_are_not_served(app, path):
    response = httpx.get(f"{app.local_url}gradio_api/file={path}")
    assert response.status_code in (403, 404) and "root:" not in response.text


def test_only_the_example_folder_is_served_from_disk(app):
    assert httpx.get(f"{app.local_url}gradio_api/file={INPUT / 'shapes.jpg'}").status_code == 200
    for outside in (INPUT.parent / "app.py", INPUT / ".." / "app.py"):
        assert httpx.get(f"{app.local_url}gradio_api/file={outside}").status_code == 403


@pytest.mark.parametrize("path", ["gradio_api/info", "config", f"gradio_api/file={INPUT / 'shapes.jpg'}"])
def test_auth_hides_the_api_and_files(locked_app, path):
    assert httpx.get(f"{locked_app.local_url}{path}").status_code == 401


def test_auth_shows_only_the_login_page(locked_app):
    page = httpx.get(locked_app.local_url).text
    assert '"auth_required":true' in page
    assert "Detect boxes" not in page and "Gemma 4 Studio" not in page
    with pytest.raises(ValueError):
        Client(locked_app.local_url, verbose=False)


def test_login_page_does_not_describe_the_api(locked_app):
    page = httpx.get(locked_app.local_url).text
    assert "/ask_audio" not in page and "gradio_api_info" not in page


def test_logging_in_opens_the_api(locked_app):
    client = Client(locked_app.local_url, auth=(USER, PASSWORD), verbose=False)
    assert "/caption" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_open_share_links_warn_and_launch_options_reach_gradio(tiny_options, capsys):
    # `serve` passes share=False to launch, so no tunnel opens; the warning follows the config.
    demo = serve(tiny_options, share=True, max_file_size="10kb", mcp=True)
    try:
        assert "--share without --auth" in capsys.readouterr().err
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            Client(demo.local_url, verbose=False).predict(handle_file(INPUT / "shapes.jpg"), "star", api_name="/point")
        tools = {tool["name"]: tool for tool in httpx.get(f"{demo.local_url}gradio_api/mcp/schema").json()}
        assert len(tools) == len(ENDPOINTS)
        assert all(spec["description"] for spec in tools["transcribe_speech"]["inputSchema"]["properties"].values())
    finally:
        demo.close()
