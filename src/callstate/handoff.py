"""HandoffPackage: everything a second agent needs to continue a call, signed and verified.

A package carries the conversation twice over: as OpenAI-format ``messages`` (what a
model or a framework adapter consumes) and as the structured ``items`` and tool
``ledger`` a ``SessionState`` is rebuilt from, plus userdata, the caller's unfinished
utterance, the agent's unspoken rest, reason and summary. It is plain data: no
framework types, nothing imported by name from the data.

Wire format (version 1), one JSON object::

    {"v": 1, "alg": "HS256", "kid": "<key id>", "sig": "<base64url MAC>", "payload": {...}}

The MAC is HMAC-SHA256 over a domain-separation prefix, the key id and the exact bytes
of ``payload``; it is checked (in constant time) before the payload is decoded, and the
payload is then decoded into strict structs that refuse unknown fields. Every failure
raises :class:`~callstate.errors.HandoffFormatError` naming what failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from .context import build_messages
from .errors import HandoffError, HandoffFormatError
from .state import TERMINAL, Item, SessionState, ToolCall

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HANDOFF_VERSION",
    "HandoffPackage",
    "PackageCall",
    "PackageItem",
    "PackageMessage",
    "PackagePayload",
    "build_payload",
    "default_summarize",
    "key_id",
    "trim_point",
]

#: The package format this callstate writes and the only one it reads.
HANDOFF_VERSION: Final = 1
#: ``from_bytes`` refuses larger packages unless told otherwise (4 MiB).
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
_ALG: Final = "HS256"
_DOMAIN: Final = b"callstate.handoff.v1\n"  # keeps handoff MACs apart from resume tokens

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Package structs: unknown fields are an error, defaults are left out on the wire."""


class PackageFunction(_Strict):
    name: str
    arguments: str


class PackageToolCall(_Strict):
    id: str
    type: Literal["function"]
    function: PackageFunction


