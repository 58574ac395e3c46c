"""Phone calls: resume by caller id through a keyed-hash index."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate.testing import FakeClock

SECRET = b"s" * 32
CALLER = "+15551234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cs.db"


@pytest.fixture
async def keeper(db: Path, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(f"sqlite:///{db}", secret=SECRET, clock=clock) as k:
        yield k


async def test_resume_caller_returns_the_most_recent_resumable_session(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Of two sessions from one caller, the one active last is resumed, at epoch+1."""
    older = await keeper.start(caller=CALLER, agent="a")
    clock.advance(10)
    newer = await keeper.start(caller=CALLER, agent="b")
    clock.advance(10)
    older.user_said("I spoke last")
    await older.flush()
    s = await keeper.resume_caller(CALLER)
    assert s is not None
    assert (older.id, 2) == (s.id, s.state.epoch)
    assert newer.id != s.id


async def test_unknown_caller_gets_none(keeper: callstate.Keeper) -> None:
    """A caller with no session gets None, not an error."""
    await keeper.start(caller=CALLER)
    assert await keeper.resume_caller("+15550000000") is None


async def test_expired_sessions_are_not_offered(keeper: callstate.Keeper, clock: FakeClock) -> None:
    """Past the window the caller's session is no longer resumable by caller id."""
    await keeper.start(caller=CALLER)
    clock.advance(601)
    assert await keeper.resume_caller(CALLER) is None


async def test_an_ended_call_can_be_rung_back(keeper: callstate.Keeper, clock: FakeClock) -> None:
    """After a hang-up the caller who rings back within the window continues."""
    s = await keeper.start(caller=CALLER)
    s.user_said("book me for eight")
    await s.end(reason="caller_hangup")
    clock.advance(60)
    back = await keeper.resume_caller(CALLER)
    assert back is not None
    assert [{"role": "user", "content": "book me for eight"}] == back.context()
    assert "active" == back.state.status


async def test_the_index_never_stores_the_caller_in_clear(
    keeper: callstate.Keeper, db: Path
) -> None:
    """The caller index and the session rows hold keyed hashes, never the number."""
    await keeper.start(caller=CALLER)
    conn = sqlite3.connect(db)
    try:
        callers = conn.execute("SELECT caller_hash FROM callers").fetchall()
        sessions = conn.execute("SELECT caller_hash FROM sessions").fetchall()
    finally:
        conn.close()
    assert 1 == len(callers)
    for (h,) in callers + sessions:
        assert "5551234567" not in h
        assert 64 == len(h)


async def test_index_lookups_survive_secret_rotation(db: Path, clock: FakeClock) -> None:
    """A session indexed under the old first secret is found after rotating it."""
    async with callstate.Keeper(f"sqlite:///{db}", secret=SECRET, clock=clock) as before:
        s = await before.start(caller=CALLER)
        await s.close()
    async with callstate.Keeper(
        f"sqlite:///{db}", secret=[b"n" * 32, SECRET], clock=clock
    ) as after:
        back = await after.resume_caller(CALLER)
        assert back is not None
        assert s.id == back.id
