"""Resume by token or id: preflight, the resume window, caller binding, the recovery plan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate import ConfigError, SessionExpired, SessionNotFound, TokenError
from callstate.testing import FakeClock

SECRET = b"s" * 32
CALLER = "+15551234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keeper(tmp_path: Path, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET, clock=clock) as k:
        yield k


async def _dropped_call(keeper: callstate.Keeper) -> callstate.Session:
    s = await keeper.start(caller=CALLER, agent="triage")
    s.user_said("I'd like to move my booking")
    u = s.agent_started("Sure, your booking is now at eight pm")
    s.agent_progress(u, spoken_text="Sure, your booking")
    s.user_partial("actually I")
    s.connection_lost("page reload")  # else the token is refused: the session is active
    await s.flush()
    return s


async def test_preflight_answers_resumable_without_taking_ownership(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Preflight names the agent and expiry and leaves epoch and lease as they were."""
    s = await _dropped_call(keeper)
    before = await keeper.store.get(s.id)
    pre = await keeper.preflight(s.resume_token())
    after = await keeper.store.get(s.id)
    assert ("resumable", s.id, "triage", 1) == (pre.status, pre.session_id, pre.agent, pre.epoch)
    assert s.state.last_interaction_at + keeper.resume_window == pre.expires_at
    assert before == after
    assert pre.resumable


