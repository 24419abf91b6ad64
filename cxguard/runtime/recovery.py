"""After a crash: mark interrupted calls, judge the turns that were closed but never judged,
and record a gap for any that cannot be.

At start the process finds its own calls that never ended (``calls.owner`` is this state
directory's id) and every call with spooled segments. For each it

1. remembers the call's numbering, so a reconnect continues it (no duplicate indices);
2. records ``call_interrupted`` (``verify`` names these calls);
3. rebuilds the conversation state by replaying the stored turns and control events through
   the deterministic policy engine (``CallJudge.restore``), then transcribes the spooled
   segments and judges them as speaker turns through the normal path (``CallJudge`` and the
   verdict pipeline: spool, outbox alerts, handoffs), numbered after the stored ones;
4. records a ``gap`` listing the segments that were closed but cannot be judged (the state
   could not be rebuilt); a segment ASR cannot read after the restart makes its turn
   ``undetermined`` as it would live;
5. finishes the call (``call_ended``) when its stream had ended before the crash.

Planning (1) runs before the sidecar accepts connections; judging runs in the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cxguard.audio.codec import ulaw_decode
from cxguard.errors import AsrError, CxguardError
from cxguard.evidence.progress import CallProgress
from cxguard.evidence.spool import Judged, SpooledSegment
from cxguard.model import CallInfo, Segment, Source, Speaker
from cxguard.policy.calls import CallJudge, JudgeOutput
from cxguard.policy.turns import HeardSegment
from cxguard.runtime.services import Services
from cxguard.runtime.verdicts import CallSummary, SegmentTiming, VerdictPipeline

log = logging.getLogger(__name__)

_SOURCES: tuple[Source, ...] = ("twilio", "audiohook", "pipecat", "offline", "demo")


@dataclass
class CallToRecover:
    progress: CallProgress
    segments: list[SpooledSegment]


@dataclass
class RecoverySummary:
    calls: int = 0
    turns_judged: int = 0
    segments_gapped: int = 0
    interrupted: list[tuple[str, str]] = field(default_factory=list)


def _wait_for_spool(services: Services, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while services.evidence.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    return services.evidence.depth() == 0


def plan(services: Services) -> list[CallToRecover]:
    """Seed every candidate call's numbering; return those left unfinished (blocking: run in
    a thread). Raises EvidenceError when the ledger cannot be read."""
    ev = services.evidence
    _wait_for_spool(services, 10.0)
    unended = ev.ledger.calls_to_recover(ev.owner)
    with_segments = ev.audio.segment_calls()
    window = services.settings.ledger.reconnect_window_s
    recent = ev.ledger.recent_calls(ev.owner, time.time() - window) if window > 0 else []
    todo: list[CallToRecover] = []
    for tenant, call_id in dict.fromkeys([*unended, *with_segments, *recent]):
        progress = ev.ledger.call_progress(tenant, call_id)
        ev.seed(progress)
        if progress.state == "ended":
            if (tenant, call_id) in with_segments:  # judged; its marks were just not cleared
                ev.audio.judged(Judged(tenant, call_id, progress.next_turn - 1))
            continue
        if (tenant, call_id) in unended or (tenant, call_id) in with_segments:
            todo.append(CallToRecover(progress, ev.audio.pending(tenant, call_id)))
    return todo


def _segment(seg: SpooledSegment) -> Segment:
    pcm = ulaw_decode(seg.audio) if seg.encoding == "PCMU" else np.frombuffer(seg.audio, "<i2")
    speaker: Speaker = "agent" if seg.speaker == "agent" else "customer"
    return Segment(
        speaker, pcm.astype(np.int16).tobytes(), seg.sample_rate, seg.start_ms, seg.end_ms
    )


async def _heard(services: Services, seg: SpooledSegment) -> tuple[HeardSegment, SegmentTiming]:
    """The spooled segment transcribed again (its text was never stored)."""
    now = time.monotonic()
    timing = SegmentTiming(now, now)
    text, reason = "", None
    readings: tuple[str, ...] = ()
    segment = _segment(seg)
    try:
        transcript = await services.asr.submit(segment)
        text, timing.asr_ms = transcript.text, transcript.asr_ms
        timing.model_id, timing.decode = transcript.model_id, transcript.decode
    except AsrError as exc:
        reason, readings = f"after a restart: {exc}", exc.readings
    timing.ready_mono = time.monotonic()
    return HeardSegment.of(seg.index, segment, text, reason, readings), timing


async def rejudge(services: Services, call: CallToRecover, summary: RecoverySummary) -> None:
    """Judge the call's spooled segments as speaker turns, after its stored history."""
    p, ev = call.progress, services.evidence
    source: Source = next((s for s in _SOURCES if s == p.source), "offline")
    params = {str(k): str(v) for k, v in p.parameters.items()}
    info = CallInfo(p.call_id, p.tenant, source, parameters=params)
    stored_segments = {s.index for t in p.turns for s in t.segments}
    segments = [s for s in call.segments if s.index not in stored_segments]
    first_free = max([p.next_turn, *(i + 1 for i in p.gap_turns)])
    await ev.event(
        info,
        "call_interrupted",
        None,
        {
            "reason": "the sidecar restarted before this call was judged to the end",
            "unjudged_segments": len(segments),
            "turns_stored": len(p.turns),
        },
    )
    summary.interrupted.append((p.tenant, p.call_id))
    options = services.settings.turns.options()
    judge = CallJudge(services.engine, params, options, first_turn_index=first_free)
    pipeline = VerdictPipeline(services, info)
    calls = CallSummary(p.call_id, p.tenant)
    try:
        await services.run_policy(judge.restore, p.history)
        pipeline.remember(p.turns)
    except CxguardError as exc:
        log.error("call %s: conversation state not rebuilt: %s", p.call_id, exc)
        why = f"conversation state could not be rebuilt after a restart: {exc}"
        if segments:
            lost = {"segments": [s.index for s in segments], "reason": why}
            await ev.event(info, "gap", None, lost)
            summary.segments_gapped += len(segments)
        ev.segments_done(Judged(p.tenant, p.call_id, segments=tuple(s.index for s in segments)))
        return
    timing: dict[int, SegmentTiming] = {}
    turns_before = calls.turns

    async def step(outputs: list[JudgeOutput], started: float) -> None:
        if outputs:
            policy_ms = 1000 * (time.monotonic() - started)
            await pipeline.deliver(outputs, timing, policy_ms, calls)

    last_ms = 0.0
    for seg in sorted(segments, key=lambda s: s.index):
        heard, timing[seg.index] = await _heard(services, seg)
        last_ms = max(last_ms, seg.end_ms)
        started = time.monotonic()
        await step(await services.run_policy(judge.segment, heard), started)
    started = time.monotonic()
    if p.stream_ended is not None and p.state != "ended":
        at_ms, reason = p.stream_ended
        await step(await services.run_policy(judge.finish, at_ms), started)
        await pipeline.ended(at_ms, reason or "stop")
    elif segments:
        # The stream was still live: close the open turn as a long silence would (a
        # reconnect goes on from the next index), without ending the conversation.
        quiet: dict[Speaker, float | None] = {"agent": None, "customer": None}
        at = last_ms + options.end_silence_ms + options.handoff_grace_ms + 1.0
        await step(await services.run_policy(lambda _: judge.tick(at, quiet), None), started)
    ev.segments_done(Judged(p.tenant, p.call_id, segments=tuple(s.index for s in segments)))
    summary.calls += 1
    summary.turns_judged += calls.turns - turns_before
    log.info(
        "call %s recovered: %d segments judged as %d turns after a restart",
        p.call_id,
        len(segments),
        calls.turns - turns_before,
    )


async def recover(services: Services, calls: Sequence[CallToRecover]) -> RecoverySummary:
    summary = RecoverySummary()
    for call in calls:
        try:
            await rejudge(services, call, summary)
        except CxguardError:
            log.exception("call %s: recovery failed", call.progress.call_id)
    return summary
