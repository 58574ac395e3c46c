"""PostgresStore: the shared conformance suite plus what only PostgreSQL has, on a real server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

import callstate
from callstate import ConfigError, StorageError
from callstate.storage.base import ArchiveRow, Batch, SessionRecord
from callstate.storage.postgres import MIGRATIONS, PostgresStore
from callstate.testing import FakeClock
from callstate.testing._suite_base import make_batch
from callstate.testing.conformance import StoreConformance
from services import drop_pg_schema, postgres_url, unique

pytestmark = pytest.mark.services


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    """An opened PostgresStore in a fresh schema of the `test` database, dropped afterwards."""
    url, schema = postgres_url(), unique("pg")
    s = PostgresStore(url, schema=schema)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        await drop_pg_schema(url, schema)


class TestPostgresConformance(StoreConformance):
    """Every Store behaviour, against the PostgreSQL server."""

    @pytest.fixture
    async def store(self, pg_store: PostgresStore) -> PostgresStore:
        return pg_store


async def _sql(url: str, query: str, params: Any = None) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description else []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {s}.archive SET outcome = 'failed'",
        "DELETE FROM {s}.archive",
        "TRUNCATE {s}.archive",
    ],
)
async def test_archive_refuses_update_delete_and_truncate(
    pg_store: PostgresStore, statement: str
) -> None:
    """Raw SQL cannot change or remove an archive row: the triggers refuse; the row stays."""
    row = ArchiveRow(
        record_id="r1",
        session_id="s1",
        caller_hash=None,
        ended_at=1.0,
        outcome="completed",
        data=b"x",
    )
    await pg_store.archive_insert(row)
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="insert-only"):
        await _sql(pg_store.url, statement.replace("{s}", f'"{pg_store.schema}"'))
    assert row == await pg_store.archive_get("r1")


async def test_migrations_are_recorded_and_run_once_under_racing_opens() -> None:
    """Eight stores opening one fresh schema at once: each migration applied exactly once."""
    url, schema = postgres_url(), unique("mig")
    stores = [PostgresStore(url, schema=schema) for _ in range(8)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        rows = await _sql(
            url, f'SELECT version FROM "{schema}".callstate_migrations ORDER BY version'
        )
        assert [(v,) for v, _ in MIGRATIONS] == rows
        assert [max(v for v, _ in MIGRATIONS)] * 8 == [await s.schema_version() for s in stores]
    finally:
        for s in stores:
            await s.close()
        await drop_pg_schema(url, schema)


async def test_newer_schema_version_is_refused(pg_store: PostgresStore) -> None:
    """A schema migrated by a newer callstate makes open() raise StorageError naming the version."""
    await _sql(pg_store.url, f'INSERT INTO "{pg_store.schema}".callstate_migrations VALUES (99, 0)')
    newer = PostgresStore(pg_store.url, schema=pg_store.schema)
    with pytest.raises(StorageError, match="version 99"):
        await newer.open()


async def test_schemas_keep_stores_apart(pg_store: PostgresStore) -> None:
    """Two stores in different schemas of one database never see each other's sessions."""
    other = PostgresStore(pg_store.url, schema=unique("other"))
    await other.open()
    try:
        await pg_store.create(
            SessionRecord(session_id="same-id", epoch=1),
            Batch(session_id="same-id", epoch=1, first_seq=1, events=[b"e"]),
        )
        assert await other.get("same-id") is None
        assert [] == await other.list_sessions()
    finally:
        await other.close()
        await drop_pg_schema(other.url, other.schema)


