"""A follow-up sees the whole call: every leg in order and what earlier follow-ups did,
once per quiet period, with a stable idempotency key, on SQLite, Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import callstate
from callstate.archive.calls import FollowUpResult, assemble_call, decode_result, encode_result
from callstate.archive.followups import FOLLOWUP_CLAIM_S
from callstate.storage.base import FollowUpLog, FollowUpRun, Store
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"s" * 32
CALLER = "+15551234567"
ASK_1 = "Open a bug about the thumbnails, please."
ASK_2 = "Oh, and remind me to follow up with Markus."
MakeStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """A factory of store instances on one fresh database, prefix or schema."""
    if request.param == "sqlite":
        yield lambda: callstate.open_store(f"sqlite:///{tmp_path}/cs.db")
    elif request.param == "redis":
        from callstate.storage.redis import RedisStore

        url, prefix = redis_url(), unique("call")
        yield lambda: RedisStore(url, prefix=prefix)
        await drop_redis_prefix(url, prefix)
    else:
        from callstate.storage.postgres import PostgresStore

        url, schema = postgres_url(), unique("call")
        yield lambda: PostgresStore(url, schema=schema)
        await drop_pg_schema(url, schema)


def _tools() -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def open_ticket(title: str, *, ctx: callstate.ToolContext) -> dict[str, str]:
        return {"ticket": "BUG-1", "title": title}

    return tools


class Seen:
    """A follow-up callback that keeps every ``CallRecord`` it is given."""

    def __init__(self) -> None:
        self.calls: list[callstate.CallRecord] = []

    def __call__(self, call: callstate.CallRecord) -> dict[str, Any]:
        self.calls.append(call)
        return {"handled": call.requests_since_last_followup}


def _keeper(make: MakeStore, clock: FakeClock, seen: Seen, grace: float | None) -> callstate.Keeper:
    k = callstate.Keeper(make(), secret=SECRET, clock=clock, sweep_every=None, tools=_tools())
    k.on_call_complete(seen, grace=grace, name="work")
    return k


async def _first_leg(k: callstate.Keeper) -> callstate.Session:
    s = await k.start(caller=CALLER, agent="support")
    s.user_said(ASK_1)
    await s.run_tool("open_ticket", {"title": "thumbnails"}, call_id="c1")
    s.agent_finished(s.agent_started("I've opened BUG-1."))
    await s.end(reason="caller_hangup")
    return s


async def _ring_back(k: callstate.Keeper) -> callstate.Session:
    back = await k.resume_caller(CALLER)
    assert back is not None
    back.user_said(ASK_2)
    await back.end(reason="caller_hangup")
    return back


async def test_a_ring_back_inside_the_grace_gives_one_follow_up_of_both_legs(
    stores: MakeStore,
) -> None:
    """Hang up, ring back within the grace, hang up: the one follow-up that runs gets
    both legs in order, both requests, the tool ledger, the recovery events and the
    outcomes, keyed ``call:2``."""
    clock, seen = FakeClock(), Seen()
    async with _keeper(stores, clock, seen, grace=300) as k:
        s = await _first_leg(k)
        clock.advance(60)
        await _ring_back(k)
        clock.advance(299)
        assert 0 == (await k.sweep()).followups
        clock.advance(1)
        assert 1 == (await k.sweep()).followups
        clock.advance(1_000)
        assert 0 == (await k.sweep()).followups
    (call,) = seen.calls
    assert [ASK_1, ASK_2] == call.requests_since_last_followup
    assert ([f"{s.id}:1", f"{s.id}:2"], 2) == ([r.record_id for r in call.legs], call.leg)
    assert (f"{s.id}:2", s.id, CALLER) == (call.idempotency_key, call.call_id, call.caller)
    assert ["completed", "recovered"] == call.outcomes
    assert ["user", "call", "assistant", "user"] == [i.kind for i in call.transcript]
    assert [("c1", "succeeded")] == [(c.call_id, c.status) for c in call.tools]
    assert "session.resumed" in [e.kind for e in call.recovery]
    assert [] == call.previous_followups


async def test_a_grace_shorter_than_the_window_runs_between_legs_and_the_next_knows(
    stores: MakeStore,
) -> None:
    """Grace 300 s, window 600 s, ring-back at 400 s: the first follow-up sees leg 1;
    the second sees leg 2 as the only new request and the first's result."""
    clock, seen = FakeClock(), Seen()
    async with _keeper(stores, clock, seen, grace=300) as k:
        s = await _first_leg(k)
        clock.advance(300)
        assert 1 == (await k.sweep()).followups
        clock.advance(100)
        await _ring_back(k)
        clock.advance(300)
        assert 1 == (await k.sweep()).followups
    first, second = seen.calls
    assert ([ASK_1], f"{s.id}:1", []) == (
        first.requests_since_last_followup,
        first.idempotency_key,
        first.previous_followups,
    )
    assert [ASK_2] == second.requests_since_last_followup
    assert [ASK_1, ASK_2] == [i.text for i in second.transcript if i.kind == "user"]
    (before,) = second.previous_followups
    assert (f"{s.id}:1", True, {"handled": [ASK_1]}, [1]) == (
        before.idempotency_key,
        before.ok,
        before.result,
        before.legs,
    )
    assert f"{s.id}:2" == second.idempotency_key


