"""After a crash: mark interrupted calls, judge the turns that were closed but never judged,
and record a gap for any that cannot be.

At start the process finds its own calls that never ended (``calls.owner`` is this state
directory's id) and every call with spooled segments. For each it

1. remembers the call's numbering, so a reconnect continues it (no duplicate indices);
2. records ``call_interrupted`` (``verify`` names these calls);
3. rebuilds the conversation state by replaying the stored turns and control events through
   the deterministic policy engine, then transcribes and judges the spooled segments' turns
   in order, through the normal verdict path (spool, outbox alerts, handoffs);
4. records a ``gap`` listing the turn indices that were closed but cannot be judged (no audio
   was spooled, the state could not be rebuilt);
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
from cxguard.model import CallInfo, Segment, SegmentSpan, Source, Speaker, Transcript, TurnText
from cxguard.runtime.services import Services
from cxguard.runtime.verdicts import CallSummary, VerdictPipeline

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
    turns_gapped: int = 0
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


def _turns(
    segments: Sequence[SpooledSegment], first_free: int
) -> list[tuple[int, list[SpooledSegment]]]:
    """Spooled segments grouped into speaker turns: by the index the session gave them, else
    consecutive segments of one speaker, numbered from ``first_free``."""
    grouped: dict[int, list[SpooledSegment]] = {}
    index, speaker = first_free - 1, None
    for seg in sorted(segments, key=lambda s: s.index):
        if seg.turn_index is not None:
            grouped.setdefault(seg.turn_index, []).append(seg)
            index = max(index, seg.turn_index)
            speaker = seg.speaker
            continue
        if seg.speaker != speaker:
            index, speaker = max(index + 1, first_free), seg.speaker
        grouped.setdefault(index, []).append(seg)
    return sorted(grouped.items())


def _segment(seg: SpooledSegment) -> Segment:
    pcm = ulaw_decode(seg.audio) if seg.encoding == "PCMU" else np.frombuffer(seg.audio, "<i2")
    speaker: Speaker = "agent" if seg.speaker == "agent" else "customer"
    return Segment(
        speaker, pcm.astype(np.int16).tobytes(), seg.sample_rate, seg.start_ms, seg.end_ms
    )


async def _transcribe(
    services: Services, segments: Sequence[SpooledSegment]
) -> tuple[str, Transcript | None, str | None]:
    texts: list[str] = []
    last: Transcript | None = None
    for seg in segments:
        try:
            last = await services.asr.submit(_segment(seg))
        except AsrError as exc:
            return " ".join(texts), last, f"after a restart: {exc}"
        texts.append(last.text)
    return " ".join(texts).strip(), last, None


async def rejudge(services: Services, call: CallToRecover, summary: RecoverySummary) -> None:
    p, ev = call.progress, services.evidence
    source: Source = next((s for s in _SOURCES if s == p.source), "offline")
    params = {str(k): str(v) for k, v in p.parameters.items()}
    info = CallInfo(p.call_id, p.tenant, source, parameters=params)
    stored = {t.index for t in p.turns} | set(p.gap_turns)
    closed = max(ev.next_turn_index(info), p.next_turn)
    await ev.event(
        info,
        "call_interrupted",
        None,
        {
            "reason": "the sidecar restarted before this call was judged to the end",
            "unjudged_segments": len(call.segments),
            "turns_closed": closed,
        },
    )
    summary.interrupted.append((p.tenant, p.call_id))
    first_free = max(stored, default=-1) + 1
    turns = [(i, segs) for i, segs in _turns(call.segments, first_free) if i not in stored]
    pipeline = VerdictPipeline(services, info)
    calls = CallSummary(p.call_id, p.tenant)
    try:
        await services.run_policy(pipeline.restore, p.history)
    except CxguardError as exc:
        log.error("call %s: conversation state not rebuilt: %s", p.call_id, exc)
        turns, why = [], f"conversation state could not be rebuilt after a restart: {exc}"
    else:
        why = "closed before the restart, but its audio was not spooled"
    judged: set[int] = set()
    for index, segs in turns:
        text, transcript, reason = await _transcribe(services, segs)
        turn = TurnText(
            index,
            "agent" if segs[0].speaker == "agent" else "customer",
            text,
            segs[0].start_ms,
            segs[-1].end_ms,
            undetermined_reason=reason,
            segments=tuple(SegmentSpan(s.index, s.start_ms, s.end_ms) for s in segs),
        )
        now = time.monotonic()
        try:
            await pipeline.turn(turn, transcript, now, now, calls)
        except CxguardError as exc:
            log.error("call %s: turn %d not judged after restart: %s", p.call_id, index, exc)
            continue
        judged.add(index)
    lost = [i for i in range(closed) if i not in stored and i not in judged]
    if lost:
        await ev.event(info, "gap", None, {"turns": lost, "reason": why})
    ev.segments_done(Judged(p.tenant, p.call_id, max([closed - 1, *judged], default=-1)))
    summary.calls += 1
    summary.turns_judged += len(judged)
    summary.turns_gapped += len(lost)
    if p.stream_ended is not None and p.state != "ended":
        at_ms, reason = p.stream_ended
        await pipeline.finish(at_ms, reason or "stop", calls)
    log.info(
        "call %s recovered: %d turns judged from spooled audio, %d recorded as a gap",
        p.call_id,
        len(judged),
        len(lost),
    )


async def recover(services: Services, calls: Sequence[CallToRecover]) -> RecoverySummary:
    summary = RecoverySummary()
    for call in calls:
        try:
            await rejudge(services, call, summary)
        except CxguardError:
            log.exception("call %s: recovery failed", call.progress.call_id)
    return summary
