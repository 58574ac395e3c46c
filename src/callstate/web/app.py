"""``create_app``: the continuity endpoints as a Starlette app.

Endpoints (all ``POST``, JSON in and out, under ``/v1``):

- ``/v1/preflight`` ``{"token"}`` → the ``Preflight`` answer; never takes ownership.
- ``/v1/start`` ``{"caller"?, "agent"?}`` → a new session and its first token.
- ``/v1/resume`` ``{"token", "takeover"?}`` → the session at epoch+1 and a fresh token;
  a refusal also carries the ``preflight`` answer (``{"error": ..., "preflight": ...}``),
  so a page resumes in one round trip and still decides as preflight would have told it.
- ``/v1/token/refresh`` ``{"token"}`` → a fresh token for the same session and epoch.

``GET /v1/openapi.json`` describes them. ``GET /callstate.js`` is the browser client (an
ES module) and ``/callstate.d.ts`` its TypeScript declarations. Errors are ``{"error": {"code", "message"}}``
with the error class's stable ``code`` and a fitting HTTP status.

Who drives a session the app took? ``WebOptions(on_session=...)`` is handed each
started or resumed ``Session`` (e.g. to attach a Pipecat pipeline in this process).
Without it, the app releases the session once the token is issued (a resumed one
beside its answer, not before it), so the worker that runs the agent takes it over by
session id (trusted server code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

try:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import BaseRoute, Route
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "callstate.web needs Starlette: pip install callstate[web]"
    raise ImportError(msg) from exc

import msgspec

from ..continuity.plan import Preflight
from ..continuity.resume import refusal
from ..continuity.tokens import is_token, verify_token
from ..errors import (
    CallEnded,
    CallstateError,
    ConfigError,
    SessionActive,
    SessionExpired,
    SessionNotFound,
    StaleEpochError,
    StorageError,
    TokenError,
    TokenSuperseded,
)
from ..keeper import Keeper
from ..session import Session
from ._bodies import BadRequest, RefreshBody, ResumeBody, StartBody, TokenBody, read_body
from .assets import asset_route
from .dashboard import dashboard_paths, dashboard_routes
from .openapi import openapi_document

__all__ = ["OnSession", "WebOptions", "create_app"]

log = logging.getLogger("callstate.web")

#: (start | resume, session) -> None, sync or async
OnSession = Callable[[Literal["start", "resume"], Session], Awaitable[None] | None]

#: most specific first: the first class an error is an instance of gives its status
_STATUS: Final[tuple[tuple[type[CallstateError], int], ...]] = (
    (TokenSuperseded, 409),
    (SessionActive, 409),
    (CallEnded, 410),
    (TokenError, 401),
    (SessionExpired, 410),
    (SessionNotFound, 404),
    (StaleEpochError, 409),
    (ConfigError, 500),
    (StorageError, 503),
)


@dataclass(frozen=True)
class WebOptions:
    """How the app behaves.

    Attributes:
        on_session: given each session the app started or resumed; without it the app
            releases the session once its token is issued.
        allow_start: serve ``/v1/start`` (off if sessions start elsewhere).
        cors_origins: origins allowed to call the API from a browser (none by default:
            same origin only); ``["*"]`` allows any.
        max_body_bytes: larger request bodies are refused with 413.
        token_ttl: lifetime of issued tokens in seconds (default: the keeper's).
        dashboard: serve the operator dashboard (``/dashboard/`` and
            ``/v1/dashboard/...``, see :mod:`callstate.web.dashboard`); off by default,
            since it shows calls.
        dashboard_token: the operator token every dashboard data request must carry
            (``Authorization: Bearer ...``, 16+ characters); required with ``dashboard``.
    """

    on_session: OnSession | None = None
    allow_start: bool = True
    cors_origins: Sequence[str] = field(default_factory=tuple)
    max_body_bytes: int = 16 * 1024
    token_ttl: float | None = None
    dashboard: bool = False
    dashboard_token: str | None = None


def _status(exc: CallstateError) -> int:
    if isinstance(exc, BadRequest):
        return exc.status
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def error_response(exc: CallstateError, preflight: Preflight | None = None) -> JSONResponse:
    """``{"error": {"code", "message"}}`` with the status that fits the error, and the
    ``preflight`` answer beside it when one is given."""
    body: dict[str, Any] = {"error": {"code": exc.code, "message": str(exc)}}
    if preflight is not None:
        body["preflight"] = msgspec.to_builtins(preflight)
    return JSONResponse(body, status_code=_status(exc))


def _token_only(value: str) -> str:
    """``value`` if it is a resume token: ``Keeper`` also takes a bare session id, which
    is for trusted server code; from a browser it would resume a call unsigned.

    Raises:
        TokenError: ``value`` is not a resume token.
    """
    if not is_token(value):
        msg = f"`token` must be a resume token (cs1.…), got {value[:12]!r}…; a session id resumes only from server code"
        raise TokenError(msg)
    return value


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


class _Api:
    """The endpoint handlers over one keeper (opened on first use if it is not yet)."""

    def __init__(self, keeper: Keeper, options: WebOptions) -> None:
        self.keeper = keeper
        self.options = options
        self._opening = asyncio.Lock()
        self.opened_here = False
        self.letting_go: set[asyncio.Task[None]] = set()

    async def ready(self) -> Keeper:
        async with self._opening:
            if not self.keeper.is_open:
                await self.keeper.open()
                self.opened_here = True
        return self.keeper

    async def _hand_over(self, how: Literal["start", "resume"], session: Session) -> None:
        hook = self.options.on_session
        if hook is None:  # the agent's worker takes it over by session id
            if how == "resume":
                self._let_go(session)
            else:  # live with its link up: released before anyone can ask about it
                await session.close()
            return
        result = hook(how, session)
        if asyncio.iscoroutine(result):
            await result

    def _let_go(self, session: Session) -> None:
        """Close a resumed session nobody here drives while its answer goes out: the
        page needs the token, not the lease's release (the worker's claim by id fences
        this handle either way), so that commit is no part of the answer's time. It is
        on hold until its transport opens, so no one is told it is live meanwhile."""
        task = asyncio.get_running_loop().create_task(session.close())
        self.letting_go.add(task)
        task.add_done_callback(self._let_gone)

    def _let_gone(self, task: asyncio.Task[None]) -> None:
        self.letting_go.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("callstate.web: releasing a session failed", exc_info=task.exception())

    def _expires_in(self, token: str) -> float:
        """Seconds the token stays valid, by the server's clock (the client refreshes
        before then without trusting its own clock)."""
        claims = verify_token(token, self.keeper.secrets)
        return max(0.0, claims.expires_at - self.keeper.clock.now())

    def _answer(self, session: Session, token: str) -> dict[str, Any]:
        plan = session.recovery
        return {
            "session_id": session.id,
            "epoch": session.state.epoch,
            "agent": session.state.agent,
            "token": token,
            "expires_in": self._expires_in(token),
            "resumed": plan is not None,
            "gap_s": None if plan is None else plan.gap_s,
        }

    async def preflight(self, request: Request) -> Response:
        body = await read_body(request, TokenBody, max_bytes=self.options.max_body_bytes)
        try:
            token = _token_only(body.token)
        except TokenError as exc:
            return _json(msgspec.to_builtins(Preflight(status="invalid", reason=str(exc))))
        pre = await (await self.ready()).preflight(token)
        return _json(msgspec.to_builtins(pre))

    async def start(self, request: Request) -> Response:
        if not self.options.allow_start:
            msg = "this server does not start sessions (WebOptions(allow_start=False))"
            raise BadRequest(msg, status=404)
        body = await read_body(request, StartBody, max_bytes=self.options.max_body_bytes)
        keeper = await self.ready()
        session = await keeper.start(caller=body.caller, agent=body.agent or "agent")
        answer = self._answer(session, session.resume_token(ttl=self.options.token_ttl))
        await self._hand_over("start", session)
        return _json(answer, status=201)

    async def resume(self, request: Request) -> Response:
        body = await read_body(request, ResumeBody, max_bytes=self.options.max_body_bytes)
        keeper = await self.ready()
        try:
            session = await keeper.resume(_token_only(body.token), takeover=body.takeover)
        except CallstateError as exc:
            # what preflight would have said: the page decides on it without asking again
            pre = refusal(exc)
            if pre is None:
                raise
            return error_response(exc, pre)
        answer = self._answer(session, session.resume_token(ttl=self.options.token_ttl))
        await self._hand_over("resume", session)
        return _json(answer)

    async def refresh(self, request: Request) -> Response:
        body = await read_body(request, RefreshBody, max_bytes=self.options.max_body_bytes)
        keeper = await self.ready()
        token = await keeper.refresh_token(body.token, ttl=self.options.token_ttl)
        claims = verify_token(token, keeper.secrets)
        answer = {"session_id": claims.session_id, "epoch": claims.epoch, "token": token}
        return _json({**answer, "expires_in": self._expires_in(token)})

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document(dashboard_paths() if self.options.dashboard else None))


def _endpoint(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except CallstateError as exc:
            return error_response(exc)
        except Exception:  # never a stack trace to the browser; logged for the operator
            log.exception("callstate.web: %s %s failed", request.method, request.url.path)
            body = {"error": {"code": "internal", "message": "internal server error"}}
            return JSONResponse(body, status_code=500)

    return run


def create_app(keeper: Keeper, options: WebOptions | None = None) -> Starlette:
    """The continuity endpoints over ``keeper`` as an ASGI app (see the module doc).

    The keeper is opened on the first request if it is not open yet, and closed with
    the app's lifespan only if the app opened it.

    Raises:
        ConfigError: ``options.dashboard`` is on without a valid ``dashboard_token``.
    """
    opts = options or WebOptions()
    api = _Api(keeper, opts)
    routes: list[BaseRoute] = [
        Route("/v1/preflight", _endpoint(api.preflight), methods=["POST"]),
        Route("/v1/start", _endpoint(api.start), methods=["POST"]),
        Route("/v1/resume", _endpoint(api.resume), methods=["POST"]),
        Route("/v1/token/refresh", _endpoint(api.refresh), methods=["POST"]),
        Route("/v1/openapi.json", _endpoint(api.openapi), methods=["GET"]),
        asset_route("/callstate.js", "callstate.js"),
        asset_route("/callstate.d.ts", "callstate.d.ts"),
    ]
    if opts.dashboard:
        routes += dashboard_routes(api.ready, opts.dashboard_token or "", wrap=_endpoint)
    middleware: list[Middleware] = []
    if opts.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(opts.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["content-type"],
                max_age=600,
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.gather(*api.letting_go, return_exceptions=True)
        if api.opened_here:
            await keeper.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.callstate = api
    return app
