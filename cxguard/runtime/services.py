"""The process-wide parts every call shares: one ASR model, one policy engine, one ledger
behind its spool, the alert outbox and its sinks. Built once by :meth:`Services.start`
(which also recovers what a crash left), closed by :meth:`close`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from threadpoolctl import threadpool_limits

from cxguard.asr.options import AsrOptions
from cxguard.asr.transcriber import Transcriber
from cxguard.errors import ConfigError, EvidenceError
from cxguard.model import CallInfo, Speaker, TurnText, Verdict
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import PolicyPack, default_pack_path, load_pack
from cxguard.runtime.asr_worker import AsrQueue, AsrWorker, BatchFn
from cxguard.runtime.console.hub import ConsoleHub
from cxguard.runtime.evidence_writer import EvidenceWriter
from cxguard.runtime.notify import AlertDispatcher, HandoffDispatcher, open_outbox
from cxguard.runtime.settings import Settings
from cxguard.sinks.outbox import Outbox

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")

Listener = Callable[[CallInfo, TurnText | None, list[Verdict]], None]
SpeakingListener = Callable[[CallInfo, Mapping[Speaker, float | None]], None]
"""Each speaker's speech start (stream ms) while speaking, None while silent."""


@dataclass
class Recorder:
    """A listener that keeps every turn text and verdict it is told of, in order (code that
    embeds a sidecar and reads its verdicts back: tests, benchmarks)."""

    turns: list[TurnText] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if text is not None:
            self.turns.append(text)
        self.verdicts.extend(verdicts)


def notify_all(
    listeners: list[Listener], info: CallInfo, text: TurnText | None, verdicts: list[Verdict]
) -> list[Exception]:
    """Tell each listener; return what they raised."""
    errors = []
    for listener in listeners:
        try:
            listener(info, text, verdicts)
        except Exception as exc:
            errors.append(exc)
    return errors


def load_engine(settings: Settings) -> tuple[PolicyEngine, PolicyPack]:
    """The policy pack and, when it has semantic assertions, the ONNX classifiers.

    With classifiers switched off, semantic assertions are ``undetermined``, never passed.
    """
    pack = load_pack(settings.policy or default_pack_path())
    scorer = None
    if settings.classifiers and pack.needs_scorer:
        from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer

        models = Path(settings.models_dir) if settings.models_dir else None
        scorer = OnnxTextScorer(ClassifierOptions(models_dir=models))
    missing: Literal["error", "undetermined"] = "error" if settings.classifiers else "undetermined"
    return PolicyEngine(pack, scorer, missing_scorer=missing), pack


def load_transcriber(settings: Settings) -> Transcriber:
    # numpy's OpenBLAS runs the mel filterbank product of every turn on all cores and spins
    # them between turns: on a 16-core GPU host the server burned 10-14 cores that way while
    # its event loop fell behind (benchmarks/README.md). One thread costs no wall time here.
    threadpool_limits(limits=1, user_api="blas")
    a = settings.asr
    return Transcriber(
        AsrOptions(
            model=a.model,
            device=a.device,
            compute_type=a.compute_type,
            beam_size=a.beam_size,
            window=a.window,  # type: ignore[arg-type]
            cpu_threads=a.cpu_threads,
            num_workers=a.workers,
            fallbacks=tuple(a.fallbacks),
            fallback_model=a.fallback_model,
            agree_logprob=a.agree_logprob,
        )
    )