class PackageMessage(_Strict):
    """One OpenAI-format chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: list[PackageToolCall] | None = None
    tool_call_id: str | None = None


class PackageItem(_Strict):
    """One conversation item (see ``callstate.state.Item``)."""

    kind: Literal["user", "assistant", "call"]
    id: str = ""
    text: str = ""
    at: float = 0.0
    spoken: str | None = None  # None: the caller heard all of ``text``
    done: bool = False
    interrupted: bool = False
    unspoken: str = ""


class PackageCall(_Strict):
    """One tool call of the ledger: its policy, where it stands, and its outcome."""

    call_id: _NonEmpty
    name: str
    args: dict[str, Any] = {}
    effect: Literal["read", "write"] = "read"
    idempotent: bool = False
    on_interrupt: Literal["complete", "cancel"] = "complete"
    compensate: str | None = None
    timeout_s: float | None = None
    utterance_id: str | None = None
    turn: int = 0
    status: Literal[
        "requested", "started", "succeeded", "failed", "cancelled", "in_doubt", "unknown"
    ] = "requested"
    attempts: int = 0
    idempotency_key: str = ""
    progress: dict[str, Any] = {}
    result: Any = None
    error: str | None = None
    error_type: str = ""
    overtaken: bool = False
    overtaken_at: float | None = None
    overtaken_turn: int = 0
    compensates: str | None = None
    in_doubt: bool = False
    resolution: Literal["rerun", "unknown"] | None = None
    delivery: Literal["held", "delivered", "discarded", "announced", "compensated"] | None = None
    requested_at: float = 0.0
    finished_at: float | None = None


class PackagePayload(_Strict):
    """The signed content of a package, version 1."""

    package_id: _NonEmpty
    session_id: _NonEmpty
    source_agent: str
    target_agent: _NonEmpty
    epoch: Annotated[int, msgspec.Meta(ge=1)]  # the source's epoch when it offered
    seq: Annotated[int, msgspec.Meta(ge=1)]  # seq of the offer in the session's journal
    created_at: float
    reason: str = ""
    summary: str | None = None  # the source agent's note for the target
    caller: str | None = None
    conversation: list[PackageMessage] = []
    items: list[PackageItem] = []
    ledger: list[PackageCall] = []
    trimmed: Annotated[int, msgspec.Meta(ge=0)] = 0  # the session's first N items, left out
    earlier: str = ""  # the summary standing in for them
    userdata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    partial: str = ""  # the caller's unfinished utterance
    unspoken: str = ""  # the unheard rest of the last interrupted agent utterance
    current_utterance: str | None = None
    turn: int = 0


class _Head(msgspec.Struct):
    v: Any = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    alg: str
    kid: str
    sig: str
    payload: msgspec.Raw


_payload_encoder = msgspec.json.Encoder(order="deterministic")
_head_decoder = msgspec.json.Decoder(_Head)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_payload_decoder = msgspec.json.Decoder(PackagePayload)
_item_fields: Final = frozenset(PackageItem.__struct_fields__)
_call_fields: Final = frozenset(PackageCall.__struct_fields__)


def key_id(secret: bytes) -> str:
    """A short public id for a secret, so a verifier can say which key signed."""
    return hashlib.sha256(b"callstate.kid\n" + secret).hexdigest()[:12]


def _mac(secret: bytes, kid: str, payload: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + kid.encode() + b"\n" + payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fail(what: str) -> HandoffFormatError:
    return HandoffFormatError(f"invalid handoff package: {what}")


def _secret_list(secret: bytes | str | Sequence[bytes | str]) -> list[bytes]:
    items = [secret] if isinstance(secret, bytes | str) else list(secret)
    out = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not out or any(not s for s in out):
        msg = "a handoff package needs a non-empty secret to be signed or verified"
        raise HandoffError(msg)
    return out


class HandoffPackage:
    """A session handed from one agent to another: self-describing, framework-neutral.

    Build one with ``await session.handoff(to=...)``; read one with
    :meth:`from_bytes`. ``messages`` is the conversation as OpenAI-format chat
    messages; ``ledger``, ``items`` and ``userdata`` are plain data for adapters.
    """

    __slots__ = ("_data", "payload")

    version: Final = HANDOFF_VERSION

    def __init__(self, payload: PackagePayload, *, data: bytes | None = None) -> None:
        self.payload = payload
        self._data = data

    # -- identity and routing --------------------------------------------------------------

    @property
    def package_id(self) -> str:
        return self.payload.package_id

    @property
    def session_id(self) -> str:
        return self.payload.session_id

    @property
    def source_agent(self) -> str:
        return self.payload.source_agent

    @property
    def target_agent(self) -> str:
        return self.payload.target_agent

    @property
    def epoch(self) -> int:
        """The source's epoch when it offered; the target takes ``epoch + 1``."""
        return self.payload.epoch

    @property
    def reason(self) -> str:
        return self.payload.reason

    @property
    def summary(self) -> str | None:
        return self.payload.summary

    @property
    def created_at(self) -> float:
        return self.payload.created_at

    # -- content as plain data ---------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format chat messages (a fresh list each time)."""
        out: list[dict[str, Any]] = []
        for m in self.payload.conversation:
            msg: dict[str, Any] = {"role": m.role}
            if m.tool_call_id is not None:
                msg["tool_call_id"] = m.tool_call_id
            msg["content"] = m.content
            if m.tool_calls is not None:
                msg["tool_calls"] = msgspec.to_builtins(m.tool_calls)
            out.append(msg)
        return out

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """Every tool call with its policy, status and outcome, as plain dicts."""
        return [_plain(c) for c in self.payload.ledger]

    @property
    def items(self) -> list[dict[str, Any]]:
        """The conversation items as plain dicts."""
        return [_plain(i) for i in self.payload.items]

    @property
    def userdata(self) -> dict[str, Any]:
        return dict(self.payload.userdata)

    @property
    def partial(self) -> str:
        """What the caller was saying when the offer was made (interim transcript)."""
        return self.payload.partial

    @property
    def unspoken(self) -> str:
        """The unheard rest of the last interrupted agent utterance."""
        return self.payload.unspoken

    @property
    def in_flight(self) -> list[str]:
        """Ids of calls still running at the offer; their results land in the target."""
        return [c.call_id for c in self.payload.ledger if c.status not in TERMINAL]

    @property
    def in_doubt(self) -> list[str]:
        """Ids of calls a crash left between start and result."""
        return [c.call_id for c in self.payload.ledger if c.in_doubt]

    @property
    def held(self) -> list[str]:
        """Ids of completed calls whose spoken delivery is still owed to the caller."""
        return [c.call_id for c in self.payload.ledger if c.delivery == "held"]

    def to_dict(self) -> dict[str, Any]:
        """The whole payload as plain JSON-compatible data, as on the wire (defaults left out)."""
        return msgspec.to_builtins(self.payload)  # type: ignore[no-any-return]

    def to_state(self) -> SessionState:
        """A ``SessionState`` rebuilt from the package alone (no store needed)."""
        p = self.payload
        calls = {
            c.call_id: ToolCall(**{k: getattr(c, k) for k in c.__struct_fields__}) for c in p.ledger
        }
        items = []
        for i in p.items:
            fields = {k: getattr(i, k) for k in i.__struct_fields__}
            fields["spoken"] = i.text if i.spoken is None else i.spoken
            items.append(Item(**fields))
        return SessionState(
            session_id=p.session_id,
            agent=p.target_agent,
            caller=p.caller,
            epoch=p.epoch,
            seq=p.seq,
            items=items,
            calls=calls,
            partial=p.partial,
            turn=p.turn,
            current_utterance=p.current_utterance,
            unspoken=p.unspoken,
            userdata=dict(p.userdata),
            metadata=dict(p.metadata),
            summary=p.earlier,
        )

    # -- wire format -------------------------------------------------------------------

    def to_bytes(self, secret: bytes | str | Sequence[bytes | str] | None = None) -> bytes:
        """The signed JSON form. A package from ``handoff``/``from_bytes`` is already signed.

        Args:
            secret: sign with this key (the first, if a list) instead of reusing the
                signature the package came with.

        Raises:
            HandoffError: the package was built unsigned and no ``secret`` was given.
        """
        if secret is None:
            if self._data is None:
                msg = f"handoff package {self.package_id!r} is unsigned; pass secret=..."
                raise HandoffError(msg)
            return self._data
        key = _secret_list(secret)[0]
        kid = key_id(key)
        body = _payload_encoder.encode(self.payload)
        sig = _b64(_mac(key, kid, body))
        head = f'{{"v":{HANDOFF_VERSION},"alg":"{_ALG}","kid":"{kid}","sig":"{sig}","payload":'
        data = head.encode() + body + b"}"
        self._data = data
        return data

    @classmethod
    def from_bytes(
        cls,
        data: bytes | bytearray | memoryview | str,
        *,
        secret: bytes | str | Sequence[bytes | str],
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> HandoffPackage:
        """Verify and decode a package.

        Args:
            data: the bytes ``to_bytes`` produced.
            secret: the key, or keys (any of them may have signed it: rotation).
            max_bytes: refuse anything larger, before parsing it.

        Raises:
            HandoffFormatError: unsigned, tampered, signed with another secret, an
                unknown format version, truncated, malformed or over ``max_bytes``;
                the message names what failed.
            HandoffError: ``secret`` is empty.
        """
        keys = _secret_list(secret)
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        elif isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise _fail(f"expected bytes, got {type(data).__name__}")
        if len(data) > max_bytes:
            raise _fail(f"size {len(data)} bytes is over the max_bytes cap of {max_bytes}")
        envelope = _decode_envelope(data)
        body = bytes(envelope.payload)
        candidates = [k for k in keys if key_id(k) == envelope.kid] or keys
        sig = _decode_sig(envelope.sig)
        # compare against every candidate so timing does not reveal which key matched
        ok = False
        for key in candidates:
            ok |= hmac.compare_digest(_mac(key, envelope.kid, body), sig)
        if not ok:
            raise _fail(
                f"`signature` does not verify for key id {envelope.kid!r:.40} "
                "(tampered, or signed with another secret)"
            )
        payload = _decode_payload(body)
        return cls(payload, data=data)

    # -- dunder ------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HandoffPackage):
            return NotImplemented
        return self.payload == other.payload

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        p = self.payload
        return (
            f"<HandoffPackage {p.package_id} session={p.session_id} "
            f"{p.source_agent!r}->{p.target_agent!r} epoch={p.epoch} items={len(p.items)}>"
        )


def _plain(struct: msgspec.Struct) -> dict[str, Any]:
    """Every field of ``struct`` as plain data, defaults included."""
    return {k: msgspec.to_builtins(getattr(struct, k)) for k in struct.__struct_fields__}


def _decode_envelope(data: bytes) -> _Envelope:
    try:
        head = _head_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise _fail(f"not a JSON object (truncated or malformed): {exc}") from None
    except RecursionError:
        raise _fail("not a JSON object: nested too deeply") from None
    if head.v is None:
        raise _fail("missing format version `v`")
    if type(head.v) is not int:
        raise _fail(f"format version `v` must be an integer, got {head.v!r:.40}")
    if head.v != HANDOFF_VERSION:
        msg = f"unsupported handoff format version {head.v} at `v` (this callstate reads {HANDOFF_VERSION})"
        raise HandoffFormatError(msg)
    try:
        envelope = _envelope_decoder.decode(data)
    except msgspec.DecodeError as exc:
        if "missing required field `sig`" in str(exc):
            raise _fail("unsigned: missing `sig`") from None
        raise _fail(f"envelope: {exc}") from None
    except RecursionError:
        raise _fail("envelope: nested too deeply") from None
    if envelope.alg != _ALG:
        raise _fail(f"`alg` {envelope.alg!r:.40} is not {_ALG!r}")
    return envelope


def _decode_sig(text: str) -> bytes:
    try:
        sig = _unb64(text)
    except (binascii.Error, ValueError):
        raise _fail(f"`sig` is not base64url: {text!r:.40}") from None
    if len(sig) != hashlib.sha256().digest_size:
        raise _fail(f"`sig` has {len(sig)} bytes, not {hashlib.sha256().digest_size}")
    return sig


def _decode_payload(body: bytes) -> PackagePayload:
    try:
        payload = _payload_decoder.decode(body)
    except msgspec.DecodeError as exc:
        detail = str(exc).replace("`$", "`$.payload")
        raise _fail(detail) from None
    except RecursionError:
        raise _fail("`$.payload` is nested too deeply") from None
    _check_payload(payload)
    return payload


def _check_payload(p: PackagePayload) -> None:
    """Cross-field checks the struct types cannot express; each names its path."""
    ids: set[str] = set()
    for i, c in enumerate(p.ledger):
        if c.call_id in ids:
            raise _fail(f"duplicate call id {c.call_id!r:.60} at `$.payload.ledger[{i}].call_id`")
        ids.add(c.call_id)
    for i, item in enumerate(p.items):
        if item.kind == "call" and item.id not in ids:
            raise _fail(f"call {item.id!r:.60} at `$.payload.items[{i}].id` is not in the ledger")
    for i, m in enumerate(p.conversation):
        where = f"$.payload.conversation[{i}]"
        if m.role == "tool" and m.tool_call_id is None:
            raise _fail(f"a tool message needs `{where}.tool_call_id`")
        if m.role != "tool" and m.tool_call_id is not None:
            raise _fail(f"`{where}.tool_call_id` is only for role 'tool', not {m.role!r}")
        if m.tool_calls is not None and m.role != "assistant":
            raise _fail(f"`{where}.tool_calls` is only for role 'assistant', not {m.role!r}")
        if m.content is None and m.tool_calls is None:
            raise _fail(f"`{where}.content` is null on a {m.role!r} message without tool calls")


# -- building a package from a state (pure) ------------------------------------------------


def trim_point(items: Sequence[Item], calls: dict[str, ToolCall], max_items: int | None) -> int:
    """How many of the oldest ``items`` to replace by a summary to keep about ``max_items``.

    The cut never falls inside a run of consecutive tool calls (they render as one
    assistant message followed by their results), and never drops a call that is
    still running or whose result is still owed to the caller, so a result always
    lands next to its call. Those rules may keep more than ``max_items`` items.
    """
    if max_items is None or len(items) <= max_items:
        return 0
    cut = len(items) - max_items
    for i in range(cut):
        item = items[i]
        if item.kind == "call":
            call = calls.get(item.id)
            if call is not None and (call.status not in TERMINAL or call.delivery == "held"):
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
    text = ". ".join(parts) + "." if parts else ""
    if prior:
        text = " ".join([*prior, f"Then: {text}" if text else ""]).strip()
    else:
        text = f"Earlier in this call: {text or 'nothing of note.'}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _package_item(item: Item) -> PackageItem:
    fields = {k: getattr(item, k) for k in _item_fields}
    fields["spoken"] = None if item.spoken == item.text else item.spoken
    return PackageItem(**fields)


def _package_call(call: ToolCall) -> PackageCall:
    # newer ToolCall fields stay out of the v1 wire format until it grows them
    return PackageCall(**{k: getattr(call, k) for k in _call_fields})


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
        ledger=[_package_call(c) for c in state.calls.values()],
        trimmed=trimmed,
        earlier=earlier,
        userdata=dict(state.userdata),
        metadata=dict(state.metadata),
        partial=state.partial,
        unspoken=state.unspoken,
        current_utterance=state.current_utterance,
        turn=state.turn,
    )
