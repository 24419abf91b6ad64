"""From what a call's judge decided to durable verdicts, alerts and handoffs, for one call.

:meth:`VerdictPipeline.deliver` takes the :mod:`~cxguard.policy.calls` outputs in order:
early (mid-turn) prohibition alerts, a speaker turn's verdicts of record, verdicts decided
later (a handoff grace or deadline ran out, an event, the end of the call), backchannels (an
evidence event), and failures of evaluation. A turn's verdicts are written before anyone is
alerted; ``fail`` verdicts are alerted one by one, ``undetermined`` ones once per turn (one
alert listing every assertion, at the pack's ``undetermined.severity``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from cxguard import pii
from cxguard.model import (
    AGENT_VERSION,
    Alert,
    CallInfo,
    ControlEvent,
    Dtmf,
    Gap,
    Release,
    TurnText,
    Verdict,
)
from cxguard.policy.calls import Backchannel, Decided, Early, Failed, Judged, JudgeOutput
from cxguard.policy.engine import AssertionResult, PolicyEngine
from cxguard.policy.framework import describe_pack
from cxguard.runtime import metrics
from cxguard.runtime.evidence_writer import EvidenceWriter
from cxguard.runtime.notify import AlertDispatcher, HandoffDispatcher
from cxguard.sinks.messages import derive_alert_id

log = logging.getLogger(__name__)

ERROR_CHARS = 300
"""Longest error summary recorded or alerted (a redacted first line, never a traceback)."""


@dataclass
class CallSummary:
    call_id: str
    tenant: str
    turns: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[int, str]] = field(default_factory=list)
    errors: int = 0


@dataclass
class SegmentTiming:
    """When a segment closed, when its speech ended and when its transcript was ready
    (monotonic clock), for the latency stages of the verdicts it leads to."""

    closed_mono: float
    speech_end_mono: float
    ready_mono: float = 0.0
    asr_ms: float = 0.0
    model_id: str = ""
    decode: str = ""
    """Which decode strategy produced the text (``asr.decoding``; fallbacks name theirs)."""


def error_summary(error: BaseException | str) -> str:
    """One redacted line: what went wrong, never a traceback nor a card number."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    line = " ".join(pii.redact(text).split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


class VerdictServices(Protocol):
    """What a call's verdicts need of the process: the sidecar's
    :class:`~cxguard.runtime.services.Services`, or
    :class:`~cxguard.runtime.guard_evidence.GuardServices` for a conversation judged
    elsewhere (a Pipecat agent), which has no ASR."""

    @property
    def engine(self) -> PolicyEngine: ...
    @property
    def engine_pack_hash(self) -> str: ...
    @property
    def model_ids(self) -> Mapping[str, str]: ...
    @property
    def evidence(self) -> EvidenceWriter: ...
    @property
    def alerts(self) -> AlertDispatcher: ...
    @property
    def handoff(self) -> HandoffDispatcher: ...

    def notify(
        self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]
    ) -> list[Exception]: ...

    def notify_early(self, info: CallInfo, verdicts: list[Verdict]) -> list[Exception]: ...


