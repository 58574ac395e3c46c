"""Building a handoff package from a session state: trimming and the default summary (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import msgspec

from ..journal.context import build_messages
from ..journal.state import TERMINAL, Item, SessionState, ToolCall
from .wire import PackageCall, PackageItem, PackageMessage, PackagePayload


def trim_point(
    items: Sequence[Item],
    calls: dict[str, ToolCall],
    max_items: int | None,
    owed: Collection[str] = (),
) -> int:
    """How many of the oldest ``items`` to replace by a summary to keep about ``max_items``.

    The cut never falls inside a run of consecutive tool calls (they render as one
    assistant message followed by their results), and never drops a call that is
    still running, whose result is still owed to the caller, or whose outcome is still
    owed to the model (``owed``), so a result always lands next to its call and a model
    seeded from the package is given it. Those rules may keep more than ``max_items``.
    """
    if max_items is None or len(items) <= max_items:
        return 0
    cut = len(items) - max_items
    for i in range(cut):
        item = items[i]
        if item.kind == "call":
            call = calls.get(item.id)
            if call is not None and (
                call.status not in TERMINAL or call.delivery == "held" or item.id in owed
            ):
                cut = i
                break
    while 0 < cut < len(items) and items[cut].kind == "call" and items[cut - 1].kind == "call":
        cut -= 1
    return cut


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f'"{text}"' if len(text) <= limit else f'"{text[: limit - 1]}…"'


def default_summarize(messages: list[dict[str, Any]], *, limit: int = 1200) -> str:
    """A plain, deterministic summary of OpenAI-format messages (no model involved).

    ``Earlier in this call: the caller said "…"; "…". The agent said "…". Tools run:
    name (status).`` A summary already among the messages (a ``system`` message from an
    earlier trim) leads the text. The result is cut to ``limit`` characters.
    """
    prior: list[str] = []
    said: list[str] = []
    answered: list[str] = []
    tools: list[str] = []
    outcomes: dict[str, str] = {}
    for m in messages:
        if m.get("role") == "tool":
            try:
                content = msgspec.json.decode(m.get("content") or "{}")
            except msgspec.DecodeError:
                content = None
            status = content.get("status", "?") if isinstance(content, dict) else "?"
            outcomes[str(m.get("tool_call_id"))] = str(status)
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "system" and content:
            prior.append(str(content))
        elif role == "user" and content:
            said.append(_quote(str(content)))
        elif role == "assistant" and content:
            answered.append(_quote(str(content)))
        for tc in m.get("tool_calls") or []:
            name = tc.get("function", {}).get("name", "?")
            tools.append(f"{name} ({outcomes.get(tc.get('id'), 'running')})")
    parts = []
    if said:
        parts.append("the caller said " + "; ".join(said))
    if answered:
        parts.append("the agent said " + "; ".join(answered))
    if tools:
        parts.append("tools run: " + ", ".join(tools))
    # the first part follows a colon; the others start sentences of their own
    text = ". ".join(p if i == 0 else p[0].upper() + p[1:] for i, p in enumerate(parts))
    text = f"{text}." if text else ""
    if prior:
        text = " ".join([*prior, f"Then: {text}" if text else ""]).strip()
    else:
        text = f"Earlier in this call: {text or 'nothing of note.'}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _package_item(item: Item) -> PackageItem:
    return PackageItem(
        kind=item.kind,
        id=item.id,
        text=item.text,
        at=item.at,
        spoken=None if item.spoken == item.text else item.spoken,
        done=item.done,
        interrupted=item.interrupted,
        unspoken=item.unspoken,
    )


def _package_calls(calls: Iterable[ToolCall]) -> list[PackageCall]:
    # reads PackageCall's fields off each call: newer ToolCall fields stay out of the v1
    # wire format until it grows them
    return msgspec.convert(list(calls), list[PackageCall], from_attributes=True)


def build_payload(
    state: SessionState,
    *,
    package_id: str,
    to: str,
    created_at: float,
    reason: str = "",
    summary: str | None = None,
    trimmed: int = 0,
    earlier: str = "",
) -> PackagePayload:
    """The payload offering ``state`` to agent ``to``, its first ``trimmed`` items summarized.

    ``state`` must already hold the offer (``state.seq`` is the offer's seq);
    ``earlier`` is the summary standing in for the trimmed items.
    """
    kept = SessionState(items=state.items[trimmed:], calls=state.calls, summary=earlier)
    conversation = msgspec.convert(build_messages(kept), list[PackageMessage])
    calls = state.calls
    owed = [c for c in state.owed_to_model if c in calls and calls[c].status in TERMINAL]
    given = [c.call_id for c in calls.values() if c.status in TERMINAL and c.call_id not in owed]
    return PackagePayload(
        package_id=package_id,
        session_id=state.session_id,
        source_agent=state.agent,
        target_agent=to,
        epoch=state.epoch,
        seq=state.seq,
        created_at=created_at,
        reason=reason,
        summary=summary,
        caller=state.caller,
        conversation=conversation,
        items=[_package_item(i) for i in kept.items],
        ledger=_package_calls(state.calls.values()),
        trimmed=trimmed,
        earlier=earlier,
        userdata=dict(state.userdata),
        metadata=dict(state.metadata),
        personal=list(state.personal),
        partial=state.partial,
        unspoken=state.unspoken,
        current_utterance=state.current_utterance,
        turn=state.turn,
        given_to_model=given,
        owed_to_model=owed,
    )
