"""Start, record, flush and resume a session end to end on each embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

import callstate

SECRET = b"smoke-test-secret-32-bytes-long!"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_resume_restores_flushed_events_and_fences_old_owner(
    kind: str, tmp_path: Path
) -> None:
    """A resumed session has everything flushed, epoch+1; the old owner's next flush fails."""
    store = callstate.open_store("memory://" if kind == "memory" else f"sqlite:///{tmp_path}/cs.db")
    async with callstate.Keeper(store, secret=SECRET) as a:
        s = await a.start(caller="+15551234567", agent="triage")
        s.user_said("I'd like to move my booking")
        await s.flush()
        b = callstate.Keeper(store, secret=SECRET)
        b.host.flusher.start()
        s2 = await b.resume(s.id)
        assert s2.state.epoch == 2
        assert s2.context() == [{"role": "user", "content": "I'd like to move my booking"}]
        s.user_said("stale write")
        with pytest.raises(callstate.StaleEpochError):
            await s.flush()
        await b.host.flusher.stop()
