"""The trust model for MCP tool arguments, value by value: what counts as a URL, which properties
take one, and what the check hands on (an upload inline) or refuses."""

from __future__ import annotations

import base64

import pytest

from gemma_demo.config import parse_app_args
from gemma_demo.tasks.tools import mcp_arguments
from gemma_demo.tasks.tools.base import ToolError
from gemma_demo.tasks.tools.mcp_arguments import checked_arguments, is_url, is_url_property

URI = {"type": "string", "format": "uri"}


@pytest.mark.parametrize("text", [
    "https://example.com", "HTTP://example.com", "  ftp://host/file ", "file:///etc/passwd", "file:/etc/passwd",
    "http:example.com", "https:\\\\example.com", "s3://bucket/key", "gopher://host:70/", "//example.com/a.png",
    "redis://10.0.0.1:6379",
])
def test_a_place_to_fetch_from_is_a_url(text):
    assert is_url(text)


@pytest.mark.parametrize("text", [
    "data:image/png;base64,iVBORw0KGgo=", "DATA:text/plain,hi", "Note: the meeting moved", "localhost:8080",
    "C:\\Users\\me\\a.png", "mailto:someone@example.com", "red.png", "", "see https://example.com",
])
def test_plain_text_and_inline_data_are_not(text):
    assert not is_url(text)


@pytest.mark.parametrize("schema", [
    URI, {"format": "url"}, {"format": "uri-reference"}, {"format": "IRI"},
    {"type": "string", "format": "Gradio File Input - a http or https url to a file"},
    {"anyOf": [URI, {"type": "null"}]},
])
def test_a_property_declared_as_a_url_is_one(schema):
    assert is_url_property(schema)


@pytest.mark.parametrize("schema", [{"type": "string"}, {"format": "date-time"}, {"format": "email"},
                                    {"format": "curious"}, {"anyOf": "not a list"}, {"oneOf": 5}, "not a schema", None])
def test_other_properties_are_not(schema):
    assert not is_url_property(schema)


def parameters(**properties) -> dict:
    return {"type": "object", "properties": properties}


def test_an_upload_goes_inline_only_where_a_url_is_asked(tmp_path):
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello")
    schema = parameters(link=URI, count={"type": "integer"}, title={"type": "string"})
    checked = checked_arguments({"link": "notes.txt", "count": 0, "title": "notes.txt"}, schema, (upload,))
    assert checked == {"link": "data:text/plain;base64," + base64.b64encode(b"hello").decode(), "count": 0,
                       "title": "notes.txt"}


def test_inline_data_passes_where_a_url_is_asked():
    picture = "data:image/png;base64,iVBORw0KGgo="
    assert checked_arguments({"link": picture}, parameters(link=URI), ()) == {"link": picture}


@pytest.mark.parametrize("value", ["9" * 5000, "1", "../notes.txt", "notes.txt/../../etc/passwd"])
def test_a_url_property_naming_no_upload_is_refused(tmp_path, value):
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello")
    with pytest.raises(ToolError, match="The argument link is refused"):
        checked_arguments({"link": value}, parameters(link=URI), (upload,))


def test_an_upload_too_large_to_send_inline_is_refused(tmp_path, monkeypatch):
    upload = tmp_path / "big.bin"
    upload.write_bytes(b"x" * 2048)
    monkeypatch.setattr(mcp_arguments, "MAX_INLINE_UPLOAD_BYTES", 1024)
    with pytest.raises(ToolError, match="big.bin is 0 MiB; an MCP tool takes uploads of up to 0 MiB"):
        checked_arguments({"link": "0"}, parameters(link=URI), (upload,))


def test_arguments_nested_too_deeply_are_refused_not_a_crash():
    deep: object = "https://example.com"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ToolError, match="nested more than"):
        checked_arguments({"a": deep}, {}, ())


def test_a_url_passes_when_allowed_and_an_upload_still_goes_inline(tmp_path):
    upload = tmp_path / "a.png"
    upload.write_bytes(b"png")
    checked = checked_arguments({"page": "https://example.com", "link": "a.png"}, parameters(link=URI), (upload,),
                                allow_urls=True)
    assert checked["page"] == "https://example.com" and checked["link"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(("argv", "env", "allowed"), [
    ([], {}, False),
    (["--mcp-allow-urls"], {}, True),
    ([], {"GEMMA_DEMO_MCP_ALLOW_URLS": "1"}, True),
    ([], {"GEMMA_DEMO_MCP_ALLOW_URLS": "no"}, False),
])
def test_the_operator_allows_urls_with_a_flag_or_the_variable(argv, env, allowed):
    assert parse_app_args(argv, env).mcp_allow_urls is allowed
