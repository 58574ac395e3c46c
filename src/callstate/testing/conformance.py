"""The store conformance suite: every ``Store`` backend must pass it unchanged.

Subclass :class:`StoreConformance` in a test module and provide an async ``store``
fixture that yields an opened, empty store and closes (and cleans) it afterwards::

    from .conformance import StoreConformance

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

from ._suite_base import Suite
from ._suite_figures import FiguresSuite
from ._suite_journal import JournalSuite
from ._suite_ledger import LedgerSuite
from ._suite_ownership import OwnershipSuite
from ._suite_records import ClaimThenSuite, RecordsSuite
from ._suite_resend import ResendSuite

__all__ = ["StoreConformance", "Suite"]


class StoreConformance(
    JournalSuite,
    OwnershipSuite,
    RecordsSuite,
    ClaimThenSuite,
    ResendSuite,
    LedgerSuite,
    FiguresSuite,
):
    """Behaviour every ``Store`` must have. Subclasses provide the ``store`` fixture.

    Set ``racers`` on a subclass to change how many concurrent callers the race tests use.
    """
