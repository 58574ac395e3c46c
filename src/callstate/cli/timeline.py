"""Render a session's journal and state for people: the timeline the CLI prints.

Rendering is pure: functions here turn events and states into rich renderables and
never touch a store. Colour appears only when the console is a terminal (rich drops
styles otherwise), so piped output is plain text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from rich import box
from rich.table import Table
from rich.text import Text

from ..journal import events as ev
from ..journal.state import SessionState

__all__ = ["clock_time", "describe", "messages_table", "state_table", "timeline_table"]

_json = msgspec.json.Encoder()
_BASE_FIELDS = frozenset({"seq", "at", "v", "type"})

#: Style of an event's label, chosen by the first part of its tag.
_STYLES: dict[str, str] = {
    "session": "bold blue",
    "user": "green",
    "agent": "cyan",
    "tool": "magenta",
    "userdata": "yellow",
    "link": "yellow",
    "handoff": "bold magenta",
}


def _q(text: str) -> str:
    return f"“{text}”"


def _generic(event: ev.Event) -> str:
    """Every field that differs from its default, for events without a custom line."""
    parts = []
    for f in msgspec.structs.fields(event):
        value = getattr(event, f.name)
        if f.name in _BASE_FIELDS:
            continue
        default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
        if value == default:
            continue
        parts.append(f"{f.name}={_json.encode(value).decode()}")
    return " ".join(parts)


def _interrupted(e: ev.Interrupted) -> str:
    out = f"heard {_q(e.heard_text)}"
    if e.unspoken_text:
        out += f" · unspoken {_q(e.unspoken_text)}"
    if e.audio_end_ms is not None:
        out += f" · at {e.audio_end_ms} ms"
    if e.overtaken:
        out += f" · overtook {', '.join(e.overtaken)}"
    return out


#: One-line details per event type; types not listed fall back to their fields.
_DETAILS: dict[type[Any], Callable[[Any], str]] = {
    ev.SessionStarted: lambda e: (
        f"agent {e.agent!r}, epoch {e.epoch}" + (f", caller {e.caller}" if e.caller else "")
    ),
    ev.SessionResumed: lambda e: f"epoch {e.epoch} via {e.via} after a {e.gap_s:.1f}s gap",
    ev.SessionEnded: lambda e: e.reason,
    ev.SessionExpiredEvent: lambda e: e.reason,
    ev.UserPartial: lambda e: f"{_q(e.text)} (still speaking)",
    ev.UserTurn: lambda e: _q(e.text),
    ev.AgentStarted: lambda e: f"{e.utterance_id}: {_q(e.text)}",
    ev.AgentProgress: lambda e: f"{e.utterance_id} heard so far: {_q(e.spoken_text)}",
    ev.AgentFinished: lambda e: e.utterance_id + (f": {_q(e.text)}" if e.text else " played out"),
    ev.Interrupted: _interrupted,
    ev.ToolRequested: lambda e: (
        f"{e.call_id} {e.name}({_json.encode(e.args).decode()}) [{e.effect}]"
    ),
    ev.ToolSucceeded: lambda e: f"{e.call_id} → {_json.encode(e.result).decode()}",
    ev.ToolFailed: lambda e: f"{e.call_id} ✗ {e.error}",
    ev.ToolDelivery: lambda e: f"{e.call_id} {e.decision}" + (f" ({e.reason})" if e.reason else ""),
    ev.HandoffOffered: lambda e: f"to {e.to_agent!r}" + (f": {e.reason}" if e.reason else ""),
    ev.HandoffAccepted: lambda e: f"by {e.agent!r} at epoch {e.epoch}",
}


def describe(event: ev.Event) -> tuple[str, str, str]:
    """``(tag, style, detail)`` for one event, e.g. ``("user.turn", "green", "“Hi”")``."""
    tag: str = event.__struct_config__.tag  # type: ignore[assignment]
    style = _STYLES.get(tag.partition(".")[0], "")
    if isinstance(event, ev.Interrupted):
        style = "bold red"
    render = _DETAILS.get(type(event), _generic)
    return tag, style, render(event)


def clock_time(at: float) -> str:
    """Local wall-clock time of an epoch-seconds timestamp, to the second."""
    if at <= 0:
        return "-"
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def timeline_table(events: Sequence[ev.Event], *, title: str | None = None) -> Table:
    """A table of events: seq, seconds since the first event, tag and what happened."""
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("seq", justify="right", style="dim")
    table.add_column("t", justify="right", style="dim")
    table.add_column("event", no_wrap=True)
    table.add_column("what happened", overflow="fold")
    start = events[0].at if events else 0.0
    epoch = 0
    for event in events:
        if isinstance(event, ev.SessionStarted | ev.SessionResumed | ev.HandoffAccepted):
            if epoch and event.epoch != epoch:
                table.add_section()
            epoch = event.epoch
        tag, style, detail = describe(event)
        # Text, not a str: what callers and tools said is never read as console markup
        table.add_row(
            str(event.seq), f"+{event.at - start:.3f}s", Text(tag, style=style), Text(detail)
        )
    return table


def state_table(state: SessionState) -> Table:
    """Key facts of a session's state as a two-column table."""
    table = Table(box=box.SIMPLE, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("session", state.session_id),
        ("agent", state.agent),
        ("status", state.status + (f" ({state.end_reason})" if state.end_reason else "")),
        ("epoch", str(state.epoch)),
        ("seq", str(state.seq)),
        ("user turns", str(state.turn)),
        ("tool calls", str(len(state.calls))),
        ("resumes", str(state.resumes)),
        ("started", clock_time(state.started_at)),
        ("last interaction", clock_time(state.last_interaction_at)),
    ]
    if state.partial:
        rows.append(("unfinished partial", _q(state.partial)))
    if state.unspoken:
        rows.append(("unspoken rest", _q(state.unspoken)))
    for name, value in rows:
        table.add_row(name, Text(value))
    return table


def messages_table(messages: Sequence[dict[str, Any]], *, title: str | None = None) -> Table:
    """OpenAI-format messages as a role/content table (what a model would be given)."""
    table = Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("role", no_wrap=True)
    table.add_column("content", overflow="fold")
    role_styles = {"user": "green", "assistant": "cyan", "tool": "magenta", "system": "dim"}
    for m in messages:
        role = str(m.get("role", "?"))
        content = m.get("content")
        if content is None and m.get("tool_calls"):
            calls = ", ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"]
            )
            content = f"calls {calls}"
        table.add_row(Text(role, style=role_styles.get(role, "")), Text(str(content)))
    return table
