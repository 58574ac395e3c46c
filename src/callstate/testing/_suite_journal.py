"""Store conformance, part one: schema, lifecycle, sessions and their journal."""

from __future__ import annotations

import asyncio

import pytest

from ..errors import ConflictError, SessionNotFound, StaleEpochError, StorageError
from ..journal.events import UserTurn, decode_event, encode_event
from ..storage.base import Batch, SessionRecord, Store
from ._suite_base import T0, Suite, create, make_batch, new_id, seqs, turn

__all__ = ["JournalSuite"]


class JournalSuite(Suite):
    """Store conformance, part one."""

    # -- schema and lifecycle ----------------------------------------------------------

    async def test_schema_version_is_at_least_one(self, store: Store) -> None:
        """An opened store reports its applied migrations: version 1 or later."""
        assert await store.schema_version() >= 1

    async def test_open_again_is_harmless(self, store: Store) -> None:
        """Opening an open store again changes nothing and loses nothing."""
        sid = await create(store, events=3)
        await store.open()
        assert [1, 2, 3] == seqs(await store.read_events(sid))

    async def test_closed_store_raises_storage_error_and_reopens(self, store: Store) -> None:
        """A closed store refuses calls with StorageError; reopened, its data is all there."""
        sid = await create(store, events=2)
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StorageError):
            await store.get(sid)
        await store.open()
        assert [1, 2] == seqs(await store.read_events(sid))

    # -- sessions and journal ----------------------------------------------------------

    async def test_create_then_get_and_load(self, store: Store) -> None:
        """A created session's record and first events read back exactly as written."""
        sid = await create(
            store, events=3, agent="billing", caller_hash="h1", at=T0 + 0.5, lease_until=T0 + 9
        )
        rec = await store.get(sid)
        expected = SessionRecord(
            session_id=sid,
            epoch=1,
            seq=3,
            agent="billing",
            status="active",
            caller_hash="h1",
            created_at=T0 + 0.5,
            last_interaction_at=T0 + 0.5,
            lease_owner="owner-a",
            lease_until=T0 + 9,
            snapshot_seq=0,
        )
        assert expected == rec
        loaded = await store.load(sid)
        assert expected == loaded.record
        assert loaded.snapshot is None
        assert [1, 2, 3] == seqs(loaded.events)
        assert all(type(e) is bytes for e in loaded.events)

    async def test_create_duplicate_raises_conflict_and_keeps_original(self, store: Store) -> None:
        """Creating an existing session id raises ConflictError; the original is untouched."""
        sid = await create(store, events=2, agent="triage")
        before = await store.read_events(sid)
        dup = SessionRecord(session_id=sid, epoch=1, agent="intruder")
        first = Batch(session_id=sid, epoch=1, first_seq=1, events=[turn(1, "intruder")])
        with pytest.raises(ConflictError):
            await store.create(dup, first)
        rec = await store.get(sid)
        assert rec is not None
        assert ("triage", 1, 2) == (rec.agent, rec.epoch, rec.seq)
        assert before == await store.read_events(sid)

    async def test_concurrent_creates_of_one_id_exactly_one_wins(self, store: Store) -> None:
        """Racing creates of one session id: exactly one succeeds, the rest get ConflictError."""
        sid = new_id("race")

        async def create(i: int) -> None:
            record = SessionRecord(session_id=sid, epoch=1, agent=f"a{i}")
            first = Batch(
                session_id=sid, epoch=1, first_seq=1, events=[turn(1, f"c{i}")], agent=f"a{i}"
            )
            await store.create(record, first)

        results = await asyncio.gather(
            *(create(i) for i in range(self.racers)), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert 1 == len(winners)
        assert all(isinstance(r, ConflictError) for r in results if r is not None)
        raw = await store.read_events(sid)
        assert 1 == len(raw)
        event = decode_event(raw[0])
        assert isinstance(event, UserTurn)
        assert f"c{winners[0]}" == event.text

    async def test_create_first_batch_must_start_at_seq_one(self, store: Store) -> None:
        """A first batch that does not start at seq 1 is refused and creates nothing."""
        sid = new_id("bad-first")
        record = SessionRecord(session_id=sid, epoch=1)
        with pytest.raises(ConflictError):
            await store.create(
                record, Batch(session_id=sid, epoch=1, first_seq=2, events=[turn(2)])
            )
        assert await store.get(sid) is None

    async def test_unknown_session(self, store: Store) -> None:
        """An unknown id: get is None, load and read_events raise SessionNotFound naming it."""
        assert await store.get("nope") is None
        with pytest.raises(SessionNotFound) as exc:
            await store.load("nope")
        assert "nope" == exc.value.session_id
        assert "nope" in str(exc.value)
        with pytest.raises(SessionNotFound):
            await store.read_events("nope")

    async def test_append_of_nothing_returns_nothing(self, store: Store) -> None:
        """An empty group commit returns an empty result list."""
        assert [] == await store.append([])

    async def test_group_commit_with_mixed_outcomes(self, store: Store) -> None:
        """One append call: only the good batch lands; stale, gap and unknown ones write nothing."""
        good = await create(store, "good", events=2)
        stale = await create(store, "stale", events=2)
        gap = await create(store, "gap", events=2)
        unknown = new_id("unknown")
        await store.claim(stale, 1, "owner-b", T0 + 30)  # stale is at epoch 2 now
        results = await store.append(
            [
                make_batch(stale, 1, 3, 2),
                make_batch(gap, 1, 5, 2),
                make_batch(unknown, 1, 1, 1),
                make_batch(good, 1, 3, 3, last_interaction_at=T0 + 50),
            ]
        )
        assert 4 == len(results)
        stale_error, gap_error, unknown_error, good_result = results
        assert isinstance(stale_error, StaleEpochError)
        assert (stale, 1, 2) == (
            stale_error.session_id,
            stale_error.epoch,
            stale_error.current_epoch,
        )
        assert isinstance(gap_error, ConflictError)
        assert isinstance(unknown_error, SessionNotFound)
        assert unknown == unknown_error.session_id
        assert good_result is None
        assert [1, 2, 3, 4, 5] == seqs(await store.read_events(good))
        assert [1, 2] == seqs(await store.read_events(stale))
        assert [1, 2] == seqs(await store.read_events(gap))
        assert await store.get(unknown) is None
        for sid, seq in ((good, 5), (stale, 2), (gap, 2)):
            rec = await store.get(sid)
            assert rec is not None
            assert seq == rec.seq

    async def test_refused_batch_writes_none_of_its_events(self, store: Store) -> None:
        """A batch refused for a stale epoch or an overlap leaves no event of itself behind."""
        sid = await create(store, events=3)
        assert [None] == await store.append([make_batch(sid, 1, 4, 2)])
        overlap = make_batch(sid, 1, 5, 4)  # seq 5 exists: the whole batch must be refused
        stale = make_batch(sid, 0, 6, 4)
        results = await store.append([overlap, stale])
        assert isinstance(results[0], ConflictError)
        assert isinstance(results[1], StaleEpochError)
        assert [1, 2, 3, 4, 5] == seqs(await store.read_events(sid))
        rec = await store.get(sid)
        assert rec is not None
        assert 5 == rec.seq

    async def test_batches_for_one_session_apply_in_order(self, store: Store) -> None:
        """Within one call, each batch is checked against the journal the earlier ones left."""
        sid = await create(store, events=1)
        results = await store.append(
            [make_batch(sid, 1, 2, 2), make_batch(sid, 1, 4, 1), make_batch(sid, 1, 4, 1)]
        )
        assert results[:2] == [None, None]
        assert isinstance(results[2], ConflictError)
        assert [1, 2, 3, 4] == seqs(await store.read_events(sid))

    async def test_seq_stays_gap_free(self, store: Store) -> None:
        """Many appends of varying size produce seq 1..N with no gap or repeat, in order."""
        sid = await create(store, events=1)
        seq = 1
        for size in (1, 5, 2, 17, 1, 40, 3):
            assert [None] == await store.append([make_batch(sid, 1, seq + 1, size)])
            seq += size
        raw = await store.read_events(sid)
        assert list(range(1, seq + 1)) == seqs(raw)
        assert [turn(s) for s in range(2, seq + 1)] == raw[1:]

    async def test_racing_appends_at_one_seq_exactly_one_lands(self, store: Store) -> None:
        """Concurrent appends of the same seq for one session: exactly one batch lands, whole."""
        sid = await create(store, events=1)

        async def append(i: int) -> object:
            events = [turn(2, f"w{i}a"), turn(3, f"w{i}b")]
            batch = Batch(session_id=sid, epoch=1, first_seq=2, events=events)
            return (await store.append([batch]))[0]

        results = await asyncio.gather(*(append(i) for i in range(self.racers)))
        winners = [i for i, r in enumerate(results) if r is None]
        assert 1 == len(winners)
        assert all(isinstance(r, ConflictError) for r in results if r is not None)
        texts = [getattr(decode_event(r), "text", None) for r in await store.read_events(sid)]
        w = winners[0]
        assert [None, f"w{w}a", f"w{w}b"] == texts

    async def test_concurrent_group_commits_for_many_sessions(self, store: Store) -> None:
        """Concurrent append calls for different sessions all land, each journal gap-free."""
        sids = [await create(store, f"many{i}", events=1) for i in range(8)]
        rounds = 5
        for r in range(rounds):
            calls = [store.append([make_batch(sid, 1, 2 + 2 * r, 2)]) for sid in sids]
            assert [[None]] * len(sids) == await asyncio.gather(*calls)
        for sid in sids:
            assert list(range(1, 2 + 2 * rounds)) == seqs(await store.read_events(sid))

    async def test_append_updates_session_metadata(self, store: Store) -> None:
        """Append sets agent (unless empty), status and a last interaction that never goes back."""
        sid = await create(store, events=1, agent="triage", at=T0)
        batch = make_batch(
            sid, 1, 2, 1, agent="billing", status="ended", last_interaction_at=T0 + 40
        )
        assert [None] == await store.append([batch])
        batch = make_batch(sid, 1, 3, 1, agent="", status="active", last_interaction_at=T0 + 10)
        assert [None] == await store.append([batch])
        rec = await store.get(sid)
        assert rec is not None
        assert ("billing", "active", T0 + 40, 3) == (
            rec.agent,
            rec.status,
            rec.last_interaction_at,
            rec.seq,
        )

    async def test_load_returns_snapshot_and_only_later_events(self, store: Store) -> None:
        """With a snapshot at seq k, load returns it and exactly the events after k."""
        sid = await create(store, events=2)
        snap = b'{"snapshot":"at 4"}'
        with_snap = make_batch(sid, 1, 3, 2, snapshot=snap, snapshot_seq=4)
        assert [None] == await store.append([with_snap])
        assert [None] == await store.append([make_batch(sid, 1, 5, 3)])
        loaded = await store.load(sid)
        assert snap == loaded.snapshot
        assert 4 == loaded.record.snapshot_seq
        assert [5, 6, 7] == seqs(loaded.events)
        assert list(range(1, 8)) == seqs(await store.read_events(sid))

    async def test_newer_snapshot_replaces_older(self, store: Store) -> None:
        """A later snapshot replaces the earlier one; a batch without one keeps it."""
        sid = await create(store, events=1)
        batch = make_batch(sid, 1, 2, 2, snapshot=b'{"at":3}', snapshot_seq=3)
        assert [None] == await store.append([batch])
        batch = make_batch(sid, 1, 4, 3, snapshot=b'{"at":6}', snapshot_seq=6)
        assert [None] == await store.append([batch])
        assert [None] == await store.append([make_batch(sid, 1, 7, 1)])
        loaded = await store.load(sid)
        assert (b'{"at":6}', 6, [7]) == (
            loaded.snapshot,
            loaded.record.snapshot_seq,
            seqs(loaded.events),
        )

    async def test_snapshot_parts_are_kept_and_replaced_by_number(self, store: Store) -> None:
        """Snapshot parts land with their batch; a part of the same number replaces the
        stored one, the others stay, and load returns every part by number."""
        sid = await create(store, events=1)
        first = {0: b"part zero \x00\xff", 1: b"part one", 2: b"part two"}
        batch = make_batch(sid, 1, 2, 2, snapshot=b"head 3", snapshot_seq=3, snapshot_parts=first)
        assert [None] == await store.append([batch])
        later = {1: b"part one, rewritten", 4: b"part four"}
        batch = make_batch(sid, 1, 4, 2, snapshot=b"head 5", snapshot_seq=5, snapshot_parts=later)
        assert [None] == await store.append([batch])
        assert [None] == await store.append([make_batch(sid, 1, 6, 1)])
        loaded = await store.load(sid)
        expected = {0: first[0], 1: later[1], 2: first[2], 4: later[4]}
        assert (b"head 5", expected, [6]) == (
            loaded.snapshot,
            loaded.snapshot_parts,
            seqs(loaded.events),
        )

    async def test_a_refused_batch_stores_none_of_its_snapshot_parts(self, store: Store) -> None:
        """A batch refused for its epoch writes neither its snapshot nor its parts."""
        sid = await create(store, events=1)
        kept = make_batch(sid, 1, 2, 1, snapshot=b"head", snapshot_seq=2, snapshot_parts={0: b"a"})
        assert [None] == await store.append([kept])
        stale = make_batch(sid, 0, 3, 1, snapshot=b"x", snapshot_seq=3, snapshot_parts={0: b"b"})
        [error] = await store.append([stale])
        assert isinstance(error, StaleEpochError)
        loaded = await store.load(sid)
        assert (b"head", {0: b"a"}) == (loaded.snapshot, loaded.snapshot_parts)

    async def test_read_events_after_seq(self, store: Store) -> None:
        """read_events returns the events strictly after ``after_seq``, in order."""
        sid = await create(store, events=6)
        assert [4, 5, 6] == seqs(await store.read_events(sid, after_seq=3))
        assert [] == await store.read_events(sid, after_seq=6)
        assert [1, 2, 3, 4, 5, 6] == seqs(await store.read_events(sid, after_seq=0))
        assert [1, 2, 3, 4, 5, 6] == seqs(await store.read_events(sid, after_seq=-1))

    async def test_bytes_round_trip_exactly(self, store: Store) -> None:
        """Event, snapshot and payload bytes come back byte for byte (non-ASCII included)."""
        sid = await create(store, events=1)
        odd = encode_event(UserTurn(seq=2, at=T0, text='emoji 🎧, quote ", nul \x00, ünïcode'))
        snap = '{"text":"🎧 ü \\u0000"}'.encode()
        batch = Batch(
            session_id=sid, epoch=1, first_seq=2, events=[odd], snapshot=snap, snapshot_seq=2
        )
        assert [None] == await store.append([batch])
        loaded = await store.load(sid)
        assert (snap, []) == (loaded.snapshot, loaded.events)
        assert odd == (await store.read_events(sid, after_seq=1))[0]

    async def test_returned_records_are_copies(self, store: Store) -> None:
        """Mutating a record a store returned does not change what the store holds."""
        sid = await create(store, events=1, agent="triage")
        rec = await store.get(sid)
        assert rec is not None
        rec.agent = "mutated"
        rec.epoch = 99
        (await store.load(sid)).events.clear()
        again = await store.get(sid)
        assert again is not None
        assert ("triage", 1) == (again.agent, again.epoch)
        assert [1] == seqs(await store.read_events(sid))
