"""One call's timeline as plain data, for the dashboard to draw. Pure: no I/O.

``timeline(session_id, events, ...)`` folds a session's journal into what the picture
shows, per leg (one ownership run: a start, resume, takeover or accepted handoff):
speech spans of the caller and the agent, barge-ins, tool calls from intent to outcome
to delivery, holds (link lost → restored), resumes, handoffs and follow-up runs. A
session whose journal is gone (purged) is drawn from its archive records instead
(``timeline_from_records``), with less detail: no partial speech, no holds.

Caller ids never appear: the caller is only ever named by the archive's keyed hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from ..archive.calls import FollowUpResult
from ..archive.records import ArchiveRecord
from ..journal import events as ev

__all__ = ["TIMELINE_VERSION", "timeline", "timeline_from_records"]

TIMELINE_VERSION: Final = 1
#: longest text kept per speech span (the rest is cut: a timeline is not a transcript)
_TEXT: Final = 240

_TERMINAL: Final = {
    ev.ToolSucceeded: "succeeded",
    ev.ToolFailed: "failed",
    ev.ToolCancelled: "cancelled",
}


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT else text[: _TEXT - 1] + "…"


class _Fold:
    """The running fold of one journal into timeline rows."""

    def __init__(self) -> None:
        self.legs: list[dict[str, Any]] = []
        self.speech: list[dict[str, Any]] = []
        self.barge_ins: list[dict[str, Any]] = []
        self.tools: dict[str, dict[str, Any]] = {}
        self.holds: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.user_from: float | None = None  # the caller's first partial of this turn
        self.agent: dict[str, dict[str, Any]] = {}  # utterance id -> open span
        self.hold: dict[str, Any] | None = None
        self.last_at = 0.0

    @property
    def leg(self) -> int:
        return self.legs[-1]["epoch"] if self.legs else 0

    def begin_leg(self, e: ev.Event, *, epoch: int, agent: str, via: str) -> None:
        self.close_leg(e.at)
        self.legs.append(
            {"epoch": epoch, "agent": agent, "via": via, "start": e.at, "end": None, "seq": e.seq}
        )

    def close_leg(self, at: float, reason: str | None = None) -> None:
        if self.hold is not None:
            self.hold["end"] = at
            self.hold = None
        for span in self.agent.values():
            span["end"] = at
        self.agent.clear()
        self.user_from = None
        if self.legs and self.legs[-1]["end"] is None:
            self.legs[-1]["end"] = at
            if reason is not None:
                self.legs[-1]["end_reason"] = reason

    def speak(self, who: str, start: float, end: float, text: str) -> dict[str, Any]:
        span: dict[str, Any] = {"leg": self.leg, "who": who, "start": start, "end": end}
        span["text"] = _cut(text)
        self.speech.append(span)
        return span

    def tool(self, call_id: str) -> dict[str, Any] | None:
        return self.tools.get(call_id)

    def step(self, e: ev.Event) -> None:
        if isinstance(e, ev.SessionExpiredEvent) and self.legs and self.legs[-1]["end"]:
            return  # the expiry of an ended call: nothing more happened in it
        self.last_at = max(self.last_at, e.at)
        match e:
            case ev.SessionStarted():
                self.begin_leg(e, epoch=e.epoch, agent=e.agent, via="start")
            case ev.SessionResumed():
                agent = self.legs[-1]["agent"] if self.legs else ""
                self.begin_leg(e, epoch=e.epoch, agent=agent, via=e.via)
                self.resumes.append({"leg": e.epoch, "at": e.at, "via": e.via, "gap_s": e.gap_s})
                # a resumed call is on hold until its transport says the link is open
                self.hold = {"leg": e.epoch, "start": e.at, "end": None, "reason": "resumed"}
                self.holds.append(self.hold)
            case ev.HandoffAccepted():
                self.begin_leg(e, epoch=e.epoch, agent=e.agent, via="handoff")
                self.handoffs.append(
                    {"leg": e.epoch, "at": e.at, "kind": "accepted", "agent": e.agent}
                )
            case ev.HandoffReclaimed():
                agent = self.legs[-1]["agent"] if self.legs else ""
                self.begin_leg(e, epoch=e.epoch, agent=agent, via="reclaim")
                self.handoffs.append({"leg": e.epoch, "at": e.at, "kind": "reclaimed"})
            case ev.HandoffOffered():
                self.handoffs.append(
                    {"leg": self.leg, "at": e.at, "kind": "offered", "agent": e.to_agent}
                )
            case ev.SessionEnded() | ev.SessionExpiredEvent():
                self.close_leg(e.at, e.reason)
            case _:
                self.speech_step(e) or self.tool_step(e) or self.link_step(e)

    def speech_step(self, e: ev.Event) -> bool:
        match e:
            case ev.UserPartial():
                if self.user_from is None:
                    self.user_from = e.at
            case ev.UserTurn():
                start = e.at if self.user_from is None else self.user_from
                self.speak("caller", start, e.at, e.text)
                self.user_from = None
            case ev.AgentStarted():
                self.agent[e.utterance_id] = self.speak("agent", e.at, e.at, e.text)
            case ev.AgentProgress():
                span = self.agent.get(e.utterance_id)
                if span is not None:
                    span["end"] = e.at
                    if e.text is not None:
                        span["text"] = _cut(e.text)
            case ev.AgentFinished():
                span = self.agent.pop(e.utterance_id, None)
                if span is not None:
                    span["end"] = e.at
                    if e.text is not None:
                        span["text"] = _cut(e.text)
            case ev.Interrupted():
                span = self.agent.pop(e.utterance_id or "", None)
                if span is not None:
                    span.update(end=e.at, interrupted=True, heard=_cut(e.heard_text))
                self.barge_ins.append(
                    {
                        "leg": self.leg,
                        "at": e.at,
                        "heard": _cut(e.heard_text),
                        "overtaken": list(e.overtaken),
                    }
                )
            case _:
                return False
        return True

    def tool_step(self, e: ev.Event) -> bool:
        if isinstance(e, ev.ToolRequested):
            self.tools[e.call_id] = {
                "leg": self.leg,
                "call_id": e.call_id,
                "name": e.name,
                "effect": e.effect,
                "requested_at": e.at,
                "started_at": None,
                "ended_at": None,
                "status": "requested",
                "attempts": 0,
                "in_doubt": False,
                "deliveries": [],
            }
            return True
        call_id = getattr(e, "call_id", None)
        if not isinstance(call_id, str) or not call_id.strip():
            return False
        row = self.tool(call_id)
        if row is None:  # a call whose intent this journal does not hold
            return True
        match e:
            case ev.ToolStarted():
                row["started_at"] = row["started_at"] or e.at
                row["attempts"] = e.attempt
                row["status"] = "started"
            case ev.ToolSucceeded() | ev.ToolFailed() | ev.ToolCancelled():
                row.update(ended_at=e.at, status=_TERMINAL[type(e)])
            case ev.ToolDeduplicated():
                row.update(ended_at=e.at, status=e.status, duplicate_of=e.duplicate_of)
            case ev.ToolInDoubt():
                row.update(in_doubt=True, resolution=e.resolution, in_doubt_at=e.at)
                if e.resolution == "unknown":
                    row.update(ended_at=e.at, status="unknown")
            case ev.ToolDelivery():
                row["deliveries"].append({"at": e.at, "decision": e.decision, "leg": self.leg})
            case ev.ToolContextDelivered():
                row["context_at"] = e.at
            case _:
                pass
        return True

    def link_step(self, e: ev.Event) -> bool:
        match e:
            case ev.LinkLost():
                if self.hold is None:
                    self.hold = {"leg": self.leg, "start": e.at, "end": None, "reason": e.reason}
                    self.holds.append(self.hold)
            case ev.LinkRestored():
                if self.hold is not None:
                    self.hold.update(end=e.at, dropped=e.dropped)
                    self.hold = None
            case _:
                return False
        return True


def _followups(results: Iterable[FollowUpResult]) -> list[dict[str, Any]]:
    rows = [
        {"at": r.ran_at, "name": r.name, "ok": r.ok, "leg": r.leg, "legs": list(r.legs)}
        for r in results
    ]
    return sorted(rows, key=lambda r: (r["at"], r["leg"]))


def _finish(
    fold: _Fold,
    session_id: str,
    *,
    source: str,
    count: int,
    records: Sequence[ArchiveRecord],
    followups: list[dict[str, Any]],
) -> dict[str, Any]:
    archived = {r.epoch: r for r in records}
    for leg in fold.legs:
        r = archived.get(leg["epoch"])
        leg["outcome"] = None if r is None else r.outcome
        leg["health"] = None if r is None or r.health is None else r.health.kind
        leg["health_cause"] = None if r is None or r.health is None else r.health.cause
    tools = list(fold.tools.values())
    times = [fold.last_at, *(f["at"] for f in followups)]
    starts = [leg["start"] for leg in fold.legs] or [min(times)]
    return {
        "v": TIMELINE_VERSION,
        "session_id": session_id,
        "source": source,
        "events": count,
        "t0": min(starts),
        "t1": max(times),
        "legs": fold.legs,
        "speech": fold.speech,
        "barge_ins": fold.barge_ins,
        "tools": tools,
        "holds": fold.holds,
        "resumes": fold.resumes,
        "handoffs": fold.handoffs,
        "followups": followups,
    }


def timeline(
    session_id: str,
    events: Sequence[ev.Event],
    *,
    records: Sequence[ArchiveRecord] = (),
    followups: Iterable[FollowUpResult] = (),
) -> dict[str, Any]:
    """The timeline of a session's journal (every leg), as JSON-ready data.

    ``records`` are the session's archive records (each leg's outcome and health);
    ``followups`` its stored follow-up results.
    """
    fold = _Fold()
    for e in events:
        fold.step(e)
    fold.close_leg(fold.last_at)
    return _finish(
        fold,
        session_id,
        source="journal",
        count=len(events),
        records=records,
        followups=_followups(followups),
    )


def timeline_from_records(
    session_id: str,
    records: Sequence[ArchiveRecord],
    *,
    followups: Iterable[FollowUpResult] = (),
) -> dict[str, Any]:
    """The timeline of a session whose journal is gone, from its archive records."""
    fold = _Fold()
    count = 0
    for r in sorted(records, key=lambda r: r.epoch):
        t = r.timings
        fold.legs.append(
            {
                "epoch": r.epoch,
                "agent": r.agent,
                "via": r.via,
                "start": t.started_at,
                "end": t.ended_at,
                "seq": r.first_seq,
                "end_reason": r.end_reason,
            }
        )
        if r.via in ("resume", "takeover"):
            fold.resumes.append(
                {"leg": r.epoch, "at": t.started_at, "via": r.via, "gap_s": t.gap_s}
            )
        for item in r.transcript:
            count += 1
            if item.kind == "call":
                continue
            who = "caller" if item.kind == "user" else "agent"
            span = fold.speak(who, item.at, item.at, item.text)
            if item.interrupted:
                span.update(interrupted=True, heard=_cut(item.spoken))
        for e in r.recovery:
            count += 1
            if e.kind == "interrupt.reconciled":
                fold.barge_ins.append(
                    {"leg": r.epoch, "at": e.at, "heard": _cut(str(e.data.get("heard", "")))}
                )
            elif e.kind in ("handoff.offered", "handoff.accepted"):
                kind = e.kind.partition(".")[2]
                agent = e.data.get("to_agent" if kind == "offered" else "agent")
                fold.handoffs.append({"leg": r.epoch, "at": e.at, "kind": kind, "agent": agent})
        for c in r.tools:
            fold.tools.setdefault(
                c.call_id,
                {
                    "leg": r.epoch,
                    "call_id": c.call_id,
                    "name": c.name,
                    "effect": c.effect,
                    "requested_at": c.requested_at,
                    "started_at": None,
                    "ended_at": c.finished_at,
                    "status": c.status,
                    "attempts": c.attempts,
                    "in_doubt": c.in_doubt,
                    "deliveries": [] if c.delivery is None else [{"decision": c.delivery}],
                },
            )
        fold.last_at = max(fold.last_at, t.ended_at)
    return _finish(
        fold,
        session_id,
        source="archive",
        count=count,
        records=records,
        followups=_followups(followups),
    )
