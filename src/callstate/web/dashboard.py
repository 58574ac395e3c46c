"""The operator dashboard: JSON endpoints over the archive and journal, and its pages.

Off by default. ``WebOptions(dashboard=True, dashboard_token=...)`` turns it on; every
data endpoint then needs ``Authorization: Bearer <dashboard_token>`` (the token is
compared in constant time). The pages under ``/dashboard/`` hold no data and load
without it; they ask for the token (or read it once from ``#token=…`` in the address,
which never reaches the server) and keep it in the tab's ``sessionStorage``.

Endpoints (``GET``, JSON, under ``/v1/dashboard``; documented in ``/v1/openapi.json``):

- ``/calls?outcome&agent&health&caller_tag&session&since&until&limit`` → one row per
  call (session), latest first (:func:`~callstate.web.dashboard_views.call_rows`).
- ``/calls/{session_id}/timeline`` → the call's timeline, every leg
  (:mod:`callstate.web.dashboard_timeline`).
- ``/quality?since&until&bucket`` → recovery-quality figures per bucket
  (:func:`~callstate.web.dashboard_views.quality_buckets`).

Everything is read through the ``Store`` protocol; caller data is never opened, and a
caller is named only by a short prefix of the archive's keyed caller hash.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..archive.calls import FollowUpResult, decode_result
from ..archive.health import HEALTH_CLASSES
from ..archive.records import ArchiveRecord, decode_record
from ..errors import CallstateError, ConfigError, SessionNotFound
from ..journal import events as ev
from ..keeper import Keeper
from ..storage.base import FollowUpLog, Store, not_found, storable_text
from ._bodies import BadRequest
from .dashboard_timeline import timeline, timeline_from_records
from .dashboard_views import CallFilter, call_rows, quality_buckets

__all__ = [
    "MIN_TOKEN_CHARS",
    "Unauthorized",
    "check_dashboard_token",
    "dashboard_paths",
    "dashboard_routes",
]

log = logging.getLogger("callstate.web.dashboard")

MIN_TOKEN_CHARS: Final = 16
STATIC: Final = Path(__file__).parent / "static" / "dashboard"
#: archive rows read for one list or chart (newest first); older calls need ``since``
_SCAN: Final = 20_000
_MAX_BUCKETS: Final = 1_000
_OUTCOMES: Final = frozenset({"completed", "recovered", "superseded", "abandoned", "failed"})
_HEALTH: Final = frozenset(HEALTH_CLASSES)
_PAGE_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]
_DATA_HEADERS: Final = {"cache-control": "no-store", "referrer-policy": "no-referrer"}

Ready = Callable[[], Awaitable[Keeper]]
Wrap = Callable[
    [Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]
]


class Unauthorized(BadRequest):
    """A dashboard request without the operator token, or with a wrong one."""

    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


def check_dashboard_token(token: object) -> str:
    """The operator token, checked: a string of at least 16 characters.

    Raises:
        ConfigError: ``dashboard_token`` is missing, not a string, or too short.
    """
    if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS:
        shown = "None" if token is None else f"a {type(token).__name__} of length {_len(token)}"
        msg = (
            "WebOptions(dashboard=True) shows caller data and needs dashboard_token, "
            f"a string of {MIN_TOKEN_CHARS}+ characters (got {shown})"
        )
        raise ConfigError(msg)
    return token


def _len(value: object) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


def _json(data: Any) -> Response:
    return Response(msgspec.json.encode(data), media_type="application/json", headers=_DATA_HEADERS)


# -- query parameters ---------------------------------------------------------------


def _text(request: Request, name: str, *, choices: frozenset[str] | None = None) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not storable_text(value) or len(value) > 256:
        msg = f"query parameter `{name}` is not a short text: {value[:80]!r}"
        raise BadRequest(msg)
    if choices is not None and value not in choices:
        msg = f"query parameter `{name}` must be one of {sorted(choices)}, got {value[:80]!r}"
        raise BadRequest(msg)
    return value


def _number(request: Request, name: str, *, low: float, high: float) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails this too
        msg = (
            f"query parameter `{name}` must be a number from {low:g} to {high:g}, got {raw[:80]!r}"
        )
        raise BadRequest(msg)
    return value


def _decoded(data: bytes) -> ArchiveRecord | None:
    try:
        return decode_record(data)
    except CallstateError:  # a record this version cannot read: left out, logged
        log.warning("callstate.web.dashboard: an archive record does not decode; skipped")
        return None


async def _records(
    store: Store, *, since: float | None = None, session_id: str | None = None
) -> list[tuple[ArchiveRecord, str | None]]:
    rows = await store.archive_list(session_id=session_id, since=since, limit=_SCAN)
    return [(r, row.caller_hash) for row in rows if (r := _decoded(row.data)) is not None]


async def _followups(store: Store, session_id: str) -> list[FollowUpResult]:
    if not isinstance(store, FollowUpLog):
        return []
    out: list[FollowUpResult] = []
    for run in await store.followup_runs(session_id):
        try:
            out.append(decode_result(run.data))
        except CallstateError:
            log.warning("callstate.web.dashboard: a follow-up result does not decode; skipped")
    return out


class _Dashboard:
    """The data endpoints over one keeper's store."""

    def __init__(self, ready: Ready, token: str) -> None:
        self._ready = ready
        self._token = token.encode()

    async def _store(self, request: Request) -> tuple[Keeper, Store]:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            msg = "the dashboard needs `Authorization: Bearer <dashboard_token>`"
            raise Unauthorized(msg)
        keeper = await self._ready()
        return keeper, keeper.store

    async def calls(self, request: Request) -> Response:
        _, store = await self._store(request)
        f = CallFilter(
            outcome=_text(request, "outcome", choices=_OUTCOMES),
            agent=_text(request, "agent"),
            health=_text(request, "health", choices=_HEALTH),
            caller_tag=_text(request, "caller_tag"),
            session=_text(request, "session"),
            since=_number(request, "since", low=0, high=1e11),
            until=_number(request, "until", low=0, high=1e11),
        )
        limit = int(_number(request, "limit", low=1, high=1000) or 100)
        rows = call_rows(await _records(store, since=f.since), f, limit=limit)
        return _json({"calls": rows})

    async def timeline(self, request: Request) -> Response:
        _, store = await self._store(request)
        session_id = request.path_params["session_id"]
        if not storable_text(session_id):
            raise not_found(session_id)
        followups = await _followups(store, session_id)
        legs = [r for r, _ in await _records(store, session_id=session_id)]
        try:
            encoded = await store.read_events(session_id)
        except SessionNotFound:  # its resume state was purged
            encoded = []
        if encoded:
            events = [ev.decode_event(e) for e in encoded]
            data = timeline(session_id, events, records=legs, followups=followups)
        elif legs:  # the journal was purged; the archive keeps each leg
            data = timeline_from_records(session_id, legs, followups=followups)
        else:
            raise not_found(session_id)
        return _json(data)

    async def quality(self, request: Request) -> Response:
        keeper, store = await self._store(request)
        now = keeper.clock.now()
        until = _number(request, "until", low=0, high=1e11) or now
        since = _number(request, "since", low=0, high=1e11)
        bucket = _number(request, "bucket", low=60, high=30 * 86_400) or 3_600.0
        since = until - 24 * 3_600.0 if since is None else since
        if since >= until or (until - since) / bucket > _MAX_BUCKETS:
            msg = (
                f"query parameters `since`..`until` ({since:g}..{until:g}) must be a range of "
                f"at most {_MAX_BUCKETS} buckets of `bucket` ({bucket:g}s)"
            )
            raise BadRequest(msg)
        records = [r for r, _ in await _records(store, since=since)]
        buckets = quality_buckets(records, since=since, until=until, bucket_s=bucket)
        return _json({"since": since, "until": until, "bucket_s": bucket, "buckets": buckets})


