"""A Pipecat processor that checks what the bot is about to say against a cxguard policy pack.

Place :class:`PolicyGuard` between the LLM and the TTS service::

    transport.input() → stt → user_aggregator → llm → PolicyGuard → tts → transport.output()

It feeds one :class:`~cxguard.policy.engine.Conversation` with

* customer turns: ``TranscriptionFrame`` (when the guard sits before the user aggregator) or
  ``LLMContextUserTurnFrame`` (which the user aggregator sends on, so a guard after the LLM
  sees it); only downstream frames count, so a turn is never read twice;
* agent turns: the text of one LLM response (``LLMFullResponseStartFrame`` … text frames …
  ``LLMFullResponseEndFrame``), judged as one turn when it ends, and each ``TTSSpeakFrame``;
* trusted signals: a :class:`CxguardControlFrame` (``authenticated``, ``intent``, ``handoff``)
  pushed by the application, e.g. after a tool call verified the caller.

Modes:

``observe``
    Every frame passes at once; verdicts go to ``on_report``. Nothing is added or held.
``enforce``
    The frames of a response are held until it ends and is judged (so TTS starts after the
    whole response, not the first sentence: the price of judging a turn as the engine defines
    it). When a verdict's outcome is in ``block_outcomes`` the response's text frames are
    dropped and ``replacement_text`` (``handoff_text`` when a human is asked for) is sent in
    their place, inside the same response brackets, so context aggregators record what was
    really said. A verdict whose actions include ``handoff`` also sends a
    :class:`CxguardHandoffFrame` downstream (once per call).

Evidence: with a ``recorder`` (:class:`~cxguard.integrations.recording.TurnRecorder`;
the sidecar's is :meth:`cxguard.runtime.guard_evidence.GuardEvidence.recorder`) every judged
turn, signal, verdict decided later, evaluation failure and the conversation's start and end
go to the sidecar's verdict builder, redaction, ledger and alert sinks, in order, off the
frame path (a slow ledger never delays the bot); ``EndFrame`` waits for them.

Policy evaluation (regexes, ONNX classifiers: milliseconds) runs in one worker thread per
guard, which also keeps the conversation's turns in order when an interruption cancels an
evaluation half-way. The verdicts in :class:`GuardReport` are as spoken (unredacted): the
recorder's are what is stored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

with warnings.catch_warnings():
    # pipecat 1.14 imports the stdlib audioop, deprecated since Python 3.11; keep that
    # out of applications (and test suites) that turn warnings into errors.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import (
        CancelFrame,
        DataFrame,
        EagerTranscriptionFrame,
        EndFrame,
        Frame,
        InterimTranscriptionFrame,
        InterruptionFrame,
        LLMContextUserTurnFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        SystemFrame,
        TextFrame,
        TranscriptionFrame,
        TranslationFrame,
        TTSSpeakFrame,
        UserStartedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from cxguard.errors import CxguardError
from cxguard.integrations.recording import Job, RecordQueue, TurnRecorder
from cxguard.model import (
    AGENT_VERSION,
    ControlEvent,
    HandoffRequest,
    Outcome,
    Release,
    Speaker,
    TurnText,
    Verdict,
)
from cxguard.policy.engine import AssertionResult, PolicyEngine

log = logging.getLogger(__name__)

GuardMode = Literal["observe", "enforce"]
DEFAULT_REPLACEMENT = "I'm sorry, I can't help with that. Is there anything else I can do for you?"
DEFAULT_HANDOFF_TEXT = "Let me connect you with a colleague who can help you with that."
_NOT_AGENT_TEXT = (TranscriptionFrame, InterimTranscriptionFrame, EagerTranscriptionFrame,
                   TranslationFrame)  # fmt: skip
T = TypeVar("T")
A = TypeVar("A")
CANCEL_DRAIN_S = 2.0
"""A cancelled pipeline waits this long at most for the conversation's evidence."""


