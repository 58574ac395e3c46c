"""A resume on a store that claims atomically (SQLite: ``atomic_packages``; Redis and
PostgreSQL: ``atomic_claims``): the claim carries ``session.resumed`` in its transaction, one
durable write instead of two, and a write the old owner lands between the resume's read
and its claim refuses that claim whole."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.journal import events as ev
from callstate.storage import Store, open_store
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"s" * 32


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL of each engine (Redis: a fresh prefix; PostgreSQL: a fresh schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cs.db"
        return
    if request.param == "redis":
        base, prefix = redis_url(), unique("resume")
        try:
            yield f"{base}?prefix={prefix}"
        finally:
            await drop_redis_prefix(base, prefix)
        return
    base, schema = postgres_url(), unique("resume")
    try:
        yield f"{base}?schema={schema}"
    finally:
        await drop_pg_schema(base, schema)


class Counted:
    """The real store, with the name of every call it is given (nothing else changes);
    ``before_claim`` runs once, just before the next claim reaches the store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.before_claim: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "claim" and self.before_claim is not None:
                hook, self.before_claim = self.before_claim, None
                await hook()
            return await attr(*args, **kwargs)

        return call

    def writes(self) -> list[str]:
        return [c for c in self.calls if c in ("claim", "append")]


async def _dropped(keeper: callstate.Keeper) -> callstate.Session:
    s = await keeper.start(caller="+15551234567", agent="triage")
    s.user_said("I'd like to move my booking")
    s.connection_lost("page reload")
    await s.flush()
    return s


async def test_a_resume_writes_once_the_claim_carrying_session_resumed(url: str) -> None:
    """One store write per resume; the journal and the live state are as the two-step
    resume left them (session.resumed right after, cause, channel)."""
    store = Counted(open_store(url))
    async with callstate.Keeper(store, secret=SECRET) as keeper:  # type: ignore[arg-type]
        s = await _dropped(keeper)
        seq = s.state.seq
        store.calls.clear()
        resumed = await keeper.resume(s.resume_token())
        writes = store.writes()
        last = ev.decode_event((await store.inner.read_events(s.id))[-1])
        stored = await keeper.load(s.id)
    assert ["claim"] == writes
    assert isinstance(last, ev.SessionResumed)
    assert (seq + 1, 2, "link_lost", "token", "resume") == (
        last.seq,
        last.epoch,
        last.cause,
        last.channel,
        last.via,
    )
    assert stored == resumed.state
    assert (True, 2) == (resumed.state.on_hold, resumed.state.token_epoch)


async def test_a_write_landing_before_the_claim_is_kept_and_the_resume_follows_it(
    url: str,
) -> None:
    """The old owner records once more between the resume's read and its claim: the
    one-step claim is refused with nothing changed, and the resume claims, then appends
    session.resumed after that write."""
    store = Counted(open_store(url))
    async with (
        callstate.Keeper(url, secret=SECRET) as first,
        callstate.Keeper(store, secret=SECRET) as keeper,  # type: ignore[arg-type]
    ):
        old = await _dropped(first)

        async def late() -> None:
            old.user_partial("and one more thing")
            await old.flush()

        store.before_claim = late
        store.calls.clear()
        resumed = await keeper.resume(old.resume_token())
        writes = store.writes()
        stored = await keeper.load(old.id)
    assert ["claim", "claim", "append"] == writes
    assert ("and one more thing", 2) == (resumed.state.partial, resumed.state.epoch)
    assert stored == resumed.state


async def test_a_resume_whose_checks_read_the_session_builds_its_claim_on_that_read(
    url: str,
) -> None:
    """A page's token from before the agent's worker took the call by id: the checks
    load the session (is the token superseded?) and the claim needs no load of its own."""
    store = Counted(open_store(url))
    async with callstate.Keeper(store, secret=SECRET) as keeper:  # type: ignore[arg-type]
        s = await _dropped(keeper)
        token = s.resume_token()
        worker = await keeper.resume(s.id)  # the agent's worker, by id: epoch 2
        worker.connection_lost("page reload")
        await worker.flush()
        store.calls.clear()
        resumed = await keeper.resume(token, takeover=True)
        reads = [c for c in store.calls if c in ("get", "load", "claim", "append")]
        stored = await keeper.load(s.id)
    assert ["get", "load", "claim"] == reads
    assert (3, 3) == (resumed.state.epoch, resumed.state.token_epoch)
    assert stored == resumed.state
