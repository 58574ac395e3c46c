"""The whole call: every leg of a session, and what earlier follow-ups already did.

A *call* is a session from its start to its last leg; a *leg* is one ownership run,
archived as one insert-only ``ArchiveRecord`` (id ``"{session_id}:{epoch}"``; the
leg's number is that epoch). A caller who hangs up and rings back within the resume
window continues the same call in a new leg, so one call may close several times.

A follow-up (``keeper.on_call_complete``) is given a :class:`CallRecord` assembled
from the legs archived so far, never a stored copy of them: the archive keeps one
record per leg and nothing else. ``previous_followups`` are the results of the same
callback's earlier runs for this call (a grace shorter than the resume window lets
one run between two legs); ``requests_since_last_followup`` is what the caller asked
after the last one that succeeded, so a callback does the rest without repeating it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from ..journal import events as ev
from ..journal.state import Item, ToolCall
from ..observe.recovery import RecoveryEvent
from .records import ArchiveRecord, Outcome

__all__ = [
    "FOLLOWUP_RESULT_VERSION",
    "CallRecord",
    "FollowUpResult",
    "assemble_call",
    "decode_result",
    "encode_result",
    "idempotency_key",
]

FOLLOWUP_RESULT_VERSION: Final = 1


def idempotency_key(call_id: str, leg: int) -> str:
    """The key of the follow-up that ``leg``'s close scheduled: ``"{call_id}:{leg}"``.

    Stable across re-runs of that follow-up (a lapsed claim runs it again), different
    for every quiet period of the call; pass it to the systems a callback writes to.
    """
    return f"{call_id}:{leg}"


class FollowUpResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one follow-up run did: the callback's return value, or its error.

    ``leg`` is the leg whose close scheduled it (the last leg it saw); ``result`` is
    what the callback returned, as JSON data (anything else is kept as its ``str``; a
    value nested deeper than ``Limits().max_depth``, containing itself or over 1 MiB
    encoded becomes a ``"<not stored: ...>"`` note naming the limit).
    """

    followup_id: str
    call_id: str
    name: str
    leg: int
    idempotency_key: str
    ran_at: float
    ok: bool
    result: Any = None
    error: str | None = None
    legs: list[int] = []
    v: int = FOLLOWUP_RESULT_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FollowUpResult)


def encode_result(result: FollowUpResult) -> bytes:
    """Encode a follow-up result to its stored JSON form."""
    return _encoder.encode(result)


def decode_result(data: bytes | str) -> FollowUpResult:
    """Decode a stored follow-up result.

    Raises:
        CodecError: the bytes are not a follow-up result; the message names the field.
        VersionError: the result was written by a newer format version.
    """
    result: FollowUpResult = ev.decode_versioned(
        _decoder, data, version=FOLLOWUP_RESULT_VERSION, what="follow-up result"
    )
    return result


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The whole call a follow-up is given: every leg so far, in order.

    Attributes:
        call_id: the session id.
        leg: the leg whose close scheduled this follow-up (the last of ``legs``).
        idempotency_key: ``"{call_id}:{leg}"``, the same for every run of this
            follow-up; pass it to the systems the callback writes to.
        legs: the archive record of every leg up to ``leg``, oldest first.
        previous_followups: this callback's earlier runs for the call, oldest first.
        attempt: which start of this follow-up this is, from 1: more than 1 means an
            earlier start raised or its keeper died inside the callback.
    """

    call_id: str
    leg: int
    idempotency_key: str
    legs: list[ArchiveRecord]
    previous_followups: list[FollowUpResult] = []
    attempt: int = 1

    @property
    def last(self) -> ArchiveRecord:
        """The record of the leg that closed last."""
        return self.legs[-1]

    @property
    def record_id(self) -> str:
        """The last leg's record id."""
        return self.last.record_id

    @property
    def session_id(self) -> str:
        """The session id (the same as ``call_id``)."""
        return self.call_id

    @property
    def caller(self) -> str | None:
        """The caller id, if the call had one."""
        return next((r.caller for r in reversed(self.legs) if r.caller), None)

    @property
    def agent(self) -> str:
        """The agent of the last leg."""
        return self.last.agent

    @property
    def outcome(self) -> Outcome:
        """The last leg's outcome."""
        return self.last.outcome

    @property
    def outcomes(self) -> list[Outcome]:
        """Every leg's outcome, oldest first."""
        return [r.outcome for r in self.legs]

    @property
    def transcript(self) -> list[Item]:
        """The conversation of every leg, in order."""
        return [item for r in self.legs for item in r.transcript]

    @property
    def tools(self) -> list[ToolCall]:
        """Every tool call of the call, once each, in the order first seen, as the
        latest leg that saw it left it."""
        calls: dict[str, ToolCall] = {}
        for r in self.legs:
            for c in r.tools:
                calls[c.call_id] = c
        return list(calls.values())

    @property
    def recovery(self) -> list[RecoveryEvent]:
        """The recovery events of every leg, in order."""
        return [e for r in self.legs for e in r.recovery]

    @property
    def last_followup(self) -> FollowUpResult | None:
        """This callback's latest earlier run that succeeded, or None."""
        return next((f for f in reversed(self.previous_followups) if f.ok), None)

    @property
    def legs_since_last_followup(self) -> list[ArchiveRecord]:
        """The legs the last successful earlier run did not see."""
        done = self.last_followup
        after = done.leg if done is not None else 0
        return [r for r in self.legs if r.epoch > after]

    @property
    def requests_since_last_followup(self) -> list[str]:
        """What the caller said in the legs no earlier run saw (every caller turn when
        none succeeded yet), in order: the work still to do."""
        return [
            i.text for r in self.legs_since_last_followup for i in r.transcript if i.kind == "user"
        ]


def assemble_call(
    legs: Iterable[ArchiveRecord],
    results: Iterable[FollowUpResult],
    *,
    call_id: str,
    leg: int,
    name: str,
) -> CallRecord:
    """The :class:`CallRecord` of callback ``name``'s follow-up for ``leg``. Pure.

    ``legs`` are the session's archive records (any order, repeats and later legs
    ignored);
    ``results`` its stored follow-up results (other callbacks' and later ones ignored).
    """
    unique = {r.record_id: r for r in legs if r.session_id == call_id and r.epoch <= leg}
    mine = sorted(unique.values(), key=_leg_order)
    earlier = sorted(
        (f for f in results if f.call_id == call_id and f.name == name and f.leg < leg),
        key=lambda f: (f.leg, f.ran_at),
    )
    return CallRecord(
        call_id=call_id,
        leg=leg,
        idempotency_key=idempotency_key(call_id, leg),
        legs=mine,
        previous_followups=earlier,
    )


def _leg_order(record: ArchiveRecord) -> tuple[int, int]:
    return (record.epoch, record.first_seq)
