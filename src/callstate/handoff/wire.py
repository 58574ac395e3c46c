"""The handoff wire format: strict structs, the signed envelope, verification.

Version 2 adds what the source's model was given: ``given_to_model`` and
``owed_to_model`` list the calls whose outcome its context holds and those whose outcome
no model context had been given yet. Version 1 packages still verify and decode, read
as: every final outcome was given. Each version has its own MAC
domain, so a package cannot be relabelled as the other version.

Private to :mod:`callstate.handoff`. Every function that reads untrusted bytes raises
only :class:`~callstate.errors.HandoffFormatError` (or ``HandoffError`` for an empty
secret). Signing seals the caller id and the personal userdata into the payload's
``sealed`` (AES-GCM under a key derived from the signing secret, for
``"handoff:<package id>"``); verifying opens it, so a package's bytes, wherever they
are stored or sent, never hold the caller in the clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from ..errors import HandoffError, HandoffFormatError, SealError
from ..journal.state import TERMINAL
from ..sealing import Sealer, open_personal, seal_personal, split_personal

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HANDOFF_VERSION",
    "PackageCall",
    "PackageFunction",
    "PackageItem",
    "PackageMessage",
    "PackagePayload",
    "PackageToolCall",
    "key_id",
    "secret_list",
    "sign",
    "verify",
]

HANDOFF_VERSION: Final = 2
#: the format versions this callstate reads
READS: Final = (1, 2)
#: ``from_bytes`` refuses larger packages unless told otherwise (4 MiB).
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
_ALG: Final = "HS256"
# keep handoff MACs apart from resume tokens, and each format version from the others
_DOMAINS: Final = {1: b"callstate.handoff.v1\n", 2: b"callstate.handoff.v2\n"}
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Package structs: unknown fields are an error, defaults are left out on the wire.

    The conversation's structs (messages, their tool calls, items) hold only text,
    numbers and each other, so they cannot form reference cycles and stay out of the
    garbage collector's sight (``gc=False``): a package carries thousands of them.
    """


class PackageFunction(_Strict, gc=False):
    name: str
    arguments: str


class PackageToolCall(_Strict, gc=False):
    id: str
    type: Literal["function"]
    function: PackageFunction


class PackageMessage(_Strict, gc=False):
    """One OpenAI-format chat message."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: list[PackageToolCall] | None = None
    tool_call_id: str | None = None


class PackageItem(_Strict, gc=False):
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
    wire_id: str | None = None
    duplicate_of: str | None = None


class PackagePayload(_Strict):
    """The signed content of a package (version 2; version 1 lacks the last two fields)."""

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
    personal: list[str] = []  # userdata keys that are personal (sealed on the wire)
    sealed: str | None = None  # on the wire: caller and personal userdata, encrypted
    #: calls whose outcome the source's model context holds (format 2)
    given_to_model: list[str] = []
    #: calls whose outcome landed but no model context had been given yet (format 2)
    owed_to_model: list[str] = []


class _Head(msgspec.Struct):
    v: Any = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    alg: str
    kid: str
    sig: str
    payload: msgspec.Raw


# the envelope exactly as ``sign`` writes it, up to the payload
_SIGNED_HEAD: Final = re.compile(
    rb'\{"v":([12]),"alg":"HS256","kid":"([0-9a-f]{12})","sig":"([A-Za-z0-9_-]{43})","payload":'
)

payload_encoder = msgspec.json.Encoder(order="deterministic")
_head_decoder = msgspec.json.Decoder(_Head)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_payload_decoder = msgspec.json.Decoder(PackagePayload)


def key_id(secret: bytes) -> str:
    """A short public id for a secret, so a verifier can say which key signed."""
    return hashlib.sha256(b"callstate.kid\n" + secret).hexdigest()[:12]


def mac(secret: bytes, kid: str, payload: bytes, version: int = HANDOFF_VERSION) -> bytes:
    domain = _DOMAINS[version]
    return hmac.new(secret, domain + kid.encode() + b"\n" + payload, hashlib.sha256).digest()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """Canonical unpadded base64url only (no "=", stray characters or set unused bits).

    Raises:
        ValueError: ``text`` is anything else.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        msg = f"not canonical unpadded base64url: {text!r:.40}"
        raise ValueError(msg)
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(raw) != text:
        msg = f"not canonical unpadded base64url: {text!r:.40}"
        raise ValueError(msg)
    return raw


def fail(what: str) -> HandoffFormatError:
    return HandoffFormatError(f"invalid handoff package: {what}")


