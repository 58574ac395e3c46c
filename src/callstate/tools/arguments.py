"""Tool arguments: one msgspec type per tool, built from its signature at registration.

The same type validates a call's arguments (in the guard, so every adapter gets it) and
gives the JSON schema shown to the model, so the two never drift apart.

Every parameter but ``ctx`` (the ``ToolContext``), ``*args`` and positional-only ones
with a default becomes a field: its annotation is its type (none: any JSON value), a
parameter without a default is required, and a ``**kwargs`` parameter lets unknown
fields through unchecked (otherwise they are refused). ``Annotated[int,
msgspec.Meta(ge=1)]`` constraints are enforced and appear in the schema; a
Google-style ``Args:`` section of the docstring gives the field descriptions.

Coercion follows msgspec's lax rules, because models often quote numbers: a string
spelling a number or a boolean (``"20"``, ``"2.5"``, ``"true"``) is accepted for an
``int``/``float``/``bool`` parameter, a whole float (``20.0``) for an ``int``, an
``int`` for a ``float``. A number is never turned into a string, a string never into
a list, and ``null`` fits only an optional (``X | None``) type. The function receives
the converted values (``list[int]`` gets ints, a ``tuple`` a tuple, a msgspec
``Struct`` a Struct); the journal keeps the arguments as the model sent them.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec

from ..errors import ConfigError, ToolArgumentsError

__all__ = ["Arguments", "arguments_of"]

_ARGS_HEADER: Final = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE: Final = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_PATH: Final = re.compile(r"at `\$\.(\w+)")


def param_docs(doc: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section of ``doc``."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    inside, indent, current = False, -1, ""
    for line in lines:
        if not inside:
            inside = bool(_ARGS_HEADER.match(line))
            continue
        if not line.strip():
            current = ""
            continue
        match = _ARG_LINE.match(line)
        width = len(line) - len(line.lstrip())
        if width == 0:
            break  # the next section
        if match is not None and (indent < 0 or width == indent):
            indent, current = width, match.group(2).lstrip("*")
            out[current] = match.group(3).strip()
        elif current:
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out


class Arguments:
    """The arguments of one tool: a msgspec Struct type and the rules around it.

    Attributes:
        tool: the tool's name (for messages).
        fields: the parameter names, in signature order.
        required: the parameters without a default.
        extra: True when the function takes ``**kwargs`` (unknown fields pass through).
    """

    def __init__(self, tool: str, fn: Callable[..., Any], signature: inspect.Signature) -> None:
        self.tool = tool
        hints = _hints(tool, fn, signature)
        docs = param_docs(getattr(fn, "__doc__", None))
        specs: list[tuple[str, Any, Any]] = []
        self.defaults: dict[str, Any] = {}
        self.extra = False
        for p in signature.parameters.values():
            if p.name == "ctx" or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                self.extra = True
                continue
            if p.kind is p.POSITIONAL_ONLY:
                if p.default is p.empty:
                    msg = f"tool {tool!r}: parameter `{p.name}` is positional-only; a tool takes keywords"
                    raise ConfigError(msg)
                continue
            hint = hints.get(p.name, Any)
            _check_type(tool, p.name, hint)
            if p.name in docs and not _described(hint):
                hint = Annotated[hint, msgspec.Meta(description=docs[p.name])]
            if p.default is p.empty:
                specs.append((p.name, hint, msgspec.NODEFAULT))
            else:
                self.defaults[p.name] = p.default
                specs.append((p.name, typing.Union[hint, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
        self.fields = tuple(name for name, _, _ in specs)
        self.required = tuple(name for name, _, d in specs if d is msgspec.NODEFAULT)
        self.type: type[msgspec.Struct] = msgspec.defstruct(
            f"{tool}_arguments",
            [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in specs],
            kw_only=True,
            forbid_unknown_fields=not self.extra,
        )

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments to call the tool with: ``args`` checked and converted.

        Raises:
            ToolArgumentsError: ``args`` do not fit; the message names the tool, the
                field (msgspec's path, e.g. ``$.time``) and the value.
        """
        try:
            value = msgspec.convert(args, self.type, strict=False)
        except msgspec.ValidationError as exc:
            text = str(exc)
            found = _PATH.search(text)
            shown = ""
            if found is not None and found.group(1) in args:
                shown = f" (value: {args[found.group(1)]!r:.80})"
            msg = f"tool {self.tool!r}: {text}{shown}"
            raise ToolArgumentsError(msg) from exc
        kwargs = {n: getattr(value, n) for n in self.fields}
        kwargs = {n: v for n, v in kwargs.items() if v is not msgspec.UNSET}
        if self.extra:
            kwargs.update((k, v) for k, v in args.items() if k not in kwargs)
        return kwargs

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments object (nested types under ``$defs``)."""
        (_,), components = msgspec.json.schema_components(
            [self.type], ref_template="#/$defs/{name}"
        )
        root = dict(components.pop(self.type.__name__))
        root.pop("title", None)
        props = root.get("properties", {})
        for name, default in self.defaults.items():
            # a default JSON cannot show (an object) is left out of the schema
            with contextlib.suppress(TypeError, ValueError):
                props[name] = {**props[name], "default": msgspec.to_builtins(default)}
        if not self.fields and not self.extra:
            root.setdefault("properties", {})
        if components:
            root["$defs"] = components
        return root


def _hints(tool: str, fn: Callable[..., Any], signature: inspect.Signature) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # say which parameter's annotation does not resolve
        for p in signature.parameters.values():
            if p.name == "ctx" or p.annotation is p.empty:
                continue
            one = type("one", (), {"__annotations__": {p.name: p.annotation}})
            where = getattr(fn, "__globals__", None)
            try:
                typing.get_type_hints(one, globalns=where, include_extras=True)
            except Exception as inner:
                msg = (
                    f"tool {tool!r}: the annotation of parameter `{p.name}` "
                    f"({p.annotation!r}) cannot be resolved: {inner} (define the type "
                    "where the function's module can see it)"
                )
                raise ConfigError(msg) from inner
        msg = f"tool {tool!r}: its annotations cannot be resolved: {exc}"
        raise ConfigError(msg) from exc


def _described(hint: Any) -> bool:
    """True when ``hint`` is annotated with its own description."""
    metas = getattr(hint, "__metadata__", ()) if typing.get_origin(hint) is Annotated else ()
    return any(isinstance(m, msgspec.Meta) and m.description is not None for m in metas)


def _check_type(tool: str, name: str, hint: Any) -> None:
    try:
        msgspec.json.schema(hint)
    except (TypeError, ValueError) as exc:
        msg = (
            f"tool {tool!r}: parameter `{name}` has type {hint!r}, which cannot be checked "
            f"as JSON (use str, int, float, bool, list, dict, a msgspec Struct…): {exc}"
        )
        raise ConfigError(msg) from exc


def arguments_of(
    tool: str, fn: Callable[..., Any], signature: inspect.Signature | None
) -> Arguments | None:
    """The arguments type of ``fn`` (None when it has no signature: anything goes)."""
    return Arguments(tool, fn, signature) if signature is not None else None
