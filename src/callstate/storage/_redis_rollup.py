"""The Redis store's fleet-figure rollup: legs and samples per hour and day, and its
backfill (key layout 3).

Keys, under each of the two hash tags (``P:{archive}:roll:``, ``P:{followups}:roll:``)::

    roll:h, roll:d      sorted sets: the hours / days that have a hash (score = number)
    roll:h:<hour>       hash: ``n:<health>`` legs, ``tools``, ``in_doubt``, ``r:<bin>``
    roll:d:<day>        time-to-recover samples per bin and ``rmax`` (archive tag);
                        ``l:<bin>`` follow-up lags and ``lmax`` (follow-ups tag)

The archive insert and a follow-up's successful settle count themselves in the same
script that writes them (``_redis_record_scripts``), so a crash never misses or
double-counts one. ``archive_figures`` reads a window as ``storage.rollup.plan`` splits
it: whole days and hours from the hashes (one script per tag), its two edge hours from
the figure sorted sets, all in one round trip, added up by the shared ``Tally``.

A prefix archived under layout 2 (before the rollup) is backfilled once on ``open()``,
under a lock every opener waits on: the rollup is rebuilt from the figure sorted sets,
which hold every counted leg and lag, and only then is layout 3 recorded, so a rerun
after a crash rebuilds it whole again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ..errors import StorageError
from ._redis_base import LAYOUT_VERSION, RedisBase
from ._redis_codec import fmt
from .figures import UNKNOWN_HEALTH, Figures
from .rollup import DAY_HOURS, LAG, RECOVER, Tally, bin_of, hour_of, plan

__all__ = ["RedisRollup"]

#: how long the backfill's lock lasts unless renewed (it is, after every chunk)
_LOCK_MS = 30_000
_CHUNK = 10_000


def _span_args(hours: Sequence[tuple[int, int]], days: Sequence[tuple[int, int]]) -> list[Any]:
    return [v for lvl, spans in (("h", hours), ("d", days)) for a, b in spans for v in (lvl, a, b)]


def _take_rolled(tally: Tally, flat: Sequence[bytes]) -> None:
    """Add one ``rollup_read`` reply (``[field, value, ...]``) to ``tally``."""
    fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    tools, in_doubt = int(fields.pop("tools", 0)), int(fields.pop("in_doubt", 0))
    tally.leg(UNKNOWN_HEALTH, 0, tools, in_doubt)
    worst = {k: float(fields.pop(k, 0.0)) for k in ("rmax", "lmax")}
    for field, value in fields.items():
        kind, _, rest = field.partition(":")
        if kind == "n":
            tally.leg(rest, int(value), 0, 0)
        else:
            tally.sample(
                RECOVER if kind == "r" else LAG, int(rest), int(value), worst[kind + "max"]
            )


class _Counts:
    """One hash's worth of a backfill: counts per field and the largest samples."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}
        self.top: dict[str, float] = {}

    def count(self, field: str, n: int = 1) -> None:
        self.n[field] = self.n.get(field, 0) + n

    def sample(self, kind: str, seconds: float) -> None:
        self.count(f"{kind}:{bin_of(seconds)}")
        self.top[kind + "max"] = max(self.top.get(kind + "max", seconds), seconds)

    def add(self, other: _Counts) -> None:
        for f, n in other.n.items():
            self.count(f, n)
        for f, v in other.top.items():
            self.top[f] = max(self.top.get(f, v), v)

    def mapping(self) -> dict[str, str]:
        return {
            **{f: str(n) for f, n in self.n.items()},
            **{f: fmt(v) for f, v in self.top.items()},
        }