def secret_list(secret: bytes | str | Sequence[bytes | str]) -> list[bytes]:
    items = [secret] if isinstance(secret, bytes | str) else list(secret)
    out = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not out or any(not s for s in out):
        msg = "a handoff package needs a non-empty secret to be signed or verified"
        raise HandoffError(msg)
    return out


def decode_envelope(data: bytes) -> _Envelope:
    """The envelope, once its format version is known to be ours; the payload stays raw."""
    try:
        head = _head_decoder.decode(data)
    except ValueError as exc:  # msgspec.DecodeError, or bad UTF-8 in a key
        raise fail(f"not a JSON object (truncated or malformed): {exc}") from None
    except RecursionError:
        raise fail("not a JSON object: nested too deeply") from None
    if head.v is None:
        raise fail("missing format version `v`")
    if type(head.v) is not int:
        raise fail(f"format version `v` must be an integer, got {head.v!r:.40}")
    if head.v not in READS:
        reads = " and ".join(map(str, READS))
        msg = f"unsupported handoff format version {head.v} at `v` (this callstate reads {reads})"
        raise HandoffFormatError(msg)
    try:
        envelope = _envelope_decoder.decode(data)
    except ValueError as exc:  # msgspec.DecodeError, or bad UTF-8 in a key
        if "missing required field `sig`" in str(exc):
            raise fail("unsigned: missing `sig`") from None
        raise fail(f"envelope: {exc}") from None
    except RecursionError:
        raise fail("envelope: nested too deeply") from None
    if envelope.alg != _ALG:
        raise fail(f"`alg` {envelope.alg!r:.40} is not {_ALG!r}")
    return envelope


def decode_sig(text: str) -> bytes:
    """The MAC bytes of a base64url ``sig``."""
    try:
        sig = unb64(text)
    except (binascii.Error, ValueError):
        raise fail(f"`sig` is not base64url: {text!r:.40}") from None
    if len(sig) != hashlib.sha256().digest_size:
        raise fail(f"`sig` has {len(sig)} bytes, not {hashlib.sha256().digest_size}")
    return sig


def decode_payload(body: bytes, version: int = HANDOFF_VERSION) -> PackagePayload:
    """The payload, decoded strictly and cross-checked (only after the MAC verified).

    A format 1 payload comes back as format 2 reads it: every final outcome given to
    the model, none owed.
    """
    try:
        payload = _payload_decoder.decode(body)
    except ValueError as exc:  # msgspec.DecodeError, or bad UTF-8 in a key
        detail = str(exc).replace("`$", "`$.payload")
        raise fail(detail) from None
    except RecursionError:
        raise fail("`$.payload` is nested too deeply") from None
    if version == 1:
        for name in ("given_to_model", "owed_to_model"):
            if getattr(payload, name):
                raise fail(f"`$.payload.{name}` is not a field of format 1")
        check_payload(payload)
        given = [c.call_id for c in payload.ledger if c.status in TERMINAL]
        return msgspec.structs.replace(payload, given_to_model=given)
    check_payload(payload)
    return payload


def check_payload(p: PackagePayload) -> None:
    """Cross-field checks the struct types cannot express; each names its path."""
    ids: set[str] = set()
    for i, c in enumerate(p.ledger):
        if c.call_id in ids:
            raise fail(f"duplicate call id {c.call_id!r:.60} at `$.payload.ledger[{i}].call_id`")
        ids.add(c.call_id)
    for i, item in enumerate(p.items):
        if item.kind == "call" and item.id not in ids:
            raise fail(f"call {item.id!r:.60} at `$.payload.items[{i}].id` is not in the ledger")
    for i, m in enumerate(p.conversation):
        role = m.role
        if (role == "tool") != (m.tool_call_id is not None) or (
            m.tool_calls is not None and role != "assistant"
        ):
            _check_message(i, m)
        if m.content is None and m.tool_calls is None:
            where = f"$.payload.conversation[{i}]"
            raise fail(f"`{where}.content` is null on a {role!r} message without tool calls")
    _check_model_lists(p, {c.call_id: c.status for c in p.ledger})


def _check_model_lists(p: PackagePayload, status: dict[str, str]) -> None:
    """``given_to_model`` and ``owed_to_model`` name final calls of the ledger, once each."""
    seen: set[str] = set()
    for name in ("given_to_model", "owed_to_model"):
        for i, call_id in enumerate(getattr(p, name)):
            where = f"$.payload.{name}[{i}]"
            if call_id in seen:
                raise fail(f"call {call_id!r:.60} at `{where}` is listed twice")
            seen.add(call_id)
            if call_id not in status:
                raise fail(f"call {call_id!r:.60} at `{where}` is not in the ledger")
            if status[call_id] not in TERMINAL:
                raise fail(f"call {call_id!r:.60} at `{where}` has no outcome yet")