async def test_resume_by_token_returns_the_plan_and_fences_the_old_handle(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """A page-reload resume by token takes epoch 2, restores context, and fences epoch 1."""
    s = await _dropped_call(keeper)
    token = s.resume_token()
    clock.advance(8)
    s2 = await keeper.resume(token)
    assert 2 == s2.state.epoch
    assert s2.recovery is not None
    assert s2.context() == s2.recovery.messages
    assert (8.0, "actually I", "is now at eight pm") == (
        s2.recovery.gap_s,
        s2.recovery.partial,
        s2.recovery.unspoken,
    )
    assert s2.recovery.resume_note.startswith(
        "The line dropped for 8 s while you were saying “is now at eight pm”; "
        "the caller had started to say “actually I”."
    )
    with pytest.raises(callstate.StaleEpochError):
        s.user_said("stale")


async def test_a_page_reloading_twice_resumes_with_the_fresh_token(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Each resume hands out a fresh token, which resumes the next reload; the token it
    replaced is superseded and never takes the call again."""
    s = await _dropped_call(keeper)
    first = s.resume_token()
    s2 = await keeper.resume(first)
    assert s2.token is not None
    with pytest.raises(callstate.TokenSuperseded):
        await keeper.resume(first)
    s3 = await keeper.resume(s2.token)
    assert s3.token is not None
    assert (2, 3) == (s2.state.epoch, s3.state.epoch)
    assert 4 == (await keeper.resume(s3.token)).state.epoch


async def test_resume_by_session_id_for_trusted_code(keeper: callstate.Keeper) -> None:
    """A plain session id resumes without a token."""
    s = await _dropped_call(keeper)
    assert 2 == (await keeper.resume(s.id)).state.epoch


async def test_other_caller_token_never_resumes(keeper: callstate.Keeper) -> None:
    """A caller-bound token presented for another caller raises TokenError; the
    session's epoch does not move, and preflight calls it invalid."""
    s = await _dropped_call(keeper)
    token = s.resume_token()
    with pytest.raises(TokenError, match="another caller"):
        await keeper.resume(token, caller="+15550000000")
    assert 1 == (await keeper.store.get(s.id)).epoch  # type: ignore[union-attr]
    assert "invalid" == (await keeper.preflight(token, caller="+15550000000")).status
    assert 2 == (await keeper.resume(token, caller=CALLER)).state.epoch


async def test_tampered_and_wrong_secret_tokens_never_resume(
    keeper: callstate.Keeper, tmp_path: Path, clock: FakeClock
) -> None:
    """Tampered and foreign-key tokens raise TokenError and leave the session untouched."""
    s = await _dropped_call(keeper)
    token = s.resume_token()
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    async with callstate.Keeper(
        f"sqlite:///{tmp_path}/other.db", secret=b"x" * 32, clock=clock
    ) as other:
        foreign = (await other.start(session_id=s.id)).resume_token()
    for bad in (tampered, foreign):
        with pytest.raises(TokenError):
            await keeper.resume(bad)
        assert "invalid" == (await keeper.preflight(bad)).status
    assert 1 == (await keeper.store.get(s.id)).epoch  # type: ignore[union-attr]


async def test_secret_rotation_resumes_old_tokens_and_signs_with_the_new_key(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A keeper with [new, old] secrets resumes a token signed with old, and its fresh
    tokens verify under new alone."""
    url = f"sqlite:///{tmp_path}/cs.db"
    new = b"n" * 32
    async with callstate.Keeper(url, secret=SECRET, clock=clock) as before:
        s = await _dropped_call(before)
        old_token = s.resume_token()
        await s.close()
    async with callstate.Keeper(url, secret=[new, SECRET], clock=clock) as after:
        s2 = await after.resume(old_token, caller=CALLER)
        fresh = s2.resume_token()
    async with callstate.Keeper(url, secret=new, clock=clock) as only_new:
        assert "resumable" == (await only_new.preflight(fresh)).status
        assert "invalid" == (await only_new.preflight(old_token)).status


async def test_resume_window_is_measured_from_the_last_interaction(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Activity moves the window: resumable 600 s after the last turn, expired after."""
    s = await _dropped_call(keeper)
    token = s.resume_token()
    clock.advance(500)
    s.user_said("still there?")
    await s.flush()
    clock.advance(600)
    assert "resumable" == (await keeper.preflight(token)).status
    clock.advance(1)
    pre = await keeper.preflight(token)
    assert ("expired", s.id) == (pre.status, pre.session_id)


async def test_expired_resume_raises_and_archives_the_call_once(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Past the window resume raises SessionExpired, archives the call as abandoned once,
    and later attempts (token or id) still say expired."""
    s = await _dropped_call(keeper)
    token = s.resume_token()
    clock.advance(601)
    with pytest.raises(SessionExpired):
        await keeper.resume(token)
    with pytest.raises(SessionExpired):
        await keeper.resume(s.id)
    records = await keeper.archive.list(session_id=s.id)
    assert [("abandoned", f"{s.id}:1")] == [(r.outcome, r.record_id) for r in records]
    assert "expired" == (await keeper.preflight(token)).status
    assert 1 == keeper.observer.counts["session.expired"]


async def test_expired_token_is_session_expired(keeper: callstate.Keeper, clock: FakeClock) -> None:
    """A token past its own ttl raises SessionExpired even while the window is open."""
    s = await _dropped_call(keeper)
    token = s.resume_token(ttl=5)
    clock.advance(6)
    with pytest.raises(SessionExpired, match="token"):
        await keeper.resume(token)
    assert "expired" == (await keeper.preflight(token)).status


async def test_unknown_session_is_reported_as_unknown(keeper: callstate.Keeper) -> None:
    """An id the store never saw: preflight says unknown, resume raises SessionNotFound."""
    assert "unknown" == (await keeper.preflight("nope")).status
    with pytest.raises(SessionNotFound):
        await keeper.resume("nope")


@pytest.mark.parametrize("bad", ["", None, 42])
async def test_garbage_input_is_a_token_error(keeper: callstate.Keeper, bad: object) -> None:
    """Empty or non-string input is refused by resume and called invalid by preflight."""
    with pytest.raises(TokenError, match="token_or_id"):
        await keeper.resume(bad)  # type: ignore[arg-type]
    assert "invalid" == (await keeper.preflight(bad)).status  # type: ignore[arg-type]


async def test_tokens_need_a_secret(tmp_path: Path) -> None:
    """Without a secret resume_token raises ConfigError saying what to configure."""
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db") as k:
        s = await k.start()
        with pytest.raises(ConfigError, match=r"Keeper\(secret=...\)"):
            s.resume_token()


async def test_session_ids_cannot_look_like_tokens(keeper: callstate.Keeper) -> None:
    """A session id with the token prefix is refused, so the two never collide."""
    with pytest.raises(ConfigError, match=r"cs1\."):
        await keeper.start(session_id="cs1.abc")


async def test_resume_emits_time_to_recover(keeper: callstate.Keeper) -> None:
    """Each resume emits session.resumed with a latency that stats() summarises."""
    s = await _dropped_call(keeper)
    await keeper.resume(s.resume_token())
    await keeper.observer.drain()
    stats = keeper.stats()
    assert 1 == stats.counts["session.resumed"]
    assert 1 == stats.time_to_recover.count
    assert stats.time_to_recover.p99 is not None


async def test_the_plan_reports_how_in_doubt_calls_were_resolved(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A write left running by a dead worker is resolved on resume (never re-run, so
    unknown) and the plan and note ask the agent to verify it with the caller."""
    url = f"sqlite:///{tmp_path}/cs.db"
    tools = callstate.ToolRegistry()
    gate, started = asyncio.Event(), asyncio.Event()

    @tools.tool(effect="write")
    async def charge_card(amount: int) -> dict[str, int]:
        started.set()  # the guard runs the tool only once its intent is durable
        await gate.wait()
        return {"charged": amount}

    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as a:
        s = await a.start(caller=CALLER)
        run = asyncio.create_task(s.run_tool("charge_card", {"amount": 40}, call_id="c1"))
        await asyncio.wait_for(started.wait(), timeout=10)
        async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as b:
            # the dead worker's lease has not lapsed yet: the reconnect takes the call over
            s2 = await b.resume(s.resume_token(), takeover=True)
            plan = s2.recovery
        gate.set()
        await asyncio.gather(run, return_exceptions=True)
    assert plan is not None
    assert [("c1", "charge_card", "unknown")] == [
        (c.call_id, c.name, c.resolution) for c in plan.in_doubt
    ]
    assert "charge_card may or may not have gone through: verify with the caller" in (
        plan.resume_note
    )
