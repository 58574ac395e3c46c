"""Continuity for the Realtime adapter: restoring into new sessions, rollover, handoff.

A Realtime session cannot be resumed server-side: every restore opens (or, after the
SDK's own re-dial, finds) an empty session and replays the conversation into it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...continuity.plan import plan
from ...session import Session
from .._fenced import Fence
from .._heard import heard_text
from .._held import open_link
from .._replay import cut_note, merge_config, replay, without_voice
from ._answers import REPLAYED
from ._api import ResumedEvent
from ._order import Playback

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

__all__ = ["Continuity", "RestoreStats"]

log = logging.getLogger("callstate.adapters.openai_realtime")


@dataclass
class RestoreStats:
    """Timings of the last restore, in ``time.perf_counter()`` seconds."""

    reason: str
    detected_at: float
    replay_sent_at: float = 0.0
    first_ack_at: float | None = None
    replayed: int = 0


class Continuity:
    """The restore, rollover and handoff half of ``RealtimeAdapter``."""

    callstate: Session
    config: dict[str, Any]
    connection: AsyncRealtimeConnection | None
    realtime_session_id: str | None
    restore_stats: RestoreStats | None
    playback: Playback | None
    max_session_s: float
    rollover_margin_s: float
    _ready: deque[Any]
    _fence: Fence
    _switching: bool
    _rt: int
    _rt_started: float
    _calls: set[str]
    _answered: set[str]
    _resolved: set[str]
    _texts: dict[str, str]
    _audio: dict[str, int]
    _replayed: set[str]
    _awaiting: set[str]
    _resumed: Any
    _swallow_updates: int
    _active: str | None
    _pending_create: str | None
    _speaking: bool
    _unfinished: list[str]
    _streaming: set[str]
    _groups: dict[str, set[str]]
    _responded: set[str]
    item_ids: dict[str, str]
    _marker: int
    _want: int | None
    _want_event: dict[str, Any] | None

    if TYPE_CHECKING:

        @property
        def _open(self) -> str | None: ...
        async def _dial(self) -> Any: ...
        def _release_all(self) -> None: ...
        def _played(self) -> tuple[str, int] | None: ...
        def _let_go(self, old: AsyncRealtimeConnection) -> None: ...
        def _given(self, call_id: str) -> None: ...
        def _watch(self) -> None: ...
        def _reset_realtime(self) -> None: ...
        def _state_item(self, item_id: str) -> Any: ...
        def _finish_open(self) -> None: ...
        async def _send_internal(self, event: dict[str, Any]) -> str: ...
        async def _raw_send(self, event: dict[str, Any]) -> None: ...
        async def _sync_outputs(self) -> None: ...
        async def _try_response(self) -> None: ...
        def _stamp(self, event: dict[str, Any], internal: bool) -> str: ...

    def _sdk_redial_then(self, user_cb: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap the SDK's ``on_reconnecting``: hold the session until ``session.created``."""

        def hook(event: Any) -> Any:
            self._switching = True
            if not self.callstate.on_hold:
                self.callstate.connection_lost("websocket closed; the SDK is re-dialling")
            return user_cb(event)

        return hook

    async def _maybe_rollover(self) -> None:
        if self._switching or self.connection is None:
            return
        age = self.callstate.keeper.clock.now() - self._rt_started
        if age < self.max_session_s - self.rollover_margin_s:
            return
        if self._active or self._pending_create or self._speaking:
            return  # wait for a quiet moment
        await self._restore("rollover")

    async def _restore(
        self, reason: str, *, close_code: int | None = None, created: Any = None
    ) -> None:
        """Carry the conversation into a new Realtime session (see the package docstring)."""
        stats = RestoreStats(reason=reason, detected_at=time.perf_counter())
        self._switching = True
        self._release_all()  # the state must hold every turn before it is replayed
        s = self.callstate
        if reason in ("drop", "new_session") and not s.on_hold:
            s.connection_lost(f"{reason} (close code {close_code})" if close_code else reason)
        cut = self._settle_cut()
        old, old_id = self.connection, self.realtime_session_id
        if created is None:
            await self._dial()
        else:
            self.realtime_session_id = getattr(created.session, "id", None)
        lost_at = s.state.link_lost_at
        gap = max(0.0, s.keeper.clock.now() - lost_at) if lost_at is not None else 0.0
        note = plan(s.state, gap_s=gap, via="resume").resume_note
        if cut is not None:
            note = f"{note} {cut_note(self._state_item(cut))}"
        self.restore_stats = stats
        await self._replay_into(
            reason, note=note, gap=gap, stats=stats, close_code=close_code, old_id=old_id, cut=cut
        )
        if old is not None and old is not self.connection:
            self._let_go(old)

    def _settle_cut(self) -> str | None:
        """Record how much of an utterance cut mid-stream the caller heard; returns its id."""
        uid = self._open
        item = self._state_item(uid) if uid is not None else None
        if uid is None or item is None or item.done:
            return None
        text = self._texts.get(uid, item.text)
        heard = text
        played = self._played()
        if played is not None and played[0] != uid and played[0] in self._unfinished:
            heard = ""  # an earlier item was still playing: none of this one was heard
        elif played is not None and played[0] == uid:
            heard = heard_text(text, played[1], self._audio.get(uid, 0))
        if uid not in self._streaming and heard == text:
            self._finish_open()  # it had all arrived and played: nothing was cut
            return None
        if heard != item.spoken or text != item.text:
            self.callstate.agent_progress(uid, spoken_text=heard, text=text)
        return uid

    async def _replay_into(
        self,
        reason: str,
        *,
        note: str,
        gap: float,
        stats: RestoreStats | None = None,
        close_code: int | None = None,
        old_id: str | None = None,
        cut: str | None = None,
    ) -> None:
        s = self.callstate
        self._switching = True
        self._reset_realtime()
        rep = replay(s.state, config=self.config, note=note, prefix=f"cs{self._rt}i")
        self._calls, self._answered = set(rep.calls), set(rep.answered)
        self._resolved = set(rep.answered)  # a call still running resolves when it lands
        self._groups, self._responded = {REPLAYED: rep.calls - rep.answered}, {REPLAYED}
        self.item_ids = dict(rep.ids)
        self._replayed = set(rep.item_ids)
        self._awaiting = set(rep.item_ids)
        if self.config:
            self._swallow_updates += 1
        if stats is not None:
            stats.replayed = len(rep.item_ids)
        for event in rep.events:
            await self._send_internal(event)
        for call_id in sorted(rep.answered):
            self._given(call_id)
        if stats is not None:
            stats.replay_sent_at = time.perf_counter()
        if cut is not None:
            item = self._state_item(cut)
            # the drop ended the utterance where the caller stopped hearing it
            s.agent_finished(cut, text=item.spoken if item is not None else "")
        if rep.needs_answer or cut is not None:
            self._want, self._want_event = self._marker, None
        await self._open_link()
        self._resumed = ResumedEvent(
            reason=reason,
            old_session_id=old_id,
            new_session_id=self.realtime_session_id,
            replayed=len(rep.item_ids),
            outputs=sorted(rep.answered),
            item_ids=dict(rep.ids),
            close_code=close_code,
            gap_s=gap,
        )
        await self._sync_outputs()
        await self._try_response()

    async def _open_link(self) -> None:
        """Take the session off hold and send what its outbox kept, in order.

        Client events go out as they were queued. Speech held while the link was down
        (here, or on the worker the call was resumed from) was never heard: its
        utterances end with nothing heard, and one response asks the model to say it,
        so what the caller hears is recorded as it plays, like any reply.
        """
        kept, say = open_link(self.callstate)
        self._switching = False
        for entry in kept:
            if isinstance(entry, dict) and isinstance(entry.get("type"), str):
                await self._raw_send(entry)
            else:
                log.warning("callstate: an outbox entry that is no Realtime event: %r", entry)
        if say is not None:
            event = {"type": "response.create", "response": {"instructions": say}}
            self._stamp(event, True)
            self._want, self._want_event = self._marker, event

    # -- handoff ---------------------------------------------------------------------------

    async def handoff(
        self,
        *,
        to: str,
        config: dict[str, Any] | None = None,
        reason: str = "",
        summary: str | None = None,
    ) -> Session:
        """Hand the call to agent ``to`` in this process and switch the Realtime session to it.

        The session is offered and accepted (epoch+1; see ``Session.handoff``), then a
        ``session.update`` with ``config`` (the new agent's instructions and tools)
        and the handoff note go to the same Realtime session, whose conversation is
        already in place. Later resumes replay with the new agent's config. A new voice
        takes effect from the next Realtime session: the API refuses a voice change
        once the session has sent assistant audio.

        Returns:
            The accepted session, now ``adapter.callstate``.
        """
        self._release_all()
        self._finish_open()  # the old handle freezes with the offer
        with self._fence.moving():  # accepting fences the old handle: no takeover
            package = await self.callstate.handoff(to=to, reason=reason, summary=summary)
            accepted = await self.callstate.keeper.accept(package)
            self.callstate = accepted
        self._watch()  # the accepted handle is where outcomes land from now on
        if config:
            self.config = merge_config(self.config, config)
            session = {"type": self.config.get("type", "realtime"), **config}
            if any(self._audio.values()):
                session = without_voice(session)
            await self._send_internal({"type": "session.update", "session": session})
            self._swallow_updates += 1
        note = getattr(accepted.recovery, "resume_note", "") or ""
        if note:
            part = {"type": "input_text", "text": note}
            item = {"type": "message", "role": "system", "content": [part]}
            await self._send_internal({"type": "conversation.item.create", "item": item})
        self._ready.append(
            ResumedEvent(
                reason="handoff",
                old_session_id=self.realtime_session_id,
                new_session_id=self.realtime_session_id,
                replayed=0,
            )
        )
        return accepted
