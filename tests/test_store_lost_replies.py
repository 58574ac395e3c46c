"""Every store write is safe to send again: the whole conformance suite, resumes and
claims through a FaultProxy that loses replies the server did act on, resets
connections and delays replies, against the real Redis and PostgreSQL servers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

import callstate
from callstate import ConfigError, Keeper, StaleEpochError
from callstate.storage.base import ArchiveRow, FollowUp, PackageMove, PackageRow, Store
from callstate.storage.postgres import PostgresStore
from callstate.storage.redis import RedisStore
from callstate.testing import FakeClock
from callstate.testing._suite_base import T0, create, make_batch, new_id, seqs
from callstate.testing.conformance import StoreConformance
from callstate.testing.faultproxy import FaultProxy
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

pytestmark = pytest.mark.services

#: Fault shares of the conformance runs: a few percent of everything goes wrong.
SHARES = {"drop_reply": 0.06, "reset_request": 0.03, "delay_reply": 0.04, "delay_s": 0.005}


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def _seed(request: pytest.FixtureRequest) -> int:
    """A seed per test, the same on every run."""
    return zlib.crc32(request.node.nodeid.encode())


def _via(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()


@contextlib.asynccontextmanager
async def _behind_proxy(
    kind: str, seed: int, **shares: float
) -> AsyncIterator[tuple[Store, FaultProxy]]:
    """A store of ``kind`` on the shared server through a fresh FaultProxy; cleaned afterwards."""
    name = unique("lost")
    store: RedisStore | PostgresStore
    if kind == "redis":
        url = redis_url()
        async with FaultProxy(_port(url, 6379), seed=seed, **shares) as proxy:
            store = RedisStore(_via(url, proxy), prefix=name, retry_for=20.0)
            try:
                proxy.faults_on = False  # the store opens cleanly, then the faults begin
                await store.open()
                proxy.faults_on = True
                yield store, proxy
            finally:
                await store.close()
                await drop_redis_prefix(url, name)
    else:
        url = postgres_url()
        async with FaultProxy(_port(url, 5432), seed=seed, **shares) as proxy:
            store = PostgresStore(_via(url, proxy), schema=name, retry_for=20.0)
            try:
                proxy.faults_on = False  # the store opens cleanly, then the faults begin
                await store.open()
                proxy.faults_on = True
                yield store, proxy
            finally:
                await store.close()
                await drop_pg_schema(url, name)


class TestRedisConformanceThroughLostReplies(StoreConformance):
    """Every Store behaviour on Redis while replies are lost, delayed and connections reset."""

    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
        async with _behind_proxy("redis", _seed(request), **SHARES) as (store, _):
            yield store


class TestPostgresConformanceThroughLostReplies(StoreConformance):
    """Every Store behaviour on PostgreSQL while replies are lost, delayed and connections reset."""

    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
        async with _behind_proxy("postgres", _seed(request), **SHARES) as (store, _):
            yield store


@pytest.fixture(params=["redis", "postgres"])
async def faulty(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, FaultProxy]]:
    """Each server store behind its own proxy, random faults off until a test turns them on."""
    async with _behind_proxy(request.param, _seed(request), **SHARES) as (store, proxy):
        proxy.faults_on = False
        yield store, proxy


async def test_a_claim_whose_reply_is_lost_returns_the_epoch_it_took(
    faulty: tuple[Store, FaultProxy],
) -> None:
    """The claim is applied, its reply lost, the store sends it again: epoch 2, not stale."""
    store, proxy = faulty
    sid = await create(store, events=2)
    proxy.lose_reply()
    assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60)
    assert 1 == proxy.dropped
    rec = await store.get(sid)
    assert rec is not None
    assert (2, "owner-b", T0 + 60) == (rec.epoch, rec.lease_owner, rec.lease_until)


@pytest.mark.parametrize("lost", range(5))
async def test_a_stepwise_claim_survives_a_lost_reply_at_any_step(
    faulty: tuple[Store, FaultProxy], lost: int
) -> None:
    """claim(package=, then=) with the reply of any one of its round trips lost ends as
    if nothing was lost: epoch 2, the package accepted, the batch stored once."""
    store, proxy = faulty
    sid = await create(store, events=2)
    row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
    await store.package_put(row)
    move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
    proxy.lose_reply(after=lost)
    got = await store.claim(sid, 1, "owner-b", T0 + 60, package=move, then=make_batch(sid, 2, 3, 1))
    proxy.faults_on = False
    pkg = await store.package_get(row.package_id)
    assert pkg is not None
    assert (2, "accepted", [1, 2, 3]) == (got, pkg.status, seqs(await store.read_events(sid)))


@pytest.mark.parametrize("lost", range(3))
async def test_a_claim_with_a_batch_alone_survives_a_lost_reply(
    faulty: tuple[Store, FaultProxy], lost: int
) -> None:
    """claim(then=) without a package (Redis: one script; PostgreSQL: one statement)
    with the reply of any one of its round trips lost: epoch 2, the batch stored once."""
    store, proxy = faulty
    sid = await create(store, events=2)
    proxy.lose_reply(after=lost)
    got = await store.claim(sid, 1, "owner-b", T0 + 60, then=make_batch(sid, 2, 3, 2))
    proxy.faults_on = False
    rec = await store.get(sid)
    assert rec is not None
    assert (2, [1, 2, 3, 4], "owner-b") == (
        got,
        seqs(await store.read_events(sid)),
        rec.lease_owner,
    )


async def test_a_competitor_is_still_fenced_through_lost_replies(
    faulty: tuple[Store, FaultProxy],
) -> None:
    """Two claimers racing for each of many sessions while replies are lost: exactly one
    wins each, the other gets StaleEpochError naming the winner's epoch."""
    store, proxy = faulty
    proxy.faults_on = True
    proxy.drop_reply = 0.15
    sids = [await create(store, f"race{i}") for i in range(30)]
    for sid in sids:
        results = await asyncio.gather(
            store.claim(sid, 1, "owner-b", T0 + 60),
            store.claim(sid, 1, "owner-c", T0 + 60),
            return_exceptions=True,
        )
        stale = [r for r in results if isinstance(r, StaleEpochError)]
        assert 1 == results.count(2), results
        assert [2] == [e.current_epoch for e in stale]
    assert proxy.dropped > 0