async def test_the_default_grace_is_the_resume_window(stores: MakeStore) -> None:
    """With the default grace a ring-back 400 s after the hang-up still makes one
    follow-up, after the continuation, covering both legs."""
    clock, seen = FakeClock(), Seen()
    async with _keeper(stores, clock, seen, grace=None) as k:
        await _first_leg(k)
        clock.advance(400)
        assert 0 == (await k.sweep()).followups
        await _ring_back(k)
        clock.advance(599)
        assert 0 == (await k.sweep()).followups
        clock.advance(1)
        assert 1 == (await k.sweep()).followups
    (call,) = seen.calls
    assert [ASK_1, ASK_2] == call.requests_since_last_followup


async def test_a_failed_follow_up_leaves_its_requests_to_the_next(stores: MakeStore) -> None:
    """A run that raised is shown to the next as failed, and its requests are still due."""
    clock = FakeClock()
    seen: list[callstate.CallRecord] = []

    def flaky(call: callstate.CallRecord) -> None:
        seen.append(call)
        if len(seen) == 1:
            raise RuntimeError("tracker down")

    async with callstate.Keeper(stores(), secret=SECRET, clock=clock, sweep_every=None) as k:
        k.on_call_complete(flaky, grace=60, name="work", retries=0)
        s = await k.start(caller=CALLER)
        s.user_said(ASK_1)
        await s.end()
        clock.advance(60)
        await k.sweep()
        clock.advance(10)
        await _ring_back(k)
        clock.advance(60)
        await k.sweep()
    (failed,) = seen[1].previous_followups
    assert (False, "RuntimeError: tracker down", None) == (failed.ok, failed.error, failed.result)
    assert [ASK_1, ASK_2] == seen[1].requests_since_last_followup


async def test_a_run_cut_short_runs_again_with_the_same_key(stores: MakeStore) -> None:
    """A keeper that died holding the claim leaves the follow-up to lapse; the next
    keeper runs it with the same idempotency key, once."""
    clock, seen = FakeClock(), Seen()
    async with _keeper(stores, clock, seen, grace=0) as k:
        s = await _first_leg(k)
        (taken,) = await k.store.followup_claim(clock.now(), "dead-keeper", FOLLOWUP_CLAIM_S)
        assert 0 == (await k.sweep()).followups
        clock.advance(FOLLOWUP_CLAIM_S)
        assert 1 == (await k.sweep()).followups
        assert 0 == (await k.sweep()).followups
    assert [f"{s.id}:1"] == [c.idempotency_key for c in seen.calls]
    assert taken.session_id == s.id


