"""The host: what a keeper shares with every capability it composes.

One ``Host`` per keeper holds the store, the clock, this process's owner id and
lease, the resume settings, the signing secrets, the recovery-event observer, the
group-commit flusher and the registry of live handles. Capabilities are handed the
host (and each other) by the keeper; none of them knows ``Keeper`` or ``Session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..journal.limits import Limits
from .flusher import Flusher

if TYPE_CHECKING:
    from ..observe.recovery import Observer, RecoveryKind
    from ..sealing import Sealer
    from ..storage.base import Store
    from .clock import Clock
    from .handle import Handle

__all__ = ["Host"]

#: Keys the caller index with this when the keeper has no secret (hashes, not numbers).
_NO_SECRET = b"callstate-caller-index"


class Host:
    """Shared services of one keeper (see the module docstring).

    Attributes:
        handles: the live handles this keeper owns, by session id.
        tasks: background tasks to cancel when the keeper closes.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        owner: str,
        secrets: list[bytes],
        observer: Observer,
        flusher: Flusher,
        lease_ttl: float,
        resume_window: float,
        token_ttl: float,
        purge_after: float,
        outbox_limit: int,
        limits: Limits | None = None,
        sealer: Sealer | None = None,
        plaintext_callers: bool = False,
        personal: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.secrets = secrets
        self.observer = observer
        self.flusher = flusher
        self.lease_ttl = lease_ttl
        self.resume_window = resume_window
        self.token_ttl = token_ttl
        self.purge_after = purge_after
        self.outbox_limit = outbox_limit
        #: the depth and size limits every recorded event is held to
        self.limits = limits or Limits()
        #: seals caller data at rest (None without a secret)
        self.sealer = sealer
        self.plaintext_callers = plaintext_callers
        #: userdata keys every session keeps personal (sealed at rest)
        self.personal = tuple(personal)
        self.handles: dict[str, Handle] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def emit(
        self,
        kind: RecoveryKind,
        session_id: str,
        *,
        call_id: str | None = None,
        latency_ms: float | None = None,
        **data: Any,
    ) -> None:
        """Emit a ``RecoveryEvent`` to the sinks (never blocks, never raises)."""
        self.observer.note(
            kind,
            session_id,
            at=self.clock.now(),
            call_id=call_id,
            latency_ms=latency_ms,
            data=data,
        )

    def check_sealable(self, what: str) -> None:
        """Refuse to store caller data in the clear unless the keeper opted in.

        Raises:
            ConfigError: no secret to seal with and no ``plaintext_callers=True``.
        """
        if self.sealer is None and not self.plaintext_callers:
            msg = (
                f"{what} would be stored in the clear: set Keeper(secret=...) to encrypt "
                "caller data at rest, or pass Keeper(plaintext_callers=True) to store it as is"
            )
            raise ConfigError(msg)

    def caller_hash(self, caller: str | None) -> str | None:
        """The caller's keyed hash under the signing secret (None for no caller)."""
        return None if caller is None else self.caller_hashes(caller)[0]

    def caller_hashes(self, caller: str) -> list[str]:
        """The caller's keyed hash under every configured secret (rotation)."""
        keys = self.secrets or [_NO_SECRET]
        return [hmac.new(k, caller.encode(), hashlib.sha256).hexdigest() for k in keys]

    def adopt(self, handle: Handle) -> None:
        """Register ``handle`` as this keeper's live handle of its session."""
        self.handles[handle.id] = handle

    async def release(self, handle: Handle) -> None:
        """Forget ``handle`` and give up its lease (unless a newer owner fenced it)."""
        if not handle.closed:
            handle.emit("session.released", fenced=handle.error is not None)
        handle.mark_closed()
        if self.handles.get(handle.id) is handle:
            del self.handles[handle.id]
            if handle.error is None:
                with contextlib.suppress(Exception):
                    await self.store.release_lease(handle.id, self.owner)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` in the background until it ends or the keeper closes."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task
