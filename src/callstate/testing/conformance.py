"""The store conformance suite: every ``Store`` backend must pass it unchanged.

Subclass :class:`StoreConformance` in a test module and provide an async ``store``
fixture that yields an opened, empty store and closes (and cleans) it afterwards::

    from callstate.testing.conformance import StoreConformance

    class TestSQLiteStore(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            s = SQLiteStore(f"sqlite:///{tmp_path}/cs.db")
            await s.open()
            yield s
            await s.close()

The suite uses explicit timestamps (never the wall clock) and talks to the store only
through the ``Store`` protocol, so it runs the same against any engine. It needs
pytest and pytest-asyncio (``pip install callstate[dev]``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import msgspec
import pytest

from ..errors import ConflictError, SessionNotFound, StaleEpochError, StorageError
from ..events import SessionStarted, UserTurn, decode_event, encode_event
from ..storage.base import ArchiveRow, Batch, FollowUp, PackageRow, SessionRecord, Store

__all__ = ["StoreConformance"]

T0 = 1_000.0  # an arbitrary, exactly representable point in time


def _sid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def _turn(seq: int, text: str | None = None) -> bytes:
    return encode_event(UserTurn(seq=seq, at=T0 + seq, text=text or f"turn {seq} — ok"))


def _batch(session_id: str, epoch: int, first_seq: int, count: int, **meta: object) -> Batch:
    events = [_turn(first_seq + i) for i in range(count)]
    return Batch(session_id=session_id, epoch=epoch, first_seq=first_seq, events=events, **meta)  # type: ignore[arg-type]


async def _create(
    store: Store,
    label: str = "s",
    *,
    events: int = 1,
    agent: str = "triage",
    status: str = "active",
    at: float = T0,
    caller_hash: str | None = None,
    lease_owner: str | None = "owner-a",
    lease_until: float = T0 + 15,
) -> str:
    """Create a session at epoch 1 with ``events`` events; returns its id."""
    sid = _sid(label)
    started = encode_event(SessionStarted(seq=1, at=at, session_id=sid, agent=agent))
    first = Batch(
        session_id=sid,
        epoch=1,
        first_seq=1,
        events=[started] + [_turn(seq) for seq in range(2, events + 1)],
        agent=agent,
        status=status,
        last_interaction_at=at,
    )
    record = SessionRecord(
        session_id=sid,
        epoch=1,
        agent=agent,
        status=status,
        caller_hash=caller_hash,
        created_at=at,
        last_interaction_at=at,
        lease_owner=lease_owner,
        lease_until=lease_until,
    )
    await store.create(record, first)
    return sid


def _seqs(raw: list[bytes]) -> list[int]:
    return [decode_event(r).seq for r in raw]


class StoreConformance:
    """Behaviour every ``Store`` must have. Subclasses provide the ``store`` fixture."""

    #: Concurrent callers in the race tests.
    racers: ClassVar[int] = 20

    # -- schema and lifecycle ----------------------------------------------------------

    async def test_schema_version_is_at_least_one(self, store: Store) -> None:
        """An opened store reports its applied migrations: version 1 or later."""
        assert await store.schema_version() >= 1

    async def test_open_again_is_harmless(self, store: Store) -> None:
        """Opening an open store again changes nothing and loses nothing."""
        sid = await _create(store, events=3)
        await store.open()
        assert [1, 2, 3] == _seqs(await store.read_events(sid))

    async def test_closed_store_raises_storage_error_and_reopens(self, store: Store) -> None:
        """A closed store refuses calls with StorageError; reopened, its data is all there."""
        sid = await _create(store, events=2)
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StorageError):
            await store.get(sid)
        await store.open()
        assert [1, 2] == _seqs(await store.read_events(sid))

    # -- sessions and journal ----------------------------------------------------------

    async def test_create_then_get_and_load(self, store: Store) -> None:
        """A created session's record and first events read back exactly as written."""
        sid = await _create(
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
        assert [1, 2, 3] == _seqs(loaded.events)
        assert all(type(e) is bytes for e in loaded.events)

    async def test_create_duplicate_raises_conflict_and_keeps_original(self, store: Store) -> None:
        """Creating an existing session id raises ConflictError; the original is untouched."""
        sid = await _create(store, events=2, agent="triage")
        before = await store.read_events(sid)
        dup = SessionRecord(session_id=sid, epoch=1, agent="intruder")
        first = Batch(session_id=sid, epoch=1, first_seq=1, events=[_turn(1, "intruder")])
        with pytest.raises(ConflictError):
            await store.create(dup, first)
        rec = await store.get(sid)
        assert rec is not None
        assert ("triage", 1, 2) == (rec.agent, rec.epoch, rec.seq)
        assert before == await store.read_events(sid)

    async def test_concurrent_creates_of_one_id_exactly_one_wins(self, store: Store) -> None:
        """Racing creates of one session id: exactly one succeeds, the rest get ConflictError."""
        sid = _sid("race")

        async def create(i: int) -> None:
            record = SessionRecord(session_id=sid, epoch=1, agent=f"a{i}")
            first = Batch(
                session_id=sid, epoch=1, first_seq=1, events=[_turn(1, f"c{i}")], agent=f"a{i}"
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
        sid = _sid("bad-first")
        record = SessionRecord(session_id=sid, epoch=1)
        with pytest.raises(ConflictError):
            await store.create(
                record, Batch(session_id=sid, epoch=1, first_seq=2, events=[_turn(2)])
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
        good = await _create(store, "good", events=2)
        stale = await _create(store, "stale", events=2)
        gap = await _create(store, "gap", events=2)
        unknown = _sid("unknown")
        await store.claim(stale, 1, "owner-b", T0 + 30)  # stale is at epoch 2 now
        results = await store.append(
            [
                _batch(stale, 1, 3, 2),
                _batch(gap, 1, 5, 2),
                _batch(unknown, 1, 1, 1),
                _batch(good, 1, 3, 3, last_interaction_at=T0 + 50),
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
        assert [1, 2, 3, 4, 5] == _seqs(await store.read_events(good))
        assert [1, 2] == _seqs(await store.read_events(stale))
        assert [1, 2] == _seqs(await store.read_events(gap))
        assert await store.get(unknown) is None
        for sid, seq in ((good, 5), (stale, 2), (gap, 2)):
            rec = await store.get(sid)
            assert rec is not None
            assert seq == rec.seq

    async def test_refused_batch_writes_none_of_its_events(self, store: Store) -> None:
        """A batch refused for a stale epoch or an overlap leaves no event of itself behind."""
        sid = await _create(store, events=3)
        assert [None] == await store.append([_batch(sid, 1, 4, 2)])
        overlap = _batch(sid, 1, 5, 4)  # seq 5 exists: the whole batch must be refused
        stale = _batch(sid, 0, 6, 4)
        results = await store.append([overlap, stale])
        assert isinstance(results[0], ConflictError)
        assert isinstance(results[1], StaleEpochError)
        assert [1, 2, 3, 4, 5] == _seqs(await store.read_events(sid))
        rec = await store.get(sid)
        assert rec is not None
        assert 5 == rec.seq

    async def test_batches_for_one_session_apply_in_order(self, store: Store) -> None:
        """Within one call, each batch is checked against the journal the earlier ones left."""
        sid = await _create(store, events=1)
        results = await store.append(
            [_batch(sid, 1, 2, 2), _batch(sid, 1, 4, 1), _batch(sid, 1, 4, 1)]
        )
        assert results[:2] == [None, None]
        assert isinstance(results[2], ConflictError)
        assert [1, 2, 3, 4] == _seqs(await store.read_events(sid))

    async def test_seq_stays_gap_free(self, store: Store) -> None:
        """Many appends of varying size produce seq 1..N with no gap or repeat, in order."""
        sid = await _create(store, events=1)
        seq = 1
        for size in (1, 5, 2, 17, 1, 40, 3):
            assert [None] == await store.append([_batch(sid, 1, seq + 1, size)])
            seq += size
        raw = await store.read_events(sid)
        assert list(range(1, seq + 1)) == _seqs(raw)
        assert [_turn(s) for s in range(2, seq + 1)] == raw[1:]

    async def test_racing_appends_at_one_seq_exactly_one_lands(self, store: Store) -> None:
        """Concurrent appends of the same seq for one session: exactly one batch lands, whole."""
        sid = await _create(store, events=1)

        async def append(i: int) -> object:
            events = [_turn(2, f"w{i}a"), _turn(3, f"w{i}b")]
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
        sids = [await _create(store, f"many{i}", events=1) for i in range(8)]
        rounds = 5
        for r in range(rounds):
            calls = [store.append([_batch(sid, 1, 2 + 2 * r, 2)]) for sid in sids]
            assert [[None]] * len(sids) == await asyncio.gather(*calls)
        for sid in sids:
            assert list(range(1, 2 + 2 * rounds)) == _seqs(await store.read_events(sid))

    async def test_append_updates_session_metadata(self, store: Store) -> None:
        """Append sets agent (unless empty), status and a last interaction that never goes back."""
        sid = await _create(store, events=1, agent="triage", at=T0)
        batch = _batch(sid, 1, 2, 1, agent="billing", status="ended", last_interaction_at=T0 + 40)
        assert [None] == await store.append([batch])
        batch = _batch(sid, 1, 3, 1, agent="", status="active", last_interaction_at=T0 + 10)
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
        sid = await _create(store, events=2)
        snap = b'{"snapshot":"at 4"}'
        with_snap = _batch(sid, 1, 3, 2, snapshot=snap, snapshot_seq=4)
        assert [None] == await store.append([with_snap])
        assert [None] == await store.append([_batch(sid, 1, 5, 3)])
        loaded = await store.load(sid)
        assert snap == loaded.snapshot
        assert 4 == loaded.record.snapshot_seq
        assert [5, 6, 7] == _seqs(loaded.events)
        assert list(range(1, 8)) == _seqs(await store.read_events(sid))

    async def test_newer_snapshot_replaces_older(self, store: Store) -> None:
        """A later snapshot replaces the earlier one; a batch without one keeps it."""
        sid = await _create(store, events=1)
        batch = _batch(sid, 1, 2, 2, snapshot=b'{"at":3}', snapshot_seq=3)
        assert [None] == await store.append([batch])
        batch = _batch(sid, 1, 4, 3, snapshot=b'{"at":6}', snapshot_seq=6)
        assert [None] == await store.append([batch])
        assert [None] == await store.append([_batch(sid, 1, 7, 1)])
        loaded = await store.load(sid)
        assert (b'{"at":6}', 6, [7]) == (
            loaded.snapshot,
            loaded.record.snapshot_seq,
            _seqs(loaded.events),
        )

    async def test_read_events_after_seq(self, store: Store) -> None:
        """read_events returns the events strictly after ``after_seq``, in order."""
        sid = await _create(store, events=6)
        assert [4, 5, 6] == _seqs(await store.read_events(sid, after_seq=3))
        assert [] == await store.read_events(sid, after_seq=6)
        assert [1, 2, 3, 4, 5, 6] == _seqs(await store.read_events(sid, after_seq=0))
        assert [1, 2, 3, 4, 5, 6] == _seqs(await store.read_events(sid, after_seq=-1))

    async def test_bytes_round_trip_exactly(self, store: Store) -> None:
        """Event, snapshot and payload bytes come back byte for byte (non-ASCII included)."""
        sid = await _create(store, events=1)
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
        sid = await _create(store, events=1, agent="triage")
        rec = await store.get(sid)
        assert rec is not None
        rec.agent = "mutated"
        rec.epoch = 99
        (await store.load(sid)).events.clear()
        again = await store.get(sid)
        assert again is not None
        assert ("triage", 1) == (again.agent, again.epoch)
        assert [1] == _seqs(await store.read_events(sid))

    # -- listing -----------------------------------------------------------------------

    async def test_list_sessions_filters_and_order(self, store: Store) -> None:
        """list_sessions applies every filter given and lists the newest interaction first."""
        a = await _create(store, "a", at=T0 + 1, status="active", lease_until=T0 + 100)
        b = await _create(store, "b", at=T0 + 3, status="ended", lease_until=T0 + 5)
        c = await _create(store, "c", at=T0 + 2, status="active", lease_until=T0 + 8)

        async def ids(**kw: object) -> list[str]:
            return [r.session_id for r in await store.list_sessions(**kw)]  # type: ignore[arg-type]

        assert [b, c, a] == await ids()
        assert [c, a] == await ids(statuses=["active"])
        assert [b, c, a] == await ids(statuses=["active", "ended"])
        assert [] == await ids(statuses=[])
        assert [b, c] == await ids(lease_before=T0 + 50)
        assert [c, a] == await ids(interaction_before=T0 + 3)
        assert [c] == await ids(
            statuses=["active"], lease_before=T0 + 50, interaction_before=T0 + 3
        )
        assert [b, c] == await ids(limit=2)

    # -- ownership ---------------------------------------------------------------------

    async def test_claim_takes_next_epoch_and_lease(self, store: Store) -> None:
        """claim returns epoch+1 and records the new owner and lease, keeping the journal."""
        sid = await _create(store, events=3)
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", T0 + 60, 3) == (rec.epoch, rec.lease_owner, rec.lease_until, rec.seq)
        assert 3 == await store.claim(sid, 2, "owner-c", T0 + 70)

    async def test_claim_with_old_epoch_is_stale(self, store: Store) -> None:
        """A second claim expecting the old epoch raises StaleEpochError and changes nothing."""
        sid = await _create(store)
        await store.claim(sid, 1, "owner-b", T0 + 60)
        with pytest.raises(StaleEpochError) as exc:
            await store.claim(sid, 1, "owner-c", T0 + 90)
        assert (sid, 1, 2) == (exc.value.session_id, exc.value.epoch, exc.value.current_epoch)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", T0 + 60) == (rec.epoch, rec.lease_owner, rec.lease_until)

    async def test_claim_of_unknown_session(self, store: Store) -> None:
        """Claiming a session that does not exist raises SessionNotFound."""
        with pytest.raises(SessionNotFound):
            await store.claim("nope", 1, "owner-b", T0)

    async def test_racing_claims_exactly_one_wins(self, store: Store) -> None:
        """Concurrent claims with the same expected epoch: exactly one wins, the rest are stale."""
        sid = await _create(store)
        results = await asyncio.gather(
            *(store.claim(sid, 1, f"owner-{i}", T0 + 60) for i in range(self.racers)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r == 2]
        assert 1 == len(winners)
        assert all(isinstance(r, StaleEpochError) for r in results if r != 2)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, f"owner-{winners[0]}") == (rec.epoch, rec.lease_owner)

    async def test_claim_fences_the_old_owner(self, store: Store) -> None:
        """After a claim, appends at the old epoch are refused; the new epoch's land."""
        sid = await _create(store, events=2)
        epoch = await store.claim(sid, 1, "owner-b", T0 + 60)
        old, new = (
            await store.append([_batch(sid, 1, 3, 1)]),
            await store.append([_batch(sid, epoch, 3, 1)]),
        )
        assert isinstance(old[0], StaleEpochError)
        assert [None] == new
        assert [1, 2, 3] == _seqs(await store.read_events(sid))

    async def test_leases_renew_lapse_and_release(self, store: Store) -> None:
        """Only the holder renews or releases a lease; a lapsed lease lists as stale."""
        mine = await _create(store, "mine", lease_owner="owner-a", lease_until=T0 + 10)
        theirs = await _create(store, "theirs", lease_owner="owner-b", lease_until=T0 + 10)
        held = await store.renew_leases("owner-a", [mine, theirs, "nope"], T0 + 40)
        assert [mine] == held
        stale = [r.session_id for r in await store.list_sessions(lease_before=T0 + 20)]
        assert [theirs] == stale
        await store.release_lease(mine, "owner-b")  # not the holder: no effect
        rec = await store.get(mine)
        assert rec is not None
        assert ("owner-a", T0 + 40) == (rec.lease_owner, rec.lease_until)
        await store.release_lease(mine, "owner-a")
        rec = await store.get(mine)
        assert rec is not None
        assert rec.lease_owner is None
        assert rec.lease_until < T0
        await store.claim(theirs, 1, "owner-c", T0 + 50)
        assert [] == await store.renew_leases("owner-b", [theirs], T0 + 60)

    # -- purge ---------------------------------------------------------------------------

    async def test_purge_drops_resume_state_and_keeps_the_rest(self, store: Store) -> None:
        """purge removes record, journal, snapshot and caller entries; archive etc. stay."""
        sid = await _create(store, events=2, caller_hash="h")
        other = await _create(store, "other", events=1, caller_hash="h")
        assert [None] == await store.append([_batch(sid, 1, 3, 1, snapshot=b"{}", snapshot_seq=3)])
        await store.index_caller("h", sid, T0 + 5)
        await store.index_caller("h", other, T0 + 1)
        row = ArchiveRow(
            record_id=_sid("rec"),
            session_id=sid,
            caller_hash="h",
            ended_at=T0,
            outcome="completed",
            data=b"x",
        )
        await store.archive_insert(row)
        await store.followup_put(
            FollowUp(followup_id=_sid("f"), session_id=sid, due_at=T0, payload=b"p")
        )
        await store.package_put(PackageRow(package_id=_sid("p"), session_id=sid, data=b"pkg"))
        await store.purge(sid)
        assert await store.get(sid) is None
        with pytest.raises(SessionNotFound):
            await store.load(sid)
        with pytest.raises(SessionNotFound):
            await store.read_events(sid)
        assert [(other, T0 + 1)] == await store.lookup_caller("h")
        assert row == await store.archive_get(row.record_id)
        assert 1 == len(await store.followup_claim(T0, "w", 30))
        assert [1] == _seqs(await store.read_events(other))
        await store.purge(sid)  # purging twice, or an unknown id, is harmless
        await store.purge("nope")

    async def test_purged_id_can_start_over(self, store: Store) -> None:
        """After a purge the same id can be created again, with a fresh journal."""
        sid = await _create(store, events=4)
        await store.purge(sid)
        record = SessionRecord(session_id=sid, epoch=1)
        await store.create(record, Batch(session_id=sid, epoch=1, first_seq=1, events=[_turn(1)]))
        assert [1] == _seqs(await store.read_events(sid))

    # -- caller index ----------------------------------------------------------------------

    async def test_caller_index_most_recent_first(self, store: Store) -> None:
        """lookup_caller lists the caller's sessions newest first; re-indexing moves one up."""
        await store.index_caller("h1", "s-old", T0 + 1)
        await store.index_caller("h1", "s-new", T0 + 3)
        await store.index_caller("h1", "s-mid", T0 + 2)
        await store.index_caller("h2", "s-other", T0 + 9)
        assert [
            ("s-new", T0 + 3),
            ("s-mid", T0 + 2),
            ("s-old", T0 + 1),
        ] == await store.lookup_caller("h1")
        await store.index_caller("h1", "s-old", T0 + 4)
        assert ["s-old", "s-new", "s-mid"] == [s for s, _ in await store.lookup_caller("h1")]
        assert [] == await store.lookup_caller("h-unknown")

    # -- archive -----------------------------------------------------------------------------

    async def test_archive_insert_and_get(self, store: Store) -> None:
        """An archive row reads back exactly, binary data included; an unknown id is None."""
        row = ArchiveRow(
            record_id=_sid("rec"),
            session_id="s1",
            caller_hash=None,
            ended_at=T0 + 0.25,
            outcome="recovered",
            data=b"\x00\xff binary \x80",
        )
        await store.archive_insert(row)
        assert row == await store.archive_get(row.record_id)
        assert await store.archive_get("nope") is None

    async def test_archive_is_insert_only(self, store: Store) -> None:
        """A second row with an existing record_id raises ConflictError; the first is unchanged."""
        rid = _sid("rec")
        first = ArchiveRow(
            record_id=rid,
            session_id="s1",
            caller_hash="h",
            ended_at=T0,
            outcome="completed",
            data=b"1",
        )
        await store.archive_insert(first)
        second = ArchiveRow(
            record_id=rid,
            session_id="s2",
            caller_hash=None,
            ended_at=T0 + 9,
            outcome="failed",
            data=b"2",
        )
        with pytest.raises(ConflictError):
            await store.archive_insert(second)
        assert first == await store.archive_get(rid)
        assert [first] == await store.archive_list()

    async def test_racing_archive_inserts_keep_exactly_one(self, store: Store) -> None:
        """Concurrent inserts of one record_id: one lands, the others get ConflictError."""
        rid = _sid("rec")

        async def insert(i: int) -> None:
            row = ArchiveRow(
                record_id=rid,
                session_id="s",
                caller_hash=None,
                ended_at=T0,
                outcome="completed",
                data=f"{i}".encode(),
            )
            await store.archive_insert(row)

        results = await asyncio.gather(
            *(insert(i) for i in range(self.racers)), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert 1 == len(winners)
        assert all(isinstance(r, ConflictError) for r in results if r is not None)
        row = await store.archive_get(rid)
        assert row is not None
        assert f"{winners[0]}".encode() == row.data

    async def test_archive_list_filters_and_order(self, store: Store) -> None:
        """archive_list applies every filter given (``since`` inclusive), newest first."""

        def row(n: int, sid: str, caller: str | None, ended: float) -> ArchiveRow:
            return ArchiveRow(
                record_id=f"r{n}",
                session_id=sid,
                caller_hash=caller,
                ended_at=ended,
                outcome="completed",
                data=b"%d" % n,
            )

        rows = [
            row(1, "s1", "h1", T0 + 1),
            row(2, "s1", "h1", T0 + 4),
            row(3, "s2", "h1", T0 + 2),
            row(4, "s3", None, T0 + 3),
        ]
        for r in rows:
            await store.archive_insert(r)

        async def ids(**kw: object) -> list[str]:
            return [r.record_id for r in await store.archive_list(**kw)]  # type: ignore[arg-type]

        assert ["r2", "r4", "r3", "r1"] == await ids()
        assert ["r2", "r1"] == await ids(session_id="s1")
        assert ["r2", "r3", "r1"] == await ids(caller_hash="h1")
        assert ["r2", "r4", "r3"] == await ids(since=T0 + 2)
        assert ["r3"] == await ids(caller_hash="h1", since=T0 + 2, session_id="s2")
        assert ["r2", "r4"] == await ids(limit=2)
        assert [] == await ids(session_id="nope")

    # -- follow-ups ----------------------------------------------------------------------------

    @staticmethod
    def _followup(session_id: str, due: float, payload: bytes = b"job") -> FollowUp:
        return FollowUp(followup_id=_sid("f"), session_id=session_id, due_at=due, payload=payload)

    async def test_followup_claimed_only_when_due(self, store: Store) -> None:
        """A follow-up is not claimable before ``due_at`` and is claimable from then on."""
        f = self._followup("s1", T0 + 10, b"\x01payload")
        await store.followup_put(f)
        assert [] == await store.followup_claim(T0 + 9.5, "w1", 30)
        claimed = await store.followup_claim(T0 + 10, "w1", 30)
        expected = msgspec.structs.replace(
            f, status="claimed", claimed_by="w1", claimed_until=T0 + 40
        )
        assert [expected] == claimed

    async def test_followup_claimed_exactly_once(self, store: Store) -> None:
        """Racing claimers: every due follow-up goes to exactly one of them."""
        made = [self._followup(f"s{i}", T0 + i) for i in range(10)]
        for f in made:
            await store.followup_put(f)
        batches = await asyncio.gather(
            *(store.followup_claim(T0 + 20, f"w{i}", 30, limit=3) for i in range(self.racers))
        )
        claimed = [f.followup_id for batch in batches for f in batch]
        assert sorted(f.followup_id for f in made) == sorted(claimed)
        assert [] == await store.followup_claim(T0 + 20, "late", 30)

    async def test_followup_claim_order_and_limit(self, store: Store) -> None:
        """followup_claim takes the earliest due first, at most ``limit`` at a time."""
        made = [self._followup("s", T0 + d) for d in (5, 1, 3)]
        for f in made:
            await store.followup_put(f)
        first = await store.followup_claim(T0 + 10, "w", 30, limit=2)
        assert [T0 + 1, T0 + 3] == [f.due_at for f in first]
        rest = await store.followup_claim(T0 + 10, "w", 30, limit=2)
        assert [T0 + 5] == [f.due_at for f in rest]

    async def test_lapsed_followup_claim_can_be_reclaimed(self, store: Store) -> None:
        """A claim that lapsed goes to the next claimer; the first owner can no longer finish it."""
        f = self._followup("s1", T0)
        await store.followup_put(f)
        assert 1 == len(await store.followup_claim(T0, "w1", 30))
        assert [] == await store.followup_claim(T0 + 29, "w2", 30)
        again = await store.followup_claim(T0 + 30, "w2", 30)
        assert [(f.followup_id, "w2", T0 + 60)] == [
            (g.followup_id, g.claimed_by, g.claimed_until) for g in again
        ]
        assert not await store.followup_done(f.followup_id, "w1")
        assert await store.followup_done(f.followup_id, "w2")

    async def test_followup_done_only_by_its_owner_and_once(self, store: Store) -> None:
        """done by a non-owner (or of an unknown id) is False; once done it is never claimed."""
        f = self._followup("s1", T0)
        await store.followup_put(f)
        await store.followup_claim(T0, "w1", 30)
        assert not await store.followup_done(f.followup_id, "w2")
        assert not await store.followup_done("nope", "w1")
        assert await store.followup_done(f.followup_id, "w1")
        assert not await store.followup_done(f.followup_id, "w1")
        assert [] == await store.followup_claim(T0 + 1_000, "w3", 30)

    async def test_followup_cancel(self, store: Store) -> None:
        """cancel stops the session's pending follow-ups, returns how many, and spares others."""
        a1, a2 = self._followup("sa", T0), self._followup("sa", T0 + 1)
        b = self._followup("sb", T0)
        for f in (a1, a2, b):
            await store.followup_put(f)
        assert 2 == await store.followup_cancel("sa")
        assert 0 == await store.followup_cancel("sa")
        assert 0 == await store.followup_cancel("nope")
        claimed = await store.followup_claim(T0 + 10, "w", 30)
        assert [b.followup_id] == [f.followup_id for f in claimed]
        assert 0 == await store.followup_cancel("sb")  # claimed, no longer pending

    async def test_followup_put_replaces_a_pending_one(self, store: Store) -> None:
        """Putting a pending follow-up again moves its due time and payload."""
        f = self._followup("s", T0 + 5, b"old")
        await store.followup_put(f)
        await store.followup_put(msgspec.structs.replace(f, due_at=T0 + 50, payload=b"new"))
        assert [] == await store.followup_claim(T0 + 10, "w", 30)
        claimed = await store.followup_claim(T0 + 50, "w", 30)
        assert [(T0 + 50, b"new")] == [(g.due_at, g.payload) for g in claimed]

    # -- handoff packages ----------------------------------------------------------------------

    async def test_package_put_get(self, store: Store) -> None:
        """A stored package reads back exactly; an unknown id is None."""
        row = PackageRow(package_id=_sid("p"), session_id="s1", data=b"\x00signed", created_at=T0)
        await store.package_put(row)
        assert row == await store.package_get(row.package_id)
        assert await store.package_get("nope") is None

    async def test_package_duplicate_raises_conflict(self, store: Store) -> None:
        """A second package with an existing id raises ConflictError; the first is unchanged."""
        row = PackageRow(package_id=_sid("p"), session_id="s1", data=b"one", created_at=T0)
        await store.package_put(row)
        with pytest.raises(ConflictError):
            await store.package_put(msgspec.structs.replace(row, data=b"two", session_id="s2"))
        assert row == await store.package_get(row.package_id)

    async def test_package_transition_succeeds_once(self, store: Store) -> None:
        """Racing transitions offered→accepted: exactly one succeeds; a wrong from-status fails."""
        row = PackageRow(package_id=_sid("p"), session_id="s1", data=b"pkg", created_at=T0)
        await store.package_put(row)
        results = await asyncio.gather(
            *(
                store.package_transition(row.package_id, "offered", "accepted")
                for _ in range(self.racers)
            )
        )
        assert 1 == results.count(True)
        assert not await store.package_transition(row.package_id, "offered", "reclaimed")
        assert not await store.package_transition("nope", "offered", "accepted")
        stored = await store.package_get(row.package_id)
        assert stored is not None
        assert "accepted" == stored.status
