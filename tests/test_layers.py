"""The package layering holds: no import cycles, no upward imports, no private reach-ins.

The floors are drawn in docs/architecture.md. Every import in src/callstate counts,
type-only (``if TYPE_CHECKING:``) and function-level ones included.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "callstate"

#: Lowest first. A module may import modules of its own package or of a lower floor.
FLOORS: list[str] = [
    "errors",
    "sealing",
    "journal",
    "storage",
    "observe",
    "runtime",
    "tools",
    "archive",
    "continuity",
    "handoff",
    "session",
    "keeper",
    "testing",
    "adapters",
    "cli",
    "web",
    "__main__",
    "",  # callstate/__init__.py: the public surface, on top of everything
]

#: ``obj._name`` uses that are no callstate class's private member: the stdlib's public
#: underscore names, and LiveKit's ``Agent._chat_ctx``, set on an agent whose activity has
#: not started exactly as its own ``update_chat_ctx`` does (which cannot be awaited there).
FOREIGN_OK = {"_exit", "_replace", "_asdict", "_fields", "_getframe", "_chat_ctx"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported callstate module) for every import statement in ``path``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                yield node.lineno, child if child in MODULES else target


def _resolve(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for name, path in MODULES.items():
        for line, target in _imports(name, path):
            if not target.startswith("callstate"):
                continue
            mod = _resolve(target)
            # a package's __init__ re-exporting its own children is not an edge
            if mod is None or mod == name or mod.startswith(name + "."):
                continue
            graph[name].setdefault(mod, line)
    return graph


def _floor(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return FLOORS.index(top)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_floor_and_a_docstring() -> None:
    """Each top-level module or package is on a floor; each package says what it owns."""
    unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(FLOORS))
    assert [] == unplaced
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc, f"{name}/__init__.py needs a docstring saying what the package owns"


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or around a circle (type-only too)."""
    assert [] == _cycles(_graph())


def test_no_module_imports_from_a_higher_floor() -> None:
    """Every import points to the module's own package or to a lower floor."""
    upward = [
        f"{name}:{line} imports {target}"
        for name, edges in _graph().items()
        for target, line in edges.items()
        if _floor(target) > _floor(name)
        or (_floor(target) == _floor(name) and target.split(".")[:2] != name.split(".")[:2])
    ]
    assert [] == upward


def _own_members(cls: ast.ClassDef) -> set[str]:
    names = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return names


def _seam_names(cls: ast.ClassDef, path: Path) -> set[str]:
    """The private members of a framework object an adapter's ``_Seam`` class may use:
    the ones its docstring names (````_name````), each with the reason. A ``_Seam`` is
    the one place an adapter touches a framework where the framework has no public hook."""
    if cls.name != "_Seam" or path.relative_to(SRC).parts[1] != "adapters":
        return set()
    return set(re.findall(r"``(_[A-Za-z]\w*)", ast.get_docstring(cls) or ""))


def _reach_ins(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]

    def owner(node: ast.AST) -> ast.ClassDef | None:
        for cls in classes:
            if cls.lineno <= getattr(node, "lineno", 0) <= (cls.end_lineno or 0):
                return cls
        return None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__") or attr in FOREIGN_OK:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        cls = owner(node)
        if cls is not None and attr in _own_members(cls):
            continue  # another instance of the same class
        if cls is not None and attr in _seam_names(cls, path):
            continue  # a framework's private member, named and explained by the seam
        yield f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_touches_another_class_private_members(name: str) -> None:
    """Objects are used through their public members only (``other._x`` is refused)."""
    assert [] == list(_reach_ins(MODULES[name]))
