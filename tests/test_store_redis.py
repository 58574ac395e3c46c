"""RedisStore: the shared conformance suite plus what only Redis has, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callstate.storage.redis import RedisStore
from callstate.testing.conformance import StoreConformance
from services import drop_redis_prefix, redis_url, unique

pytestmark = pytest.mark.services


class TestRedisConformance(StoreConformance):
    """Every Store behaviour, against the Redis server."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[RedisStore]:
        url, prefix = redis_url(), unique("redis")
        s = RedisStore(url, prefix=prefix)
        await s.open()
        try:
            yield s
        finally:
            await s.close()
            await drop_redis_prefix(url, prefix)