async def test_a_logged_run_is_not_run_again(stores: MakeStore) -> None:
    """A run whose result was logged before its keeper died is retired, not repeated."""
    clock, seen = FakeClock(), Seen()
    async with _keeper(stores, clock, seen, grace=0) as k:
        s = await _first_leg(k)
        (taken,) = await k.store.followup_claim(clock.now(), "dead-keeper", FOLLOWUP_CLAIM_S)
        store = k.store
        assert isinstance(store, FollowUpLog)
        done = FollowUpResult(
            followup_id=taken.followup_id,
            call_id=s.id,
            name="work",
            leg=1,
            idempotency_key=f"{s.id}:1",
            ran_at=clock.now(),
            ok=True,
        )
        await store.followup_record(
            FollowUpRun(followup_id=taken.followup_id, session_id=s.id, data=encode_result(done))
        )
        clock.advance(FOLLOWUP_CLAIM_S)
        assert 0 == (await k.sweep()).followups
        clock.advance(FOLLOWUP_CLAIM_S)
        assert 0 == (await k.sweep()).followups
    assert [] == seen.calls


def test_golden_v1_follow_up_result_still_decodes() -> None:
    """The stored form of a follow-up result of format version 1 decodes unchanged."""
    raw = (Path(__file__).parent / "golden" / "followup_result_v1.json").read_bytes()
    result = decode_result(raw)
    assert ("golden-session:2", [1, 2], {"ticket": "BUG-1"}) == (
        result.idempotency_key,
        result.legs,
        {"ticket": result.result["ticket"]},
    )
    assert raw.strip() == encode_result(result)


def test_a_newer_follow_up_result_is_refused_naming_the_version() -> None:
    """A result written by a newer format raises VersionError naming `$.v`."""
    with pytest.raises(callstate.VersionError, match=r"version 2 at `\$\.v`"):
        decode_result(b'{"v": 2}')


def _leg(epoch: int, said: str) -> callstate.ArchiveRecord:
    from callstate.archive.records import Timings
    from callstate.journal.state import Item

    t = float(epoch)
    return callstate.ArchiveRecord(
        record_id=f"c:{epoch}",
        session_id="c",
        epoch=epoch,
        outcome="recovered" if epoch > 1 else "completed",
        agent="a",
        timings=Timings(session_started_at=0, started_at=t, ended_at=t, closed_at=t, duration_s=0),
        transcript=[Item(kind="user", text=said)],
    )


@given(
    order=st.permutations(range(1, 6)),
    repeats=st.lists(st.integers(1, 5), max_size=4),
    leg=st.integers(1, 5),
    done=st.sets(st.integers(1, 5)),
)
def test_assembling_orders_legs_and_counts_from_the_last_success(
    order: list[int], repeats: list[int], leg: int, done: set[int]
) -> None:
    """Whatever order the legs come in, repeated or not, the call has each leg up to
    ``leg`` once, oldest first, and its requests are those after the last earlier
    success."""
    legs = [_leg(e, f"ask {e}") for e in [*order, *repeats]]
    results = [
        FollowUpResult(
            followup_id=f"c:{d}|work",
            call_id="c",
            name="work",
            leg=d,
            idempotency_key=f"c:{d}",
            ran_at=float(d),
            ok=True,
        )
        for d in done
    ]
    call = assemble_call(legs, results, call_id="c", leg=leg, name="work")
    assert list(range(1, leg + 1)) == [r.epoch for r in call.legs]
    last = max((d for d in done if d < leg), default=0)
    assert [f"ask {e}" for e in range(last + 1, leg + 1)] == call.requests_since_last_followup
    assert sorted(d for d in done if d < leg) == [f.leg for f in call.previous_followups]


def _cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {"sms": "sent"}
    loop["again"] = loop
    return loop


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("result", [_cyclic, lambda: _deep(5_000)], ids=["cyclic", "deep"])
async def test_a_result_that_cannot_be_stored_as_json_is_kept_as_text(
    stores: MakeStore, result: Callable[[], Any]
) -> None:
    """A callback returning a self-referencing or too-deep value still succeeds: the next
    run sees its result as text, and the sweep raises nothing."""
    clock, seen = FakeClock(), Seen()
    returned = result()
    async with callstate.Keeper(
        stores(), secret=SECRET, clock=clock, sweep_every=None, tools=_tools()
    ) as k:
        k.on_call_complete(lambda call: seen(call) and returned, grace=300, name="work")
        await _first_leg(k)
        clock.advance(300)
        assert 1 == (await k.sweep()).followups
        clock.advance(100)
        await _ring_back(k)
        clock.advance(300)
        assert 1 == (await k.sweep()).followups
    (before,) = seen.calls[1].previous_followups
    assert (True, str) == (before.ok, type(before.result))
