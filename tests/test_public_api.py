"""The public surface: ``callstate.__all__`` is pinned here, so any change to it is deliberate.

Adding a public name means adding it to ``src/callstate/__init__.py`` (import and
``__all__``) and to ``EXPECTED`` below, both sorted.
"""

from __future__ import annotations
import __future__

import types

import callstate
import callstate.testing

EXPECTED = [
    "ArchiveRecord",
    "CallEnded",
    "CallRecord",
    "CallstateError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "Event",
    "FleetStats",
    "FollowUpResult",
    "HandoffError",
    "HandoffFormatError",
    "HandoffPackage",
    "HandoffStateError",
    "Health",
    "Keeper",
    "Limits",
    "MemoryStore",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "Preflight",
    "RecoveryEvent",
    "RecoveryPlan",
    "SealError",
    "Session",
    "SessionActive",
    "SessionClosed",
    "SessionError",
    "SessionExpired",
    "SessionFrozen",
    "SessionNotFound",
    "SessionState",
    "StaleEpochError",
    "StorageError",
    "Store",
    "TokenError",
    "TokenSuperseded",
    "ToolArgumentsError",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "UnknownTool",
    "VersionError",
    "__version__",
    "decode_event",
    "encode_event",
    "fold",
    "open_store",
]


def test_all_is_pinned() -> None:
    """``callstate.__all__`` is exactly the pinned list."""
    assert EXPECTED == callstate.__all__


def test_all_is_sorted_without_duplicates() -> None:
    """``__all__`` is sorted and names each member once."""
    assert sorted(set(callstate.__all__)) == callstate.__all__


def test_every_exported_name_resolves() -> None:
    """Every name in ``__all__`` is an attribute of the package."""
    assert [] == [name for name in callstate.__all__ if not hasattr(callstate, name)]


def test_every_public_import_is_exported() -> None:
    """Every public object imported into the package (not a submodule) is in ``__all__``."""
    public = sorted(
        name
        for name, value in vars(callstate).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and value is not __future__.annotations
    )
    assert [n for n in callstate.__all__ if not n.startswith("_")] == public


def test_exported_objects_come_from_callstate() -> None:
    """Every exported class and function is defined inside the callstate package."""
    foreign = [
        name
        for name in callstate.__all__
        if isinstance(obj := getattr(callstate, name), type | types.FunctionType)
        and not obj.__module__.startswith("callstate.")
    ]
    assert [] == foreign


def test_version_is_a_string() -> None:
    """``callstate.__version__`` is a dotted version string."""
    assert all(part.isdigit() for part in callstate.__version__.split("."))


def test_testing_helpers_resolve() -> None:
    """Every name in ``callstate.testing.__all__`` resolves, and the store suite imports."""
    from callstate.testing.conformance import StoreConformance

    assert [] == [n for n in callstate.testing.__all__ if not hasattr(callstate.testing, n)]
    assert "FakeClock" in callstate.testing.__all__
    assert [] == [
        n
        for n in dir(StoreConformance)
        if n.startswith("test_") and not callable(getattr(StoreConformance, n))
    ]
