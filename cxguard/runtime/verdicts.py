"""From a transcribed turn to durable verdicts, alerts and handoffs, for one call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from cxguard.errors import EvidenceError
from cxguard.evidence.redaction import redact
from cxguard.model import Alert, CallInfo, ControlEvent, Dtmf, Gap, Transcript, TurnText, Verdict
from cxguard.policy.engine import AssertionResult
from cxguard.runtime import metrics
from cxguard.runtime.services import Services

log = logging.getLogger(__name__)


@dataclass
class CallSummary:
    call_id: str
    tenant: str
    turns: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[int, str]] = field(default_factory=list)


class VerdictPipeline:
    def __init__(self, services: Services, info: CallInfo) -> None:
        self._services = services
        self._info = info
        self._conversation = services.engine.start(dict(info.parameters))
        # Results may be about an earlier turn (an obligation it raised): keep them anchored.
        self._turns: dict[int, TurnText] = {}
        self._last: TurnText | None = None

    def restore(self, history: Sequence[TurnText | ControlEvent]) -> None:
        """After a restart: replay what the ledger holds of this call (its verdicts are stored
        already) so the conversation state is as it was before the turns still to judge."""
        for item in history:
            if isinstance(item, TurnText):
                self._conversation.evaluate(item)
                self._turns[item.index] = item
                self._last = item
            else:
                self._conversation.observe(item)

    async def event(self, event: ControlEvent | Gap | Dtmf, summary: CallSummary) -> None:
        evidence = self._services.evidence
        if isinstance(event, ControlEvent):
            await evidence.event(self._info, f"control.{event.name}", event.at_ms, dict(event.data))
            results = await self._services.run_policy(self._conversation.observe, event)
            if results:
                verdicts = self._verdicts(results, {}, dict(self._services.model_ids))
                await self._deliver(None, verdicts, summary)
        elif isinstance(event, Gap):
            await evidence.event(
                self._info, "gap", event.start_ms, {"end_ms": event.end_ms, "reason": event.reason}
            )
        else:
            # Digits are never stored: a DTMF stream may be a card number being keyed in.
            await evidence.event(self._info, "dtmf", event.at_ms, {"digit": "[REDACTED]"})

    async def turn(
        self,
        text: TurnText,
        transcript: Transcript | None,
        closed_mono: float,
        speech_end_mono: float,
        summary: CallSummary,
        alerted: set[str] | None = None,
    ) -> None:
        """``alerted``: assertions already alerted mid-turn (not alerted twice)."""
        asr_done = time.monotonic()
        self._turns[text.index] = text
        self._last = text
        results = await self._services.run_policy(self._conversation.evaluate, text)
        decided = time.monotonic()
        latency = {
            "asr_wait": 1000 * (asr_done - closed_mono),
            "asr": transcript.asr_ms if transcript else 0.0,
            "policy": 1000 * (decided - asr_done),
            "end_to_verdict": 1000 * (decided - closed_mono),
            "speech_end_to_verdict": 1000 * (decided - speech_end_mono),
        }
        model_ids = dict(self._services.model_ids)
        if transcript:
            model_ids["asr"] = transcript.model_id
        verdicts = self._verdicts(results, latency, model_ids)
        await self._deliver(text, verdicts, summary, alerted or set())

    async def preview(
        self,
        so_far: TurnText,
        transcript: Transcript,
        closed_mono: float,
        speech_end_mono: float,
        alerted: set[str],
    ) -> set[str]:
        """Mid-turn: alert prohibitions already broken by the words spoken so far. Nothing is
        decided here (the whole turn's verdicts come when it ends); the early alert is
        recorded as an event first, then published. Returns the assertions alerted now."""
        results = await self._services.run_policy(self._conversation.preview, so_far)
        fresh = [r for r in results if r.outcome == "fail" and r.assertion_id not in alerted]
        if not fresh:
            return set()
        decided = time.monotonic()
        latency = {
            "asr_wait": 1000 * (decided - closed_mono),
            "asr": transcript.asr_ms,
            "end_to_verdict": 1000 * (decided - closed_mono),
            "speech_end_to_verdict": 1000 * (decided - speech_end_mono),
        }
        verdicts = self._verdicts(fresh, latency, dict(self._services.model_ids), anchor=so_far)
        for v in verdicts:
            await self._services.evidence.event(
                self._info,
                "alert.early",
                v.end_ms,
                {
                    "assertion": v.assertion_id,
                    "evidence": v.evidence,
                    "turn": v.turn_index,
                    "start_ms": v.start_ms,
                    "text": v.text,
                },
            )
        metrics.EARLY_ALERTS.inc(len(verdicts))
        await asyncio.gather(
            *(self._services.alerts.publish(_alert(v, early=True)) for v in verdicts),
            *(
                self._services.handoff.request(self._info, v)
                for v in verdicts[:1]
                if "handoff" in v.actions
            ),
        )
        self._services.notify_early(self._info, verdicts)
        return {v.assertion_id for v in verdicts}

    async def finish(self, at_ms: float, reason: str, summary: CallSummary) -> None:
        results = await self._services.run_policy(self._conversation.finish, at_ms)
        if results:
            verdicts = self._verdicts(results, {}, dict(self._services.model_ids))
            await self._deliver(None, verdicts, summary)
        await self._services.evidence.event(self._info, "call_ended", at_ms, {"reason": reason})

    def _verdicts(
        self,
        results: Sequence[AssertionResult],
        latency: Mapping[str, float],
        model_ids: Mapping[str, str],
        anchor: TurnText | None = None,
    ) -> list[Verdict]:
        now = time.time()
        verdicts = []
        fixed = anchor
        for r in results:
            anchor = fixed or self._turns.get(r.turn_index) or self._last
            start, end, text = (
                (anchor.start_ms, anchor.end_ms, anchor.text) if anchor else (0.0, 0.0, "")
            )
            verdicts.append(
                Verdict(
                    call_id=self._info.call_id,
                    tenant=self._info.tenant,
                    turn_index=r.turn_index,
                    speaker=r.speaker,
                    start_ms=start,
                    end_ms=end,
                    text=redact(text),
                    assertion_id=r.assertion_id,
                    outcome=r.outcome,
                    evidence=r.evidence,
                    severity=r.severity,
                    actions=tuple(r.actions),
                    scores=dict(r.scores),
                    policy_hash=self._services.engine_pack_hash,
                    model_ids=model_ids,
                    latency_ms=dict(latency),
                    decided_at_wall=now,
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
        # ledger is down, supervisors are still told (a violation must not go unheard), and
        # the alert says the evidence is missing.
        try:
            receipt = await services.evidence.write(self._info, text, verdicts)
        except EvidenceError as exc:
            metrics.PIPELINE_ERRORS.inc()
            log.error("call %s: verdicts NOT stored: %s", self._info.call_id, exc)
            verdicts = [
                replace(v, evidence=f"{v.evidence} [evidence not stored: {exc}]") for v in verdicts
            ]
        else:  # durable in the spool; the ledger may lag (then the alert says so)
            if receipt.note:
                verdicts = [replace(v, evidence=f"{v.evidence} [{receipt.note}]") for v in verdicts]
        published = time.monotonic()
        skip = alerted or set()
        alerts = [
            _alert(v)
            for v in verdicts
            if v.outcome in ("fail", "undetermined") and v.assertion_id not in skip
        ]
        handoffs = [v for v in verdicts if v.outcome == "fail" and "handoff" in v.actions]
        await asyncio.gather(
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
        services.notify(self._info, text, final)


def _alert(verdict: Verdict, early: bool = False) -> Alert:
    if verdict.outcome == "undetermined":
        message = (
            f"{verdict.assertion_id}: could not be evaluated on turn "
            f"{verdict.turn_index} ({verdict.evidence})"
        )
        return Alert(verdict, "undetermined", message)
    kind: Literal["violation", "handoff"] = (
        "handoff" if "handoff" in verdict.actions else "violation"
    )
    when = (
        "mid-turn, while the agent is still speaking" if early else f"on turn {verdict.turn_index}"
    )
    message = f"{verdict.assertion_id} failed {when}: {verdict.evidence}"
    return Alert(verdict, kind, message)
