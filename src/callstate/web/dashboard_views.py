"""The dashboard's call list and recovery-quality figures, from archive records. Pure.

A *call* is a session with every leg archived so far; the list shows one row per call
and names the caller only by a short prefix of the archive's keyed hash (``caller_tag``),
never by the id itself.

Recovery quality, per time bucket (by the leg's end):

- ``resumed``: legs that began by a resume or takeover (a drop the call came back from);
  ``abandoned``: legs that expired without an end (a drop it never came back from);
  ``recovered_rate`` = resumed / (resumed + abandoned), None without either.
- ``recover_p50_s`` / ``recover_p95_s``: the gap each resumed leg began with (seconds
  the caller was without the agent).
- ``tools``: tool calls, each counted once, in the latest leg whose record has it;
  ``in_doubt``: those a crash left between start and result; ``in_doubt_rate`` is
  in_doubt / tools.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..archive.records import ArchiveRecord

__all__ = ["CallFilter", "call_rows", "quality_buckets"]

#: hex digits of the keyed caller hash shown: enough to tell callers apart on a page,
#: far too few to look one up
_TAG: Final = 10
_RESUMED: Final = frozenset({"resume", "takeover"})


@dataclass(frozen=True)
class CallFilter:
    """Which calls the list shows: every given field must match (a call matches an
    ``outcome`` or ``agent`` when any of its legs does)."""

    outcome: str | None = None
    agent: str | None = None
    health: str | None = None
    caller_tag: str | None = None
    session: str | None = None  # a prefix of the session id
    since: float | None = None
    until: float | None = None


def caller_tag(caller_hash: str | None) -> str | None:
    """The short, shown form of a keyed caller hash."""
    return None if not caller_hash else caller_hash[:_TAG]


def _health(record: ArchiveRecord) -> str | None:
    """The record's health class (None on records written before health classes)."""
    return None if record.health is None else record.health.kind


def _row(session_id: str, legs: list[ArchiveRecord], tag: str | None) -> dict[str, Any]:
    legs.sort(key=lambda r: r.epoch)
    last = legs[-1]
    # a call a later leg resolved is in both legs' records: the latest says how it ended
    calls = list({c.call_id: c for r in legs for c in r.tools}.values())
    return {
        "session_id": session_id,
        "caller_tag": tag,
        "legs": len(legs),
        "outcome": last.outcome,
        "outcomes": [r.outcome for r in legs],
        "health": _health(last),
        "healths": [_health(r) for r in legs],
        "agents": list(dict.fromkeys(r.agent for r in legs)),
        "started_at": min(r.timings.started_at for r in legs),
        "ended_at": max(r.timings.ended_at for r in legs),
        "duration_s": sum(r.timings.duration_s for r in legs),
        "turns": sum(1 for r in legs for i in r.transcript if i.kind == "user"),
        "tools": len(calls),
        "in_doubt": sum(1 for c in calls if c.in_doubt),
        "barge_ins": sum(1 for r in legs for e in r.recovery if e.kind == "interrupt.reconciled"),
        "resumes": sum(1 for r in legs if r.via in _RESUMED),
        "handoffs": sum(1 for r in legs if r.via == "handoff"),
    }


def _matches(row: dict[str, Any], f: CallFilter) -> bool:
    checks = (
        f.outcome is None or f.outcome in row["outcomes"],
        f.agent is None or f.agent in row["agents"],
        f.health is None or f.health in row["healths"],
        f.caller_tag is None or row["caller_tag"] == f.caller_tag,
        f.session is None or str(row["session_id"]).startswith(f.session),
        f.since is None or row["ended_at"] >= f.since,
        f.until is None or row["ended_at"] < f.until,
    )
    return all(checks)


def call_rows(
    records: Iterable[tuple[ArchiveRecord, str | None]], f: CallFilter, *, limit: int
) -> list[dict[str, Any]]:
    """One row per call (session), latest ended first, at most ``limit``.

    ``records`` pairs each archive record with its row's keyed caller hash.
    """
    by_session: dict[str, list[ArchiveRecord]] = {}
    tags: dict[str, str | None] = {}
    for record, caller_hash in records:
        by_session.setdefault(record.session_id, []).append(record)
        tags[record.session_id] = tags.get(record.session_id) or caller_tag(caller_hash)
    rows = [_row(sid, legs, tags[sid]) for sid, legs in by_session.items()]
    rows = [r for r in rows if _matches(r, f)]
    rows.sort(key=lambda r: (r["ended_at"], r["session_id"]), reverse=True)
    return rows[:limit]


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def quality_buckets(
    records: Iterable[ArchiveRecord], *, since: float, until: float, bucket_s: float
) -> list[dict[str, Any]]:
    """Recovery-quality figures per ``bucket_s`` from ``since`` to ``until`` (see the
    module doc); every bucket is listed, empty ones with zero counts."""
    n = max(1, math.ceil((until - since) / bucket_s))
    gaps: list[list[float]] = [[] for _ in range(n)]
    counts = [
        dict.fromkeys(("legs", "resumed", "abandoned", "tools", "in_doubt"), 0) for _ in range(n)
    ]
    healths: list[dict[str, int]] = [{} for _ in range(n)]
    last_leg: dict[tuple[str, str], tuple[int, int, bool]] = {}
    for r in records:
        at = r.timings.ended_at
        if not since <= at < until:
            continue
        i = min(n - 1, int((at - since) // bucket_s))
        c = counts[i]
        c["legs"] += 1
        if r.via in _RESUMED:
            c["resumed"] += 1
            gaps[i].append(r.timings.gap_s)
        if r.outcome == "abandoned":
            c["abandoned"] += 1
        for t in r.tools:  # each call counts once, in the latest leg that has it
            seen = last_leg.get((r.session_id, t.call_id))
            if seen is None or seen[0] < r.epoch:
                last_leg[(r.session_id, t.call_id)] = (r.epoch, i, t.in_doubt)
        health = _health(r)
        if health is not None:
            healths[i][health] = healths[i].get(health, 0) + 1
    for _, i, in_doubt in last_leg.values():
        counts[i]["tools"] += 1
        counts[i]["in_doubt"] += int(in_doubt)
    out: list[dict[str, Any]] = []
    for i, c in enumerate(counts):
        drops = c["resumed"] + c["abandoned"]
        out.append(
            {
                "start": since + i * bucket_s,
                **c,
                "recovered_rate": c["resumed"] / drops if drops else None,
                "recover_p50_s": _percentile(gaps[i], 50),
                "recover_p95_s": _percentile(gaps[i], 95),
                "in_doubt_rate": c["in_doubt"] / c["tools"] if c["tools"] else None,
                "health": healths[i],
            }
        )
    return out
