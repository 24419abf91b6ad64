"""One call: protocol events in, verdicts out.

Audio handling (μ-law decode, VAD) is cheap and runs inline on the event loop as frames
arrive; everything slow (ASR, classifiers, the ledger) runs elsewhere. Turns may finish ASR
out of order (agent turns jump the queue), but the policy engine must see them in stream
order, so each call has one ordered pipeline: a queue of pending turns and events consumed by
a single task that awaits each transcript in turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from cxguard.audio.codec import ulaw_decode
from cxguard.audio.vad import VadOptions, VadSegmenter
from cxguard.errors import AsrError, CxguardError
from cxguard.model import (
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
    TurnText,
)
from cxguard.runtime import metrics
from cxguard.runtime.services import Services
from cxguard.runtime.verdicts import CallSummary, VerdictPipeline

log = logging.getLogger(__name__)


@dataclass
class _PendingTurn:
    index: int
    turn: Segment
    transcript: asyncio.Future[Transcript] | None
    error: str | None
    closed_mono: float
    speech_end_mono: float


@dataclass
class _PendingPiece:
    """A piece of a turn still being spoken (the VAD cut it at the maximum length)."""

    provisional_index: int
    turn: Segment
    transcript: asyncio.Future[Transcript] | None
    error: str | None
    closed_mono: float
    speech_end_mono: float


@dataclass
class _OpenTurn:
    """What the pieces of a speaker's current turn told us so far."""

    start_ms: float
    texts: list[str] = field(default_factory=list)
    error: str | None = None
    alerted: set[str] = field(default_factory=set)


@dataclass
class _Finish:
    at_ms: float
    reason: str


_Item = _PendingTurn | _PendingPiece | ControlEvent | Gap | Dtmf | _Finish


