"""RedisStore: the shared conformance suite plus what only Redis has, on real servers."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

import callstate
from callstate import ConfigError, StorageError
from callstate.journal.events import UserTurn
from callstate.storage.base import ArchiveRow, Batch, FollowUp, PackageRow, SessionRecord
from callstate.storage.redis import RedisStore
from callstate.testing import FakeClock
from callstate.testing._suite_base import make_batch
from callstate.testing.conformance import StoreConformance
from services import PrivateRedis, drop_redis_prefix, private_redis, redis_url, unique

pytestmark = pytest.mark.services


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStore]:
    """An opened RedisStore on the shared server under a fresh prefix, dropped afterwards."""
    url, prefix = redis_url(), unique("redis")
    s = RedisStore(url, prefix=prefix)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        await drop_redis_prefix(url, prefix)


class TestRedisConformance(StoreConformance):
    """Every Store behaviour, against the shared Redis server."""

    @pytest.fixture
    async def store(self, redis_store: RedisStore) -> RedisStore:
        return redis_store


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[PrivateRedis]:
    """A one-node Redis Cluster of this module (it refuses any command crossing a slot)."""
    with private_redis(cluster=True) as node:
        yield node


class TestRedisClusterConformance(StoreConformance):
    """Every Store behaviour on Redis Cluster: no script or transaction crosses a slot."""

    @pytest.fixture
    async def store(self, cluster_node: PrivateRedis) -> AsyncIterator[RedisStore]:
        s = RedisStore(cluster_node.url, prefix=unique("cluster"), cluster=True)
        await s.open()
        try:
            yield s
        finally:
            await s.close()  # the node and its data go away with the module


async def _fill(store: RedisStore, sid: str) -> None:
    """Touch every kind of key a session, the archive and the follow-ups use."""
    await store.create(
        SessionRecord(session_id=sid, epoch=1, caller_hash="h"),
        Batch(session_id=sid, epoch=1, first_seq=1, events=[b"e1"], snapshot=b"s", snapshot_seq=1),
    )
    assert [None] == await store.append(
        [Batch(session_id=sid, epoch=1, first_seq=2, events=[b"e2"])]
    )
    await store.index_caller("h", sid, 1.0)
    await store.archive_insert(
        ArchiveRow(
            record_id=f"{sid}:1",
            session_id=sid,
            caller_hash="h",
            ended_at=1.0,
            outcome="completed",
            data=b"r",
        )
    )
    await store.followup_put(
        FollowUp(followup_id=f"f-{sid}", session_id=sid, due_at=1.0, payload=b"p")
    )
    await store.package_put(PackageRow(package_id=f"p-{sid}", session_id=sid, data=b"pkg"))


async def test_each_session_archive_and_followups_keep_to_one_cluster_slot(
    cluster_node: PrivateRedis,
) -> None:
    """On a cluster node, all keys of a session (braces in its id too) share one slot."""
    prefix = unique("slots")
    store = RedisStore(cluster_node.url, prefix=prefix, cluster=True)
    await store.open()
    sids = ["plain", "with{braces}in", "}x{", "%7B"]
    try:
        for sid in sids:
            await _fill(store, sid)
        client = aioredis.Redis.from_url(cluster_node.url)
        slots: dict[str, set[int]] = defaultdict(set)
        async for raw in client.scan_iter(match=f"{prefix}:*"):
            key = raw.decode()
            group = key.split("}")[0] + "}"  # the key up to its hash tag
            slots[group].add(await client.execute_command("CLUSTER", "KEYSLOT", key))
        assert all(1 == len(s) for s in slots.values()), slots
        session_groups = [g for g in slots if g.startswith(f"{prefix}:{{%")]
        assert len(sids) == len(session_groups)
        for sid in sids:
            loaded = await store.load(sid)
            assert [b"e2"] == loaded.events
        with pytest.raises(ResponseError, match="same slot"):
            await client.mset({"a": 1, "b": 2})  # the node does enforce slots
        await client.aclose()
    finally:
        await store.close()


async def test_prefixes_keep_stores_apart(redis_store: RedisStore) -> None:
    """Two stores on one server with different prefixes never see each other's data."""
    other = RedisStore(redis_store.url, prefix=unique("other"))
    await other.open()
    try:
        await _fill(redis_store, "same-id")
        assert await other.get("same-id") is None
        assert [] == await other.list_sessions()
        assert [] == await other.archive_list()
        assert [] == await other.followup_claim(10.0, "w", 30)
    finally:
        await other.close()
        await drop_redis_prefix(other.url, other.prefix)


