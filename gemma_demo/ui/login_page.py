"""Keep the API description off the login page.

Gradio 6.31 renders the login page of an app started with `auth` with the full API
description embedded (endpoint names, parameters, defaults such as the start-up model's
folder). Calls are still refused, but a visitor who has not logged in should learn
nothing about the app. This ASGI middleware removes that one script from the login page
and touches no other response.
"""

from __future__ import annotations

import re

LOGIN_MARKER = b'"auth_required":true'
API_INFO_SCRIPT = re.compile(rb"<script>\s*window\.gradio_api_info\s*=.*?</script>", re.DOTALL)


class HideApiInfoFromLoginPage:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in ("", "/"):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if LOGIN_MARKER in body:
                body = API_INFO_SCRIPT.sub(b"", body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
