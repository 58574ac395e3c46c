"""The SDK's voice pipeline recorded into callstate: a ``VoiceWorkflowBase`` over an ``Agent``.

``record_workflow(agent, session)`` returns a ``RecordedWorkflow`` to give
``VoicePipeline(workflow=...)``. Each transcribed caller turn is ``user_said``; the
agent's reply (its streamed text) is one utterance (``agent_started`` at its first
delta, its text as ``agent_progress``, ``agent_finished`` once the caller's next turn
comes); the agent's function tools run through the guard; a handoff between agents is
a callstate handoff (``take_handoff``: epoch+1, the target told to continue). The
model's input each turn is callstate's context (``Session.context``), so a reply the
caller cut off is what the caller heard, and a resumed session starts from the
recovered conversation with its resume note instead of from nothing (its first
caller turn takes it off hold: the pipeline's link is up).

The pipeline is turn based and has no barge-in of its own: the app stops playback.
Read the result through ``workflow.stream(result)`` (the SDK's own events, with the
audio of each reply counted) and call ``workflow.interrupt(played_ms=...)`` when the
app stops playing a reply: it is cut where playback stopped (``heard_text``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents import Agent, RunConfig, Runner, TResponseInputItem
from agents.voice import StreamedAudioResult, VoiceStreamEvent, VoiceWorkflowBase
from agents.voice.workflow import VoiceWorkflowHelper

from ...continuity.plan import RecoveryPlan
from ...errors import ConfigError
from .._heard import heard_text
from .._seed import context_messages
from ._handoff import take_handoff
from ._tools import guard_agent

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["RecordedWorkflow", "record_workflow", "to_input_items"]


def to_input_items(messages: list[dict[str, Any]]) -> list[TResponseInputItem]:
    """OpenAI chat-format messages (callstate's context) as the SDK's input items."""
    items: list[Any] = []
    for m in messages:
        role, content = m["role"], m.get("content")
        if role == "tool":
            out = {"type": "function_call_output", "call_id": m["tool_call_id"]}
            items.append({**out, "output": content or ""})
            continue
        if content:
            items.append({"role": role, "content": content})
        for call in m.get("tool_calls") or ():
            fn = call["function"]
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": fn["name"],
                    "arguments": fn["arguments"],
                }
            )
    return items


@dataclass(eq=False)
class _Reply:
    """One reply of the agent: its utterance, its text and the audio of it streamed."""

    session: Session
    utterance_id: str
    text: str = ""
    samples: int = 0  # audio samples the pipeline streamed for it
    streamed: bool = False  # the pipeline's turn for it ended: all its audio is out
    open: bool = True  # neither finished nor cut yet


def _named(agent: Agent[Any], name: str, seen: set[int] | None = None) -> Agent[Any] | None:
    """The agent called ``name`` among ``agent`` and those it hands off to (directly)."""
    seen = set() if seen is None else seen
    if id(agent) in seen:
        return None
    seen.add(id(agent))
    if agent.name == name:
        return agent
    for target in agent.handoffs:
        found = _named(target, name, seen) if isinstance(target, Agent) else None
        if found is not None:
            return found
    return None


class RecordedWorkflow(VoiceWorkflowBase):
    """A voice workflow running ``agent`` with every turn recorded into a callstate session.

    ``workflow.session`` is the current callstate session (a new handle after each
    handoff) and ``workflow.agent`` the agent that answers the next turn.
    """

    def __init__(
        self,
        agent: Agent[Any],
        session: Session,
        *,
        context: Any = None,
        run_config: RunConfig | None = None,
        sample_rate: int = 24_000,
    ) -> None:
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            msg = f"sample_rate must be a positive int, got {sample_rate!r}"
            raise ConfigError(msg)
        self.session = session
        start = agent
        if isinstance(session.recovery, RecoveryPlan):
            start = _named(agent, session.state.agent) or agent
        self.agent: Agent[Any] = guard_agent(start, lambda: self.session, on_handoff=self._handoff)
        self.context = context
        self.run_config = run_config
        self.sample_rate = sample_rate
        self._replies: list[_Reply] = []  # every reply, in the order the pipeline speaks them
        self._turns = 0  # the pipeline's turns ``stream`` has seen start
        self._seeded = False
        self._running = False  # a turn's run is under way
        self._stopped = False  # the app stopped playback during the turn under way
        self._reply: _Reply | None = None  # the reply of the turn under way, once it speaks

    def _messages(self, said: str) -> list[dict[str, Any]]:
        """Callstate's context for the model; on a resumed session's first turn, the
        recovered conversation with its resume note, then the caller's new turn."""
        s = self.session
        if not self._seeded:
            self._seeded = True
            if isinstance(s.recovery, RecoveryPlan):
                seed = context_messages(s)
                return [*seed, {"role": "user", "content": said}] if said else seed
        messages = s.context()
        for outcome in s.owed_to_model():
            s.given_to_model(outcome.call_id, via="context")
        return messages

    async def run(self, transcription: str) -> AsyncIterator[str]:
        """One caller turn: recorded, answered by the agent, the reply recorded as said."""
        self.finish_open()
        if self.session.on_hold:  # a caller turn came through the pipeline: the link is up
            self.session.connection_restored()
        text = transcription.strip()
        if text:
            self.session.user_said(text)
        items = to_input_items(self._messages(text))
        result = Runner.run_streamed(
            self.agent, items, context=self.context, run_config=self.run_config
        )
        self._running, self._stopped, self._reply = True, False, None
        try:
            async for delta in VoiceWorkflowHelper.stream_text_from(result):
                if self._reply is None or self._reply.session is not self.session:
                    self._reply = self._start_reply(self._reply)
                if self._reply.open:
                    self._reply.text += delta
                yield delta
        finally:
            self._running = False
            if not result.is_complete:
                result.cancel()
            reply = self._reply
            if reply is not None and reply.open and self._stopped:
                self._cut(reply, 0)  # it began after the app stopped this turn's playback
            elif reply is not None and reply.open:
                reply.session.agent_progress(reply.utterance_id, spoken_text="", text=reply.text)
        self.agent = result.last_agent

    def _start_reply(self, before: _Reply | None) -> _Reply:
        """A new utterance; one started before a handoff in this turn gives way to it."""
        s = self.session
        reply = _Reply(s, s.agent_started(""))
        if before is None:
            self._replies.append(reply)
        else:
            self._replies[self._replies.index(before)] = reply
        return reply

    async def stream(self, result: StreamedAudioResult) -> AsyncIterator[VoiceStreamEvent]:
        """``result.stream()``'s events, with the audio of each reply counted (``interrupt``
        needs it). The stream runs ahead of playback: a reply stays open after its
        turn ends, until the caller's next turn, ``interrupt`` or ``finish_open``."""
        async for event in result.stream():
            if event.type == "voice_stream_event_lifecycle":
                if event.event == "turn_started":
                    self._turns += 1
                elif event.event == "turn_ended" and self._playing() is not None:
                    self._replies[self._turns - 1].streamed = True
            elif event.type == "voice_stream_event_audio" and event.data is not None:
                reply = self._playing()
                if reply is not None:
                    reply.samples += int(event.data.size)
            yield event

    def _playing(self) -> _Reply | None:
        """The reply of the pipeline's current turn (the one ``stream`` reads audio of)."""
        if 0 < self._turns <= len(self._replies):
            return self._replies[self._turns - 1]
        return None

    def interrupt(self, *, played_ms: int | None = None, played_bytes: int | None = None) -> str:
        """The app stopped playing the current reply: record what the caller heard of it.

        Give where playback stopped in the reply's audio as ``played_ms``, or as
        ``played_bytes`` of its pcm16. Replies before it played to the end. The reply is
        cut at that position (``Session.interrupt`` with ``heard_text``), so the next
        turn's model sees only what was heard. Stopped while the turn is still running
        (a tool call under way, say), the calls in flight are overtaken (their outcomes
        reach the model, their delivery is held) and what the turn says after it goes
        unheard.

        Returns:
            What the caller heard of the reply ("" when no reply is playing).

        Raises:
            ConfigError: neither or both of ``played_ms`` and ``played_bytes``, or one
                that is not a non-negative int.
        """
        ms = self._played_ms(played_ms, played_bytes)
        heard = ""
        reply = self._playing() or next((r for r in reversed(self._replies) if r.open), None)
        if reply is not None:
            at = self._replies.index(reply)
            for earlier in self._replies[:at]:
                self._finish(earlier)
            for later in self._replies[at + 1 :]:  # not played at all
                self._cut(later, 0)
            heard = self._cut(reply, ms)
        if self._running:
            self._stopped = True  # what this turn still says goes unheard
            if self._reply is None and self.session.state.in_flight:
                self.session.interrupt(heard_text="")  # a barge-in over a tool call
        return heard

    def _cut(self, reply: _Reply, ms: int) -> str:
        """``reply`` stopped playing at ``ms``: finished if that is its end, else cut there."""
        if not reply.open:
            return ""
        reply.open = False
        total = reply.samples * 1000 // self.sample_rate
        s = reply.session
        if reply.streamed and total > 0 and ms >= total:
            s.agent_finished(reply.utterance_id, text=reply.text)
            return reply.text
        heard = heard_text(reply.text, ms, total)
        s.agent_progress(reply.utterance_id, spoken_text="", text=reply.text)
        s.interrupt(heard_text=heard, audio_end_ms=min(ms, total), utterance_id=reply.utterance_id)
        return heard

    def _played_ms(self, played_ms: int | None, played_bytes: int | None) -> int:
        given = {"played_ms": played_ms, "played_bytes": played_bytes}
        named = {k: v for k, v in given.items() if v is not None}
        if len(named) != 1:
            msg = f"interrupt takes one of played_ms or played_bytes, got {named!r}"
            raise ConfigError(msg)
        ((field, value),) = named.items()
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            msg = f"{field} must be a non-negative int, got {value!r}"
            raise ConfigError(msg)
        if field == "played_bytes":
            return value * 1000 // (2 * self.sample_rate)
        return value

    def _finish(self, reply: _Reply) -> None:
        if reply.open:
            reply.open = False
            reply.session.agent_finished(reply.utterance_id, text=reply.text)

    def finish_open(self) -> None:
        """Every reply not cut played to the end: the caller's next turn came, or the app
        says its playback is done (call it when the call ends)."""
        for reply in self._replies:
            self._finish(reply)

    async def _handoff(self, target: Agent[Any]) -> Agent[Any]:
        """The model handed the call to ``target``: offer and accept it in callstate."""
        self.finish_open()
        self.session, agent = await take_handoff(self.session, target)
        return agent


def record_workflow(agent: Agent[Any], session: Session, **options: Any) -> RecordedWorkflow:
    """A ``RecordedWorkflow`` to give ``agents.voice.VoicePipeline(workflow=...)``.

    Args:
        agent: the starting ``Agent`` (its tools and handoffs are guarded); on a resumed
            session, the agent the session names if ``agent`` hands off to it.
        session: the callstate session the call records into.
        **options: ``context`` and ``run_config`` for ``Runner.run_streamed``, and
            ``sample_rate`` of the pipeline's audio (24000, the SDK's default).
    """
    return RecordedWorkflow(agent, session, **options)
