"""MemoryStore against the shipped store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callstate import MemoryStore, open_store
from callstate.testing.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    """The reference backend passes the whole suite."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        s = MemoryStore()
        await s.open()
        yield s
        await s.close()


async def test_memory_url_opens_a_memory_store() -> None:
    """``open_store("memory://")`` makes a MemoryStore whose data lives in the process."""
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.open()
    assert 1 == await store.schema_version()
    await store.close()


async def test_separate_memory_stores_share_nothing() -> None:
    """Two MemoryStore instances are independent: one's session is unknown to the other."""
    a, b = MemoryStore(), MemoryStore()
    await a.open()
    await b.open()
    await a.index_caller("h", "s1", 1.0)
    assert [("s1", 1.0)] == await a.lookup_caller("h")
    assert [] == await b.lookup_caller("h")
