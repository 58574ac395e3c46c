"""User and agent speech events: the hot path's events, and the barge-in."""

from __future__ import annotations

from .event_base import EventBase


class UserPartial(EventBase, frozen=True, tag="user.partial"):
    text: str


class UserTurn(EventBase, frozen=True, tag="user.turn"):
    text: str


class AgentStarted(EventBase, frozen=True, tag="agent.started"):
    utterance_id: str
    text: str = ""


class AgentProgress(EventBase, frozen=True, tag="agent.progress"):
    utterance_id: str
    spoken_text: str
    text: str | None = None  # the utterance's full text when it grew while streaming


class AgentFinished(EventBase, frozen=True, tag="agent.finished"):
    utterance_id: str
    text: str | None = None  # final full text, when it differs from what started


class Interrupted(EventBase, frozen=True, tag="agent.interrupted"):
    utterance_id: str | None = None
    heard_text: str = ""
    unspoken_text: str = ""
    audio_end_ms: int | None = None
    overtaken: list[str] = []  # call ids in flight when the caller barged in
