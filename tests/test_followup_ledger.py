"""The follow-up ledger: retries with backoff, the attempt number, dead and orphaned
follow-ups, a start lost in a killed keeper, and ``callstate followups``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import callstate
from callstate.archive.followups import MAX_BACKOFF_S, retry_delay
from callstate.cli.main import main
from callstate.storage.base import FollowUp, FollowUpLedger
from callstate.testing import FakeClock

SECRET = b"s" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


async def _only(k: callstate.Keeper) -> FollowUp:
    store = k.store
    assert isinstance(store, FollowUpLedger)
    (f,) = await store.followup_list()
    return f


class _Flaky:
    """Fails its first ``fails`` runs, then returns the attempt it saw."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.attempts: list[int] = []

    async def __call__(self, call: callstate.CallRecord) -> int:
        self.attempts.append(call.attempt)
        if len(self.attempts) <= self.fails:
            raise ConnectionError(f"crm down ({len(self.attempts)})")
        return call.attempt


async def test_a_failing_callback_is_retried_with_backoff(url: str, clock: FakeClock) -> None:
    """A callback that raises twice runs again after 10 s then 20 s, told attempts 1, 2, 3."""
    flaky = _Flaky(fails=2)
    seen: list[callstate.RecoveryEvent] = []
    async with callstate.Keeper(url, clock=clock, sinks=[seen.append], sweep_every=None) as k:
        k.on_call_complete(flaky, grace=0, name="crm", retries=3, backoff=10)
        s = await k.start()
        await s.end()
        await k.sweep()
        f = await _only(k)
        assert ("retrying", 1, "ConnectionError: crm down (1)") == (
            f.state,
            f.attempts,
            f.last_error,
        )
        clock.advance(9)
        await k.sweep()
        assert [1] == flaky.attempts
        clock.advance(1)
        await k.sweep()
        assert [1, 2] == flaky.attempts
        clock.advance(19)
        await k.sweep()
        assert [1, 2] == flaky.attempts
        clock.advance(1)
        await k.sweep()
        f = await _only(k)
        await k.observer.drain()
    assert [1, 2, 3] == flaky.attempts
    assert ("succeeded", 3, None) == (f.state, f.attempts, f.last_error)
    states = [e.data["state"] for e in seen if e.kind == "followup.run"]
    assert ["running", "failed", "retrying"] * 2 + ["running", "succeeded"] == states


async def test_expiring_a_call_leaves_its_retrying_follow_up_as_it_was(
    url: str, clock: FakeClock
) -> None:
    """The sweep expiring an ended call looks for follow-ups its close never scheduled;
    one retrying keeps its backoff and attempt count and is not started early."""
    flaky = _Flaky(fails=1)
    async with callstate.Keeper(url, clock=clock, resume_window=60, sweep_every=None) as k:
        k.on_call_complete(flaky, grace=0, name="crm", retries=3, backoff=600)
        s = await k.start()
        await s.end()
        await k.sweep()
        before = await _only(k)
        clock.advance(61)
        assert [s.id] == (await k.sweep()).expired
        after = await _only(k)
        assert [1] == flaky.attempts
        assert ("retrying", 1, before.due_at) == (after.state, after.attempts, after.due_at)


async def test_past_its_retries_a_follow_up_is_dead_until_retried(
    url: str, clock: FakeClock
) -> None:
    """After 1 + retries failed starts it is dead with its last error; a retry runs it once more."""
    flaky = _Flaky(fails=99)
    async with callstate.Keeper(url, clock=clock, sweep_every=None) as k:
        k.on_call_complete(flaky, grace=0, name="crm", retries=1, backoff=5)
        s = await k.start()
        await s.end()
        await k.sweep()
        clock.advance(5)
        await k.sweep()
        clock.advance(1_000)
        await k.sweep()
        f = await _only(k)
        assert ("dead", 2, "ConnectionError: crm down (2)") == (f.state, f.attempts, f.last_error)
        assert [1, 2] == flaky.attempts
        store = k.store
        assert isinstance(store, FollowUpLedger)
        assert await store.followup_retry(f.followup_id, clock.now())
        await k.sweep()
        f = await _only(k)
    assert [1, 2, 3] == flaky.attempts
    assert ("dead", 3) == (f.state, f.attempts)  # its one retry was used up before


