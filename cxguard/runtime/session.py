"""One call: protocol events in, verdicts out.

Audio handling (μ-law decode, VAD) is cheap and runs inline on the event loop as frames
arrive: every segment the VAD closes goes to ASR at once. Everything else happens in the
call's one ordered pipeline, a task that takes items in stream order — segments (awaiting each
transcript in turn: ASR may finish them out of order, agent segments jump its queue), ticks of
the stream clock, control events — and hands them to the call's
:class:`~cxguard.policy.calls.CallJudge` (pure: speaker turns and the policy engine, run off
the loop); :class:`~cxguard.runtime.verdicts.VerdictPipeline` writes, alerts and hands off
what it decides. So each segment is transcribed and previewed as soon as it ends, and a
turn's verdicts of record come when the floor changes or its speaker has been silent long
enough (``turns.end_silence_ms``).

No exception ends a call's judging silently: one raised while processing an item is recorded
(``pipeline.error``), counted, alerted, and the pipeline goes on with the next item; a segment
whose transcript could not be had is judged as unreadable; ``call_ended`` is always recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from cxguard.audio.codec import ulaw_decode
from cxguard.audio.vad import VadOptions, VadSegmenter
from cxguard.errors import AsrError
from cxguard.model import (
    SPEAKERS,
    AudioChunk,
    CallEnded,
    CallInfo,
    CallStarted,
    ControlEvent,
    Dtmf,
    Gap,
    Mark,
    ProtocolEvent,
    Segment,
    Speaker,
    Transcript,
)
from cxguard.policy.calls import CallJudge, JudgeOutput
from cxguard.policy.turns import HeardSegment
from cxguard.runtime import metrics
from cxguard.runtime.services import Services
from cxguard.runtime.stream_clock import StreamClock
from cxguard.runtime.verdicts import CallSummary, SegmentTiming, VerdictPipeline

log = logging.getLogger(__name__)
A = TypeVar("A")


@dataclass
class _PendingSegment:
    index: int
    segment: Segment
    transcript: asyncio.Future[Transcript] | None
    error: str | None
    closed_mono: float
    speech_end_mono: float


@dataclass
class _Tick:
    at_ms: float
    speaking: dict[Speaker, float | None]


@dataclass
class _AudioFault:
    """Audio that could not be taken in (the rest of the call goes on)."""

    error: Exception
    at_ms: float


@dataclass
class _Restore:
    """Replay the call's stored history before its first new segment (a reconnect)."""


@dataclass
class _Finish:
    at_ms: float
    reason: str


_Item = _Restore | _PendingSegment | _Tick | ControlEvent | Gap | Dtmf | _AudioFault | _Finish


