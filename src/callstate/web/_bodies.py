"""Request bodies: read under a size cap, decoded strictly into small typed structs."""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec
from starlette.requests import Request

from ..errors import CallstateError
from ..storage.base import storable_text

__all__ = [
    "BadRequest",
    "RefreshBody",
    "ResumeBody",
    "StartBody",
    "TokenBody",
    "read_body",
]

_T = TypeVar("_T", bound=msgspec.Struct)

#: a token is at most 2,048 chars; ids and agent names are short
_MAX_TEXT: Final = 4096


class BadRequest(CallstateError, ValueError):
    """The request body is missing, too large, not JSON, or not the endpoint's shape."""

    code = "bad_request"

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TokenBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``{"token": "cs1...."}``: the resume token this tab holds."""

    token: str = msgspec.field()


class ResumeBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``{"token": ..., "takeover": false}``: resume; ``takeover`` takes a live session."""

    token: str
    takeover: bool = False


class RefreshBody(TokenBody, forbid_unknown_fields=True, kw_only=True):
    """``{"token": ...}``: a fresh token for the same session and epoch."""


class StartBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``{"caller": ..., "agent": ...}``: start a new call (both optional)."""

    caller: str | None = None
    agent: str | None = None


async def read_body(request: Request, cls: type[_T], *, max_bytes: int) -> _T:
    """The request's JSON body as ``cls``.

    Raises:
        BadRequest: wrong content type (415), over ``max_bytes`` (413), not JSON or not
            the shape of ``cls`` (400; the message names the field).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        msg = f"request body must be application/json, got {kind or 'no content type'!r}"
        raise BadRequest(msg, status=415)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        msg = f"request body is {declared} bytes, over the {max_bytes}-byte cap"
        raise BadRequest(msg, status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            msg = f"request body is over the {max_bytes}-byte cap"
            raise BadRequest(msg, status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        msg = f"request body: {exc}"
        raise BadRequest(msg) from exc
    except msgspec.DecodeError as exc:
        msg = f"request body is not valid JSON: {exc}"
        raise BadRequest(msg) from exc
    for name in body.__struct_fields__:
        value = getattr(body, name)
        if not isinstance(value, str):
            continue
        if len(value) > _MAX_TEXT:
            msg = f"request body `{name}` is {len(value)} chars, over the {_MAX_TEXT} cap"
            raise BadRequest(msg)
        if not storable_text(value):
            msg = f"request body `{name}` holds a NUL or a lone surrogate"
            raise BadRequest(msg)
    return body
