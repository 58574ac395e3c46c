"""The checks every backend makes the same way, and the errors they answer with.

Which text a store can hold as a key, whether a batch may be appended to a session as
stored, and the errors for an unknown session or a lost claim.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import CallstateError, ConfigError, ConflictError, SessionNotFound, StaleEpochError
from .rows import Batch

__all__ = ["check_batch", "not_found", "refuse_packages", "stale_claim", "storable_text"]


def refuse_packages(url: str, batches: Sequence[Batch]) -> None:
    """Refuse batches carrying a package, for a store without ``atomic_packages``.

    Raises:
        ConfigError: a batch carries a package.
    """
    for b in batches:
        if b.package is not None:
            msg = (
                f"store {url!r} keeps handoff packages apart from the journal "
                f"(atomic_packages is false): store package {b.package.package_id!r} "
                "with package_put"
            )
            raise ConfigError(msg)


def storable_text(value: object) -> bool:
    """True when ``value`` is a str every store can hold as a key: no NUL (PostgreSQL
    text has none) and no lone surrogate (not UTF-8). No stored id is anything else."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_found(session_id: str) -> SessionNotFound:
    """The error for a session id the store does not hold."""
    msg = f"session {session_id!r} not found in the store"
    return SessionNotFound(msg, session_id=session_id)


def check_batch(
    session_id: str, stored_epoch: int | None, stored_seq: int, batch: Batch
) -> CallstateError | None:
    """Why a batch may not be appended to a session in this state, or None if it may."""
    if stored_epoch is None:
        return not_found(session_id)
    if batch.epoch != stored_epoch:
        msg = (
            f"session {session_id!r} is owned at epoch {stored_epoch}; "
            f"this writer holds epoch {batch.epoch} and is fenced"
        )
        return StaleEpochError(
            msg, session_id=session_id, epoch=batch.epoch, current_epoch=stored_epoch
        )
    if batch.first_seq != stored_seq + 1:
        msg = (
            f"session {session_id!r}: batch starts at seq {batch.first_seq} "
            f"but the journal ends at {stored_seq}"
        )
        return ConflictError(msg)
    return None


def stale_claim(session_id: str, expected: int, current: int) -> CallstateError:
    """The error for a claim that lost the race for a session."""
    msg = (
        f"session {session_id!r} is at epoch {current}, not {expected}: another owner took it first"
    )
    return StaleEpochError(msg, session_id=session_id, epoch=expected, current_epoch=current)
