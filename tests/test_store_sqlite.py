"""SQLiteStore: the conformance suite plus what only a SQLite file can show."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callstate import ConfigError, ConflictError, StaleEpochError, StorageError, open_store
from callstate.journal.events import UserTurn, encode_event
from callstate.storage._sqlite_schema import register_functions
from callstate.storage.base import ArchiveRow, Batch, SessionRecord
from callstate.storage.sqlite import MIGRATIONS, SQLiteStore
from callstate.testing._suite_base import make_batch
from callstate.testing.conformance import StoreConformance


class TestSQLiteStore(StoreConformance):
    """The embedded default passes the whole suite on a real file."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = SQLiteStore(f"sqlite:///{tmp_path}/conformance.db")
        await s.open()
        yield s
        await s.close()


def _turn(seq: int) -> bytes:
    return encode_event(UserTurn(seq=seq, at=float(seq), text=f"turn {seq}"))


async def _session(store: SQLiteStore, sid: str, events: int = 1) -> None:
    first = Batch(
        session_id=sid, epoch=1, first_seq=1, events=[_turn(s) for s in range(1, events + 1)]
    )
    await store.create(SessionRecord(session_id=sid, epoch=1), first)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An opened SQLite store on a fresh file."""
    s = SQLiteStore(f"sqlite:///{tmp_path}/cs.db")
    await s.open()
    yield s
    await s.close()


def _raw(store: SQLiteStore) -> sqlite3.Connection:
    """A second, plain connection to the store's file (what an operator's tool would use)."""
    return sqlite3.connect(store.path, isolation_level=None)


async def test_archive_refuses_raw_update_and_delete(store: SQLiteStore) -> None:
    """Triggers refuse UPDATE and DELETE on the archive even from raw SQL; the row survives."""
    row = ArchiveRow(
        record_id="r1",
        session_id="s",
        caller_hash=None,
        ended_at=1.0,
        outcome="completed",
        data=b"orig",
    )
    await store.archive_insert(row)
    conn = _raw(store)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="insert-only"):
            conn.execute("UPDATE archive SET data = x'00' WHERE record_id = 'r1'")
        with pytest.raises(sqlite3.IntegrityError, match="insert-only"):
            conn.execute("DELETE FROM archive")
    finally:
        conn.close()
    assert row == await store.archive_get("r1")


async def test_wal_and_full_sync_by_default(store: SQLiteStore) -> None:
    """A default store runs in WAL mode with synchronous=FULL (2) on its connection."""
    mode = await store._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    sync = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    busy = await store._run(lambda c: c.execute("PRAGMA busy_timeout").fetchone()[0])
    assert ("wal", 2, 5000) == (mode, sync, busy)


async def test_synchronous_normal_on_request(tmp_path: Path) -> None:
    """``synchronous="NORMAL"`` and a custom busy timeout reach the connection."""
    s = SQLiteStore(f"sqlite:///{tmp_path}/n.db", synchronous="NORMAL", busy_timeout=0.25)
    await s.open()
    try:
        sync = await s._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        busy = await s._run(lambda c: c.execute("PRAGMA busy_timeout").fetchone()[0])
        assert (1, 250) == (sync, busy)
    finally:
        await s.close()


async def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    """Opening a file that is not SQLite raises StorageError naming the path; the file is kept."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database " * 100)
    store = SQLiteStore(f"sqlite:///{path}")
    with pytest.raises(StorageError, match=r"notes\.txt"):
        await store.open()
    assert b"these are my notes, not a database " * 100 == path.read_bytes()


