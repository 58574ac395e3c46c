"""The ways back into a stored session: load it, preflight it, resume it by token, id or
caller, and refresh its token.

``Entry`` is what the keeper forwards these to. It checks (``resume``), takes ownership
(``Ownership.take_over``), issues the fresh token for the new epoch and reports the
resume; it returns an ``Owned`` (the handle, its plan, the in-doubt decisions, the
token) for the facade to attach.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Generic

from ..errors import ConfigError
from ..storage.base import not_found, stale_claim, storable_text
from .ownership import H, Owned, Ownership
from .restore import restore_state
from .resume import (
    Stored,
    check_resumable,
    find_caller_session,
    fresh_token,
    preflight,
    refresh_token,
)

if TYPE_CHECKING:
    from ..journal.state import SessionState
    from ..runtime.host import Host
    from ..storage.base import SessionRecord
    from .plan import Preflight
    from .sweep import Sweeper

__all__ = ["Entry"]


class Entry(Generic[H]):
    """Loading, preflight, resume and token refresh for one keeper.

    Args:
        host: the keeper's shared services.
        ownership: takes the sessions over.
        sweeper: expires a session a resume finds past its window.
        after_end: a resume token may resume a call that ended (within the window).
    """

    def __init__(
        self, host: Host, ownership: Ownership[H], sweeper: Sweeper, *, after_end: bool
    ) -> None:
        if not isinstance(after_end, bool):
            msg = f"resume_after_end must be a bool, got {after_end!r}"
            raise ConfigError(msg)
        self._host = host
        self._ownership = ownership
        self._sweeper = sweeper
        self.after_end = after_end

    async def load(self, session_id: str) -> SessionState:
        """A session's state as stored, without taking ownership (``Keeper.load``)."""
        if not storable_text(session_id):  # no store holds such an id
            raise not_found(session_id)
        return restore_state(await self._host.store.load(session_id), self._host.sealer)

    async def preflight(self, token_or_id: str, *, caller: str | None = None) -> Preflight:
        """What ``resume`` would answer, taking nothing (``Keeper.preflight``)."""
        return await preflight(self._host, token_or_id, caller=caller, after_end=self.after_end)

    async def refresh_token(self, token: str, *, ttl: float | None = None) -> str:
        """A fresh token for the session and epoch ``token`` names (``Keeper.refresh_token``)."""
        return await refresh_token(self._host, token, ttl=ttl, after_end=self.after_end)

    async def resume(
        self,
        token_or_id: str,
        *,
        caller: str | None = None,
        via: str = "resume",
        expected_epoch: int | None = None,
        takeover: bool = False,
    ) -> Owned[H]:
        """Check, then take the session at epoch+1 (``Keeper.resume`` says what it raises)."""
        t0 = time.perf_counter()
        rec, claims, stored = await check_resumable(
            self._host,
            token_or_id,
            caller=caller,
            expire=self._sweeper,
            takeover=takeover,
            after_end=self.after_end,
        )
        if expected_epoch is not None and expected_epoch != rec.epoch:
            raise stale_claim(rec.session_id, expected_epoch, rec.epoch)
        channel = "token" if claims else "id"
        bind = claims.caller_bound if claims else True
        return await self._take_over(rec, t0, via=via, channel=channel, stored=stored, bind=bind)

    async def resume_caller(self, caller: str) -> Owned[H] | None:
        """Take the caller's most recent resumable session, or None (``Keeper.resume_caller``)."""
        t0 = time.perf_counter()
        rec = await find_caller_session(self._host, caller)
        if rec is None:
            return None
        return await self._take_over(rec, t0, via="resume", channel="caller")

    async def _take_over(
        self,
        rec: SessionRecord,
        t0: float,
        *,
        via: str,
        channel: str,
        stored: Stored | None = None,
        bind: bool = True,
    ) -> Owned[H]:
        """Claim ``rec`` at epoch+1, restore it, record the new ownership, issue its token
        and report the resume (``stored``: the session as the checks loaded it, if they did)."""
        owned = await self._ownership.take_over(
            rec.session_id, rec.epoch, via=via, channel=channel, previous=rec, stored=stored
        )
        session = owned.handle
        token = fresh_token(self._host, session, bind=bind)
        session.emit(
            "session.resumed",
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            gap_s=owned.plan.gap_s,
            via=via,
            channel=channel,
            epoch=session.state.epoch,
        )
        return dataclasses.replace(owned, token=token)