async def test_url_selects_the_redis_store_and_its_prefix() -> None:
    """open_store routes redis:// to RedisStore and takes ?prefix= from the URL."""
    url, prefix = redis_url(), unique("url")
    store = callstate.open_store(f"{url}?prefix={prefix}")
    assert isinstance(store, RedisStore)
    assert prefix == store.prefix
    await store.open()
    try:
        await _fill(store, "s1")
        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        await client.aclose()
        assert len(keys) > 5
    finally:
        await store.close()
        await drop_redis_prefix(url, prefix)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prefix": "bad{tag}"}, "prefix"),
        ({"retry_for": 0}, "retry_for"),
        ({"timeout": -1.0}, "timeout"),
        ({"pool_size": 0}, "pool_size"),
    ],
)
def test_bad_options_raise_config_error_naming_them(options: dict[str, Any], field: str) -> None:
    """An invalid option raises ConfigError naming the option and its value."""
    with pytest.raises(ConfigError) as exc:
        RedisStore("redis://127.0.0.1:6379/0", **options)
    assert field in str(exc.value)
    assert repr(next(iter(options.values()))) in str(exc.value)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py installed, opening a redis:// store names `callstate[redis]`."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "callstate.storage.redis", raising=False)
    with pytest.raises(ImportError, match=r"pip install callstate\[redis\]"):
        callstate.open_store("redis://127.0.0.1:6379/0")


async def test_newer_key_layout_is_refused() -> None:
    """A prefix written by a newer key layout makes open() raise StorageError naming it."""
    url, prefix = redis_url(), unique("layout")
    client = aioredis.Redis.from_url(url)
    await client.hset(f"{prefix}:migrations", "99", "0")
    store = RedisStore(url, prefix=prefix)
    try:
        with pytest.raises(StorageError, match="version 99"):
            await store.open()
    finally:
        await client.aclose()
        await drop_redis_prefix(url, prefix)


async def test_keeper_on_a_redis_url_resumes_across_keepers() -> None:
    """Switching the backend is one URL: a second keeper resumes what the first flushed."""
    url, prefix = redis_url(), unique("keeper")
    clock = FakeClock()
    try:
        async with callstate.Keeper(f"{url}?prefix={prefix}", clock=clock) as a:
            s = await a.start(agent="triage")
            s.user_said("move my booking")
            await s.flush()
            async with callstate.Keeper(f"{url}?prefix={prefix}", clock=clock) as b:
                s2 = await b.resume(s.id)
                assert 2 == s2.state.epoch
                assert [{"role": "user", "content": "move my booking"}] == s2.context()
                s.user_said("stale write")
                with pytest.raises(callstate.StaleEpochError):
                    await s.flush()
    finally:
        await drop_redis_prefix(url, prefix)


# -- durability --------------------------------------------------------------------------


async def test_acknowledged_flush_survives_a_crash_with_aof_always() -> None:
    """With appendonly yes + appendfsync always, every flushed event survives SIGKILL."""
    with private_redis(appendonly=True, appendfsync="always") as server:
        store = RedisStore(server.url, require_aof=True)
        async with callstate.Keeper(store, clock=FakeClock()) as keeper:
            s = await keeper.start(agent="triage")
            for i in range(20):
                s.user_said(f"turn {i}")
                await s.flush()
            server.kill()  # no shutdown, no final fsync
            server.start()
            again = RedisStore(server.url)
            await again.open()
            try:
                events = [callstate.decode_event(e) for e in await again.read_events(s.id)]
            finally:
                await again.close()
            texts = [e.text for e in events if isinstance(e, UserTurn)]
            assert [f"turn {i}" for i in range(20)] == texts


async def test_require_aof_refuses_a_server_without_aof() -> None:
    """require_aof=True refuses to open against a server running with appendonly no."""
    with private_redis(appendonly=False) as server:
        store = RedisStore(server.url, require_aof=True)
        with pytest.raises(ConfigError, match="appendonly='no'"):
            await store.open()


async def test_wait_aof_needs_a_server_that_has_it(redis_store: RedisStore) -> None:
    """wait_aof on Redis < 7.2 raises ConfigError naming the version; on 7.2+ appends wait."""
    client = aioredis.Redis.from_url(redis_store.url)
    version = (await client.info("server"))["redis_version"]
    await client.aclose()
    store = RedisStore(redis_store.url, prefix=redis_store.prefix, wait_aof=(1, 0, 1000))
    if tuple(int(x) for x in version.split(".")[:2]) < (7, 2):
        with pytest.raises(ConfigError, match=f"server is {version}"):
            await store.open()
        return
    with private_redis(appendonly=True) as server:  # pragma: no cover - needs Redis 7.2
        store = RedisStore(server.url, wait_aof=(1, 0, 1000))
        await store.open()
        await _fill(store, "s")
        assert [b"e2"] == (await store.load("s")).events
        await store.close()