class RedisRollup(RedisBase):
    """``archive_figures`` from the rollup, and the backfill that brings layout 2 to 3."""

    async def archive_figures(self, since: float, until: float) -> Figures:
        fig, p = self._arch + "fig:", plan(since, until)
        spans = _span_args(p.hours, p.days)

        async def op(_: bool) -> Figures:
            classes = sorted(m.decode() for m in await self._client.smembers(fig + "classes"))
            calls: list[tuple[str, Sequence[str], Sequence[Any]]] = []
            for a, b in p.raw:
                lo, hi = fmt(a), "(" + fmt(b)
                for key in [*(fig + "h:" + c for c in classes), fig + "tools", fig + "in_doubt"]:
                    calls.append(("!ZCOUNT", [key], [lo, hi]))
                for key in (fig + "recover", self._fu + "lag"):
                    calls.append(("!ZRANGEBYSCORE", [key], [lo, hi]))
            if spans:
                for base in (self._arch + "roll:", self._fu + "roll:"):
                    calls.append(("rollup_read", [base + "h", base + "d"], spans))
            replies = iter(await self._pipeline(calls))
            tally = Tally()
            for _span in p.raw:
                for c in classes:
                    tally.leg(c, int(next(replies)), 0, 0)
                tally.leg(UNKNOWN_HEALTH, 0, int(next(replies)), int(next(replies)))
                for kind in (RECOVER, LAG):
                    for m in next(replies):
                        tally.sample(kind, None, 1, float(m.split(b"|", 1)[0]))
            for flat in replies:
                _take_rolled(tally, flat)
            return tally.figures()

        return await self._run("archive_figures", op)

    # -- layout 3: the backfill (the rollup, and the follow-up index) -------------------

    async def _migrate(self, existing: bool) -> None:
        if not existing:  # a fresh prefix: nothing archived to roll up
            await super()._migrate(existing)
            return
        lock, token = f"{self.prefix}:migrations:lock", self.client_name
        while True:
            if await self._migrated():
                return
            if await self._do("set", lock, token, nx=True, px=_LOCK_MS) or (
                await self._do("get", lock) == token.encode()
            ):
                if not await self._migrated():  # the holder before us may just have finished
                    break
                await self._script("migrate", "lock", [lock], token, "")
                return
            await asyncio.sleep(0.05)  # another opener is backfilling: wait for it
        await self._backfill(lock, token)
        await self._index_followups(lock, token)
        await self._renew(lock, token)
        key, now = f"{self.prefix}:migrations", fmt(time.time())
        await self._do("hset", key, str(LAYOUT_VERSION), now)
        await self._script("migrate", "lock", [lock], token, "")

    async def _do(self, command: str, *args: Any, **options: Any) -> Any:
        """One idempotent command of the migration (``client.<command>``), retried on its own."""
        return await self._run(
            "migrate", lambda _: getattr(self._client, command)(*args, **options)
        )

    async def _do_pipeline(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> None:
        await self._run("migrate", lambda _: self._pipeline(calls))

    async def _renew(self, lock: str, token: str) -> None:
        """Keep the backfill's lock; raise if it lapsed (another opener may hold it now)."""
        if not await self._script("migrate", "lock", [lock], token, str(_LOCK_MS)):
            msg = f"redis prefix {self.prefix!r}: the rollup backfill lost its lock; open again"
            raise StorageError(msg)

    async def _migrated(self) -> bool:
        key = f"{self.prefix}:migrations"
        return bool(await self._do("hexists", key, str(LAYOUT_VERSION)))

    async def _backfill(self, lock: str, token: str) -> None:
        """Rebuild both rollups from the figure sorted sets (whole, so a rerun is exact)."""
        fig, arch, fu = self._arch + "fig:", self._arch + "roll:", self._fu + "roll:"
        hours = dict[tuple[str, int], _Counts]()  # (rollup prefix, hour) -> counts
        classes = [m.decode() for m in await self._do("smembers", fig + "classes")]
        sets = [(fig + "h:" + c, "n:" + c) for c in classes]
        for key, field in [*sets, (fig + "tools", "tools"), (fig + "in_doubt", "in_doubt")]:
            async for members in self._chunks(key, lock, token):
                for _, score in members:
                    hours.setdefault((arch, hour_of(score)), _Counts()).count(field)
        for key, base, kind in ((fig + "recover", arch, "r"), (self._fu + "lag", fu, "l")):
            async for members in self._chunks(key, lock, token):
                for m, score in members:
                    seconds = float(m.split(b"|", 1)[0])
                    hours.setdefault((base, hour_of(score)), _Counts()).sample(kind, seconds)
        days = dict[tuple[str, int], _Counts]()
        for (base, hour), counts in hours.items():
            days.setdefault((base, hour // DAY_HOURS), _Counts()).add(counts)
        await self._clear_rollup()
        items = [
            (base + lvl, n, c)
            for lvl, d in (("h", hours), ("d", days))
            for (base, n), c in d.items()
        ]
        for i in range(0, len(items), 1000):
            calls: list[tuple[str, Sequence[str], Sequence[Any]]] = []
            for index, n, counts in items[i : i + 1000]:
                fields = [v for kv in counts.mapping().items() for v in kv]
                calls += [("!HSET", [f"{index}:{n}"], fields), ("!ZADD", [index], [n, str(n)])]
            await self._do_pipeline(calls)
            await self._renew(lock, token)

    async def _index_followups(self, lock: str, token: str) -> None:
        """Index every follow-up an older layout wrote (``followup_list`` reads the index,
        not a SCAN of the server's keyspace); SADD makes a rerun harmless."""
        key, start = self._fu + "ids", len(self._fu + "f:")

        async def scan(_: bool) -> list[str]:
            keys = self._client.scan_iter(match=self._fu + "f:*", count=1000)
            return [k.decode()[start:] async for k in keys]

        ids = await self._run("migrate", scan)
        for i in range(0, len(ids), 1000):
            await self._do("sadd", key, *ids[i : i + 1000])
            await self._renew(lock, token)

    async def _chunks(self, key: str, lock: str, token: str) -> Any:
        """A sorted set's ``(member, score)`` pairs, in chunks, renewing the lock."""
        start = 0
        while rows := await self._do("zrange", key, start, start + _CHUNK - 1, withscores=True):
            yield rows
            start += len(rows)
            await self._renew(lock, token)

    async def _clear_rollup(self) -> None:
        """Delete whatever a backfill that did not finish wrote."""
        for base in (self._arch + "roll:", self._fu + "roll:"):
            for lvl in ("h", "d"):
                index = base + lvl
                ids = [m.decode() for m in await self._do("zrange", index, 0, -1)]
                for i in range(0, len(ids), 1000):
                    keys = [f"{index}:{n}" for n in ids[i : i + 1000]]
                    await self._do("delete", *keys)
                await self._do("delete", index)