RESUMES = 60


async def test_resumes_through_lost_replies_never_raise_stale_epoch(
    faulty: tuple[Store, FaultProxy],
) -> None:
    """RESUMES resumes of one session, with no competitor, while a tenth of the replies
    are lost: every one takes the next epoch and the conversation is intact."""
    store, proxy = faulty
    async with Keeper(store, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="triage")
        s.user_said("move my booking")
        await s.flush()
        proxy.faults_on = True
        proxy.drop_reply = 0.1
        for i in range(RESUMES):
            s = await keeper.resume(s.id)
            assert i + 2 == s.state.epoch
        proxy.faults_on = False
        assert [{"role": "user", "content": "move my booking"}] == s.context()
    assert proxy.dropped > 0


async def test_proxy_refuses_a_target_off_loopback() -> None:
    """A FaultProxy aimed anywhere but loopback raises ConfigError naming the host."""
    with pytest.raises(ConfigError, match=r"10\.0\.0\.1"):
        FaultProxy(6379, "10.0.0.1")
    with pytest.raises(ConfigError, match="drop_reply"):
        FaultProxy(6379, drop_reply=1.5)


async def test_proxy_stops_by_itself_after_its_lifetime() -> None:
    """After ``lifetime`` seconds the proxy stops listening and resets its connections."""
    proxy = FaultProxy(_port(redis_url(), 6379), lifetime=0.5)  # room for open() under load
    await proxy.start()
    prefix = unique("life")
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, retry_for=0.3)
    await store.open()
    try:
        for _ in range(1000):
            if not proxy.running:
                break
            await asyncio.sleep(0.01)
        assert not proxy.running
        with pytest.raises(callstate.StorageError):
            await store.get("s")
    finally:
        await store.close()
        await proxy.stop()
        await drop_redis_prefix(redis_url(), prefix)  # what open() wrote through the proxy


# -- every write, with the reply of one of its round trips lost ------------------------


async def _append(store: Store, sid: str) -> object:
    return (await store.append([make_batch(sid, 1, 2, 2)]), seqs(await store.read_events(sid)))


async def _create(store: Store, sid: str) -> object:
    other = await create(store, "created", events=3)
    return seqs(await store.read_events(other))


async def _index_caller(store: Store, sid: str) -> object:
    await store.index_caller("h2", sid, T0 + 5)
    return [at for _, at in await store.lookup_caller("h2")]


