"""Speech held while the link was down, voiced by a speech-to-speech model once it is back.

The caller never heard it, so it does not stay in the conversation as said: each held
utterance ends with nothing heard, and the model is asked to say the words, so what the
caller does hear is recorded as that reply plays, like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..continuity.link import HeldSpeech
from ..session import Session

__all__ = ["open_link", "voice_held"]

#: how a model is asked to say what the caller missed
_SAY_HELD = (
    "The line dropped before the caller heard this. Say it to them now, word for word, then stop:"
)


def voice_held(session: Session, held: Sequence[HeldSpeech]) -> str | None:
    """End each held utterance with nothing heard; the instruction that asks the model
    to say their words, or None when there is nothing to say."""
    for speech in held:
        session.agent_finished(speech.utterance_id, text="")
    text = " ".join(h.text.strip() for h in held if h.text.strip())
    return f"{_SAY_HELD} {text}" if text else None


def open_link(session: Session) -> tuple[list[Any], str | None]:
    """Take ``session`` off hold with its outbox flushed here: the messages it kept, in
    order, and the instruction that asks the model to say the held speech (or None).

    Held speech recorded on another worker (a resumed call) is in the outbox too, so a
    new pipeline or ``AgentSession`` voices it once its link is up, and only then.
    """
    flushed: list[Any] = []
    session.outbox.connect(flushed.append)
    try:
        if session.on_hold and session.writable:
            session.connection_restored()
    finally:
        session.outbox.disconnect()
    held = [e for e in flushed if isinstance(e, HeldSpeech)]
    return [e for e in flushed if not isinstance(e, HeldSpeech)], voice_held(session, held)