@dataclass
class Services:
    settings: Settings
    asr: AsrQueue
    engine: PolicyEngine
    engine_pack_hash: str
    model_ids: Mapping[str, str]
    evidence: EvidenceWriter
    alerts: AlertDispatcher
    handoff: HandoffDispatcher
    outbox: Outbox
    listeners: list[Listener] = field(default_factory=list)
    early_listeners: list[Listener] = field(default_factory=list)
    speaking_listeners: list[SpeakingListener] = field(default_factory=list)
    _policy_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="policy")
    )
    console: ConsoleHub = field(default_factory=ConsoleHub)
    """The supervisors' live view (``/console``): an outbox sink and a listener here."""
    recovery: asyncio.Task[Any] | None = None
    """Judging what a crash left (see :mod:`cxguard.runtime.recovery`), in the background."""

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        transcribe_batch: BatchFn | None = None,
        model_id: str | None = None,
    ) -> Services:
        """Load models (in a thread: loading takes a second) and connect the sinks."""
        engine, pack = await asyncio.to_thread(load_engine, settings)
        a = settings.asr
        worker: AsrQueue
        if a.pool == "redis" and transcribe_batch is None:
            # Pooled ASR (docs/scale.md): no model here; each transcript names its own.
            from cxguard.runtime.asr_pool import RedisAsrPool

            if not settings.redis_url:
                raise ConfigError("asr.pool: redis needs redis_url")
            worker = RedisAsrPool(settings.redis_url, a)
            model_id = f"pool:{a.model}"
        else:
            if transcribe_batch is None:
                transcriber = await asyncio.to_thread(load_transcriber, settings)
                await asyncio.to_thread(transcriber.warmup)
                transcribe_batch, model_id = transcriber.transcribe_batch, transcriber.model_id
            worker = AsrWorker(
                transcribe_batch,
                workers=a.workers,
                queue_size=a.queue_size,
                max_wait_ms=a.max_wait_ms,
                batch_size=a.batch_size,
            )
        evidence = await asyncio.to_thread(EvidenceWriter.open, settings)
        console = ConsoleHub()
        outbox, alerts = open_outbox(settings, evidence, extra=[console.route()])
        outbox.start()
        handoff = HandoffDispatcher(alerts, evidence)
        model_ids = {**engine.model_ids, "asr": model_id or "unknown"}
        services = cls(
            settings, worker, engine, pack.hash, model_ids, evidence, alerts, handoff, outbox
        )
        services.console = console
        console.attach(services)
        await services._start_recovery()
        return services

    async def _start_recovery(self) -> None:
        """Seed the numbering of calls a crash left (before any call connects), then judge
        their unjudged turns in the background. A ledger that cannot be read now is tried
        again in the background."""
        from cxguard.runtime import recovery

        async def later() -> recovery.RecoverySummary:
            while True:
                try:
                    calls = await asyncio.to_thread(recovery.plan, self)
                    break
                except EvidenceError as exc:
                    log.error("recovery waits for the ledger: %s", exc)
                    await asyncio.sleep(5.0)
            return await recovery.recover(self, calls)

        try:
            calls = await asyncio.to_thread(recovery.plan, self)
        except EvidenceError as exc:
            log.error("recovery postponed, the ledger cannot be read: %s", exc)
            self.recovery = asyncio.get_running_loop().create_task(later())
            return
        if calls:
            log.warning("%d calls were interrupted; judging what they left", len(calls))
            self.recovery = asyncio.get_running_loop().create_task(recovery.recover(self, calls))

    async def run_policy(self, fn: Callable[[A], T], arg: A) -> T:
        """Policy evaluation may run ONNX models: keep it off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._policy_pool, fn, arg)

    def notify(
        self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]
    ) -> list[Exception]:
        """Tell every listener; returns what they raised (a display bug must not stop
        evaluation: the caller records it)."""
        return notify_all(self.listeners, info, text, verdicts)

    def notify_early(self, info: CallInfo, verdicts: list[Verdict]) -> list[Exception]:
        """Mid-turn alerts, to listeners that want them (``early_listeners``)."""
        return notify_all(self.early_listeners, info, None, verdicts)

    def notify_speaking(self, info: CallInfo, speaking: Mapping[Speaker, float | None]) -> None:
        """Who is speaking now (each stream tick); a listener's error is logged only."""
        for listener in self.speaking_listeners:
            try:
                listener(info, speaking)
            except Exception:
                log.exception("speaking listener failed")

    def health(self) -> dict[str, Any]:
        return {
            "asr_queue_depth": self.asr.depth,
            "redis": self.alerts.redis_configured,
            "ledger": "ok" if self.evidence.ledger_error is None else "unavailable",
            "recovering": self.recovery is not None and not self.recovery.done(),
        }

    async def close(self) -> None:
        if self.recovery is not None and not self.recovery.done():
            self.recovery.cancel()
            await asyncio.gather(self.recovery, return_exceptions=True)
        await self.asr.close()
        await self.console.close()
        await self.outbox.close()
        await self.evidence.close()
        self._policy_pool.shutdown(wait=True)