async def _archive_insert(store: Store, sid: str) -> object:
    row = ArchiveRow(
        record_id=new_id("r"),
        session_id=sid,
        caller_hash="h",
        ended_at=T0,
        outcome="completed",
        data=b"r",
    )
    await store.archive_insert(row)
    return row == await store.archive_get(row.record_id)


async def _followup_put(store: Store, sid: str) -> object:
    await store.followup_put(
        FollowUp(followup_id=new_id("f"), session_id=sid, due_at=T0, payload=b"p")
    )
    return len(await store.followup_claim(T0 + 1, "w", 30))


async def _followup_cancel(store: Store, sid: str) -> object:
    return await store.followup_cancel(sid)


async def _followup_claim(store: Store, sid: str) -> object:
    return [f.session_id == sid for f in await store.followup_claim(T0 + 1, "w", 30)]


async def _followup_done(store: Store, sid: str) -> object:
    [f] = await store.followup_claim(T0 + 1, "w", 30, limit=1)
    return await store.followup_done(f.followup_id, "w")


async def _package_put(store: Store, sid: str) -> object:
    row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
    await store.package_put(row)
    return row == await store.package_get(row.package_id)


async def _package_transition(store: Store, sid: str) -> object:
    return await store.package_transition(f"pkg-{sid}", "offered", "accepted")


async def _renew_leases(store: Store, sid: str) -> object:
    return await store.renew_leases("owner-a", [sid, "nope"], T0 + 99) == [sid]


async def _release_lease(store: Store, sid: str) -> object:
    await store.release_lease(sid, "owner-a")
    rec = await store.get(sid)
    return None if rec is None else rec.lease_owner


async def _purge(store: Store, sid: str) -> object:
    await store.purge(sid)
    return (await store.get(sid), await store.lookup_caller("h"))


async def _claim(store: Store, sid: str) -> object:
    return await store.claim(sid, 1, "owner-b", T0 + 60)


WRITES = {
    "append": (_append, ([None], [1, 2, 3])),
    "create": (_create, [1, 2, 3]),
    "index_caller": (_index_caller, [T0 + 5]),
    "archive_insert": (_archive_insert, True),
    "followup_put": (_followup_put, 3),
    "followup_cancel": (_followup_cancel, 2),
    "followup_claim": (_followup_claim, [True, True]),
    "followup_done": (_followup_done, True),
    "package_put": (_package_put, True),
    "package_transition": (_package_transition, True),
    "renew_leases": (_renew_leases, True),
    "release_lease": (_release_lease, None),
    "purge": (_purge, (None, [])),
    "claim": (_claim, 2),
}


@pytest.mark.parametrize("lost", [0, 1])
@pytest.mark.parametrize("write", list(WRITES))
async def test_every_write_ends_the_same_when_one_reply_is_lost(
    faulty: tuple[Store, FaultProxy], write: str, lost: int
) -> None:
    """Each Store write, with the reply of its first or second round trip lost (the
    server did act on it), returns and stores what it would have without the fault."""
    store, proxy = faulty
    sid = await create(store, caller_hash="h")
    await store.index_caller("h", sid, T0)
    for i in range(2):
        f = FollowUp(followup_id=f"f{i}-{sid}", session_id=sid, due_at=T0, payload=b"p")
        await store.followup_put(f)
    await store.package_put(PackageRow(package_id=f"pkg-{sid}", session_id=sid, data=b"x"))
    run, expected = WRITES[write]
    proxy.lose_reply(after=lost)
    assert expected == await run(store, sid)
    if lost == 0:  # every write has a first round trip: its reply was the one lost
        assert 1 == proxy.dropped


async def test_a_cancel_arriving_amid_lost_replies_is_never_swallowed(
    faulty: tuple[Store, FaultProxy],
) -> None:
    """Tasks looping store calls through resets and lost replies all end cancelled when cancelled."""
    store, proxy = faulty
    proxy.faults_on = True
    rng = random.Random(11)
    hung = 0
    for _ in range(150):

        async def calls() -> None:
            while True:  # what a sweeper or a worker does: a failing store is not the end
                with contextlib.suppress(callstate.CallstateError):
                    await store.list_sessions(statuses=["active"], limit=20)

        task = asyncio.create_task(calls())
        await asyncio.sleep(rng.uniform(0, 0.03))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5.0)  # a safety net, not a timing
        if not done:
            hung += 1
            task.cancel()  # once more, so the next round starts clean
            await asyncio.wait([task], timeout=5.0)
        else:
            assert task.cancelled()
    assert 0 == hung
