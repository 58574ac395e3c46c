"""Run a README section's python block with its servers and keepers in view."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import callstate

README = Path(__file__).resolve().parents[2] / "README.md"


def section_code(title: str, index: int = 0) -> str:
    """The ``index``-th python block of the README section ``## title``."""
    section = README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)[index]


class Seen:
    """What a README block built while it ran: its servers, keepers and sessions."""

    def __init__(self) -> None:
        self.servers: list[Any] = []
        self.keepers: list[callstate.Keeper] = []
        self.sessions: list[callstate.Session] = []


def load(code: str, seen: Seen, **replace: Any) -> dict[str, Any]:
    """The block's module namespace (``__main__`` not run), its ``*Server`` classes and
    ``callstate.Keeper`` swapped for ones that tell ``seen``; ``replace`` sets names."""
    ns: dict[str, Any] = {"__name__": "readme_block"}
    exec(compile(code, str(README), "exec"), ns)
    for name, cls in list(ns.items()):
        if isinstance(cls, type) and name.endswith("Server"):
            ns[name] = _telling(cls, seen.servers)

    class Keeper(callstate.Keeper):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.keepers.append(self)

        async def start(self, *args: Any, **kwargs: Any) -> callstate.Session:
            session = await super().start(*args, **kwargs)
            seen.sessions.append(session)
            return session

    module = types.ModuleType("callstate")
    module.__dict__.update(vars(callstate))
    module.Keeper = Keeper  # type: ignore[attr-defined]
    ns["callstate"] = module
    ns.update(replace)
    return ns


def _telling(cls: type, into: list[Any]) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, *args, **kwargs)
        into.append(self)

    return type(cls.__name__, (cls,), {"__init__": __init__})