async def test_corrupt_stored_field_raises_codec_error_naming_it(redis_store: RedisStore) -> None:
    """A tampered meta hash (epoch 'abc') reads as CodecError naming field and value; nothing is written."""
    await _fill(redis_store, "s1")
    client = aioredis.Redis.from_url(redis_store.url)
    try:
        meta_key = f"{redis_store.prefix}:{{%s1}}:meta"
        await client.hset(meta_key, "epoch", "abc")
        before = await client.hgetall(meta_key)
        with pytest.raises(callstate.CodecError, match=r"`epoch` = b'abc'"):
            await redis_store.get("s1")
        with pytest.raises(callstate.CodecError, match="epoch"):
            await redis_store.load("s1")
        batch = Batch(session_id="s1", epoch=1, first_seq=3, events=[b"e3"])
        (error,) = await redis_store.append([batch])
        assert isinstance(error, callstate.CodecError)
        assert before == await client.hgetall(meta_key)
        assert [b"e1", b"e2"] == await redis_store.read_events("s1")
    finally:
        await client.aclose()


async def test_an_append_sets_the_session_meta_in_one_command() -> None:
    """A turn's append writes its events and one HSET of the meta fields that changed
    (not one per field, each a command in the append-only file), and the meta reads
    back as before: seq, status, agent and last interaction."""
    with private_redis(appendonly=False) as server:
        store = RedisStore(server.url)
        await store.open()
        client = aioredis.from_url(server.url)
        try:
            first = Batch(session_id="s", epoch=1, first_seq=1, events=[b'{"n":1}'], agent="a")
            await store.create(SessionRecord(session_id="s", epoch=1, agent="a"), first)
            await client.config_resetstat()
            n = 20
            for seq in range(2, n + 2):
                batch = make_batch("s", 1, seq, 1, agent="a", last_interaction_at=100.0 + seq)
                assert [None] == await store.append([batch])
            stats = await client.info("commandstats")
            rec = await store.get("s")
        finally:
            await client.aclose()
            await store.close()
    assert n == stats["cmdstat_hset"]["calls"]
    assert rec is not None
    assert (n + 1, "active", "a", 100.0 + n + 1) == (
        rec.seq,
        rec.status,
        rec.agent,
        rec.last_interaction_at,
    )


@pytest.mark.parametrize(("snapshot_at", "events"), [(0, 40), (30, 120), (0, 300), (20, 400)])
async def test_a_load_reads_in_one_transaction_or_a_long_tail_by_script(
    snapshot_at: int, events: int
) -> None:
    """A load reads the session, its snapshot, its parts and the events after it in one
    MULTI/EXEC when that tail fits the read (no script, whose copy of the parts into Lua
    costs more than the read); a longer tail goes to the load script; both give the same."""
    with private_redis(appendonly=False) as server:
        store = RedisStore(server.url)
        await store.open()
        client = aioredis.from_url(server.url)
        try:
            first = make_batch("s", 1, 1, 1, agent="a")
            await store.create(SessionRecord(session_id="s", epoch=1, agent="a"), first)
            seq = 2
            while seq <= events:
                n = min(50, events - seq + 1)
                batch = make_batch("s", 1, seq, n, agent="a")
                if snapshot_at and seq <= snapshot_at < seq + n:
                    batch.snapshot, batch.snapshot_seq = b"head", snapshot_at
                    batch.snapshot_parts = {0: b"p0", 1: b"p1"}
                assert [None] == await store.append([batch])
                seq += n
            await client.config_resetstat()
            loaded = await store.load("s")
            stats = await client.info("commandstats")
            by_script = await store._load_by_script("s")
        finally:
            await client.aclose()
            await store.close()
    tail = events - snapshot_at
    assert (0 if tail <= 256 else 1) == stats.get("cmdstat_evalsha", {}).get("calls", 0)
    assert by_script == loaded
    assert (events, snapshot_at) == (loaded.record.seq, loaded.record.snapshot_seq)
    assert [make_batch("s", 1, snapshot_at + 1, tail).events] == [loaded.events]
    expected = ({0: b"p0", 1: b"p1"}, b"head") if snapshot_at else ({}, None)
    assert expected == (loaded.snapshot_parts, loaded.snapshot)