class VerdictPipeline:
    def __init__(self, services: VerdictServices, info: CallInfo) -> None:
        self._services = services
        self._info = info
        # Verdicts may be about an earlier turn (an obligation it used up): keep them anchored.
        self._turns: dict[int, TurnText] = {}
        self._undetermined_severity = services.engine.pack.spec.undetermined.severity
        # pii: masks each turn as produced and every other text of the call against it.
        self._pii = pii.RedactionWindow(services.engine.pii_options)
        self._release = Release(
            services.engine_pack_hash, services.model_ids, info.parameters.get(AGENT_VERSION, "")
        )

    def remember(self, turns: Sequence[TurnText]) -> None:
        """Turns of this call judged before (a reconnect, a restart), stored redacted: later
        verdicts about them (an obligation one of them opened) are anchored to them, and the
        redaction window knows their digits."""
        for turn in turns:
            self._turns[turn.index] = replace(turn, text=self._pii.push(turn))

    # ------------------------------------------------------------------ from the session

    async def event(self, event: ControlEvent | Gap | Dtmf, summary: CallSummary) -> None:
        """Record a protocol event. Never raises (a failure is recorded and alerted)."""
        data: dict[str, Any]
        if isinstance(event, ControlEvent):
            kind, at, data = f"control.{event.name}", event.at_ms, dict(event.data)
            if event.name == AGENT_VERSION and event.data.get(AGENT_VERSION):
                # The platform says the agent changed mid-call: later verdicts are its release.
                self._release = replace(self._release, agent_version=event.data[AGENT_VERSION])
        elif isinstance(event, Gap):
            kind, at, data = "gap", event.start_ms, {"end_ms": event.end_ms, "reason": event.reason}
        else:
            # Digits are never stored: a DTMF stream may be a card number being keyed in.
            kind, at, data = "dtmf", event.at_ms, {"digit": "[REDACTED]"}
        await self._record(kind, at, data, summary)

    async def _record(
        self, kind: str, at_ms: float, data: Mapping[str, Any], summary: CallSummary
    ) -> None:
        try:
            await self._services.evidence.event(self._info, kind, at_ms, data)
        except Exception as exc:
            await self.failure(f"recording {kind}", exc, at_ms, summary)

    async def _send(self, summary: CallSummary, at_ms: float, *sends: Awaitable[None]) -> None:
        """Publish alerts and request handoffs; a sink that raises is recorded, the others
        still go out."""
        for result in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(result, Exception):
                await self.failure("alerting", result, at_ms, summary)
            elif isinstance(result, BaseException):
                raise result

    async def deliver(
        self,
        outputs: Sequence[JudgeOutput],
        timing: Mapping[int, SegmentTiming],
        policy_ms: float,
        summary: CallSummary,
    ) -> None:
        for o in outputs:
            if isinstance(o, Early):
                await self._early(o, timing.get(o.segment), summary)
            elif isinstance(o, Judged):
                await self._judged(o, timing, policy_ms, summary)
            elif isinstance(o, Decided):
                await self._decided(o, timing, policy_ms, summary)
            elif isinstance(o, Backchannel):
                await self._backchannel(o, summary)
            else:
                assert isinstance(o, Failed)
                at = self._turns[o.turn_index].end_ms if o.turn_index in self._turns else 0.0
                await self.failure(f"policy {o.stage}", o.error, at, summary, o.turn_index)

    async def failure(
        self,
        where: str,
        error: BaseException | str,
        at_ms: float,
        summary: CallSummary,
        turn_index: int | None = None,
    ) -> None:
        """Something broke while processing the call: one log line, a ``pipeline.error``
        event and an alert; the call's judging goes on. Never raises."""
        text = error_summary(error)
        summary.errors += 1
        metrics.PIPELINE_ERRORS.inc()
        log.error("call %s: %s failed: %s", self._info.call_id, where, text)
        data: dict[str, Any] = {"stage": where, "error": text}
        if turn_index is not None:
            data["turn"] = turn_index
        try:
            await self._services.evidence.event(self._info, "pipeline.error", at_ms, data)
        except Exception as exc:
            log.error(
                "call %s: pipeline.error not recorded: %s", self._info.call_id, error_summary(exc)
            )
        anchor = self._turns.get(turn_index) if turn_index is not None else None
        verdict = Verdict(
            call_id=self._info.call_id,
            tenant=self._info.tenant,
            turn_index=turn_index if turn_index is not None else -1,
            speaker=anchor.speaker if anchor else "agent",
            start_ms=anchor.start_ms if anchor else at_ms,
            end_ms=anchor.end_ms if anchor else at_ms,
            text="",
            assertion_id="pipeline.error",
            outcome="undetermined",
            evidence=text,
            severity="major",
            policy_hash=self._services.engine_pack_hash,
            decided_at_wall=time.time(),
            agent_version=self._release.agent_version,
            release_id=self._release.id,
        )
        message = f"call {self._info.call_id}: {where} failed ({text}); judging goes on"
        try:
            alert = Alert(verdict, "error", message)
            # Several errors may hit one turn: each is its own alert, not a retry of the first.
            alert_id = derive_alert_id(alert, where, str(summary.errors))
            await self._services.alerts.publish(replace(alert, alert_id=alert_id))
        except Exception as exc:
            log.error(
                "call %s: error alert not published: %s", self._info.call_id, error_summary(exc)
            )

    async def ended(self, at_ms: float, reason: str) -> None:
        """``call_ended``, always, whatever happened before. Never raises."""
        try:
            await self._services.evidence.event(self._info, "call_ended", at_ms, {"reason": reason})
        except Exception as exc:
            log.error(
                "call %s: call_ended not recorded: %s", self._info.call_id, error_summary(exc)
            )

    # ------------------------------------------------------------------ the judge's outputs

    async def _early(
        self, early: Early, timing: SegmentTiming | None, summary: CallSummary
    ) -> None:
        """Mid-turn: alert prohibitions already broken by the words spoken so far. Nothing
        is decided here (the whole turn's verdicts come when it ends); the early alert is
        recorded as an event first, then published."""
        decided = time.monotonic()
        latency: dict[str, float] = {}
        if timing is not None:
            latency = {
                "asr_wait": 1000 * (timing.ready_mono - timing.closed_mono),
                "asr": timing.asr_ms,
                "end_to_verdict": 1000 * (decided - timing.closed_mono),
                "speech_end_to_verdict": 1000 * (decided - timing.speech_end_mono),
            }
        shown = replace(early.turn, text=self._pii.peek(early.turn))
        # A shadow assertion is judged with the rest but never raised, early or late.
        live = [r for r in early.results if r.mode != "shadow"]
        verdicts = self._verdicts(live, latency, anchor=shown)
        for v in verdicts:
            data = {
                "assertion": v.assertion_id,
                "evidence": v.evidence,
                "turn": v.turn_index,
                "segment": early.segment,
                "start_ms": v.start_ms,
                "text": v.text,
            }
            await self._record("alert.early", v.end_ms, data, summary)
        metrics.EARLY_ALERTS.inc(len(verdicts))
        await self._send(
            summary,
            early.turn.end_ms,
            *(self._services.alerts.publish(alert_for(v, early=True)) for v in verdicts),
            *(
                self._services.handoff.request(self._info, v)
                for v in verdicts[:1]
                if "handoff" in v.actions
            ),
        )
        for error in self._services.notify_early(self._info, verdicts):
            await self.failure("listener", error, early.turn.end_ms, summary, early.turn.index)

    async def _judged(
        self,
        judged: Judged,
        timing: Mapping[int, SegmentTiming],
        policy_ms: float,
        summary: CallSummary,
    ) -> None:
        # pii: the engine judged the clear text; everything stored or sent gets the masked one
        # (numbers read across segments and turns included).
        turn = replace(judged.turn, text=self._pii.push(judged.turn))
        self._turns[turn.index] = turn
        summary.turns += 1
        metrics.TURNS.labels(speaker=turn.speaker).inc()
        last = timing.get(turn.segments[-1].index) if turn.segments else None
        latency = _latency(last, policy_ms, time.monotonic())
        verdicts = self._verdicts(judged.results, latency, last)
        await self._deliver(turn, verdicts, summary, set(judged.alerted_early))

    async def _decided(
        self,
        decided: Decided,
        timing: Mapping[int, SegmentTiming],
        policy_ms: float,
        summary: CallSummary,
    ) -> None:
        now = time.monotonic()
        verdicts = []
        for r in decided.results:
            anchor = self._turns.get(r.turn_index)
            last = None
            if anchor is not None and anchor.segments:
                last = timing.get(anchor.segments[-1].index)
            verdicts += self._verdicts([r], _latency(last, policy_ms, now), last)
        await self._deliver(None, verdicts, summary)

    async def _backchannel(self, heard: Backchannel, summary: CallSummary) -> None:
        seg = heard.segment
        metrics.BACKCHANNELS.labels(speaker=seg.speaker).inc()
        data = {
            "speaker": seg.speaker,
            "text": self._pii.redact(seg.text),
            "segment": seg.index,
            "start_ms": seg.start_ms,
            "end_ms": seg.end_ms,
            "turn": heard.turn_index,
        }
        await self._record("turn.backchannel", seg.start_ms, data, summary)

    def _verdicts(
        self,
        results: Sequence[AssertionResult],
        latency: Mapping[str, float],
        timing: SegmentTiming | None = None,
        anchor: TurnText | None = None,
    ) -> list[Verdict]:
        now = time.time()
        model_ids = dict(self._services.model_ids)
        if timing is not None and timing.model_id:
            model_ids["asr"] = timing.model_id
        if timing is not None and timing.decode:
            model_ids["asr_decode"] = timing.decode
        verdicts = []
        release = self._release
        for r in results:
            turn = anchor or self._turns.get(r.turn_index)
            verdicts.append(
                Verdict(
                    call_id=self._info.call_id,
                    tenant=self._info.tenant,
                    turn_index=r.turn_index,
                    speaker=r.speaker,
                    start_ms=turn.start_ms if turn else 0.0,
                    end_ms=turn.end_ms if turn else 0.0,
                    text=self._pii.redact(turn.text) if turn else "",
                    assertion_id=r.assertion_id,
                    outcome=r.outcome,
                    evidence=self._pii.redact(r.evidence),
                    severity=r.severity,
                    actions=tuple(r.actions),
                    scores=dict(r.scores),
                    policy_hash=self._services.engine_pack_hash,
                    model_ids=model_ids,
                    latency_ms=dict(latency),
                    decided_at_wall=now,
                    trigger_turn=r.trigger_turn,
                    segments=turn.segments if turn else (),
                    agent_version=release.agent_version,
                    release_id=release.id,
                    intent=r.intent or "",
                    mode=r.mode,
                )
            )
        return verdicts

    async def _deliver(
        self,
        text: TurnText | None,
        verdicts: list[Verdict],
        summary: CallSummary,
        alerted: set[str] | None = None,
    ) -> None:
        services = self._services
        # Durable first: a verdict is in the ledger before anyone is told about it. If the
        # ledger fails, supervisors are still told (a violation must not go unheard), and
        # the alert says the evidence is missing.
        skip = alerted or set()
        if verdicts:
            release = self._release
            await services.evidence.note_release(
                self._info.tenant,
                release.id,
                lambda: {
                    "release_id": release.id,
                    **release.to_dict(),
                    "policy": describe_pack(services.engine.pack),
                },
            )
        try:
            receipt = await services.evidence.write(self._info, text, verdicts)
        except Exception as exc:
            why = error_summary(exc)
            verdicts = [
                replace(v, evidence=f"{v.evidence} [evidence not stored: {why}]") for v in verdicts
            ]
            skip = set()  # a failure alerted mid-turn is alerted again: its record is missing
            at = text.end_ms if text is not None else verdicts[0].end_ms if verdicts else 0.0
            await self.failure("evidence write", exc, at, summary, text.index if text else None)
        else:  # durable in the spool; the ledger may lag, and then the alert says so
            if receipt.note:
                verdicts = [replace(v, evidence=f"{v.evidence} [{receipt.note}]") for v in verdicts]
        published = time.monotonic()
        alerts = alerts_for(verdicts, skip, self._undetermined_severity)
        raised = [v for v in verdicts if v.mode != "shadow"]  # shadow: recorded, never raised
        handoffs = [v for v in raised if v.outcome == "fail" and "handoff" in v.actions]
        await self._send(
            summary,
            text.end_ms if text is not None else 0.0,
            *(services.alerts.publish(a) for a in alerts),
            *(services.handoff.request(self._info, v) for v in handoffs[:1]),
        )
        publish_ms = 1000 * (time.monotonic() - published)
        for v in verdicts:
            metrics.VERDICTS.labels(outcome=v.outcome).inc()
            summary.verdicts[v.outcome] = summary.verdicts.get(v.outcome, 0) + 1
            if v.outcome in ("fail", "undetermined"):
                summary.failures.append((v.turn_index, f"{v.assertion_id}:{v.outcome}"))
        for stage, value in verdicts[0].latency_ms.items() if verdicts else ():
            metrics.STAGE_LATENCY.labels(stage=stage).observe(value / 1000)
        if verdicts:
            metrics.STAGE_LATENCY.labels(stage="publish").observe(publish_ms / 1000)
        final = [replace(v, latency_ms={**v.latency_ms, "publish": publish_ms}) for v in verdicts]
        for error in services.notify(self._info, text, final):
            at = text.end_ms if text is not None else 0.0
            await self.failure("listener", error, at, summary, text.index if text else None)


