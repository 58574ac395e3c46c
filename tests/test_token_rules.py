"""Tokens never take a call from a newer or live owner: superseded, ended, active in another tab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate import CallEnded, SessionActive, TokenError, TokenSuperseded
from callstate.continuity.tokens import verify_token
from callstate.testing import FakeClock

SECRET = b"t" * 32
CALLER = "+15551234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keeper(tmp_path: Path, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    # a long lease: the heartbeat (every lease_ttl/3 real seconds) never renews mid-test
    async with callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", secret=SECRET, clock=clock, lease_ttl=300
    ) as k:
        yield k


async def _live_call(keeper: callstate.Keeper) -> callstate.Session:
    s = await keeper.start(caller=CALLER, agent="triage")
    s.user_said("I'd like to move my booking")
    await s.flush()
    return s


async def _epoch(keeper: callstate.Keeper, sid: str) -> int:
    rec = await keeper.store.get(sid)
    assert rec is not None
    return rec.epoch


async def test_a_second_tab_gets_session_active_not_a_silent_takeover(
    keeper: callstate.Keeper,
) -> None:
    """With the owner's lease live and its link up, the same token in another tab raises
    SessionActive (code session_active); the first tab keeps the call."""
    s = await _live_call(keeper)
    token = s.resume_token()
    with pytest.raises(SessionActive, match="active in another tab") as info:
        await keeper.resume(token)
    assert ("session_active", s.id) == (info.value.code, info.value.session_id)
    assert 1 == await _epoch(keeper, s.id)
    pre = await keeper.preflight(token)
    assert ("active", s.id, False) == (pre.status, pre.session_id, pre.resumable)
    s.user_said("still mine")  # the first tab was not cut off
    await s.flush()


async def test_takeover_true_takes_the_call_from_the_other_tab(keeper: callstate.Keeper) -> None:
    """resume(token, takeover=True) takes the live session at epoch 2 and fences the first
    tab; the first tab's token is superseded from then on."""
    s = await _live_call(keeper)
    token = s.resume_token()
    s2 = await keeper.resume(token, takeover=True)
    assert 2 == s2.state.epoch
    with pytest.raises(callstate.StaleEpochError):
        s.user_said("fenced")
    with pytest.raises(TokenSuperseded):
        await keeper.resume(token, takeover=True)


async def test_a_reload_after_connection_lost_resumes_with_the_same_token(
    keeper: callstate.Keeper,
) -> None:
    """Once the owner journaled connection_lost its link is down: the token resumes."""
    s = await _live_call(keeper)
    token = s.resume_token()
    s.connection_lost("page reload")
    await s.flush()
    assert "resumable" == (await keeper.preflight(token)).status
    assert 2 == (await keeper.resume(token)).state.epoch


async def test_a_lapsed_lease_resumes_without_a_reported_drop(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """A worker that died without reporting the drop stops holding the call once its
    lease lapses: the token then resumes."""
    s = await _live_call(keeper)
    token = s.resume_token()
    clock.advance(301)
    assert 2 == (await keeper.resume(token)).state.epoch


async def test_every_resume_hands_out_a_fresh_token_and_supersedes_the_old_one(
    keeper: callstate.Keeper,
) -> None:
    """session.token is a token for the new epoch; the token used before it is refused
    with TokenSuperseded (preflight: superseded) and the fresh one resumes."""
    s = await _live_call(keeper)
    first = s.resume_token()
    s.connection_lost()
    s2 = await keeper.resume(first)
    assert s2.token is not None
    assert (s.id, 2) == (lambda c: (c.session_id, c.epoch))(verify_token(s2.token, [SECRET]))
    with pytest.raises(TokenSuperseded, match="superseded") as info:
        await keeper.resume(first)
    assert ("token_superseded", 1, 2) == (
        info.value.code,
        info.value.epoch,
        info.value.current_epoch,
    )
    pre = await keeper.preflight(first)
    assert ("superseded", s.id, 1) == (pre.status, pre.session_id, pre.epoch)
    assert 2 == await _epoch(keeper, s.id)
    assert 3 == (await keeper.resume(s2.token)).state.epoch  # s2 is still on hold


async def test_a_server_resume_by_id_supersedes_no_token(keeper: callstate.Keeper) -> None:
    """Trusted code taking the session by id keeps today's behaviour (even from a live
    owner) and leaves the client's token valid."""
    s = await _live_call(keeper)
    token = s.resume_token()
    s2 = await keeper.resume(s.id)  # live owner, link up: by id it is still taken
    assert 2 == s2.state.epoch
    assert 3 == (await keeper.resume(token)).state.epoch  # s2 is on hold: not active


async def test_a_token_from_before_a_handoff_never_takes_the_call_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    """After the target accepted, the source's old token raises TokenSuperseded; the
    accepted session's own token resumes it."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with callstate.Keeper(url, secret=SECRET, clock=clock, lease_ttl=300) as a:
        s = await _live_call(a)
        old = s.resume_token()
        pkg = await s.handoff(to="billing")
        async with callstate.Keeper(url, secret=SECRET, clock=clock, lease_ttl=300) as b:
            target = await b.accept(pkg.to_bytes())
            assert target.token is not None
            with pytest.raises(TokenSuperseded):
                await a.resume(old, takeover=True)
            assert "superseded" == (await a.preflight(old)).status
            assert "billing" == (await b.load(s.id)).agent
            target.connection_lost()
            await target.flush()
            assert "billing" == (await a.resume(target.token)).state.agent


async def test_a_token_for_an_ended_call_is_refused(keeper: callstate.Keeper) -> None:
    """After end() a token raises CallEnded (preflight: ended), while a ring-back by caller
    id still continues the call."""
    s = await _live_call(keeper)
    token = s.resume_token()
    await s.end(reason="caller_hangup")
    with pytest.raises(CallEnded, match="ended") as info:
        await keeper.resume(token)
    assert "call_ended" == info.value.code
    assert ("ended", s.id) == (lambda p: (p.status, p.session_id))(await keeper.preflight(token))
    back = await keeper.resume_caller(CALLER)
    assert back is not None
    assert (2, True) == (back.state.epoch, back.token is not None)


async def test_resume_after_end_lets_a_token_continue_an_ended_call(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Keeper(resume_after_end=True) resumes an ended call by token within the window."""
    async with callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", secret=SECRET, clock=clock, resume_after_end=True
    ) as k:
        s = await _live_call(k)
        token = s.resume_token()
        await s.end()
        assert "resumable" == (await k.preflight(token)).status
        assert 2 == (await k.resume(token)).state.epoch


async def test_refusals_are_token_errors_and_leave_the_session_alone(
    keeper: callstate.Keeper,
) -> None:
    """Every refusal is a TokenError, so code catching TokenError keeps working, and the
    stored record is as it was."""
    s = await _live_call(keeper)
    before = await keeper.store.get(s.id)
    with pytest.raises(TokenError):
        await keeper.resume(s.resume_token())
    assert before == await keeper.store.get(s.id)


async def test_resume_after_end_must_be_a_bool(tmp_path: Path) -> None:
    """A non-bool resume_after_end is a ConfigError naming the field."""
    with pytest.raises(callstate.ConfigError, match="resume_after_end"):
        callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", resume_after_end="yes")  # type: ignore[arg-type]
