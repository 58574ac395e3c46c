"""Files shipped in ``callstate/web/static/`` served as they are, with an ETag.

``asset_route("/callstate.js", "callstate.js")`` answers ``GET``/``HEAD`` with the file,
its content type, ``Cache-Control: no-cache`` (the URL carries no version, so browsers
revalidate) and a strong ETag; a matching ``If-None-Match`` gets ``304``.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["MEDIA_TYPES", "Asset", "asset_route", "load_asset"]

MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".ts": "application/typescript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


class Asset:
    """One static file's bytes, content type and ETag."""

    def __init__(self, name: str, body: bytes) -> None:
        self.name = name
        self.body = body
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        self.media_type = MEDIA_TYPES.get(suffix, "application/octet-stream")
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    def response(self, request: Request) -> Response:
        """The file, or ``304`` when the browser already holds this version."""
        headers = {
            "etag": self.etag,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
        }
        sent = request.headers.get("if-none-match", "")
        if self.etag in {tag.strip().removeprefix("W/") for tag in sent.split(",")}:
            return Response(status_code=304, headers=headers)
        body = b"" if request.method == "HEAD" else self.body
        headers["content-length"] = str(len(self.body))
        return Response(body, media_type=self.media_type, headers=headers)


@cache
def load_asset(name: str) -> Asset:
    """The shipped file ``static/<name>`` (read once)."""
    body = resources.files("callstate.web").joinpath("static", name).read_bytes()
    return Asset(name, body)


def asset_route(path: str, name: str) -> Route:
    """A ``GET``/``HEAD`` route serving ``static/<name>`` at ``path``."""

    async def serve(request: Request) -> Response:
        return load_asset(name).response(request)

    return Route(path, serve, methods=["GET", "HEAD"])
