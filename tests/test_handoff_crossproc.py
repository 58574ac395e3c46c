"""Process A offers, process B accepts through one SQLite file: fencing and state across processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import callstate
from callstate.journal import events as ev
from callstate.journal.snapshot import decode_state
from callstate.journal.state import copy_state, fold
from callstate.storage.base import Batch

SECRET = "cross-process-handoff-secret-0123"

# Process B: accept the package, report the state, land late results on request.
PEER = """
import asyncio, sys
import callstate
from callstate.journal.snapshot import encode_state

async def main(url: str, package_id: str, secret: str) -> None:
    loop = asyncio.get_running_loop()
    async with callstate.Keeper(url, secret=secret) as keeper:
        target = await keeper.accept(package_id, agent="billing")
        sys.stdout.write(encode_state(target.state).decode() + "\\n")
        sys.stdout.flush()
        await loop.run_in_executor(None, sys.stdin.readline)  # "collect"
        await keeper.collect_late_results()
        sys.stdout.write(encode_state(target.state).decode() + "\\n")
        sys.stdout.flush()
        await loop.run_in_executor(None, sys.stdin.readline)  # "quit"

asyncio.run(main(*sys.argv[1:]))
"""


async def _line(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stdout is not None
    # a generous bound so a broken peer fails the test instead of hanging it
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if not line:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        pytest.fail(f"peer process ended early: {err.decode()[-2000:]}")
    return line


async def test_offer_in_one_process_accept_in_another(tmp_path: Path) -> None:
    """B owns A's session at epoch+1 with A's offer-time state plus the acceptance; A is fenced."""
    started, release = asyncio.Event(), asyncio.Event()
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str) -> dict[str, str]:
        started.set()
        await release.wait()
        return {"moved": booking_id}

    url = f"sqlite:///{tmp_path}/shared.db"
    peer = tmp_path / "peer.py"
    peer.write_text(PEER)
    async with callstate.Keeper(url, secret=SECRET, tools=tools) as a:
        s = await a.start(agent="triage", caller="+15551234567", userdata={"plan": "pro"})
        s.user_said("Please move booking B1 to eight and then I have a billing question")
        u = s.agent_started("Moving it now")
        s.agent_finished(u)
        task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
        await started.wait()
        s.user_partial("and about my last invoice")
        pkg = await s.handoff(to="billing", reason="billing question")
        at_offer = copy_state(s.state)

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(peer),
            url,
            pkg.package_id,
            SECRET,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            b_state = decode_state(await _line(proc))

            # B's state is A's state at the offer plus exactly the acceptance
            tail = [ev.decode_event(r) for r in await a.store.read_events(s.id, at_offer.seq)]
            assert [ev.HandoffAccepted] == [type(e) for e in tail]
            accepted = tail[0]
            assert isinstance(accepted, ev.HandoffAccepted)
            assert (pkg.package_id, "billing", 2, "triage") == (
                accepted.package_id,
                accepted.agent,
                accepted.epoch,
                accepted.from_agent,
            )
            assert fold(tail, at_offer) == b_state
            assert ("billing", 2, "active") == (b_state.agent, b_state.epoch, b_state.status)

            # A's next write fails: its handle is frozen, and the store fences its epoch
            with pytest.raises(callstate.SessionFrozen):
                s.user_said("hello?")
            with pytest.raises(callstate.SessionFrozen):
                await s.flush()
            stale = ev.UserTurn(seq=b_state.seq + 1, at=0.0, text="stale")
            refused = await a.store.append(
                [
                    Batch(
                        session_id=s.id,
                        epoch=1,
                        first_seq=stale.seq,
                        events=[ev.encode_event(stale)],
                    )
                ]
            )
            assert isinstance(refused[0], callstate.StaleEpochError)

            # the call A started completes; its result lands in B's session, owed there
            release.set()
            outcome = await task
            assert ("succeeded", {"moved": "B1"}) == (outcome.status, outcome.result)
            assert proc.stdin is not None
            proc.stdin.write(b"collect\n")
            await proc.stdin.drain()
            after = decode_state(await _line(proc))
            call = after.calls["c1"]
            assert ("succeeded", {"moved": "B1"}, "held") == (
                call.status,
                call.result,
                call.delivery,
            )
            proc.stdin.write(b"quit\n")
            await proc.stdin.drain()
            assert 0 == await asyncio.wait_for(proc.wait(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stored = await a.load(s.id)
        assert (2, "billing", "succeeded") == (
            stored.epoch,
            stored.agent,
            stored.calls["c1"].status,
        )
