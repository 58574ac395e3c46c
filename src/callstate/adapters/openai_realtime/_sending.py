"""Sending client events: stamped, remembered for errors, held or queued across switches."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

from ...session import Session
from .._replay import merge_config

__all__ = ["Sending"]

_SENT_MEMORY = 1024  # client events remembered for mapping errors back


class Sending:
    """The sending half of ``RealtimeAdapter``."""

    callstate: Session
    config: dict[str, Any]
    connection: AsyncRealtimeConnection | None
    item_ids: dict[str, str]
    _sent: OrderedDict[str, dict[str, Any]]
    _internal: set[str]
    _n: int
    _rt: int
    _switching: bool
    _marker: int
    _want: int | None
    _want_event: dict[str, Any] | None
    _answered: set[str]

    if TYPE_CHECKING:

        def _finish_open(self) -> None: ...
        def _later(self, op: Callable[[], None]) -> None: ...
        def _user_said(self, text: str) -> None: ...
        async def _truncate(
            self, item_id: str, played_ms: int, event: dict[str, Any] | None
        ) -> None: ...
        async def _try_response(self) -> None: ...

    def source_of(self, error: Any) -> dict[str, Any] | None:
        """The client event an ``error`` server event answers (matched by ``event_id``)."""
        eid = getattr(getattr(error, "error", None), "event_id", None)
        return self._sent.get(eid) if eid else None

    # -- sending -----------------------------------------------------------------------

    def _stamp(self, event: dict[str, Any], internal: bool) -> str:
        eid = event.get("event_id")
        if not isinstance(eid, str) or not eid:
            self._n += 1
            eid = event["event_id"] = f"cs_{self._rt}_{self._n}"
        self._sent[eid] = event
        if len(self._sent) > _SENT_MEMORY:
            old, _ = self._sent.popitem(last=False)
            self._internal.discard(old)
        if internal:
            self._internal.add(eid)
        return eid

    async def _send_internal(self, event: dict[str, Any]) -> str:
        eid = self._stamp(dict(event), True)
        await self._raw_send(self._sent[eid])
        return eid

    async def _raw_send(self, event: dict[str, Any]) -> None:
        if self.connection is None:
            msg = "use the adapter as an async context manager (async with connect(...))"
            raise RuntimeError(msg)
        try:
            # events are plain JSON already: skip the SDK's per-event TypedDict transform
            await self.connection.send_raw(json.dumps(event))
        except ConnectionClosed:
            # the receive loop sees the close and restores; audio waits in the outbox
            if event["type"].startswith("input_audio_buffer."):
                self.callstate.outbox.send(event)

    async def send(self, event: dict[str, Any]) -> None:
        """Send a client event (a dict, as for ``AsyncRealtimeConnection.send``).

        The adapter stamps an ``event_id``, keeps ``session.update`` for resumes,
        records user text turns, answers each ``call_id`` once, clamps truncation to the
        audio received and holds ``response.create`` while a response is active.
        Once the session was fenced (the ``FencedEvent``) events are dropped: the call
        goes on where the newer owner holds it.
        """
        if self.callstate.fenced:
            return
        event = dict(event)
        self._stamp(event, False)
        t = event.get("type")
        item = event.get("item") or {}
        if t == "session.update":
            self.config = merge_config(self.config, event.get("session") or {})
        elif t == "conversation.item.create" and item.get("role") == "user":
            text = " ".join(
                p.get("text", "") for p in item.get("content", []) if p.get("type") == "input_text"
            )
            if text:
                self._finish_open()
                self._marker += 1
                self._later(lambda: self._user_said(text))
        elif t == "conversation.item.create" and item.get("type") == "function_call_output":
            if item.get("call_id") in self._answered:
                return  # each call id is answered once per Realtime session
            self._answered.add(item.get("call_id", ""))
        elif t == "conversation.item.truncate":
            await self._truncate(event["item_id"], int(event["audio_end_ms"]), event)
            return
        if isinstance(event.get("item_id"), str):  # a callstate id of a replayed item
            event["item_id"] = self.item_ids.get(event["item_id"], event["item_id"])
        elif t == "response.create":
            self._want, self._want_event = self._marker, event
            await self._try_response()
            return
        if self._switching or self.callstate.on_hold:
            if str(t).startswith("input_audio_buffer."):
                self.callstate.outbox.send(event)
            return  # the replay carries config, items and outputs into the next session
        await self._raw_send(event)

    async def _send_truncate(self, event: dict[str, Any], internal: bool) -> None:
        if internal:
            await self._send_internal(event)
        elif not (self._switching or self.callstate.on_hold):
            self._sent[event["event_id"]] = event
            await self._raw_send(event)