async def test_missing_directory(tmp_path: Path) -> None:
    """A path in a directory that does not exist raises StorageError naming the path."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/no/such/dir/cs.db")
    with pytest.raises(StorageError, match="no/such/dir"):
        await store.open()


async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    """A database migrated by a newer callstate raises StorageError naming both versions."""
    url = f"sqlite:///{tmp_path}/cs.db"
    s = SQLiteStore(url)
    await s.open()
    await s.close()
    newest = max(v for v, _ in MIGRATIONS)
    conn = sqlite3.connect(tmp_path / "cs.db", isolation_level=None)
    conn.execute("INSERT INTO callstate_migrations VALUES (?, 0)", (newest + 1,))
    conn.close()
    with pytest.raises(StorageError, match=f"version {newest + 1} is newer"):
        await SQLiteStore(url).open()


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    """Each migration is recorded in the migrations table once, however often the file is opened."""
    url = f"sqlite:///{tmp_path}/cs.db"
    for _ in range(3):
        s = SQLiteStore(url)
        await s.open()
        assert max(v for v, _ in MIGRATIONS) == await s.schema_version()
        await s.close()
    conn = sqlite3.connect(tmp_path / "cs.db")
    versions = [
        r[0] for r in conn.execute("SELECT version FROM callstate_migrations ORDER BY version")
    ]
    conn.close()
    assert [v for v, _ in MIGRATIONS] == versions


async def test_packages_written_before_migration_2_survive_it(tmp_path: Path) -> None:
    """A file at schema 1 keeps its handoff packages through migration 2, and they still move."""
    path = tmp_path / "cs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE callstate_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for stmt in MIGRATIONS[0][1].split(";\n"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("INSERT INTO callstate_migrations VALUES (1, 0)")
    conn.execute(
        "INSERT INTO packages (package_id, session_id, data, status, created_at) "
        "VALUES ('p1', 's1', ?, 'offered', 5.0)",
        (b"x" * 100_000,),
    )
    conn.close()
    s = SQLiteStore(f"sqlite:///{path}")
    await s.open()
    try:
        assert max(v for v, _ in MIGRATIONS) == await s.schema_version()
        row = await s.package_get("p1")
        assert row is not None
        assert (b"x" * 100_000, "offered", "s1") == (row.data, row.status, row.session_id)
        assert await s.package_transition("p1", "offered", "accepted")
        moved = await s.package_get("p1")
        assert moved is not None
        assert ("accepted", b"x" * 100_000) == (moved.status, moved.data)
    finally:
        await s.close()


async def test_two_stores_on_one_file_share_and_fence(tmp_path: Path) -> None:
    """Two stores on one file see each other's writes, and a claim in one fences the other."""
    url = f"sqlite:///{tmp_path}/shared.db"
    a, b = SQLiteStore(url), SQLiteStore(url)
    await a.open()
    await b.open()
    try:
        await _session(a, "s1", events=2)
        assert [_turn(1), _turn(2)] == await b.read_events("s1")
        assert 2 == await b.claim("s1", 1, "owner-b", 99.0)
        with pytest.raises(StaleEpochError):
            await a.claim("s1", 1, "owner-a", 99.0)
        stale = await a.append([Batch(session_id="s1", epoch=1, first_seq=3, events=[_turn(3)])])
        assert isinstance(stale[0], StaleEpochError)
        assert [None] == await b.append(
            [Batch(session_id="s1", epoch=2, first_seq=3, events=[_turn(3)])]
        )
        assert [_turn(1), _turn(2), _turn(3)] == await a.read_events("s1")
        rec = await a.get("s1")
        assert rec is not None
        assert (2, 3, "owner-b") == (rec.epoch, rec.seq, rec.lease_owner)
    finally:
        await a.close()
        await b.close()


async def test_racing_claims_across_two_stores(tmp_path: Path) -> None:
    """Claims racing through two stores on one file: exactly one wins in total."""
    url = f"sqlite:///{tmp_path}/shared.db"
    a, b = SQLiteStore(url), SQLiteStore(url)
    await a.open()
    await b.open()
    try:
        await _session(a, "s1")
        claims = [(a if i % 2 else b).claim("s1", 1, f"o{i}", 9.0) for i in range(10)]
        results = await asyncio.gather(*claims, return_exceptions=True)
        assert [2] == [r for r in results if r == 2]
        assert all(isinstance(r, StaleEpochError) for r in results if r != 2)
    finally:
        await a.close()
        await b.close()


async def test_database_refusing_a_batch_leaves_no_half_of_it(store: SQLiteStore) -> None:
    """A batch the database refuses midway writes none of its rows; the group's others land."""
    await _session(store, "bad", events=1)
    await _session(store, "good", events=1)
    conn = _raw(store)
    # a stray row at seq 3 makes the batch 2..4 fail on its second insert
    conn.execute("INSERT INTO events VALUES ('bad', 3, 1, x'7b7d')")
    conn.close()
    results = await store.append(
        [
            Batch(session_id="bad", epoch=1, first_seq=2, events=[_turn(2), _turn(3), _turn(4)]),
            Batch(session_id="good", epoch=1, first_seq=2, events=[_turn(2), _turn(3)]),
        ]
    )
    assert isinstance(results[0], ConflictError)
    assert "'bad'" in str(results[0])
    assert results[1] is None
    assert [_turn(1), b"{}"] == await store.read_events("bad")
    rec = await store.get("bad")
    assert rec is not None
    assert 1 == rec.seq
    assert [_turn(1), _turn(2), _turn(3)] == await store.read_events("good")


