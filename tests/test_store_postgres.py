"""PostgresStore: the shared conformance suite plus what only PostgreSQL has, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callstate.storage.postgres import PostgresStore
from callstate.testing.conformance import StoreConformance
from services import drop_pg_schema, postgres_url, unique

pytestmark = pytest.mark.services


class TestPostgresConformance(StoreConformance):
    """Every Store behaviour, against the PostgreSQL server."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[PostgresStore]:
        url, schema = postgres_url(), unique("pg")
        s = PostgresStore(url, schema=schema)
        await s.open()
        try:
            yield s
        finally:
            await s.close()
            await drop_pg_schema(url, schema)