@dataclass(frozen=True)
class GuardOptions:
    mode: GuardMode = "enforce"
    replacement_text: str = DEFAULT_REPLACEMENT
    """Said instead of a blocked utterance."""
    handoff_text: str = DEFAULT_HANDOFF_TEXT
    """Said instead of a blocked utterance whose verdict also asks for a human."""
    block_outcomes: frozenset[Outcome] = frozenset({"fail"})
    """Outcomes that block an agent utterance in enforce mode; add ``undetermined`` to fail
    closed when a turn cannot be judged."""
    enforce_assertions: frozenset[str] | None = None
    """Assertions whose verdicts may block (None: all); the others are only reported."""
    call_id: str = field(default_factory=lambda: f"pipecat-{uuid.uuid4().hex[:16]}")
    tenant: str = "default"
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Conversation parameters for the engine, e.g. ``{"authenticated": "false"}``."""


@dataclass
class CxguardHandoffFrame(SystemFrame):
    """A policy asks for a human: the application should transfer the conversation."""

    request: HandoffRequest
    verdict: Verdict


@dataclass
class CxguardControlFrame(DataFrame):
    """A trusted signal for the policy engine (``authenticated``, ``intent``, ``handoff``),
    applied in order with the turns around it; the guard consumes it."""

    event_name: str
    data: dict[str, str] = field(default_factory=dict)
    interruptible: bool = field(default=False, init=False)


@dataclass(frozen=True)
class GuardReport:
    """What the guard decided about one turn, signal, or the end of the call."""

    turn: TurnText | None
    """The turn judged; None for verdicts closed by a signal or by the end of the call."""
    verdicts: tuple[Verdict, ...]
    blocked: bool = False
    """True when enforce mode replaced the utterance."""
    handoff: HandoffRequest | None = None


ReportCallback = Callable[[GuardReport], Awaitable[None] | None]


class PolicyGuard(FrameProcessor):
    """One conversation's guard (see the module docstring); build one per call.

    ``engine`` is shared by all calls (``PolicyEngine(load_pack(path), scorer)``);
    ``on_report`` (sync or async) gets a :class:`GuardReport` for every judged turn, for
    verdicts closed by a :class:`CxguardControlFrame`, and for those closed at ``EndFrame``.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        options: GuardOptions | None = None,
        *,
        on_report: ReportCallback | None = None,
        recorder: TurnRecorder | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._engine = engine
        self._options = options or GuardOptions()
        self._on_report = on_report
        self._records = RecordQueue(recorder) if recorder is not None else None
        self._began = False
        self._conversation = engine.start(dict(self._options.parameters))
        # One thread: evaluations stay in turn order even when a cancelled await leaves
        # one still running.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cxguard-policy")
        self._turns: dict[int, TurnText] = {}
        self._next_index = 0
        self._open = False
        self._held: list[Frame] = []
        self._parts: list[str] = []
        self._response_start_ms = 0.0
        self._user_start_ms: float | None = None
        self._handed_off = False
        self._finished = False

    @property
    def enforcing(self) -> bool:
        return self._options.mode == "enforce"

    # ------------------------------------------------------------------ frames

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not self._began:
            self._began = True
            self._record(lambda r: r.started())
        if direction != FrameDirection.DOWNSTREAM or self._finished:
            await self.push_frame(frame, direction)
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._user_start_ms = self._now_ms()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            await self._interrupted()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            self._drop_response()
            self._finished = True
            now = self._now_ms()
            self._record(lambda r: r.ended(now, "cancelled"))
            await self.push_frame(frame, direction)
            if self._records is not None:
                await self._records.drain(CANCEL_DRAIN_S)
        elif isinstance(frame, TranscriptionFrame | LLMContextUserTurnFrame):
            await self.push_frame(frame, direction)
            await self._customer_turn(frame.text)
        elif isinstance(frame, CxguardControlFrame):
            await self._control(frame)
        elif isinstance(frame, LLMFullResponseStartFrame):
            if self._open:  # a response that never ended: judge what it said
                await self._close_response(None)
            self._open, self._response_start_ms = True, self._now_ms()
            await self._hold_or_push(frame)
        elif isinstance(frame, LLMFullResponseEndFrame):
            await self._close_response(frame)
        elif isinstance(frame, EndFrame):
            if self._open:
                await self._close_response(None)
            await self._finish()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSSpeakFrame) and not self._open:
            await self._speak(frame)
        elif self._open and not isinstance(frame, SystemFrame):
            if _is_spoken_text(frame):
                self._parts.append(_spaced(frame))
            await self._hold_or_push(frame)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _hold_or_push(self, frame: Frame) -> None:
        if self.enforcing:
            self._held.append(frame)
        else:
            await self.push_frame(frame)

    # ------------------------------------------------------------------ turns

    async def _customer_turn(self, text: str) -> None:
        if not text.strip():
            return
        now = self._now_ms()
        start = self._user_start_ms if self._user_start_ms is not None else now
        self._user_start_ms = None
        turn = self._turn("customer", text, start, now)
        await self._judge(turn)

    async def _close_response(self, end: LLMFullResponseEndFrame | None) -> None:
        # Take the response out first: an interruption may cancel us at any await below.
        held, parts, start = self._held, self._parts, self._response_start_ms
        self._open, self._held, self._parts = False, [], []
        text = " ".join("".join(parts).split())
        if not text:  # e.g. only a function call: nothing the customer hears
            await self._release(held, None, end)
        elif self.enforcing:
            turn = self._turn("agent", text, start, self._now_ms())
            await self._judge(turn, deliver=lambda say: self._release(held, say, end))
        else:
            if end is not None:
                await self.push_frame(end)
            await self._judge(self._turn("agent", text, start, self._now_ms()))

    async def _release(self, held: Sequence[Frame], say: str | None, end: Frame | None) -> None:
        """Send the held response; with ``say`` set, its text frames become that one text."""
        replaced = False
        for frame in held:
            if say is None or not _is_response_text(frame):
                await self.push_frame(frame)
            elif not replaced:  # the replacement takes the place of the first text
                await self.push_frame(LLMTextFrame(say))
                replaced = True
        if say is not None and not replaced:
            await self.push_frame(LLMTextFrame(say))
        if end is not None:
            await self.push_frame(end)

    async def _speak(self, frame: TTSSpeakFrame) -> None:
        now = self._now_ms()
        turn = self._turn("agent", frame.text, now, now)
        if not self.enforcing:
            await self.push_frame(frame)
            await self._judge(turn)
            return

        async def deliver(say: str | None) -> None:
            if say is None:
                await self.push_frame(frame)
            else:
                await self.push_frame(TTSSpeakFrame(say, append_to_context=frame.append_to_context))

        await self._judge(turn, deliver=deliver)

    async def _interrupted(self) -> None:
        if not self._open:
            return
        parts, start = self._parts, self._response_start_ms
        self._drop_response()
        text = " ".join("".join(parts).split())
        # Enforce mode held the text back, so none of it was spoken; observe mode let it
        # through, so part of it may have been: judge that part.
        if text and not self.enforcing:
            await self._judge(self._turn("agent", text, start, self._now_ms()))

    def _drop_response(self) -> None:
        self._open, self._held, self._parts = False, [], []

    async def _control(self, frame: CxguardControlFrame) -> None:
        event = ControlEvent(frame.event_name, self._now_ms(), dict(frame.data))
        self._record(lambda r: r.signal(event))
        try:
            results = await self._run(self._conversation.observe, event)
        except CxguardError as exc:
            log.error("cxguard: control event %s rejected: %s", event.name, exc)
            why = str(exc)
            self._record(lambda r: r.failed(f"control {event.name}", why, event.at_ms))
            return
        if results:
            self._record(lambda r: r.decided(results, "event", event))
            await self._report(GuardReport(None, tuple(self._verdicts(None, results, 0.0))))

    async def _finish(self) -> None:
        self._finished = True
        now = self._now_ms()
        try:
            results = await self._run(self._conversation.finish, now)
        except CxguardError as exc:
            log.error("cxguard: finishing the conversation failed: %s", exc)
            why = str(exc)
            self._record(lambda r: r.failed("finish", why, now))
            results = []
        if results:
            self._record(lambda r: r.decided(results, "finish"))
            await self._report(GuardReport(None, tuple(self._verdicts(None, results, 0.0))))
        self._record(lambda r: r.ended(now, "end"))
        if self._records is not None:
            await self._records.drain()

    # ------------------------------------------------------------------ judging

    async def _judge(
        self, turn: TurnText, deliver: Callable[[str | None], Awaitable[None]] | None = None
    ) -> None:
        """Evaluate ``turn``; ``deliver`` sends the utterance (None) or the text replacing it;
        then the handoff frame and the report."""
        started = time.perf_counter()
        try:
            results = await self._run(self._conversation.evaluate, turn)
        except CxguardError as exc:  # a broken classifier must not pass a turn silently
            log.error("cxguard: turn %d could not be evaluated: %s", turn.index, exc)
            why = str(exc)
            self._record(lambda r: r.failed("policy evaluate", why, turn.end_ms, turn.index))
            results = [AssertionResult("cxguard.evaluation", "undetermined",
                                       f"evaluation failed: {exc}", "major", ("alert",), {},
                                       turn.index, turn.speaker)]  # fmt: skip
        elapsed = 1000 * (time.perf_counter() - started)
        verdicts = self._verdicts(turn, results, elapsed)
        blocked = self.enforcing and turn.speaker == "agent"
        blocked = blocked and any(self._blocks(v) for v in verdicts)
        handoff = self._handoff(verdicts)
        o = self._options
        if deliver is not None:
            say = (o.handoff_text if handoff else o.replacement_text) if blocked else None
            await deliver(say)
        if handoff is not None and self.enforcing:
            await self.push_frame(CxguardHandoffFrame(handoff[0], handoff[1]))
        request = handoff[0] if handoff is not None else None
        self._record(lambda r: r.judged(turn, results, elapsed))
        await self._report(GuardReport(turn, tuple(verdicts), blocked, request))

    def _blocks(self, verdict: Verdict) -> bool:
        wanted = self._options.enforce_assertions
        if verdict.mode == "shadow":  # judged and reported, never enforced
            return False
        return verdict.outcome in self._options.block_outcomes and (
            wanted is None or verdict.assertion_id in wanted
        )

    def _handoff(self, verdicts: Sequence[Verdict]) -> tuple[HandoffRequest, Verdict] | None:
        if self._handed_off:
            return None
        verdict = next((v for v in verdicts if "handoff" in v.actions and v.mode != "shadow"), None)
        if verdict is None:
            return None
        self._handed_off = True
        o = self._options
        request = HandoffRequest(
            call_id=o.call_id, tenant=o.tenant, source="pipecat",
            assertion_id=verdict.assertion_id, turn_index=verdict.turn_index,
            reason=verdict.evidence, idempotency_key=f"{o.call_id}:{verdict.turn_index}",
            requested_at_wall=time.time(),
        )  # fmt: skip
        return request, verdict

    def _verdicts(
        self, turn: TurnText | None, results: Sequence[AssertionResult], policy_ms: float
    ) -> list[Verdict]:
        now, o = time.time(), self._options
        release = Release(
            self._engine.pack.hash, self._engine.model_ids, o.parameters.get(AGENT_VERSION, "")
        )
        modes = {a.id: a.mode for a in self._engine.pack.assertions}
        intent = self._conversation.state.intent or ""
        out = []
        for r in results:
            judged = self._turns.get(r.turn_index) or turn
            text = judged.text if judged is not None else ""
            start = judged.start_ms if judged is not None else 0.0
            end = judged.end_ms if judged is not None else 0.0
            out.append(Verdict(
                call_id=o.call_id, tenant=o.tenant, turn_index=r.turn_index,
                speaker=r.speaker, start_ms=start, end_ms=end, text=text,
                assertion_id=r.assertion_id, outcome=r.outcome, evidence=r.evidence,
                severity=r.severity, actions=tuple(r.actions), scores=dict(r.scores),
                policy_hash=self._engine.pack.hash, model_ids=self._engine.model_ids,
                latency_ms={"policy": policy_ms}, decided_at_wall=now,
                release_id=release.id, agent_version=release.agent_version,
                intent=r.intent or intent, mode=modes.get(r.assertion_id, "live"),
            ))  # fmt: skip
        return out

    async def _report(self, report: GuardReport) -> None:
        if self._on_report is None:
            return
        try:
            result = self._on_report(report)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a reporting bug must not stop the conversation
            log.exception("cxguard: on_report callback failed")

    # ------------------------------------------------------------------ helpers

    def _record(self, job: Job) -> None:
        if self._records is not None:
            self._records.put(job)

    def _turn(self, speaker: Speaker, text: str, start_ms: float, end_ms: float) -> TurnText:
        turn = TurnText(self._next_index, speaker, text, start_ms, end_ms)
        self._next_index += 1
        self._turns[turn.index] = turn
        return turn

    async def _run(self, fn: Callable[[A], T], arg: A) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)

    def _now_ms(self) -> float:
        """Pipeline clock (stream timeline of the conversation), 0 before the pipeline runs."""
        try:
            return float(self.get_clock().get_time()) / 1e6
        except Exception:  # no clock before setup
            return 0.0


def _is_response_text(frame: Frame) -> bool:
    """Text of the bot's response (spoken or not): all of it goes when a response is blocked."""
    if isinstance(frame, TTSSpeakFrame):
        return True
    return isinstance(frame, TextFrame) and not isinstance(frame, _NOT_AGENT_TEXT)


def _is_spoken_text(frame: Frame) -> bool:
    """Text the customer will hear: what the policy judges."""
    skip = isinstance(frame, TextFrame) and frame.skip_tts is True
    return _is_response_text(frame) and not skip


def _spaced(frame: Frame) -> str:
    if isinstance(frame, TextFrame) and frame.includes_inter_frame_spaces:
        return str(frame.text)
    assert isinstance(frame, TextFrame | TTSSpeakFrame)
    return f" {frame.text} "