async def test_null_value_is_a_storage_error_not_a_conflict(store: SQLiteStore) -> None:
    """An archive row with a missing required value is a StorageError, not a duplicate-id clash."""
    row = ArchiveRow(
        record_id="r1", session_id="s", caller_hash=None, ended_at=1.0, outcome=None, data=b"x"
    )  # type: ignore[arg-type]
    with pytest.raises(StorageError) as exc:
        await store.archive_insert(row)
    assert not isinstance(exc.value, ConflictError)
    assert await store.archive_get("r1") is None


async def test_in_memory_database() -> None:
    """``sqlite:///:memory:`` opens a private in-memory database that works like a file."""
    s = open_store("sqlite:///:memory:")
    assert isinstance(s, SQLiteStore)
    await s.open()
    try:
        await _session(s, "s1", events=2)
        assert [_turn(1), _turn(2)] == await s.read_events("s1")
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("sqlite://relative.db", "sqlite url"),
        ("sqlite:///", "names no file"),
        ("postgresql:///x.db", "sqlite url"),
    ],
)
def test_bad_sqlite_url(url: str, field: str) -> None:
    """A malformed sqlite URL raises ConfigError naming the URL."""
    with pytest.raises(ConfigError, match=field) as exc:
        SQLiteStore(url)
    assert url in str(exc.value)


