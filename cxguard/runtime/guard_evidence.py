"""The sidecar's evidence and alert path for conversations judged elsewhere (a Pipecat agent).

A Pipecat guard judges its bot's responses in the bot's own process. To make those verdicts
evidence like a tapped call's, :class:`GuardEvidence` opens the sidecar's parts from the same
:class:`~cxguard.runtime.settings.Settings` (``evidence_url``, ``ledger``, ``redis_url``,
``handoff``, ``sinks``, tenants' Twilio credentials) — the ledger behind its spool, the alert
outbox and its sinks — without ASR, and :meth:`GuardEvidence.recorder` gives each
conversation a :class:`CallRecorder` (an
:class:`~cxguard.integrations.recording.TurnRecorder`) that runs the sidecar's own
:class:`~cxguard.runtime.verdicts.VerdictPipeline`: the same verdict builder, the same
redaction (numbers read across turns included), durable before alerted, one handoff per
call, ``call_started``/``call_ended`` and failures recorded. So a Pipecat agent's verdicts
land in the same ledger, console and reports as a tapped call's::

    evidence = await GuardEvidence.open(load_settings("server.yaml"), engine)
    guard = PolicyGuard(engine, options, recorder=evidence.recorder(options.call_id,
                        options.tenant, options.parameters))
    ...
    await evidence.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cxguard.model import CallInfo, ControlEvent, TurnText, Verdict
from cxguard.policy.calls import Decided, Judged
from cxguard.policy.engine import AssertionResult, PolicyEngine
from cxguard.runtime.evidence_writer import EvidenceWriter
from cxguard.runtime.notify import AlertDispatcher, HandoffDispatcher, open_outbox
from cxguard.runtime.services import Listener, load_engine, notify_all
from cxguard.runtime.settings import Settings
from cxguard.runtime.verdicts import CallSummary, VerdictPipeline
from cxguard.sinks.outbox import Outbox


@dataclass
class GuardServices:
    """The parts of :class:`~cxguard.runtime.services.Services` a verdict needs."""

    settings: Settings
    engine: PolicyEngine
    engine_pack_hash: str
    model_ids: Mapping[str, str]
    evidence: EvidenceWriter
    alerts: AlertDispatcher
    handoff: HandoffDispatcher
    outbox: Outbox
    listeners: list[Listener] = field(default_factory=list)
    early_listeners: list[Listener] = field(default_factory=list)

    def notify(
        self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]
    ) -> list[Exception]:
        return notify_all(self.listeners, info, text, verdicts)

    def notify_early(self, info: CallInfo, verdicts: list[Verdict]) -> list[Exception]:
        return notify_all(self.early_listeners, info, None, verdicts)


class GuardEvidence:
    def __init__(self, services: GuardServices) -> None:
        self.services = services

    @classmethod
    async def open(cls, settings: Settings, engine: PolicyEngine | None = None) -> GuardEvidence:
        """``engine``: the guard's (its pack hash and redaction options go on the
        verdicts); None loads the one ``settings`` name."""
        if engine is None:
            engine = (await asyncio.to_thread(load_engine, settings))[0]
        evidence = await asyncio.to_thread(EvidenceWriter.open, settings)
        outbox, alerts = open_outbox(settings, evidence)
        outbox.start()
        handoff = HandoffDispatcher(alerts, evidence)
        services = GuardServices(
            settings, engine, engine.pack.hash, dict(engine.model_ids), evidence, alerts,
            handoff, outbox,
        )  # fmt: skip
        return cls(services)

    def recorder(
        self, call_id: str, tenant: str, parameters: Mapping[str, str] | None = None
    ) -> CallRecorder:
        info = CallInfo(call_id, tenant, "pipecat", parameters=dict(parameters or {}))
        return CallRecorder(self.services, info)

    async def close(self, drain_s: float = 10.0) -> None:
        """Deliver what the outbox holds (bounded), then store what the spool holds."""
        await self.services.outbox.close()
        await self.services.evidence.close(drain_s)


class CallRecorder:
    """One conversation's evidence: a :class:`~cxguard.integrations.recording.TurnRecorder`.
    Never raises (a failure to store or alert is itself recorded and alerted)."""

    def __init__(self, services: GuardServices, info: CallInfo) -> None:
        self.info = info
        self._services = services
        self._pipeline = VerdictPipeline(services, info)
        self.summary = CallSummary(info.call_id, info.tenant)

    async def started(self) -> None:
        await self._services.evidence.event(
            self.info, "call_started", 0.0, dict(self.info.parameters)
        )

    async def judged(
        self, turn: TurnText, results: Sequence[AssertionResult], policy_ms: float
    ) -> None:
        judged = Judged(turn, tuple(results), "end", frozenset())
        await self._pipeline.deliver([judged], {}, policy_ms, self.summary)

    async def decided(
        self,
        results: Sequence[AssertionResult],
        phase: Literal["event", "finish"],
        event: ControlEvent | None = None,
    ) -> None:
        await self._pipeline.deliver([Decided(tuple(results), phase, event)], {}, 0.0, self.summary)

    async def signal(self, event: ControlEvent) -> None:
        await self._pipeline.event(event, self.summary)

    async def failed(
        self, where: str, error: str, at_ms: float, turn_index: int | None = None
    ) -> None:
        await self._pipeline.failure(where, error, at_ms, self.summary, turn_index)

    async def ended(self, at_ms: float, reason: str) -> None:
        await self._pipeline.ended(at_ms, reason)
