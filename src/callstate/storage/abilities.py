"""Whether an object provides ``Store`` or one of its optional abilities.

``isinstance`` against a ``runtime_checkable`` protocol looks members up with
``getattr`` on Python 3.11 but statically from 3.12 on, so a store wrapper that forwards
through ``__getattr__`` (instrumentation, fault injection) passed on one Python and was
refused on the next. These checks look members up with ``getattr`` on every version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeGuard

from .base import Batch, FollowUpLedger, FollowUpLog, Store
from .figures import ArchiveFigures

__all__ = [
    "AppendsSoon",
    "Landed",
    "appends_soon",
    "counts_figures",
    "is_store",
    "keeps_ledger",
    "keeps_log",
]

#: ``landed(ok, value)``: the results of an append (``ok``) or the exception it raised.
Landed = Callable[[bool, Any], None]


class AppendsSoon(Protocol):
    """A store whose ``append`` runs on a thread of its own and can answer by callback.

    ``append_soon(batches, landed)`` queues the same work as ``await append(batches)``
    and returns at once; ``landed`` is called on the event loop with what ``append``
    would have returned or raised. The group commit then needs no task of its own.
    """

    def append_soon(self, batches: Sequence[Batch], landed: Landed) -> None: ...


def _members(protocol: type) -> frozenset[str]:
    """The attributes and methods ``protocol`` declares (its own and inherited ones)."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls is object or cls.__module__ == "typing":
            continue
        names.update(vars(cls).get("__annotations__", {}))
        names.update(n for n, v in vars(cls).items() if callable(v) and not n.startswith("_"))
    return frozenset(names)


_STORE: Final = _members(Store)
_LOG: Final = _members(FollowUpLog)
_LEDGER: Final = _members(FollowUpLedger)
_FIGURES: Final = _members(ArchiveFigures)


def _provides(obj: object, members: frozenset[str]) -> bool:
    return all(hasattr(obj, name) for name in members)


def is_store(obj: object) -> TypeGuard[Store]:
    """True if ``obj`` has every member of ``Store``."""
    return _provides(obj, _STORE)


def keeps_log(obj: object) -> TypeGuard[FollowUpLog]:
    """True if ``obj`` keeps what follow-ups did (``FollowUpLog``)."""
    return _provides(obj, _LOG)


def keeps_ledger(obj: object) -> TypeGuard[FollowUpLedger]:
    """True if ``obj`` keeps each follow-up's attempts and state (``FollowUpLedger``)."""
    return _provides(obj, _LEDGER)


def counts_figures(obj: object) -> TypeGuard[ArchiveFigures]:
    """True if ``obj`` counts its archive for fleet figures (``ArchiveFigures``)."""
    return _provides(obj, _FIGURES)


def appends_soon(store: object) -> Callable[[Sequence[Batch], Landed], None] | None:
    """``store.append_soon`` when it is the store's own way to append, else None.

    Only when the class that defines the ``append`` in use also defines
    ``append_soon``: a wrapper or subclass that changes ``append`` (fault injection,
    instrumentation, forwarding through ``__getattr__``) keeps its ``append`` called.
    """
    if "append" in getattr(store, "__dict__", {}):
        return None
    for cls in type(store).__mro__:
        if "append" in vars(cls):
            if "append_soon" not in vars(cls):
                return None
            soon: Callable[[Sequence[Batch], Landed], None] = store.append_soon  # type: ignore[attr-defined]
            return soon
    return None
