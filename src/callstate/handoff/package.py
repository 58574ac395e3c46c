"""HandoffPackage: everything a second agent needs to continue a call, signed and verified.

A package carries the conversation twice over: as OpenAI-format ``messages`` (what a
model or a framework adapter consumes) and as the structured ``items`` and tool
``ledger`` a ``SessionState`` is rebuilt from, plus userdata, the caller's unfinished
utterance, the agent's unspoken rest, reason and summary, and which outcomes the
source's model was given and which it is still owed. It is plain data: no framework
types, nothing imported by name from the data.

Wire format (version 2; version 1 still decodes), one JSON object::

    {"v": 2, "alg": "HS256", "kid": "<key id>", "sig": "<base64url MAC>", "payload": {...}}

The MAC is HMAC-SHA256 over a domain-separation prefix, the key id and the exact bytes
of ``payload``; it is checked (in constant time) before the payload is decoded, and the
payload is then decoded into strict structs that refuse unknown fields. Every failure
raises :class:`~callstate.errors.HandoffFormatError` naming what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import HandoffError
from ..journal.state import TERMINAL, Item, SessionState, ToolCall
from .build import build_payload, default_summarize, trim_point
from .wire import (
    DEFAULT_MAX_BYTES,
    HANDOFF_VERSION,
    PackageCall,
    PackageItem,
    PackageMessage,
    PackagePayload,
    key_id,
    secret_list,
    sign,
    verify,
)

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


class HandoffPackage:
    """A session handed from one agent to another: self-describing, framework-neutral.

    Build one with ``await session.handoff(to=...)``; read one with
    :meth:`from_bytes`. ``messages`` is the conversation as OpenAI-format chat
    messages; ``ledger``, ``items`` and ``userdata`` are plain data for adapters.
    """

    __slots__ = ("_data", "_version", "payload")

    def __init__(self, payload: PackagePayload) -> None:
        self.payload = payload
        # the signed bytes of exactly this payload: set only by to_bytes(secret) and
        # from_bytes, so they always match it
        self._data: bytes | None = None
        self._version: int = HANDOFF_VERSION

    @property
    def version(self) -> int:
        """The wire format version of the bytes this package came from (or is signed in)."""
        return self._version

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

    @property
    def caller(self) -> str | None:
        """The caller id (sealed in the package's bytes, opened by ``from_bytes``)."""
        return self.payload.caller

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

    @property
    def given_to_model(self) -> list[str]:
        """Ids of calls whose outcome the source's model context held at the offer.

        A format 1 package reads as: every final outcome was given.
        """
        return list(self.payload.given_to_model)

    @property
    def owed_to_model(self) -> list[str]:
        """Ids of calls whose outcome landed but no model context had been given at the
        offer, in landing order: the target's adapter still owes them to its model."""
        return list(self.payload.owed_to_model)

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
            personal=list(p.personal),
            summary=p.earlier,
            owed_to_model=list(p.owed_to_model),
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
        data = sign(self.payload, secret_list(secret)[0])
        self._data = data
        self._version = HANDOFF_VERSION
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
        raw, payload, version = verify(data, secret_list(secret), max_bytes)
        package = cls(payload)
        package._data = raw
        package._version = version
        return package

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