def _check_message(i: int, m: PackageMessage) -> None:
    """Say which role rule message ``i`` breaks."""
    where = f"$.payload.conversation[{i}]"
    if m.role == "tool" and m.tool_call_id is None:
        raise fail(f"a tool message needs `{where}.tool_call_id`")
    if m.role != "tool" and m.tool_call_id is not None:
        raise fail(f"`{where}.tool_call_id` is only for role 'tool', not {m.role!r}")
    raise fail(f"`{where}.tool_calls` is only for role 'assistant', not {m.role!r}")


def _context(payload: PackagePayload) -> str:
    return f"handoff:{payload.package_id}"


def seal_payload(payload: PackagePayload, sealer: Sealer) -> PackagePayload:
    """``payload`` as sent: its caller and personal userdata sealed."""
    if payload.sealed is not None or (payload.caller is None and not payload.personal):
        return payload
    plain, secret = split_personal(payload.userdata, payload.personal)
    sealed = seal_personal(
        sealer, caller=payload.caller, userdata=secret, context=_context(payload)
    )
    if sealed is None:
        return payload
    return msgspec.structs.replace(payload, caller=None, userdata=plain, sealed=sealed)


def open_payload(payload: PackagePayload, keys: list[bytes]) -> PackagePayload:
    """A verified payload with its sealed caller data opened.

    Raises:
        HandoffFormatError: the sealed data does not open under ``keys``.
    """
    if payload.sealed is None:
        return payload
    try:
        found = open_personal(Sealer(keys), payload.sealed, context=_context(payload))
    except SealError as exc:
        raise fail(f"`$.payload.sealed`: {exc}") from None
    return msgspec.structs.replace(
        payload,
        caller=found.caller,
        userdata={**payload.userdata, **found.userdata},
        sealed=None,
    )


def sign(payload: PackagePayload, key: bytes) -> bytes:
    """The signed envelope of ``payload``, caller data sealed: the MAC covers the key id
    and the exact body."""
    kid = key_id(key)
    body = payload_encoder.encode(seal_payload(payload, Sealer([key])))
    sig = b64(mac(key, kid, body, HANDOFF_VERSION))
    head = f'{{"v":{HANDOFF_VERSION},"alg":"{_ALG}","kid":"{kid}","sig":"{sig}","payload":'
    return head.encode() + body + b"}"


def _verify_as_signed(data: bytes, keys: list[bytes]) -> tuple[int, bytes] | None:
    """The format version and payload of ``data`` laid out exactly as ``sign`` writes it
    and signed by one of ``keys``, found without parsing the envelope; otherwise None
    (:func:`verify` then parses it and says what is wrong)."""
    head = _SIGNED_HEAD.match(data)
    if head is None or not data.endswith(b"}"):
        return None
    version = int(head[1])
    kid = head[2].decode()
    body = data[head.end() : -1]
    try:
        sig = unb64(head[3].decode())
    except ValueError:  # not canonical: verify() says so
        return None
    ok = False
    for key in keys:  # every key, so timing does not reveal which matched
        ok |= key_id(key) == kid and hmac.compare_digest(mac(key, kid, body, version), sig)
    return (version, body) if ok else None


def verify(
    data: bytes | bytearray | memoryview | str, keys: list[bytes], max_bytes: int
) -> tuple[bytes, PackagePayload, int]:
    """Check size, envelope and MAC (constant time), then decode the payload strictly.

    Returns the input as bytes, the payload and its format version.

    Raises:
        HandoffFormatError: what failed, by name.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise fail(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise fail(f"size {len(data)} bytes is over the max_bytes cap of {max_bytes}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 JSON (bad byte at offset {exc.start})") from None
    signed = _verify_as_signed(data, keys)
    if signed is not None:
        version, body = signed
        return data, open_payload(decode_payload(body, version), keys), version
    envelope = decode_envelope(data)
    body = bytes(envelope.payload)
    candidates = [k for k in keys if key_id(k) == envelope.kid] or keys
    sig = decode_sig(envelope.sig)
    # compare against every candidate so timing does not reveal which key matched
    ok = False
    for key in candidates:
        ok |= hmac.compare_digest(mac(key, envelope.kid, body, envelope.v), sig)
    if not ok:
        raise fail(
            f"`signature` does not verify for key id {envelope.kid!r:.40} "
            "(tampered, or signed with another secret)"
        )
    return data, open_payload(decode_payload(body, envelope.v), keys), envelope.v
