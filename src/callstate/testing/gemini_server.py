"""A strict loopback Gemini Live server for tests (``pip install callstate[gemini]``).

It listens on 127.0.0.1 (ephemeral port) over TLS with a certificate made for it, and
speaks the Live API's ``BidiGenerateContent`` websocket protocol, so the real
``genai.Client(api_key=..., http_options=server.http_options()).aio.live.connect()``
talks to it (the SDK always dials ``wss`` when it has an API key). The rules it keeps:

- the path is ``/ws/google.ai.generativelanguage.<version>.GenerativeService.BidiGenerateContent``
  and an ``x-goog-api-key`` header is sent, else the socket closes with 1008;
- the first message is ``setup`` (answered ``setupComplete``) and only the first;
  every message is one of ``setup`` / ``clientContent`` / ``realtimeInput`` /
  ``toolResponse`` and fits ``google.genai.types.LiveClientMessage`` (unknown fields
  refused), else 1007 with the field named;
- a ``toolResponse`` answers a call this session asked for, once, under its name; one
  for a call cancelled by ``toolCallCancellation`` (the caller talked over the model
  while it waited) is refused (1008);
- ``activityStart``/``activityEnd`` only with automatic activity detection disabled;
- with ``sessionResumption`` in the setup, each finished turn brings a
  ``sessionResumptionUpdate`` with a ``newHandle`` (``resumable: false`` while a call is
  open); a setup carrying a handle continues that conversation, an unknown or expired
  handle is refused (1008); ``GeminiServer(issue_handles=False)`` sends no update at
  all (a connection that drops before the first one has no handle to resume with);
- transcripts come only when the setup asks for ``inputAudioTranscription`` /
  ``outputAudioTranscription``.

Tests script model turns with ``Say``/``Call``, make the caller speak or barge in,
send ``goAway``, drop the socket with any close code, expire handles and send raw
frames::

    async with GeminiServer() as server:
        client = genai.Client(api_key="test", http_options=server.http_options())
        server.queue(Say("Hello there"))
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.genai import types
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .gemini_script import Call, Say, Step
from .gemini_session import GeminiSession, message_kind

__all__ = ["Call", "GeminiServer", "GeminiSession", "Say"]

_PATH = "/ws/google.ai.generativelanguage.{}.GenerativeService.BidiGenerateContent"
_VERSIONS = ("v1alpha", "v1beta", "v1")


def _tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client
    context that trusts exactly that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callstate loopback")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


class GeminiServer:
    """The loopback server: one ``GeminiSession`` per websocket connection."""

    def __init__(self, *, issue_handles: bool = True) -> None:
        """``issue_handles=False``: no ``sessionResumptionUpdate`` is ever sent, as on a
        connection that drops before the server's first one."""
        self.issue_handles = issue_handles
        self.script: deque[Step] = deque()
        self.sessions: list[GeminiSession] = []
        #: resumption handle -> the conversation it resumes
        self.handles: dict[str, list[dict[str, Any]]] = {}
        self._lose: str | None = None  # the kind of client message to lose with the line
        self.received: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self._tick = asyncio.Event()
        self._server: Server | None = None
        self._tls, self.client_ssl = _tls()

    def http_options(self, *, api_version: str = "v1beta") -> types.HttpOptions:
        """The ``http_options`` to give ``genai.Client``: this server's URL and certificate."""
        if self._server is None:
            msg = "the server is not started: use `async with GeminiServer()`"
            raise RuntimeError(msg)
        port = next(iter(self._server.sockets)).getsockname()[1]
        return types.HttpOptions(
            base_url=f"https://127.0.0.1:{port}",
            api_version=api_version,
            async_client_args={"ssl": self.client_ssl},
        )

    @property
    def current(self) -> GeminiSession:
        """The most recent connection's session."""
        return self.sessions[-1]

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0, ssl=self._tls, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is None:
            return
        for s in self.sessions:
            s.stop()
        self._server.close()
        await self._server.wait_closed()

    def queue(self, *steps: Step) -> None:
        """Script the next model turns, in order."""
        self.script.extend(steps)

    def resume(self) -> None:
        """Let a ``Say(pause_after=...)`` that is waiting carry on."""
        self.gate.set()

    def notify(self) -> None:
        """Wake ``wait_for`` callers: the server's state changed."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_for(self, predicate: Callable[[], Any], limit: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (``limit`` seconds is a safety net, never pacing)."""
        async with asyncio.timeout(limit):
            while not predicate():
                await self._tick.wait()

    async def wait_sessions(self, n: int) -> GeminiSession:
        """Wait until the ``n``-th connection has finished its setup; return its session."""
        await self.wait_for(lambda: len(self.sessions) >= n and self.sessions[n - 1].setup)
        return self.sessions[n - 1]

    async def user_speaks(self, text: str, *, respond: bool = True) -> None:
        """The caller says ``text`` (server-side voice detection); the model answers when
        ``respond``. Talking over a model turn interrupts it first."""
        await self.current.caller_turn(text, respond=respond)

    async def barge_in(self) -> None:
        """The caller starts talking over the model: ``interrupted`` (and a
        ``toolCallCancellation`` for a call the turn waits on)."""
        await self.current.barge_in()

    async def go_away(self, time_left: str = "10s") -> None:
        """Tell the client the connection will end soon (``goAway`` with ``timeLeft``)."""
        away = types.LiveServerGoAway(time_left=time_left)
        await self.current.send(types.LiveServerMessage(go_away=away))

    def expire_handles(self) -> None:
        """Every resumption handle issued so far stops being valid."""
        self.handles.clear()

    async def drop(self, code: int | None = None) -> None:
        """Drop the current connection: abort TCP (``None``, seen as 1006) or close with ``code``."""
        s = self.current
        s.closed = True
        s.stop()
        if code is None:
            s.ws.transport.abort()
        else:
            await s.ws.close(code, "dropped by test")

    def lose_next(self, kind: str) -> None:
        """The next client message of ``kind`` (``toolResponse``, ``clientContent``...)
        is lost with the line: the connection drops (1006) before the server reads it."""
        self._lose = kind

    async def send_raw(self, frame: str) -> None:
        """Send one raw text frame to the current client (malformed on purpose, say)."""
        await self.current.ws.send(frame)

    async def _handle(self, ws: ServerConnection) -> None:
        req = ws.request
        paths = {_PATH.format(v) for v in _VERSIONS}
        if req is None or req.path not in paths or not req.headers.get("x-goog-api-key"):
            await ws.close(1008, "bad path or missing x-goog-api-key")
            return
        session = GeminiSession(self, ws)
        self.sessions.append(session)
        self.notify()
        try:
            async for raw in ws:
                if session.closed:
                    break
                if self._lose is not None and message_kind(raw) == self._lose:
                    self._lose = None
                    await self.drop()
                    break
                await session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            session.stop()
            self.notify()