class _PageHeaders:
    """Security headers on every dashboard page and asset."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def dashboard_routes(ready: Ready, token: str, *, wrap: Wrap) -> list[BaseRoute]:
    """The dashboard's data endpoints (each through ``wrap``, the app's error handling)
    and its pages at ``/dashboard/``.

    Raises:
        ConfigError: ``token`` is not a valid ``dashboard_token``.
    """
    api = _Dashboard(ready, check_dashboard_token(token))
    pages = _PageHeaders(StaticFiles(directory=STATIC, html=True))
    return [
        Route("/v1/dashboard/calls", wrap(api.calls), methods=["GET"]),
        Route(
            "/v1/dashboard/calls/{session_id:path}/timeline", wrap(api.timeline), methods=["GET"]
        ),
        Route("/v1/dashboard/quality", wrap(api.quality), methods=["GET"]),
        Mount("/dashboard", app=pages),
    ]


# -- OpenAPI -------------------------------------------------------------------------


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if name == "outcome":
        schema["enum"] = sorted(_OUTCOMES)
    elif name == "health":
        schema["enum"] = list(HEALTH_CLASSES)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _get(summary: str, params: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "ok", "content": {"application/json": {"schema": answer}}},
        "400": {"description": "a query parameter is invalid"},
        "401": {"description": "no or a wrong operator token"},
    }
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "security": [{"dashboardToken": []}],
            "responses": responses,
        }
    }


def dashboard_paths() -> dict[str, Any]:
    """The dashboard endpoints as OpenAPI path items (and the token's security scheme
    under the key ``"securitySchemes"``)."""
    rows = {
        "type": "object",
        "properties": {"calls": {"type": "array", "items": {"type": "object"}}},
    }
    since = _query("since", "number", "unix seconds: only calls that ended at or after it")
    until = _query("until", "number", "unix seconds: only calls that ended before it")
    return {
        "paths": {
            "/v1/dashboard/calls": _get(
                "Archived calls, one row per session, latest first; callers only by tag.",
                [
                    _query("outcome", "string", "a leg has this outcome"),
                    _query("agent", "string", "a leg ran this agent"),
                    _query("health", "string", "a leg has this health class"),
                    _query("caller_tag", "string", "the caller's tag, as listed"),
                    _query("session", "string", "a prefix of the session id"),
                    since,
                    until,
                    _query("limit", "integer", "most rows, 1..1000 (default 100)"),
                ],
                rows,
            ),
            "/v1/dashboard/calls/{session_id}/timeline": _get(
                "One call's timeline: legs, speech, barge-ins, tool calls, holds, "
                "resumes, handoffs, follow-ups.",
                [
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                {"type": "object", "required": ["session_id", "legs", "tools"]},
            ),
            "/v1/dashboard/quality": _get(
                "Recovery quality per time bucket: recovered rate, time to recover, in-doubt.",
                [
                    since,
                    until,
                    _query("bucket", "number", "bucket width in seconds (default 3600)"),
                ],
                {"type": "object", "required": ["buckets"]},
            ),
        },
        "securitySchemes": {"dashboardToken": {"type": "http", "scheme": "bearer"}},
    }