class CallSession:
    def __init__(self, services: Services, started: CallStarted) -> None:
        self.info: CallInfo = started.info
        self._services = services
        self._sample_rate = started.sample_rate
        self._encoding = started.encoding
        self._segmenters = {
            s: VadSegmenter(s, started.sample_rate, self._vad_options(s))
            for s in ("agent", "customer")
        }
        # A reconnect (or a call recovered after a restart) continues the call's numbering.
        self._next_index = services.evidence.next_turn_index(started.info)
        self._position_ms = 0.0
        self._items: asyncio.Queue[_Item] = asyncio.Queue()
        self._open: dict[Speaker, _OpenTurn] = {}
        self._verdicts = VerdictPipeline(services, self.info)
        self.summary = CallSummary(self.info.call_id, self.info.tenant)
        self._consumer = asyncio.get_running_loop().create_task(self._consume())
        self._ended = False
        metrics.CALLS.labels(source=self.info.source).inc()
        metrics.ACTIVE_CALLS.labels(source=self.info.source).inc()
        services.evidence.submit_event(self.info, "call_started", 0.0, dict(self.info.parameters))

    def _vad_options(self, speaker: Speaker) -> VadOptions:
        vad = self._services.settings.vad
        max_ms = vad.max_turn_ms
        if speaker == "agent" and vad.agent_max_turn_ms:
            max_ms = vad.agent_max_turn_ms
        return VadOptions(
            aggressiveness=vad.aggressiveness,
            hangover_ms=vad.hangover_ms,
            min_turn_ms=vad.min_turn_ms,
            max_turn_ms=max_ms,
        )

    # ------------------------------------------------------------------ events from the protocol

    def handle(self, event: ProtocolEvent) -> None:
        if self._ended:
            return
        if isinstance(event, AudioChunk):
            self._audio(event)
        elif isinstance(event, ControlEvent | Dtmf):
            self._items.put_nowait(event)
        elif isinstance(event, Gap):
            for seg in self._segmenters.values():
                self._turns(seg.gap(event.start_ms, event.end_ms), event.end_ms)
            self._items.put_nowait(event)
        elif isinstance(event, CallEnded):
            self.end(event.reason, event.at_ms)
        elif isinstance(event, Mark | CallStarted):
            pass  # a mark's meaning (if any) arrives as its own ControlEvent

    def _audio(self, chunk: AudioChunk) -> None:
        if chunk.encoding == "PCMU":
            pcm = ulaw_decode(chunk.payload)
        else:
            pcm = np.frombuffer(chunk.payload, dtype="<i2").astype(np.int16)
        end_ms = chunk.start_ms + 1000.0 * len(pcm) / chunk.sample_rate
        self._position_ms = max(self._position_ms, end_ms)
        self._turns(self._segmenters[chunk.speaker].feed(pcm, chunk.start_ms), end_ms)

    def _turns(self, turns: list[Segment], position_ms: float) -> None:
        now = time.monotonic()
        for turn in turns:
            # Map the stream timeline to the wall clock through the chunk that closed the turn:
            # at real-time pace this is when the speaker actually stopped.
            speech_end = now - max(0.0, position_ms - turn.end_ms) / 1000.0
            future: asyncio.Future[Transcript] | None = None
            error = None
            try:
                future = self._services.asr.submit(turn)
            except AsrError as exc:
                error = str(exc)
            if turn.partial:
                # Indices are given when a turn closes, so this is the one it will most likely get.
                self._services.evidence.spool_segment(self.info, turn, turn_index=self._next_index)
                piece = _PendingPiece(self._next_index, turn, future, error, now, speech_end)
                self._items.put_nowait(piece)
                continue
            index = self._next_index
            self._next_index += 1
            # Durable until judged: a crash before the verdicts leaves it for the restart.
            self._services.evidence.spool_segment(self.info, turn, turn_index=index)
            metrics.TURNS.labels(speaker=turn.speaker).inc()
            self._items.put_nowait(_PendingTurn(index, turn, future, error, now, speech_end))

    def end(self, reason: str = "stop", at_ms: float | None = None) -> None:
        """No more audio: close open turns and let the pipeline finish the call."""
        if self._ended:
            return
        for seg in self._segmenters.values():
            self._turns(seg.flush(), self._position_ms)
        self._ended = True
        end_ms = at_ms if at_ms is not None else self._position_ms
        self._services.evidence.submit_event(self.info, "stream_ended", end_ms, {"reason": reason})
        self._items.put_nowait(_Finish(at_ms if at_ms is not None else self._position_ms, reason))

    async def wait_closed(self) -> CallSummary:
        if not self._ended:
            self.end("disconnected")
        await self._consumer
        return self.summary

    # ------------------------------------------------------------------ the ordered pipeline

    async def _consume(self) -> None:
        try:
            while True:
                item = await self._items.get()
                try:
                    if isinstance(item, _Finish):
                        await self._verdicts.finish(item.at_ms, item.reason, self.summary)
                        return
                    if isinstance(item, _PendingTurn):
                        await self._turn(item)
                    elif isinstance(item, _PendingPiece):
                        await self._piece(item)
                    else:
                        await self._verdicts.event(item, self.summary)
                except CxguardError:
                    # One item failed (a ledger outage, say): say so loudly, keep evaluating.
                    metrics.PIPELINE_ERRORS.inc()
                    log.exception(
                        "call %s: could not process %s", self.info.call_id, type(item).__name__
                    )
        finally:
            metrics.ACTIVE_CALLS.labels(source=self.info.source).dec()

    @staticmethod
    async def _text_of(
        future: asyncio.Future[Transcript] | None, error: str | None
    ) -> tuple[Transcript | None, str | None]:
        if future is None:
            return None, error
        try:
            return await future, None
        except AsrError as exc:
            return None, str(exc)

    async def _piece(self, item: _PendingPiece) -> None:
        transcript, error = await self._text_of(item.transcript, item.error)
        turn = item.turn
        open_turn = self._open.setdefault(turn.speaker, _OpenTurn(turn.start_ms))
        if transcript is None:
            open_turn.error = open_turn.error or f"part of the turn: {error}"
            return
        open_turn.texts.append(transcript.text)
        so_far = TurnText(
            item.provisional_index,
            turn.speaker,
            " ".join(open_turn.texts),
            open_turn.start_ms,
            turn.end_ms,
        )
        open_turn.alerted |= await self._verdicts.preview(
            so_far, transcript, item.closed_mono, item.speech_end_mono, open_turn.alerted
        )

    async def _turn(self, item: _PendingTurn) -> None:
        transcript, reason = await self._text_of(item.transcript, item.error)
        turn = item.turn
        words = transcript.text if transcript else ""
        start = turn.start_ms
        alerted: set[str] = set()
        open_turn = self._open.pop(turn.speaker, None)
        if open_turn is not None:
            # The evaluated turn is the whole utterance: every piece's words, in order.
            words = " ".join([*open_turn.texts, words]).strip()
            start = open_turn.start_ms
            reason = reason or open_turn.error
            alerted = open_turn.alerted
        text = TurnText(
            item.index, turn.speaker, words, start, turn.end_ms, undetermined_reason=reason
        )
        self.summary.turns += 1
        await self._verdicts.turn(
            text, transcript, item.closed_mono, item.speech_end_mono, self.summary, alerted
        )