async def test_url_selects_the_postgres_store_and_its_schema() -> None:
    """open_store routes postgresql:// (and postgres://) to PostgresStore, ?schema= included."""
    url, schema = postgres_url(), unique("url")
    store = callstate.open_store(f"{url}?schema={schema}")
    assert isinstance(store, PostgresStore)
    assert schema == store.schema
    assert isinstance(
        callstate.open_store(url.replace("postgresql://", "postgres://")), PostgresStore
    )
    await store.open()
    try:
        tables = await _sql(
            url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            [schema],
        )
        assert {"sessions", "events", "archive", "followups", "callstate_migrations"} <= {
            t for (t,) in tables
        }
    finally:
        await store.close()
        await drop_pg_schema(url, schema)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"schema": "bad-name; drop"}, "schema"),
        ({"retry_for": 0}, "retry_for"),
        ({"pool_size": 0}, "pool_size"),
    ],
)
def test_bad_options_raise_config_error_naming_them(options: dict[str, Any], field: str) -> None:
    """An invalid option raises ConfigError naming the option and its value."""
    with pytest.raises(ConfigError) as exc:
        PostgresStore("postgresql://127.0.0.1/test", **options)
    assert field in str(exc.value)
    assert repr(next(iter(options.values()))) in str(exc.value)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg installed, opening a postgresql:// store names `callstate[postgres]`."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "callstate.storage.postgres", raising=False)
    with pytest.raises(ImportError, match=r"pip install callstate\[postgres\]"):
        callstate.open_store("postgresql://127.0.0.1/test")


async def test_events_carry_the_epoch_that_wrote_them(pg_store: PostgresStore) -> None:
    """Each stored event row records its writer's epoch, rising along seq after a claim."""
    sid = "s1"
    await pg_store.create(
        SessionRecord(session_id=sid, epoch=1),
        Batch(session_id=sid, epoch=1, first_seq=1, events=[b"a"]),
    )
    epoch = await pg_store.claim(sid, 1, "b", 10.0)
    assert [None] == await pg_store.append(
        [Batch(session_id=sid, epoch=epoch, first_seq=2, events=[b"b", b"c"])]
    )
    rows = await _sql(
        pg_store.url,
        f'SELECT seq, epoch FROM "{pg_store.schema}".events WHERE session_id = %s ORDER BY seq',
        [sid],
    )
    assert [(1, 1), (2, 2), (3, 2)] == rows


async def test_keeper_on_a_postgres_url_resumes_across_keepers() -> None:
    """Switching the backend is one URL: a second keeper resumes what the first flushed."""
    url, schema = postgres_url(), unique("keeper")
    clock = FakeClock()
    try:
        async with callstate.Keeper(f"{url}?schema={schema}", clock=clock) as a:
            s = await a.start(agent="triage")
            s.user_said("move my booking")
            await s.flush()
            async with callstate.Keeper(f"{url}?schema={schema}", clock=clock) as b:
                s2 = await b.resume(s.id)
                assert 2 == s2.state.epoch
                assert [{"role": "user", "content": "move my booking"}] == s2.context()
                s.user_said("stale write")
                with pytest.raises(callstate.StaleEpochError):
                    await s.flush()
    finally:
        await drop_pg_schema(url, schema)


async def test_sessions_and_follow_ups_written_at_schema_1_claim_and_cancel_after_migration_2() -> (
    None
):
    """A schema at version 1 (no claim ids) migrates to the newest: its session reads as
    before, claims, and recognises that claim sent again; its follow-up cancels once."""
    url, schema = postgres_url(), unique("mig1")
    s = f'"{schema}"'
    try:
        await _sql(url, f"CREATE SCHEMA {s}")
        await _sql(url, MIGRATIONS[0][1].replace("{schema}", s))
        await _sql(
            url,
            f"CREATE TABLE {s}.callstate_migrations "
            "(version integer PRIMARY KEY, applied_at double precision NOT NULL)",
        )
        await _sql(url, f"INSERT INTO {s}.callstate_migrations VALUES (1, 0)")
        await _sql(
            url,
            f"INSERT INTO {s}.sessions (session_id, epoch, seq, agent, status, created_at, "
            "last_interaction_at, lease_owner, lease_until) "
            "VALUES ('old', 4, 1, 'triage', 'active', 1.0, 2.0, 'w', 3.0)",
        )
        await _sql(url, f"INSERT INTO {s}.events VALUES ('old', 1, 4, 'e1')")
        await _sql(
            url,
            f"INSERT INTO {s}.followups (followup_id, session_id, due_at, payload, status) "
            "VALUES ('f1', 'old', 1.0, 'p', 'pending')",
        )
        store = PostgresStore(url, schema=schema)
        await store.open()
        try:
            assert max(v for v, _ in MIGRATIONS) == await store.schema_version()
            rec = await store.get("old")
            assert rec is not None
            assert (4, 1, "w") == (rec.epoch, rec.seq, rec.lease_owner)
            assert [b"e1"] == await store.read_events("old")
            assert 5 == await store.claim("old", 4, "w2", 9.0, claim_id="c1")
            assert 5 == await store.claim("old", 4, "w2", 9.0, claim_id="c1")
            with pytest.raises(callstate.StaleEpochError):
                await store.claim("old", 4, "w3", 9.0)
            assert 1 == await store.followup_cancel("old")
            assert 0 == await store.followup_cancel("old")
        finally:
            await store.close()
    finally:
        await drop_pg_schema(url, schema)


