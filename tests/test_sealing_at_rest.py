"""Caller data at rest: a whole call leaves no caller id or personal value in the clear.

One call (start with a caller and personal userdata, a personal userdata patch,
snapshots, a handoff, an end, an archive record, a follow-up, a ring-back by caller id)
runs on SQLite, on a private Redis with AOF and on PostgreSQL; then the raw storage is
searched for the number and the personal values: the SQLite file and its WAL, every Redis
key's value and the AOF files, every PostgreSQL table of the schema. The app still reads
them in the clear where it should: the session state, archive records, follow-ups and
the handoff package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from callstate import HandoffPackage, Keeper
from services import drop_pg_schema, postgres_url, private_redis, unique

SECRET = b"at-rest-test-secret-32-bytes-ok!"
NUMBER = "+15557654321"
EMAIL = "ada.lovelace@example.org"
POSTCODE = "SW1A 2AA"
#: What must never be found in storage: the digits catch "+1555…" and "1555…" alike.
NEEDLES = [b"5557654321", EMAIL.encode(), POSTCODE.encode()]


def _found(blob: bytes) -> list[bytes]:
    """The needles in ``blob``, raw or hex-encoded (PostgreSQL prints bytea as hex)."""
    low = blob.lower()
    return [n for n in NEEDLES if n in blob or n.hex().encode() in low]


async def _a_whole_call(url: str, inside: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the call described in the module docstring on ``url``; check the app's reads.

    ``inside`` runs last, while the keeper is still open (SQLite's WAL still holds data).
    """
    done: list[Any] = []
    async with Keeper(
        url, secret=SECRET, snapshot_every=2, personal=["postcode"], sweep_every=None
    ) as k:
        k.on_call_complete(done.append, grace=0)
        s = await k.start(
            caller=NUMBER, agent="triage", personal={"email": EMAIL}, userdata={"booking": "B1"}
        )
        s.user_said("Hi, I'd like to move my booking")
        s.update_userdata(postcode=POSTCODE, party=4)
        u = s.agent_started("Sure, one moment")
        s.agent_finished(u)
        await s.flush()
        assert (NUMBER, EMAIL, POSTCODE) == (
            s.state.caller,
            s.state.userdata["email"],
            s.state.userdata["postcode"],
        )
        pkg = await s.handoff(to="billing", reason="billing question")
        data = pkg.to_bytes()
        assert [] == _found(data)
        target = HandoffPackage.from_bytes(data, secret=SECRET)
        assert (NUMBER, EMAIL, POSTCODE) == (
            target.caller,
            target.userdata["email"],
            target.userdata["postcode"],
        )
        s2 = await k.accept(data)
        assert (NUMBER, EMAIL) == (s2.state.caller, s2.state.userdata["email"])
        s2.user_said("Thanks, that's all")
        await s2.end(reason="caller_hangup")
        await k.sweep()  # runs the due follow-up
        records = await k.archive.list(caller=NUMBER)
        assert [NUMBER] * len(records) == [r.caller for r in records]
        assert records
        assert {"email": EMAIL, "postcode": POSTCODE} == {
            key: records[0].userdata[key] for key in ("email", "postcode")
        }
        assert [NUMBER] == [r.caller for r in done]
        loaded = await k.load(s.id)
        assert (NUMBER, POSTCODE) == (loaded.caller, loaded.userdata["postcode"])
        back = await k.resume_caller(NUMBER)
        assert back is not None
        assert (s.id, NUMBER) == (back.id, back.state.caller)
        back.user_said("one more thing")
        await back.end(reason="caller_hangup")
        if inside is not None:
            await inside()


def _sqlite_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("cs.db")}


async def test_sqlite_file_and_wal_hold_no_caller_data(tmp_path: Path) -> None:
    """The SQLite database, its WAL and shared memory hold no caller id or personal value."""
    seen: dict[str, bytes] = {}

    async def while_open() -> None:
        seen.update({f"open:{k}": v for k, v in _sqlite_files(tmp_path).items()})

    await _a_whole_call(f"sqlite:///{tmp_path}/cs.db", while_open)
    seen.update(_sqlite_files(tmp_path))
    assert {"open:cs.db", "open:cs.db-wal", "cs.db"} <= set(seen)
    assert seen["open:cs.db-wal"]  # the WAL held the call's writes when it was read
    assert {} == {name: _found(blob) for name, blob in seen.items() if _found(blob)}


async def _redis_values(url: str) -> bytes:
    """Every key and value of the server, by type, as one blob (no DUMP: it compresses)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(count=1000):
            parts.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(await client.get(key) or b"")
            elif kind == "hash":
                for f, v in (await client.hgetall(key)).items():
                    parts += [f, v]
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "set":
                parts += list(await client.smembers(key))
            elif kind == "zset":
                parts += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
            else:
                pytest.fail(f"unexpected Redis type {kind!r} at {key!r}: teach the test about it")
    finally:
        await client.aclose()
    return b"\n".join(parts)


async def test_redis_keys_and_aof_hold_no_caller_data() -> None:
    """No Redis value, and no byte of the append-only file, holds caller data."""
    with private_redis(appendonly=True, appendfsync="always") as server:
        url = f"{server.url}?prefix={unique('seal')}"
        await _a_whole_call(url)
        values = await _redis_values(server.url)
        assert b"" != values
        assert [] == _found(values)
        aof = [p for p in server.dir.rglob("*") if p.is_file() and ".aof" in p.name]
        assert aof, f"no AOF files under {server.dir}"
        assert sum(p.stat().st_size for p in aof) > 0
        assert [] == [(p.name, _found(p.read_bytes())) for p in aof if _found(p.read_bytes())]


async def test_postgres_tables_hold_no_caller_data() -> None:
    """No row of any table of the schema holds caller data (bytea searched as hex too)."""
    import psycopg

    url, schema = postgres_url(), unique("seal")
    try:
        await _a_whole_call(f"{url}?schema={schema}")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
            tables = [r[0] for r in await cur.fetchall()]
            assert {"events", "archive", "packages"} <= set(tables)
            dump: list[bytes] = []
            for table in tables:
                cur = await conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
                dump += [r[0].encode() for r in await cur.fetchall()]
        assert [] == _found(b"\n".join(dump))
    finally:
        await drop_pg_schema(url, schema)
