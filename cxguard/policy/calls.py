"""One call judged from its segments: speaker turns (``policy.turns``) fed to a conversation.

Pure and deterministic. The live session (``runtime.session``) and ``cxguard eval``
(``policy.offline``) both drive a :class:`CallJudge` with the same four inputs, so the same
words at the same times get the same verdicts::

    judge = CallJudge(engine, {"authenticated": "false"}, TurnOptions())
    judge.segment(HeardSegment(0, "agent", 500, 1400, "Hello."))   # segments as they close
    judge.tick(2_000, {"agent": 1_900, "customer": None})          # the stream moved on
    judge.event(ControlEvent("handoff", at_ms=9_000))              # platform signals
    judge.finish(90_000)                                           # the call ended

Each returns what was decided, in order:

* :class:`Early` — prohibitions already broken by the words so far of an agent turn still
  being spoken (``Conversation.preview`` after every segment), once per (turn, assertion);
* :class:`Judged` — a speaker turn ended: its verdicts of record;
* :class:`Decided` — verdicts decided after their turn: by an event, by stream time (a handoff
  grace or a deadline ran out, ``Conversation.advance``) or by the end of the call;
* :class:`Backchannel` — a backchannel heard during the other speaker's turn (evidence only).

Control events other than ``handoff`` wait for the turn being spoken to end (a turn is judged
on the conversation as it began); a handoff applies at once (it meets obligations, whatever
is being said). A turn with an unreadable segment is judged on the words heard where they are
certain (``Conversation.evaluate``).

A classifier or any other part of evaluation that raises does not stop the call: the turn is
judged again as unreadable (``undetermined``, reason given) and a :class:`Failed` says what
broke; if even that fails, the conversation state is given up and every later turn gets
``undetermined`` for each assertion that could have judged it. Invalid input (an event that
cannot be applied) raises :class:`~cxguard.errors.PolicyError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from cxguard.errors import PolicyError
from cxguard.model import ControlEvent, Speaker, TurnText
from cxguard.policy.engine import AssertionResult, PolicyEngine, check_event
from cxguard.policy.turns import (
    BackchannelHeard,
    EndReason,
    EventReleased,
    HeardSegment,
    Output,
    TurnAssembler,
    TurnEnded,
    TurnGrew,
    TurnOptions,
)


@dataclass(frozen=True)
class Early:
    turn: TurnText
    """The open turn so far (its index is the one the whole turn gets)."""
    results: tuple[AssertionResult, ...]
    segment: int
    """The segment whose words completed the violation."""


@dataclass(frozen=True)
class Judged:
    turn: TurnText
    results: tuple[AssertionResult, ...]
    reason: EndReason
    alerted_early: frozenset[str]
    """Assertions of this turn already reported by :class:`Early`."""


@dataclass(frozen=True)
class Decided:
    results: tuple[AssertionResult, ...]
    phase: Literal["event", "time", "finish"]
    event: ControlEvent | None = None


@dataclass(frozen=True)
class Backchannel:
    segment: HeardSegment
    turn_index: int


@dataclass(frozen=True)
class Failed:
    """Evaluation raised; what was decided instead is in the outputs around this one."""

    stage: Literal["preview", "evaluate", "observe", "advance", "finish"]
    error: str
    """``ExceptionType: message`` (not redacted: it may quote the turn)."""
    turn_index: int | None = None


JudgeOutput = Early | Judged | Decided | Backchannel | Failed


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class CallJudge:
    """Not thread-safe: feed it from one task at a time, in stream order."""

    def __init__(
        self,
        engine: PolicyEngine,
        parameters: Mapping[str, str] | None = None,
        options: TurnOptions | None = None,
        *,
        first_turn_index: int = 0,
    ) -> None:
        self.options = options or TurnOptions()
        self._engine = engine
        self._conversation = engine.start(
            parameters, handoff_grace_ms=self.options.handoff_grace_ms
        )
        self._turns: TurnAssembler[ControlEvent] = TurnAssembler(self.options, first_turn_index)
        self._early: dict[int, set[str]] = {}
        self._modes = {a.id: a.mode for a in engine.pack.assertions}
        self._lost: str | None = None
        """Why the conversation state was given up (every later turn is undetermined)."""

    @property
    def open_turn(self) -> int | None:
        return self._turns.open_turn

    # ------------------------------------------------------------------ inputs

    def restore(self, history: Sequence[TurnText | ControlEvent]) -> None:
        """Replay what the ledger holds of this call before new segments arrive (a second
        session of the call, or a restart): the turns and events were judged already and
        their verdicts are stored, so the results are dropped; the state (agent turn count,
        intent, authentication, open obligations) is as it was. The stored text is the
        redacted one, so a number read across the two sessions is not completed here."""
        for item in history:
            if isinstance(item, TurnText):
                self._conversation.evaluate(item)
                continue
            try:
                check_event(item)
            except PolicyError:
                continue  # recorded as it was refused live; it changed nothing then either
            self._conversation.observe(item)
        if history:
            # Whatever the stored turns held for a handoff grace was decided by the session
            # that judged them (its verdicts are stored): let it go unreported.
            last = max(h.end_ms if isinstance(h, TurnText) else h.at_ms for h in history)
            self._conversation.advance(last + self.options.handoff_grace_ms + 1.0)

    def segment(self, seg: HeardSegment) -> list[JudgeOutput]:
        return self._apply(self._turns.segment(seg), seg.index)

    def tick(self, at_ms: float, speaking: Mapping[Speaker, float | None]) -> list[JudgeOutput]:
        out = self._apply(self._turns.tick(at_ms, speaking))
        return out + self._advance()

    def event(self, event: ControlEvent) -> list[JudgeOutput]:
        check_event(event)
        if event.name == "handoff":
            return self._observe(event)
        return self._apply(self._turns.defer(event))

    def finish(self, at_ms: float) -> list[JudgeOutput]:
        out = self._apply(self._turns.finish())
        if self._lost is None:
            results, failed = self._guard("finish", None, lambda: self._conversation.finish(at_ms))
            out += failed
            if results:
                out.append(Decided(tuple(results), "finish"))
        return out

    # ------------------------------------------------------------------ assembler outputs

    def _apply(self, outputs: list[Output[ControlEvent]], segment: int = -1) -> list[JudgeOutput]:
        out: list[JudgeOutput] = []
        for o in outputs:
            if isinstance(o, TurnGrew):
                out += self._preview(o.turn, segment)
            elif isinstance(o, TurnEnded):
                out += self._judge(o.turn, o.reason)
            elif isinstance(o, BackchannelHeard):
                out.append(Backchannel(o.segment, o.turn_index))
            else:
                assert isinstance(o, EventReleased)
                out += self._observe(o.event)
        return out

    def _preview(self, turn: TurnText, segment: int) -> list[JudgeOutput]:
        if turn.speaker != "agent" or self._lost is not None or not turn.text.strip():
            return []
        # The words heard are judged even when another segment of the turn was unreadable.
        heard = replace(turn, undetermined_reason=None)
        results, failed = self._guard(
            "preview", turn.index, lambda: self._conversation.preview(heard)
        )
        alerted = self._early.setdefault(turn.index, set())
        fresh = tuple(r for r in results or () if r.assertion_id not in alerted)
        alerted.update(r.assertion_id for r in fresh)
        return [*failed, Early(turn, fresh, segment)] if fresh else list(failed)

    def _judge(self, turn: TurnText, reason: EndReason) -> list[JudgeOutput]:
        early = frozenset(self._early.pop(turn.index, set()))
        if self._lost is not None:
            why = f"policy state of the call lost ({self._lost})"
            unjudged = self._stamp(self._engine.unjudged(turn, why))
            return [Judged(turn, tuple(unjudged), reason, early)]
        results, out = self._guard(
            "evaluate", turn.index, lambda: self._conversation.evaluate(turn)
        )
        if results is None:
            why = f"policy evaluation failed ({out[0].error.split(':')[0]})"
            try:
                unread = replace(turn, text="", undetermined_reason=why)  # no scorer this time
                results = self._stamp(self._conversation.evaluate(unread))
            except Exception as exc:  # the conversation itself is broken
                self._lost = _describe(exc)
                out.append(Failed("evaluate", self._lost, turn.index))
                lost = f"policy state of the call lost ({why})"
                results = self._stamp(self._engine.unjudged(turn, lost))
        return [*out, Judged(turn, tuple(results), reason, early)]

    def _observe(self, event: ControlEvent) -> list[JudgeOutput]:
        if self._lost is not None:
            return []
        results, failed = self._guard("observe", None, lambda: self._conversation.observe(event))
        decided: list[JudgeOutput] = [Decided(tuple(results), "event", event)] if results else []
        return [*failed, *decided]

    def _advance(self) -> list[JudgeOutput]:
        if self._lost is not None:
            return []
        at, agent_from = self._turns.position_ms, self._turns.settled_ms("agent")
        results, failed = self._guard(
            "advance", None, lambda: self._conversation.advance(at, agent_from)
        )
        return [*failed, Decided(tuple(results), "time")] if results else list(failed)

    def _guard(
        self,
        stage: Literal["preview", "evaluate", "observe", "advance", "finish"],
        turn_index: int | None,
        fn: Callable[[], list[AssertionResult]],
    ) -> tuple[list[AssertionResult] | None, list[Failed]]:
        """``fn()``, or None and a :class:`Failed` when it raised. The engine replaces its
        state only once a call has succeeded, so a failed call leaves it as it was."""
        try:
            results = fn()
        except Exception as exc:  # third-party code (classifiers) runs in here
            return None, [Failed(stage, _describe(exc), turn_index)]
        return self._stamp(results), []

    def _stamp(self, results: Sequence[AssertionResult]) -> list[AssertionResult]:
        """Each result with the caller intent it was decided under and its assertion's mode."""
        intent = self._conversation.state.intent
        return [
            replace(r, intent=r.intent or intent, mode=self._modes.get(r.assertion_id, "live"))
            for r in results
        ]