def test_bad_synchronous_mode() -> None:
    """An unknown ``synchronous`` mode raises ConfigError naming the value."""
    with pytest.raises(ConfigError, match="'OFF'"):
        SQLiteStore("sqlite:///x.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_closed_store_names_itself(tmp_path: Path) -> None:
    """A call on a store that was never opened raises StorageError naming its URL."""
    url = f"sqlite:///{tmp_path}/cs.db"
    with pytest.raises(StorageError, match="not open") as exc:
        await SQLiteStore(url).get("s1")
    assert url in str(exc.value)


def _file_at_schema(path: Path, version: int) -> sqlite3.Connection:
    """A database file as a release at schema ``version`` left it (its first migrations
    applied), and a connection to it in autocommit."""
    conn = sqlite3.connect(path, isolation_level=None)
    register_functions(conn)  # what the later migrations' triggers call
    conn.execute(
        "CREATE TABLE callstate_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for number, script in MIGRATIONS[:version]:
        for stmt in script.split(";\n"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO callstate_migrations VALUES (?, 0)", (number,))
    return conn


async def test_sessions_written_before_migration_3_claim_with_claim_ids(tmp_path: Path) -> None:
    """A file at schema 2 (no claim ids) migrates; its session claims, and that claim sent
    again with its id returns the same epoch while another claimer is stale."""
    path = tmp_path / "cs.db"
    conn = _file_at_schema(path, 2)
    conn.execute(
        "INSERT INTO sessions (session_id, epoch, seq, agent, status, created_at, "
        "last_interaction_at, lease_owner, lease_until) "
        "VALUES ('old', 4, 1, 'triage', 'active', 1.0, 2.0, 'w', 3.0)"
    )
    conn.execute("INSERT INTO events VALUES ('old', 1, 4, ?)", (b"e1",))
    conn.close()
    s = SQLiteStore(f"sqlite:///{path}")
    await s.open()
    try:
        assert max(v for v, _ in MIGRATIONS) == await s.schema_version()
        assert [b"e1"] == await s.read_events("old")
        assert 5 == await s.claim("old", 4, "w2", 9.0, claim_id="c1")
        assert 5 == await s.claim("old", 4, "w2", 9.0, claim_id="c1")
        with pytest.raises(StaleEpochError):
            await s.claim("old", 4, "w3", 9.0, claim_id="c2")
    finally:
        await s.close()


async def test_group_commit_is_one_update_and_one_insert(store: SQLiteStore) -> None:
    """A group commit of several sessions runs one guarded UPDATE and one INSERT between
    BEGIN and COMMIT (no per-session SELECT or savepoint) and lands every batch."""
    for sid in "abc":
        await _session(store, sid, events=1)
    conn = store._conn
    assert conn is not None
    sql: list[str] = []
    conn.set_trace_callback(sql.append)  # an executemany traces each of its rows
    try:
        results = await store.append(
            [Batch(session_id=sid, epoch=1, first_seq=2, events=[_turn(2)]) for sid in "abc"]
        )
    finally:
        conn.set_trace_callback(None)
    assert [None, None, None] == results
    verbs = [s.split()[0] for s in sql]
    runs = [v for i, v in enumerate(verbs) if i == 0 or v != verbs[i - 1]]
    assert ["BEGIN", "UPDATE", "INSERT", "COMMIT"] == runs
    for sid in "abc":
        assert [_turn(1), _turn(2)] == await store.read_events(sid)


async def test_cancelling_no_follow_ups_takes_no_write_lock(tmp_path: Path) -> None:
    """While another process holds the write lock, cancelling the follow-ups of a
    session with none pending answers 0 at once (every resume asks); one with a pending
    follow-up waits for the lock as before, and cancels it once the lock is free."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/cs.db", busy_timeout=0.2)
    await store.open()
    other = _raw(store)
    try:
        await _session(store, "s1")
        await _session(store, "s2")
        other.execute(
            "INSERT INTO followups (followup_id, session_id, due_at, payload, status) "
            "VALUES ('f1', 's1', 0, x'00', 'pending')"
        )
        other.execute("BEGIN IMMEDIATE")  # another process mid-commit
        nothing = await store.followup_cancel("s2")
        with pytest.raises(StorageError, match="locked"):
            await store.followup_cancel("s1")
        other.rollback()
        cancelled = await store.followup_cancel("s1")
    finally:
        other.close()
        await store.close()
    assert (0, 1) == (nothing, cancelled)


async def test_a_commit_within_the_minute_rewrites_no_index_page(tmp_path: Path) -> None:
    """Appends whose last interaction stays within one minute write about two WAL pages
    each (the events and the session row), not a third for an index of the exact time."""
    path = tmp_path / "cs.db"
    s = SQLiteStore(f"sqlite:///{path}")
    await s.open()
    try:
        first = Batch(session_id="s", epoch=1, first_seq=1, events=[_turn(1)])
        await s.create(SessionRecord(session_id="s", epoch=1, last_interaction_at=600.0), first)
        wal = tmp_path / "cs.db-wal"
        before = wal.stat().st_size
        n = 60
        for seq in range(2, n + 2):  # 600.2 .. 606.1: minute 10 throughout
            batch = make_batch("s", 1, seq, 1, last_interaction_at=600.0 + seq / 10)
            assert [None] == await s.append([batch])
        frames = (wal.stat().st_size - before) / (4096 + 24)
        assert [] == await s.list_sessions(interaction_before=606.0)
        assert ["s"] == [r.session_id for r in await s.list_sessions(interaction_before=606.2)]
    finally:
        await s.close()
    assert frames <= 2.5 * n


async def test_the_interaction_minute_follows_the_last_interaction(tmp_path: Path) -> None:
    """A session's indexed minute moves with its last interaction, so a sweep's cutoff
    finds it only once it has been quiet that long, and the newest come first."""
    s = SQLiteStore(f"sqlite:///{tmp_path}/cs.db")
    await s.open()
    try:
        for sid, at in (("a", 100.0), ("b", 130.0)):
            first = Batch(session_id=sid, epoch=1, first_seq=1, events=[_turn(1)])
            await s.create(SessionRecord(session_id=sid, epoch=1, last_interaction_at=at), first)
        later = Batch(
            session_id="a", epoch=1, first_seq=2, events=[_turn(2)], last_interaction_at=725.5
        )
        assert [None] == await s.append([later])

        async def ids(before: float) -> list[str]:
            return [r.session_id for r in await s.list_sessions(interaction_before=before)]

        assert ["b"] == await ids(700.0)
        assert ["b"] == await ids(725.5)
        assert ["a", "b"] == await ids(725.6)
        assert ["a", "b"] == await ids(float("inf"))
    finally:
        await s.close()
    conn = sqlite3.connect(tmp_path / "cs.db")
    minutes = dict(conn.execute("SELECT session_id, interaction_minute FROM sessions").fetchall())
    conn.close()
    assert {"a": 12, "b": 2} == minutes


async def test_sessions_written_before_migration_11_are_found_by_their_minute(
    tmp_path: Path,
) -> None:
    """A file at schema 10 migrates: its sessions get the minute of their last
    interaction, and a cutoff still finds exactly the quiet ones, newest first."""
    path = tmp_path / "cs.db"
    conn = _file_at_schema(path, 10)
    for sid, at in (("old", 100.0), ("newer", 7000.0)):
        conn.execute(
            "INSERT INTO sessions (session_id, epoch, seq, agent, status, created_at, "
            "last_interaction_at) VALUES (?, 1, 0, 'triage', 'active', 1.0, ?)",
            (sid, at),
        )
    conn.close()
    s = SQLiteStore(f"sqlite:///{path}")
    await s.open()
    try:
        assert 11 == await s.schema_version()
        quiet = await s.list_sessions(statuses=["active"], interaction_before=150.0)
        assert ["old"] == [r.session_id for r in quiet]
        every = await s.list_sessions(interaction_before=7000.5)
        assert ["newer", "old"] == [r.session_id for r in every]
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    minutes = dict(conn.execute("SELECT session_id, interaction_minute FROM sessions").fetchall())
    conn.close()
    assert {"old": 1, "newer": 116} == minutes