async def test_a_callback_no_keeper_knows_shows_as_orphaned(url: str, clock: FakeClock) -> None:
    """A keeper without the callback marks it orphaned with the name in the error; a keeper
    that registered it runs it once it is next due."""
    ran: list[int] = []
    async with callstate.Keeper(url, clock=clock, sweep_every=None) as owner:
        owner.on_call_complete(lambda c: ran.append(c.attempt), grace=0, name="summary")
        s = await owner.start()
        await s.end()
    seen: list[callstate.RecoveryEvent] = []
    async with callstate.Keeper(url, clock=clock, sinks=[seen.append], sweep_every=None) as bare:
        assert 0 == (await bare.sweep()).followups
        f = await _only(bare)
        await bare.observer.drain()
    assert ("orphaned", 0) == (f.state, f.attempts)
    assert f.last_error is not None
    assert "'summary'" in f.last_error
    assert ["orphaned"] == [e.data["state"] for e in seen if e.kind == "followup.run"]
    clock.advance(601)
    async with callstate.Keeper(url, clock=clock, sweep_every=None) as again:
        again.on_call_complete(lambda c: ran.append(c.attempt), grace=0, name="summary")
        await again.sweep()
        f = await _only(again)
    assert [1] == ran
    assert "succeeded" == f.state


async def test_a_start_in_a_killed_keeper_makes_the_next_one_attempt_two(
    url: str, clock: FakeClock
) -> None:
    """A keeper that claimed and started a follow-up, then died, leaves it running; once the
    claim lapses the next keeper runs it told attempt 2."""
    ran: list[int] = []
    async with callstate.Keeper(url, clock=clock, sweep_every=None) as k:
        k.on_call_complete(lambda c: ran.append(c.attempt), grace=0, name="summary")
        s = await k.start()
        await s.end()
        store = k.store
        assert isinstance(store, FollowUpLedger)
        (claimed,) = await k.store.followup_claim(clock.now(), "dead-keeper", 600)
        assert 1 == await store.followup_start(claimed.followup_id, "dead-keeper", clock.now())
        assert "running" == (await _only(k)).state
        await k.sweep()
        assert [] == ran
        clock.advance(600)
        await k.sweep()
    assert [2] == ran


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"retries": -1}, "retries"), ({"retries": 1.5}, "retries"), ({"backoff": 0}, "backoff")],
)
async def test_bad_retry_settings_are_refused(url: str, kwargs: dict[str, Any], field: str) -> None:
    """on_call_complete refuses a negative or fractional retries and a backoff <= 0."""
    async with callstate.Keeper(url, sweep_every=None) as k:
        with pytest.raises(callstate.ConfigError, match=field):
            k.on_call_complete(lambda c: None, **kwargs)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    retries=st.integers(min_value=0, max_value=100),
    backoff=st.floats(min_value=0.001, max_value=10_000),
)
def test_retry_delay_doubles_up_to_the_cap_and_stops_after_the_retries(
    attempt: int, retries: int, backoff: float
) -> None:
    """retry_delay is None past the retries; otherwise it never shrinks and stays capped."""
    delay = retry_delay(attempt, retries=retries, backoff=backoff)
    if attempt > retries:
        assert delay is None
        return
    assert delay is not None
    assert 0 < delay <= max(MAX_BACKOFF_S, backoff) or delay == MAX_BACKOFF_S
    assert delay == min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
    later = retry_delay(attempt + 1, retries=retries + 1, backoff=backoff)
    assert later is not None
    assert later >= delay


def _dead_followup(path: Path) -> str:
    """A database whose one follow-up is dead; returns its id."""

    async def build() -> str:
        clock = FakeClock(start=time.time())
        async with callstate.Keeper(f"sqlite:///{path}", clock=clock, sweep_every=None) as k:
            k.on_call_complete(_Flaky(fails=9), grace=0, name="crm", retries=0)
            s = await k.start()
            await s.end()
            await k.sweep()
            return (await _only(k)).followup_id

    return asyncio.run(build())


def test_followups_list_show_and_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """followups list/show print the state, attempts and error; retry revives a dead one once."""
    monkeypatch.setenv("COLUMNS", "250")
    db = str(tmp_path / "cs.db")
    fid = _dead_followup(tmp_path / "cs.db")
    assert 0 == main(["followups", "list", "--db", db])
    listed = capsys.readouterr().out
    assert fid in listed
    assert "crm" in listed
    assert "dead" in listed
    assert "ConnectionError: crm down (1)" in listed
    assert 0 == main(["followups", "list", "--db", f"sqlite:///{db}", "--state", "pending"])
    assert "no follow-ups" in capsys.readouterr().out
    assert 0 == main(["followups", "show", fid[:12], "--db", db])
    shown = capsys.readouterr().out
    assert "attempts" in shown
    assert "dead" in shown
    assert fid in shown
    assert 0 == main(["followups", "retry", fid, "--db", db])
    assert "due now (was dead, 1 attempts)" in capsys.readouterr().out
    assert 1 == main(["followups", "retry", fid, "--db", db])
    assert f"follow-up {fid!r} is pending" in capsys.readouterr().err
    assert 1 == main(["followups", "show", "nope", "--db", db])
    assert "matches no follow-up" in capsys.readouterr().err
