"""A loopback TCP proxy that loses replies, delays them and resets connections.

Put it between a store and a real Redis or PostgreSQL server to see what the store does
when the network fails at the worst moment::

    async with FaultProxy(6379, seed=7, drop_reply=0.05, reset_request=0.02) as proxy:
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0")
        ...
    print(proxy.dropped, proxy.resets, proxy.delayed)

A *dropped reply* is the fault that matters most: the request reached the server and
was carried out, then the proxy swallows the server's answer and resets both
connections, so the client cannot tell a write that happened from one that did not.
A *reset request* resets the connections before a request is forwarded (nothing
reached the server). A *delayed reply* is held back ``delay_s`` seconds, then sent.

The proxy only ever listens on and connects to loopback, and it is bounded: at most
``max_connections`` connections at a time, at most ``max_faults`` faults in all (then
it forwards faithfully), and after ``lifetime`` seconds it stops by itself. Faults are
drawn from ``random.Random(seed)`` in the order data arrives, so a seed reproduces a
run's fault shares, not its exact timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
from types import TracebackType

from ..errors import ConfigError

__all__ = ["FaultProxy"]

_LOOPBACK_NAMES = ("localhost",)


def _check_loopback(host: str) -> None:
    if host in _LOOPBACK_NAMES:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        msg = (
            f"FaultProxy forwards to loopback only: target_host {host!r} is not a loopback address"
        )
        raise ConfigError(msg)


def _check_share(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        msg = f"FaultProxy {name} must be a share between 0 and 1, got {value!r}"
        raise ConfigError(msg)
    return float(value)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (no FIN, no flush), as a broken network does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port``, injecting faults.

    Args:
        target_port: the real server's port.
        target_host: the real server's address; loopback only.
        seed: seeds the fault draws.
        drop_reply: share of server replies swallowed, both connections then reset
            (the server did carry out the request).
        delay_reply: share of server replies held back ``delay_s`` seconds.
        reset_request: share of client requests answered by resetting both connections
            instead of forwarding them.
        delay_s: how long a delayed reply waits.
        spare_first: replies at the start of each connection passed untouched (with the
            requests before them), so connection handshakes complete.
        max_faults: faults in all before the proxy forwards faithfully; None: no limit.
        max_connections: connections open at once; more are reset on arrival.
        lifetime: seconds after ``start()`` at which the proxy stops by itself.

    Raises:
        ConfigError: a share outside [0, 1], a non-loopback target, or a bad bound.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        *,
        seed: int = 0,
        drop_reply: float = 0.0,
        delay_reply: float = 0.0,
        reset_request: float = 0.0,
        delay_s: float = 0.05,
        spare_first: int = 1,
        max_faults: int | None = None,
        max_connections: int = 256,
        lifetime: float = 600.0,
    ) -> None:
        _check_loopback(target_host)
        self.target = (target_host, target_port)
        self.drop_reply = _check_share("drop_reply", drop_reply)
        self.delay_reply = _check_share("delay_reply", delay_reply)
        self.reset_request = _check_share("reset_request", reset_request)
        for name, value in (
            ("delay_s", delay_s),
            ("lifetime", lifetime),
            ("spare_first", spare_first),
            ("max_connections", max_connections),
            ("max_faults", 0 if max_faults is None else max_faults),
        ):
            if not isinstance(value, (int, float)) or value < 0:
                msg = f"FaultProxy {name} must be a number >= 0, got {value!r}"
                raise ConfigError(msg)
        self.delay_s = float(delay_s)
        self.spare_first = int(spare_first)
        self.max_faults = max_faults
        self.max_connections = max_connections
        self.lifetime = float(lifetime)
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Task[None] | None = None  # the lifetime's stop
        self._lose: list[int] = []  # countdowns of replies to lose on demand
        #: Whether the random faults are drawn; False forwards faithfully (on-demand
        #: faults from :meth:`lose_reply` still happen).
        self.faults_on = True
        #: The port the proxy listens on (after ``start()``).
        self.port = 0
        #: Replies swallowed, replies delayed, requests reset, connections accepted.
        self.dropped = 0
        self.delayed = 0
        self.resets = 0
        self.connections = 0

    @property
    def faults(self) -> int:
        """Faults injected so far (dropped replies, delayed replies, reset requests)."""
        return self.dropped + self.delayed + self.resets

    @property
    def running(self) -> bool:
        """True from ``start()`` until the proxy stopped."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port) and arm the lifetime."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.lifetime, self._expire)

    async def stop(self) -> None:
        """Stop listening and reset every open connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._links):
            _reset(w)
        self._links.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _expire(self) -> None:
        self._timer = None
        self._stopping = asyncio.get_running_loop().create_task(self.stop())

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def lose_reply(self, after: int = 0) -> None:
        """Swallow one server reply on demand: the one after the next ``after`` replies
        (spared handshake replies are not counted)."""
        self._lose.append(int(after))

    # -- forwarding ----------------------------------------------------------------------

    def _draw(self, share: float) -> bool:
        if not self.faults_on or share <= 0.0:
            return False
        if self.max_faults is not None and self.faults >= self.max_faults:
            return False
        return self._random.random() < share

    def _lose_now(self) -> bool:
        """Count one reply down on every on-demand loss; True if one falls due."""
        due = 0 in self._lose
        if due:
            self._lose.remove(0)
        self._lose = [n - 1 for n in self._lose]
        return due

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if len(self._links) >= 2 * self.max_connections or self._server is None:
                _reset(writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)
                return
            self.connections += 1
            self._links.update((writer, up_writer))
            await self._pump_both(reader, writer, up_reader, up_writer)
        except asyncio.CancelledError:
            # stopped: end quietly (asyncio's stream server would log a cancelled task)
            _reset(writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _pump_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        replies = 0
        faulted = False

        async def requests() -> None:
            nonlocal faulted
            while data := await reader.read(65536):
                if replies >= self.spare_first and self._draw(self.reset_request):
                    self.resets += 1
                    faulted = True
                    return
                up_writer.write(data)
                await up_writer.drain()

        async def answers() -> None:
            nonlocal replies, faulted
            while data := await up_reader.read(65536):
                replies += 1
                if replies > self.spare_first:
                    if self._lose_now() or self._draw(self.drop_reply):
                        self.dropped += 1
                        faulted = True
                        return
                    if self._draw(self.delay_reply):
                        self.delayed += 1
                        await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.ensure_future(requests()), asyncio.ensure_future(answers())]
        try:
            # either side ending (a fault, or a peer closing) ends the link
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in (writer, up_writer):
                if faulted:
                    _reset(w)
                else:
                    w.close()
                self._links.discard(w)
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
