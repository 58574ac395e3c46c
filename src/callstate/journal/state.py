"""SessionState and the fold: the live state of a session is a pure fold of its events.

``apply(state, event)`` advances a state by one event in place (the hot path owns its
state and must not copy it per event); ``fold(events, base)`` never touches ``base``.
An ``Item`` already in ``state.items`` is never changed: an update puts a new item in
its place, so a shallow copy of the list keeps the conversation as it stood.
Folding a snapshot of any prefix and then the tail equals folding everything.

``SessionState`` and the data it holds are defined in ``session_state`` and importable
from here. Snapshots of a state (a cache of the fold) are encoded in ``callstate.snapshot``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, cast

import msgspec

from . import events as ev
from .session_state import SNAPSHOT_VERSION, TERMINAL, Held, Item, SessionState, ToolCall

__all__ = [
    "SNAPSHOT_VERSION",
    "TERMINAL",
    "Held",
    "Item",
    "SessionState",
    "ToolCall",
    "apply",
    "copy_state",
    "fold",
]


def _find(state: SessionState, kind: str, item_id: str | None) -> int:
    """The index of the newest ``kind`` item with ``item_id``, or -1."""
    if item_id is not None:
        items = state.items
        for i in range(len(items) - 1, -1, -1):
            item = items[i]
            if item.id == item_id and item.kind == kind:
                return i
    return -1


_replace: Final = msgspec.structs.replace


def _interaction(state: SessionState, at: float) -> None:
    if at > state.last_interaction_at:
        state.last_interaction_at = at


def _call(state: SessionState, call_id: str) -> ToolCall | None:
    return state.calls.get(call_id)


def _owe(state: SessionState, call_id: str) -> None:
    """An outcome landed: it is owed to the model until an adapter gives it."""
    if call_id not in state.owed_to_model:
        state.owed_to_model.append(call_id)


#: Events kept in ``SessionState.recovery_log``: what the archive reports per call.
_LOGGED: Final = (
    ev.Interrupted,
    ev.ToolInDoubt,
    ev.ToolDelivery,
    ev.ToolCancelled,
    ev.ToolDeduplicated,
    ev.LinkLost,
    ev.LinkRestored,
    ev.OutboxDropped,
    ev.SessionResumed,
    ev.SessionExpiredEvent,
    ev.HandoffOffered,
    ev.HandoffAccepted,
    ev.HandoffReclaimed,
)
_RUN_VIA: Final = {
    ev.SessionStarted: "start",
    ev.HandoffAccepted: "handoff",
    ev.HandoffReclaimed: "reclaim",
}
_RUN_STARTS: Final = (
    ev.SessionStarted,
    ev.SessionResumed,
    ev.HandoffAccepted,
    ev.HandoffReclaimed,
)
# isinstance against a msgspec struct class costs ~0.15 us a class; the hot path's events
# (speech, tools) skip _track's checks with one set lookup of their exact type instead
_TRACKED: Final = frozenset({*_LOGGED, ev.SessionEnded, *_RUN_STARTS})
_LOGGED_TYPES: Final = frozenset(_LOGGED)
_RUN_START_TYPES: Final = frozenset(_RUN_STARTS)


def _track(state: SessionState, event: ev.Event) -> None:
    """Archive book-keeping: the recovery log and where the current run began."""
    kind = type(event)  # event classes are never subclassed: exact types suffice
    if kind not in _TRACKED:
        return
    if kind in _LOGGED_TYPES:
        state.recovery_log.append(event)
    if kind is ev.SessionEnded:
        state.end_failed = cast("ev.SessionEnded", event).failed
    elif kind in _RUN_START_TYPES and isinstance(event, _RUN_STARTS):
        state.run_seq = event.seq
        state.run_items = len(state.items)
        state.run_started_at = event.at
        state.run_via = event.via if isinstance(event, ev.SessionResumed) else _RUN_VIA[type(event)]
        state.end_failed = False


def _queued(state: SessionState, event: ev.OutboxQueued) -> None:
    uid = event.utterance_id
    held = Held(message=event.message, utterance_id=uid, text=event.text, at=event.at)
    if uid is not None:
        for i, entry in enumerate(state.outbox):
            if entry.utterance_id == uid:  # held speech queued again: its text grew
                state.outbox[i] = msgspec.structs.replace(entry, text=event.text)
                return
    del state.outbox[: event.dropped]
    state.outbox.append(held)


def _user_partial(state: SessionState, event: ev.UserPartial) -> None:
    state.partial = event.text
    if event.at > state.last_interaction_at:  # _interaction, inlined: the hottest event
        state.last_interaction_at = event.at


def _user_turn(state: SessionState, event: ev.UserTurn) -> None:
    state.items.append(Item(kind="user", text=event.text, at=event.at, done=True))
    state.partial = ""
    state.turn += 1
    if event.at > state.last_interaction_at:  # _interaction, inlined (as below)
        state.last_interaction_at = event.at


def _agent_started(state: SessionState, event: ev.AgentStarted) -> None:
    uid = event.utterance_id
    state.items.append(Item(kind="assistant", id=uid, text=event.text, at=event.at))
    state.current_utterance = uid
    state.unspoken = ""
    if event.at > state.last_interaction_at:
        state.last_interaction_at = event.at


def _agent_progress(state: SessionState, event: ev.AgentProgress) -> None:
    i = _find(state, "assistant", event.utterance_id)
    if i >= 0:
        item = state.items[i]
        text = item.text if event.text is None else event.text
        state.items[i] = _replace(item, spoken=event.spoken_text, text=text)
    if event.at > state.last_interaction_at:
        state.last_interaction_at = event.at


def _agent_finished(state: SessionState, event: ev.AgentFinished) -> None:
    uid = event.utterance_id
    i = _find(state, "assistant", uid)
    if i >= 0:
        item = state.items[i]
        text = item.text if event.text is None else event.text
        state.items[i] = _replace(item, text=text, spoken=text, done=True)
    if state.current_utterance == uid:
        state.current_utterance = None
    if event.at > state.last_interaction_at:
        state.last_interaction_at = event.at


# the hot path's speech events, by exact type: one dict lookup instead of walking the
# match below (a failed class pattern is an isinstance, ~0.06 us each); none is _TRACKED
_SPEECH: Final[dict[type, Any]] = {
    ev.UserPartial: _user_partial,
    ev.UserTurn: _user_turn,
    ev.AgentStarted: _agent_started,
    ev.AgentProgress: _agent_progress,
    ev.AgentFinished: _agent_finished,
}


def apply(state: SessionState, event: ev.Event) -> SessionState:
    """Advance ``state`` by one event, in place, and return it."""
    state.seq = event.seq
    speech = _SPEECH.get(type(event))
    if speech is not None:
        speech(state, event)
        return state
    match event:
        case ev.Interrupted():
            i = _find(state, "assistant", event.utterance_id)
            if i >= 0:
                heard = event.heard_text
                state.items[i] = _replace(
                    state.items[i],
                    text=heard,
                    spoken=heard,
                    unspoken=event.unspoken_text,
                    interrupted=True,
                    done=True,
                )
            if event.utterance_id is not None and state.current_utterance == event.utterance_id:
                state.current_utterance = None
            state.unspoken = event.unspoken_text
            for call_id in event.overtaken:
                call = _call(state, call_id)
                if call is not None:
                    call.overtaken = True
                    call.overtaken_at = event.at
                    call.overtaken_turn = state.turn
            _interaction(state, event.at)
        case ev.ToolRequested():
            state.calls[event.call_id] = ToolCall(
                call_id=event.call_id,
                name=event.name,
                args=dict(event.args),
                effect=event.effect,
                idempotent=event.idempotent,
                on_interrupt=event.on_interrupt,
                compensate=event.compensate,
                timeout_s=event.timeout_s,
                utterance_id=event.utterance_id,
                turn=event.turn,
                compensates=event.compensates,
                wire_id=event.wire_id,
                requested_at=event.at,
            )
            state.items.append(Item(kind="call", id=event.call_id, at=event.at, done=True))
            _interaction(state, event.at)
        case ev.ToolStarted(call_id=cid):
            call = _call(state, cid)
            if call is not None:
                call.status = "started"
                call.attempts = event.attempt
                call.idempotency_key = event.idempotency_key
        case ev.ToolProgress(call_id=cid, data=data):
            call = _call(state, cid)
            if call is not None:
                call.progress = {**call.progress, **data}
        case ev.ToolDeduplicated(call_id=cid):
            call = _call(state, cid)
            if call is not None:
                call.status = event.status
                call.result = event.result
                call.error = event.error
                call.error_type = event.error_type
                call.duplicate_of = event.duplicate_of
                call.finished_at = event.at
        case ev.ToolSucceeded(call_id=cid):
            call = _call(state, cid)
            if call is not None:
                call.status = "succeeded"
                call.result = event.result
                call.finished_at = event.at
                _owe(state, cid)
        case ev.ToolFailed(call_id=cid):
            call = _call(state, cid)
            if call is not None:
                call.status = "failed"
                call.error = event.error
                call.error_type = event.error_type
                call.finished_at = event.at
                _owe(state, cid)
        case ev.ToolCancelled(call_id=cid):
            call = _call(state, cid)
            if call is not None:
                call.status = "cancelled"
                call.error = event.reason or None
                call.finished_at = event.at
                _owe(state, cid)
        case ev.ToolInDoubt(call_id=cid, resolution=resolution):
            call = _call(state, cid)
            if call is not None:
                call.in_doubt = True
                call.resolution = resolution
                if resolution == "unknown":
                    call.status = "unknown"
                    call.finished_at = event.at
                    _owe(state, cid)
                else:
                    call.status = "in_doubt"
        case ev.ToolContextDelivered(call_id=cid):
            if cid in state.owed_to_model:
                state.owed_to_model.remove(cid)
        case ev.ToolDelivery(call_id=cid, decision=decision):
            call = _call(state, cid)
            if call is not None:
                call.delivery = decision
        case ev.UserdataPatch():
            data = dict(state.userdata)
            data.update(event.set)
            for key in event.unset:
                data.pop(key, None)
            state.userdata = data
        case ev.LinkLost():
            state.on_hold = True
            state.link_lost_at = event.at
        case ev.LinkRestored():
            state.on_hold = False
            state.link_lost_at = None
        case ev.OutboxDropped(count=count):
            state.outbox_dropped += count
        case ev.OutboxQueued():
            _queued(state, event)
        case ev.OutboxSent(count=count):
            del state.outbox[:count]
        case ev.SessionStarted():
            state.session_id = event.session_id
            state.agent = event.agent
            state.caller = event.caller
            state.epoch = event.epoch
            state.started_at = event.at
            state.last_interaction_at = event.at
            state.userdata = dict(event.userdata)
            state.metadata = dict(event.metadata)
            state.personal = list(event.personal)
            state.status = "active"
        case ev.SessionResumed():
            state.epoch = event.epoch
            state.status = "active"
            state.resumes += 1
            state.ended_at = None
            state.end_reason = None
            # a resumed session is on hold until its transport says the link is open
            state.on_hold = True
            state.link_lost_at = event.at
            if event.channel == "token":
                state.token_epoch = event.epoch
            _interaction(state, event.at)
        case ev.SessionEnded(reason=reason):
            state.status = "ended"
            state.ended_at = event.at
            state.end_reason = reason
            state.current_utterance = None
        case ev.SessionExpiredEvent(reason=reason):
            state.status = "expired"
            state.ended_at = state.ended_at or event.at
            state.end_reason = state.end_reason or reason
        case ev.HandoffOffered(package_id=pid, to_agent=to_agent):
            state.status = "offered"
            state.pending_handoff = pid
            state.handoff_to = to_agent
        case ev.HandoffAccepted():
            state.status = "active"
            state.agent = event.agent
            state.epoch = event.epoch
            state.token_epoch = event.epoch  # the caller belongs to the new agent now
            state.pending_handoff = None
            state.handoff_to = None
            if event.trimmed > state.summarized:  # the items stay; only the context drops them
                state.summarized = event.trimmed
                state.summary = event.summary
        case ev.HandoffReclaimed():
            state.status = "active"
            state.epoch = event.epoch
            state.pending_handoff = None
            state.handoff_to = None
    _track(state, event)
    return state


def copy_state(state: SessionState) -> SessionState:
    """A deep copy of ``state`` (through the JSON codec, so it is exact)."""
    return _copy_decoder.decode(_copy_encoder.encode(state))


def fold(events: Iterable[ev.Event], base: SessionState | None = None) -> SessionState:
    """Fold ``events`` onto a copy of ``base`` (or an empty state); ``base`` is untouched."""
    state = SessionState() if base is None else copy_state(base)
    for event in events:
        apply(state, event)
    return state


_copy_encoder = msgspec.json.Encoder()
_copy_decoder = msgspec.json.Decoder(SessionState)
