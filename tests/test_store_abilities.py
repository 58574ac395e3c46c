"""A store wrapper that forwards through ``__getattr__`` is a store on every Python.

From Python 3.12 on, ``isinstance`` against a runtime-checkable protocol looks members
up statically, so such a wrapper (instrumentation, fault injection) used to be refused
by ``Keeper`` and to lose its follow-up ledger silently. CI runs this file on 3.13 too
(``scripts/test_py313``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.storage.abilities import appends_soon, is_store, keeps_ledger, keeps_log
from callstate.storage.sqlite import SQLiteStore
from callstate.testing import FakeClock


class Forwarding:
    """Forwards every attribute to a real store, counting the calls it passes on."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if callable(value):
            self.calls.append(name)
        return value


class Partial:
    """Has some store methods, not all of them."""

    url = "memory://"

    async def open(self) -> None:
        """Opens nothing."""

    async def load(self, session_id: str) -> None:
        """Loads nothing."""


def test_a_forwarding_wrapper_has_the_store_and_its_abilities(tmp_path: Path) -> None:
    """is_store, keeps_log and keeps_ledger see members reached through __getattr__."""
    proxy = Forwarding(SQLiteStore(f"sqlite:///{tmp_path}/cs.db"))
    assert (True, True, True) == (is_store(proxy), keeps_log(proxy), keeps_ledger(proxy))


def test_an_object_missing_store_methods_is_refused_by_name() -> None:
    """A partial store is not a store, and Keeper says which type it got."""
    assert (False, False, False) == (is_store(Partial()), keeps_log(Partial()), keeps_ledger(1))
    with pytest.raises(
        callstate.ConfigError, match=r"^store must be a store URL or a Store, got Partial$"
    ):
        callstate.Keeper(Partial())  # type: ignore[arg-type]


async def test_a_keeper_on_a_forwarding_wrapper_keeps_the_follow_up_ledger(
    tmp_path: Path,
) -> None:
    """A call ended through the wrapper runs its follow-up, and the ledger it keeps through
    the wrapper says succeeded."""
    proxy = Forwarding(SQLiteStore(f"sqlite:///{tmp_path}/cs.db"))
    ran: list[str] = []

    async def summary(call: callstate.CallRecord) -> str:
        ran.append(call.session_id)
        return "done"

    clock = FakeClock()
    async with callstate.Keeper(proxy, clock=clock, sweep_every=None) as k:  # type: ignore[arg-type]
        k.on_call_complete(summary, grace=0, name="summary")
        s = await k.start()
        s.user_said("Please move my booking to Friday at ten.")
        await s.end()
        await k.sweep()
        assert keeps_ledger(proxy)
        (f,) = await proxy.followup_list()
        assert ([s.id], "succeeded") == (ran, f.state)
    assert {"followup_start", "followup_settle"} <= set(proxy.calls)


def test_appends_soon_only_where_the_append_in_use_is_the_stores_own(tmp_path: Path) -> None:
    """The callback append is used for the SQLite store itself, never past a wrapper or
    subclass that changes append (its fault injection or counting would be skipped)."""

    class Counting(SQLiteStore):
        async def append(self, batches: Any) -> Any:
            return await super().append(batches)

    class Sub(SQLiteStore):
        pass

    url = f"sqlite:///{tmp_path}/cs.db"
    patched = SQLiteStore(url)
    patched.append = Counting(url).append  # type: ignore[method-assign]
    own, sub = SQLiteStore(url), Sub(url)
    assert (own.append_soon, sub.append_soon) == (appends_soon(own), appends_soon(sub))
    refused = [Forwarding(own), Counting(url), patched, callstate.MemoryStore(), Partial()]
    assert [None] * 5 == [appends_soon(store) for store in refused]


async def test_a_keeper_on_a_forwarding_wrapper_flushes_through_its_append(
    tmp_path: Path,
) -> None:
    """Every durable turn through a forwarding wrapper calls the wrapper's append."""
    proxy = Forwarding(SQLiteStore(f"sqlite:///{tmp_path}/cs.db"))
    async with callstate.Keeper(proxy, clock=FakeClock(), sweep_every=None) as k:  # type: ignore[arg-type]
        s = await k.start()
        proxy.calls.clear()
        for i in range(3):
            s.user_said(f"turn {i}")
            await s.flush()
    assert (3, 0) == (proxy.calls.count("append"), proxy.calls.count("append_soon"))