class CallSession:
    def __init__(self, services: Services, started: CallStarted) -> None:
        self.info: CallInfo = started.info
        self._services = services
        settings = services.settings
        self._segmenters: dict[Speaker, VadSegmenter] = {
            s: VadSegmenter(s, started.sample_rate, self._vad_options(s)) for s in SPEAKERS
        }
        # A reconnect (or a call recovered after a restart) continues the call's numbering,
        # and the conversation it had so far is replayed from the ledger first.
        first_turn = services.evidence.next_turn_index(started.info)
        self._next_segment = services.evidence.next_segment_index(started.info)
        # ... and its timeline: this session's clock starts at 0, the call's where the
        # earlier sessions ended (every time of this session is shifted by that).
        self._offset_ms = services.evidence.stream_offset_ms(started.info)
        self._clock = StreamClock(self._offset_ms)
        self._items: asyncio.Queue[_Item] = asyncio.Queue()
        if first_turn > 0:
            self._items.put_nowait(_Restore())
        self._judge = CallJudge(
            services.engine,
            dict(self.info.parameters),
            settings.turns.options(),
            first_turn_index=first_turn,
        )
        self._timing: dict[int, SegmentTiming] = {}
        self._verdicts = VerdictPipeline(services, self.info)
        self.summary = CallSummary(self.info.call_id, self.info.tenant)
        self._ended = False
        self._consumer = asyncio.get_running_loop().create_task(self._consume())
        metrics.CALLS.labels(source=self.info.source).inc()
        metrics.ACTIVE_CALLS.labels(source=self.info.source).inc()
        services.evidence.submit_event(
            self.info, "call_started", self._offset_ms, dict(self.info.parameters)
        )

    def _vad_options(self, speaker: Speaker) -> VadOptions:
        return self._services.settings.vad.options(speaker)

    # ------------------------------------------------------------------ events from the protocol

    def handle(self, event: ProtocolEvent) -> None:
        """One event of the stream, its times on the stream's own clock."""
        if self._ended:
            return
        event = self._on_call_clock(event)
        try:
            if isinstance(event, AudioChunk):
                self._audio(event)
            elif isinstance(event, ControlEvent | Dtmf):
                self._items.put_nowait(event)
            elif isinstance(event, Gap):
                for speaker, seg in self._segmenters.items():
                    self._segments(seg.gap(event.start_ms, event.end_ms), event.end_ms)
                    self._clock.heard(speaker, event.end_ms)
                self._items.put_nowait(event)
                self._tick(force=True)
            elif isinstance(event, CallEnded):
                self.end(event.reason, event.at_ms)
            elif isinstance(event, Mark | CallStarted):
                pass  # a mark's meaning (if any) arrives as its own ControlEvent
        except Exception as exc:  # bad audio must not end the call's judging
            self._items.put_nowait(_AudioFault(exc, self._heard_ms))

    def signal(self, event: ControlEvent) -> None:
        """A trusted signal from outside the stream (the control API), stamped on the call's
        clock (:attr:`position_ms`); it takes its place after everything heard so far."""
        if not self._ended:
            self._items.put_nowait(event)

    def _on_call_clock(self, event: ProtocolEvent) -> ProtocolEvent:
        off = self._offset_ms
        if not off:
            return event
        if isinstance(event, AudioChunk):
            return replace(event, start_ms=event.start_ms + off)
        if isinstance(event, ControlEvent | Dtmf):
            return replace(event, at_ms=event.at_ms + off)
        if isinstance(event, Gap):
            return replace(event, start_ms=event.start_ms + off, end_ms=event.end_ms + off)
        if isinstance(event, CallEnded) and event.at_ms is not None:
            return replace(event, at_ms=event.at_ms + off)
        return event

    def _audio(self, chunk: AudioChunk) -> None:
        if chunk.encoding == "PCMU":
            pcm = ulaw_decode(chunk.payload)
        else:
            pcm = np.frombuffer(chunk.payload, dtype="<i2").astype(np.int16)
        end_ms = chunk.start_ms + 1000.0 * len(pcm) / chunk.sample_rate
        self._clock.heard(chunk.speaker, end_ms)
        self._segments(self._segmenters[chunk.speaker].feed(pcm, chunk.start_ms), end_ms)
        self._tick()

    @property
    def _heard_ms(self) -> float:
        return self._clock.heard_ms

    @property
    def position_ms(self) -> float:
        """Stream time heard so far: where an event handed in now takes its place."""
        return self._heard_ms

    @property
    def stream_offset_ms(self) -> float:
        """Where this session's own clock (0 at its start) sits on the call's clock."""
        return self._offset_ms

    @property
    def ended(self) -> bool:
        """No more input is taken (the stream ended or the call is being finished)."""
        return self._ended

    def _tick(self, force: bool = False) -> None:
        at = self._clock.tick(force)
        if at is not None:
            speaking = {s: seg.speech_start_ms for s, seg in self._segmenters.items()}
            self._items.put_nowait(_Tick(at, speaking))
            self._services.notify_speaking(self.info, speaking)

    def _segments(self, segments: list[Segment], position_ms: float) -> None:
        now = time.monotonic()
        for seg in segments:
            # Map the stream timeline to the wall clock through the chunk that closed the
            # segment: at real-time pace this is when the speaker actually stopped.
            speech_end = now - max(0.0, position_ms - seg.end_ms) / 1000.0
            future: asyncio.Future[Transcript] | None = None
            error = None
            try:
                future = self._services.asr.submit(seg, self.info)
            except AsrError as exc:
                error = str(exc)
            metrics.SEGMENTS.labels(speaker=seg.speaker).inc()
            item = _PendingSegment(self._next_segment, seg, future, error, now, speech_end)
            # Durable until its turn is judged: a crash before the verdicts leaves it for the
            # restart (runtime/recovery.py).
            self._services.evidence.spool_segment(self.info, seg, segment_index=item.index)
            self._next_segment += 1
            self._items.put_nowait(item)

    def end(self, reason: str = "stop", at_ms: float | None = None) -> None:
        """No more audio: close open segments and let the pipeline finish the call."""
        if self._ended:
            return
        for seg in self._segmenters.values():
            try:
                self._segments(seg.flush(), self._heard_ms)
            except Exception as exc:
                self._items.put_nowait(_AudioFault(exc, self._heard_ms))
        self._ended = True
        end_ms = at_ms if at_ms is not None else self._heard_ms
        self._services.evidence.submit_event(self.info, "stream_ended", end_ms, {"reason": reason})
        self._items.put_nowait(_Finish(end_ms, reason))

    async def wait_closed(self) -> CallSummary:
        if not self._ended:
            self.end("disconnected")
        await self._consumer
        return self.summary

    # ------------------------------------------------------------------ the ordered pipeline

    async def _consume(self) -> None:
        finish = _Finish(0.0, "pipeline stopped")
        try:
            while True:
                item = await self._items.get()
                if isinstance(item, _Finish):
                    finish = item
                    try:
                        await self._judged(self._judge.finish, item.at_ms)
                    except Exception as exc:  # the call ends all the same (no item follows)
                        await self._verdicts.failure("finish", exc, item.at_ms, self.summary)
                    return
                try:
                    await self._process(item)
                except Exception as exc:
                    # One item failed: record and alert it, go on with the call.
                    where = type(item).__name__.strip("_")
                    await self._verdicts.failure(where, exc, self._heard_ms, self.summary)
        finally:
            await self._verdicts.ended(finish.at_ms, finish.reason)
            metrics.ACTIVE_CALLS.labels(source=self.info.source).dec()

    async def _process(self, item: _Item) -> None:
        if isinstance(item, _Restore):
            await self._restore()
        elif isinstance(item, _PendingSegment):
            heard = await self._heard(item)
            await self._judged(self._judge.segment, heard)
        elif isinstance(item, _Tick):
            await self._judged(lambda t: self._judge.tick(t.at_ms, t.speaking), item)
        elif isinstance(item, ControlEvent):
            await self._verdicts.event(item, self.summary)
            await self._judged(self._judge.event, item)
        elif isinstance(item, Gap | Dtmf):
            await self._verdicts.event(item, self.summary)
        elif isinstance(item, _AudioFault):
            await self._verdicts.failure("audio", item.error, item.at_ms, self.summary)

    async def _restore(self) -> None:
        """A second session of a call already in the ledger: replay its stored turns and
        control events so ``agent_turn``, obligations and state go on where they were."""
        ledger = self._services.evidence.ledger
        info = self.info
        progress = await asyncio.to_thread(ledger.call_progress, info.tenant, info.call_id)
        await self._services.run_policy(self._judge.restore, progress.history)
        self._verdicts.remember(progress.turns)

    async def _judged(self, step: Callable[[A], list[JudgeOutput]], arg: A) -> None:
        """One step of the judge, off the event loop; deliver what it decided."""
        started = time.monotonic()
        outputs = await self._services.run_policy(step, arg)
        if outputs:
            policy_ms = 1000 * (time.monotonic() - started)
            await self._verdicts.deliver(outputs, self._timing, policy_ms, self.summary)

    async def _heard(self, item: _PendingSegment) -> HeardSegment:
        seg = item.segment
        text, reason = "", item.error
        readings: tuple[str, ...] = ()
        timing = SegmentTiming(item.closed_mono, item.speech_end_mono)
        if item.transcript is not None:
            try:
                transcript = await item.transcript
                text, timing.asr_ms = transcript.text, transcript.asr_ms
                timing.model_id, timing.decode = transcript.model_id, transcript.decode
            except AsrError as exc:
                reason, readings = str(exc), exc.readings
            except Exception as exc:  # not the ASR room's error: a bug, said loudly
                reason = f"transcription failed ({type(exc).__name__})"
                await self._verdicts.failure("asr", exc, seg.end_ms, self.summary)
        timing.ready_mono = time.monotonic()
        self._timing[item.index] = timing
        return HeardSegment.of(item.index, seg, text, reason, readings)