async def test_sessions_written_before_migration_8_are_found_by_their_minute() -> None:
    """A schema at version 7 migrates: its sessions get the minute of their last
    interaction, and a cutoff still finds exactly the quiet ones, newest first."""
    url, schema = postgres_url(), unique("mig7")
    s = f'"{schema}"'
    try:
        await _sql(url, f"CREATE SCHEMA {s}")
        await _sql(
            url,
            f"CREATE TABLE {s}.callstate_migrations "
            "(version integer PRIMARY KEY, applied_at double precision NOT NULL)",
        )
        for version, script in MIGRATIONS[:7]:
            await _sql(url, script.replace("{schema}", s))
            await _sql(url, f"INSERT INTO {s}.callstate_migrations VALUES ({version}, 0)")
        for sid, at in (("old", 100.0), ("newer", 7000.0)):
            await _sql(
                url,
                f"INSERT INTO {s}.sessions (session_id, epoch, seq, agent, status, created_at, "
                "last_interaction_at) VALUES (%s, 1, 0, 'triage', 'active', 1.0, %s)",
                (sid, at),
            )
        store = PostgresStore(url, schema=schema)
        await store.open()
        try:
            assert 8 == await store.schema_version()
            quiet = await store.list_sessions(statuses=["active"], interaction_before=150.0)
            assert ["old"] == [r.session_id for r in quiet]
            every = await store.list_sessions(interaction_before=7000.5)
            assert ["newer", "old"] == [r.session_id for r in every]
            assert ["newer", "old"] == [r.session_id for r in await store.list_sessions()]
        finally:
            await store.close()
        rows = await _sql(url, f"SELECT session_id, interaction_minute FROM {s}.sessions")
        assert {"old": 1, "newer": 116} == dict(rows)
    finally:
        await drop_pg_schema(url, schema)


async def test_a_turn_within_the_minute_is_a_heap_only_update() -> None:
    """Appends whose last interaction stays within one minute change no indexed column of
    the session row, so PostgreSQL updates it in place (HOT), adding no index entries."""
    url, schema = postgres_url(), unique("hot")
    store = PostgresStore(url, schema=schema)
    await store.open()
    n = 40
    try:
        first = Batch(session_id="s", epoch=1, first_seq=1, events=[b'{"n":1}'])
        await store.create(SessionRecord(session_id="s", epoch=1, last_interaction_at=600.0), first)
        for seq in range(2, n + 2):  # minute 10 throughout
            batch = make_batch("s", 1, seq, 1, last_interaction_at=600.0 + seq / 10)
            assert [None] == await store.append([batch])
        await store.close()  # its connections end, and with them their statistics are in
        updated = hot = 0
        for _ in range(100):
            rows = await _sql(
                url,
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'sessions'",
                (schema,),
            )
            updated, hot = rows[0] if rows else (0, 0)
            if updated >= n:
                break
            await asyncio.sleep(0.1)
    finally:
        await drop_pg_schema(url, schema)
    assert n <= updated
    assert hot >= updated * 3 // 4