def _latency(last: SegmentTiming | None, policy_ms: float, decided: float) -> dict[str, float]:
    """Per stage, for a turn whose last segment is ``last``: ``floor_wait`` is the wait from
    its transcript to the turn's end (the floor changing, or enough silence)."""
    if last is None:
        return {"policy": policy_ms}
    return {
        "asr_wait": 1000 * (last.ready_mono - last.closed_mono),
        "asr": last.asr_ms,
        "floor_wait": max(0.0, 1000 * (decided - last.ready_mono) - policy_ms),
        "policy": policy_ms,
        "end_to_verdict": 1000 * (decided - last.closed_mono),
        "speech_end_to_verdict": 1000 * (decided - last.speech_end_mono),
    }


def alerts_for(
    verdicts: Sequence[Verdict], skip: Collection[str] = (), severity: str = "major"
) -> list[Alert]:
    """One alert per failure not alerted mid-turn; one per turn for all its undetermined.
    Shadow assertions are recorded, never raised."""
    verdicts = [v for v in verdicts if v.mode != "shadow"]
    alerts = [alert_for(v) for v in verdicts if v.outcome == "fail" and v.assertion_id not in skip]
    unsure: dict[int, list[Verdict]] = {}
    for v in verdicts:
        if v.outcome == "undetermined":
            unsure.setdefault(v.turn_index, []).append(v)
    for turn, vs in unsure.items():
        ids = tuple(v.assertion_id for v in vs)
        reasons = list(dict.fromkeys(v.evidence for v in vs))
        message = (
            f"turn {turn} could not be evaluated for {len(ids)} assertion(s) "
            f"({', '.join(ids)}): {'; '.join(reasons)}"
        )
        alerts.append(
            Alert(replace(vs[0], severity=severity), "undetermined", message, assertions=ids)
        )
    return alerts


def alert_for(verdict: Verdict, early: bool = False) -> Alert:
    kind: Literal["violation", "handoff"] = (
        "handoff" if "handoff" in verdict.actions else "violation"
    )
    when = (
        "mid-turn, while the agent is still speaking" if early else f"on turn {verdict.turn_index}"
    )
    message = f"{verdict.assertion_id} failed {when}: {verdict.evidence}"
    alert = Alert(verdict, kind, message)
    # A mid-turn alert and the turn's verdict of record are two alerts (the second goes out
    # when the first's evidence could not be stored).
    return replace(alert, alert_id=derive_alert_id(alert, "early")) if early else alert
