"""Health classes: what happened to a call, read from its journaled run. Pure.

Every archive record carries one (``ArchiveRecord.health``), derived from the run's
outcome and the causes the journal recorded (``SessionResumed.cause``,
``SessionExpiredEvent.cause``), never guessed from timings. In order of precedence:

- ``failed``: the call ended failed, or a tool call in it failed (counted in
  ``failed_tools``; failed follow-ups are counted by :func:`with_followups`);
- ``worker_lost``: it expired while its owner's lease had lapsed: a worker stopped and
  nobody resumed the call;
- ``caller_never_returned``: it expired with the caller's link down, or idle;
- ``superseded``: another owner took it before it ended (a resume, a takeover from a
  live tab, a handoff); the taker's cause is in ``cause``;
- ``recovered``: it ended, and a drop or a worker crash was resumed in it (the run
  began with a resume after ``link_lost``, ``lease_expired`` or ``released``, or its
  link dropped and came back);
- ``caller_ended``: it ended because the caller hung up (the end reason names the
  caller);
- ``ok``: it ended otherwise.

Records written before health classes have ``health=None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

__all__ = [
    "CALLER_REASONS",
    "HEALTH_CLASSES",
    "Health",
    "HealthClass",
    "RunFacts",
    "classify",
    "with_followups",
]

HealthClass = Literal[
    "ok",
    "recovered",
    "caller_ended",
    "caller_never_returned",
    "worker_lost",
    "superseded",
    "failed",
]
#: every class, worst first
HEALTH_CLASSES: Final[tuple[HealthClass, ...]] = (
    "failed",
    "worker_lost",
    "caller_never_returned",
    "superseded",
    "recovered",
    "caller_ended",
    "ok",
)
#: end reasons that say the caller hung up (besides any starting with "caller")
CALLER_REASONS: Final = frozenset({"hangup", "user_hangup", "participant_disconnected"})
#: causes of a resume that mean a drop or a crash was recovered
_RECOVERING: Final = frozenset({"link_lost", "lease_expired", "released"})
#: follow-up ledger states that count as a failed follow-up
_FAILED_FOLLOWUPS: Final = frozenset({"dead", "orphaned"})


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """A call's health class and what it was derived from.

    ``cause`` is the journaled cause behind the class (how the run was lost or how it
    began); ``failed_tools`` / ``failed_followups`` count what failed in it;
    ``recoveries`` the drops and crashes resumed in it.
    """

    kind: HealthClass
    cause: str = ""
    failed_tools: int = 0
    failed_followups: int = 0
    recoveries: int = 0


class RunFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the journal says about one run, as :func:`classify` reads it.

    Args:
        outcome: the record's outcome (``completed``, ``recovered``, ``superseded``,
            ``abandoned``, ``failed``).
        began_cause: ``SessionResumed.cause`` of the resume that began the run ("" for
            a start or a handoff).
        lost_cause: why the run closed without an end: the expiry's cause, or the
            superseding takeover's ("handoff" for an accepted handoff).
        end_reason: ``SessionEnded.reason`` when the run ended.
        link_restores: times the link came back during the run.
        failed_tools: tool calls of the run that failed.
    """

    outcome: str
    began_cause: str = ""
    lost_cause: str = ""
    end_reason: str | None = None
    link_restores: int = 0
    failed_tools: int = 0


def _caller_reason(reason: str | None) -> bool:
    return reason is not None and (reason.startswith("caller") or reason in CALLER_REASONS)


def classify(facts: RunFacts) -> Health:
    """The health class of one run (see the module docstring for the rules)."""
    recoveries = facts.link_restores + (1 if facts.began_cause in _RECOVERING else 0)
    failed = facts.failed_tools
    if facts.outcome == "failed" or failed:
        return Health(kind="failed", cause=facts.end_reason or "", failed_tools=failed)
    if facts.outcome == "abandoned":
        kind: HealthClass = (
            "worker_lost" if facts.lost_cause == "lease_expired" else "caller_never_returned"
        )
        return Health(kind=kind, cause=facts.lost_cause, recoveries=recoveries)
    if facts.outcome == "superseded":
        return Health(kind="superseded", cause=facts.lost_cause, recoveries=recoveries)
    if recoveries:
        cause = facts.began_cause if facts.began_cause in _RECOVERING else "link_lost"
        return Health(kind="recovered", cause=cause, recoveries=recoveries)
    if _caller_reason(facts.end_reason):
        return Health(kind="caller_ended", cause=facts.end_reason or "")
    return Health(kind="ok", cause=facts.end_reason or "")


def with_followups(health: Health, states: Iterable[str]) -> Health:
    """``health`` once the call's follow-ups have run: ``failed`` when any of them is
    dead or orphaned (``states``: their ledger states), counted in ``failed_followups``."""
    failed = sum(1 for s in states if s in _FAILED_FOLLOWUPS)
    if not failed:
        return health
    return msgspec.structs.replace(health, kind="failed", failed_followups=failed)
