"""The ledger behind a durable spool: acknowledged once on local disk, stored when it can be.

Every write (turns, verdicts, events) is checked, redacted and appended to the spool
(:class:`~cxguard.evidence.spool.Spool`, one fsync'd local transaction) on one thread, so a
call's writes keep their order; one drainer thread moves spooled ops into the ledger in
batches. A database that is down, frozen or refusing delays rows and loses none: the
drainer retries (each attempt bounded by the ledger's timeouts) and the spool keeps
accepting. :meth:`EvidenceWriter.write` waits ``ack_wait`` at most for the ledger, then
answers that the evidence is pending, so alerts go out within the latency budget whatever
the database does.

The writer also spools each closed segment's audio until its turn is judged, and keeps each
call's numbering (next speaker-turn and segment index) so a reconnect continues it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxguard.audio.codec import ulaw_encode
from cxguard.errors import EvidenceError
from cxguard.evidence.engine import LedgerOptions, normalise_url, sqlite_path
from cxguard.evidence.heads import HeadKey
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.progress import CallProgress
from cxguard.evidence.rows import (
    LedgerOp,
    event_op,
    finding_op,
    stable_op_id,
    turn_op,
    verdict_ops,
)
from cxguard.evidence.spool import Judged, Spool, SpooledSegment
from cxguard.model import CallInfo, Segment, TurnText, Verdict
from cxguard.runtime import metrics
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)

EventObserver = Callable[[CallInfo, str, "float | None", Mapping[str, Any]], None]
"""Told of every call event as it is recorded (the console's live view); must not block."""

_MAX_CALLS = 100_000
"""Numbering remembered for this many calls (oldest forgotten first)."""


@dataclass(frozen=True)
class WriteReceipt:
    """``stored``: in the ledger already. Otherwise ``note`` says why the alert must say the
    evidence is pending (it is durable in the spool and will be stored)."""

    stored: bool
    note: str | None = None


@dataclass
class _Numbering:
    next_turn: int = 0
    next_segment: int = 0
    closed_turns: int = 0
    """One past the highest turn index any closed segment was given."""
    end_ms: float = 0.0
    """How far the call's stream timeline reached (its sessions so far): where a later
    session of the call (a reconnect) goes on."""


def state_dir(settings: Settings) -> Path:
    """Where this process keeps its spool, outbox and instance id."""
    if settings.ledger.state_dir:
        return Path(settings.ledger.state_dir)
    path = sqlite_path(normalise_url(settings.evidence_url))
    if path is not None:
        return path.with_name(path.name + ".state")
    if normalise_url(settings.evidence_url).get_backend_name() == "sqlite":  # in memory
        return Path(tempfile.mkdtemp(prefix="cxguard-state-"))
    return Path("cxguard-state")


def instance_id(directory: Path) -> str:
    """This state directory's id: the owner of the calls started from it."""
    path = directory / "instance-id"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        value = uuid.uuid4().hex
        path.write_text(value + "\n", encoding="ascii")
        return value


class EvidenceWriter:
    def __init__(
        self,
        ledger: EvidenceLedger,
        spool: Spool,
        *,
        audio: Spool | None = None,
        owner: str = "",
        ack_wait_s: float = 0.2,
        spool_audio: bool = True,
    ) -> None:
        self.ledger = ledger
        self.spool = spool
        self.audio = audio or spool
        """Where closed segments' audio waits (its own file and thread: a burst of audio
        never queues ahead of a verdict)."""
        self.owner = owner
        self._ack_wait_s = ack_wait_s
        self._spool_audio = spool_audio
        # One thread appends (a call's writes keep their order), one drains, one keeps audio.
        self._appender = ThreadPoolExecutor(1, thread_name_prefix="evidence-spool")
        self._audio_io = ThreadPoolExecutor(1, thread_name_prefix="evidence-audio")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._urgent = threading.Event()  # closing: retry now, not after the backoff
        self._failed_at = 0.0
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}
        self._waiters_lock = threading.Lock()
        self._numbering: OrderedDict[tuple[str, str], _Numbering] = OrderedDict()
        self._releases: set[tuple[str, str]] = set()
        self.ledger_error: str | None = None
        """Why the ledger is not taking writes now (None: it is)."""
        self.observers: list[EventObserver] = []
        metrics.SPOOL_DEPTH.set(spool.depth())
        self._drainer = threading.Thread(
            target=self._drain_loop, name="evidence-drain", daemon=True
        )
        self._drainer.start()

    @classmethod
    def open(cls, settings: Settings) -> EvidenceWriter:
        lset = settings.ledger
        raw_key = lset.key_bytes()
        key = HeadKey(raw_key) if raw_key else None
        ledger = EvidenceLedger(
            settings.evidence_url, LedgerOptions(timeout_s=lset.timeout_s), key=key
        )
        directory = state_dir(settings)
        spool = Spool(directory / "spool.db")
        audio = Spool(directory / "segments.db")
        return cls(
            ledger,
            spool,
            audio=audio,
            owner=instance_id(directory),
            ack_wait_s=lset.ack_wait_ms / 1000.0,
            spool_audio=lset.spool_audio,
        )

    # ------------------------------------------------------------------ numbering

    def _number(self, tenant: str, call_id: str) -> _Numbering:
        key = (tenant, call_id)
        found = self._numbering.get(key)
        if found is None:
            found = self._numbering[key] = _Numbering()
            while len(self._numbering) > _MAX_CALLS:
                self._numbering.popitem(last=False)
        else:
            self._numbering.move_to_end(key)
        return found

    def seed(self, progress: CallProgress) -> None:
        """Remember a call's numbering from the ledger (and the spool), e.g. at restart."""
        n = self._number(progress.tenant, progress.call_id)
        seg, turn = self.audio.segment_progress(progress.tenant, progress.call_id)
        n.next_turn = max(n.next_turn, progress.next_turn, turn)
        n.next_segment = max(n.next_segment, progress.next_segment, seg)
        n.closed_turns = max(n.closed_turns, turn)
        ends = [h.end_ms if isinstance(h, TurnText) else h.at_ms for h in progress.history]
        if progress.stream_ended is not None:
            ends.append(progress.stream_ended[0])
        n.end_ms = max([n.end_ms, *ends])

    async def learn(self, info: CallInfo) -> None:
        """Before a call this process has not seen starts: seed its numbering from the
        ledger, in case another sidecar carried it before (a reconnect after a drain or a
        crash lands anywhere). A ledger that cannot be read leaves it a new call (logged)."""
        if (info.tenant, info.call_id) in self._numbering:
            return
        try:
            progress = await asyncio.to_thread(self.ledger.call_progress, info.tenant, info.call_id)
        except EvidenceError as exc:
            log.warning("call %s: its history could not be read: %s", info.call_id, exc)
            return
        if progress.history or progress.next_turn or progress.stream_ended is not None:
            self.seed(progress)

    def next_turn_index(self, info: CallInfo) -> int:
        """The index a (re)connecting call's first new speaker turn gets."""
        n = self._number(info.tenant, info.call_id)
        return max(n.next_turn, n.closed_turns)

    def next_segment_index(self, info: CallInfo) -> int:
        return self._number(info.tenant, info.call_id).next_segment

    def stream_offset_ms(self, info: CallInfo) -> float:
        """Where a (re)connecting call's stream time starts: the end of its earlier
        sessions (0 for a new call). A new session's own clock starts at 0 again."""
        return self._number(info.tenant, info.call_id).end_ms

    # ------------------------------------------------------------------ writes

    async def _append(self, ops: Sequence[LedgerOp], judged: Judged | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(self._appender, self.spool.append, ops)
        self._wake.set()
        metrics.SPOOL_DEPTH.inc(len(ops))
        if judged is not None:
            # After the turn's write is durable; a crash in between leaves segments of a
            # stored turn, which the restart recognises and drops.
            self.segments_done(judged)

    async def write(
        self, info: CallInfo, text: TurnText | None, verdicts: Sequence[Verdict]
    ) -> WriteReceipt:
        """Spool a turn and its verdicts durably; wait ``ack_wait`` at most for the ledger.

        Raises EvidenceError when even the spool refused (invalid values, a full disk): the
        caller must then say the verdicts were not stored."""
        ops: list[LedgerOp] = []
        judged = None
        if text is not None:
            ops.append(turn_op(info.call_id, info.tenant, text))
            judged = Judged(
                info.tenant, info.call_id, text.index, tuple(s.index for s in text.segments)
            )
            n = self._number(info.tenant, info.call_id)
            n.next_turn = max(n.next_turn, text.index + 1)
            if text.segments:
                n.next_segment = max(n.next_segment, max(s.index for s in text.segments) + 1)
        ops += verdict_ops(verdicts, time.time())
        if not ops:
            return WriteReceipt(True)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        last = ops[-1].op_id
        with self._waiters_lock:
            self._waiters[last] = (loop, done)
        try:
            await self._append(ops, judged)
            try:
                await asyncio.wait_for(asyncio.shield(done), self._ack_wait_s)
            except TimeoutError:
                why = self.ledger_error or "the ledger is slow"
                return WriteReceipt(False, f"evidence pending: {why}")
            return WriteReceipt(True)
        finally:
            with self._waiters_lock:
                self._waiters.pop(last, None)

    async def note_release(
        self, tenant: str, release_id: str, data: Callable[[], Mapping[str, Any]]
    ) -> None:
        """Record the release (its parts and the pack's framework, ``data()``) on the
        tenant's chain the first time this process writes a verdict of it; the ledger keeps
        one per (tenant, release) however many processes note it. Never raises."""
        key = (tenant, release_id)
        if key in self._releases:
            return
        self._releases.add(key)
        try:
            op_id = stable_op_id("release", tenant, release_id)
            await self._append([finding_op(tenant, "release", data(), op_id=op_id)])
        except EvidenceError as exc:
            self._releases.discard(key)
            metrics.PIPELINE_ERRORS.inc()
            log.error("tenant %s: could not record release %s: %s", tenant, release_id, exc)

    def _event_op(
        self, info: CallInfo, kind: str, at_ms: float | None, data: Mapping[str, Any]
    ) -> LedgerOp:
        data = dict(data)
        if kind in ("stream_ended", "call_ended") and at_ms is not None:
            n = self._number(info.tenant, info.call_id)
            n.end_ms = max(n.end_ms, at_ms)
        if kind in ("call_ended", "call_interrupted"):
            n = self._number(info.tenant, info.call_id)
            data.setdefault("turns_closed", max(n.closed_turns, n.next_turn))
        owner = self.owner if kind == "call_started" else ""
        for observe in self.observers:
            try:
                observe(info, kind, at_ms, data)
            except Exception:  # a display must not stop the evidence
                log.exception("event observer failed on %s", kind)
        return event_op(
            info.call_id, info.tenant, kind, at_ms, data, owner=owner, source=info.source
        )

    async def event(
        self,
        info: CallInfo,
        kind: str,
        at_ms: float | None,
        data: Mapping[str, Any],
        *,
        strict: bool = False,
    ) -> None:
        """Spool one call event (never raises: a failure is logged and counted; ``strict``:
        it raises EvidenceError, for a caller who must tell someone it was not recorded)."""
        try:
            await self._append([self._event_op(info, kind, at_ms, data)])
        except EvidenceError as exc:
            metrics.PIPELINE_ERRORS.inc()
            log.error("call %s: could not record event %s: %s", info.call_id, kind, exc)
            if strict:
                raise

    def submit_event(
        self, info: CallInfo, kind: str, at_ms: float | None, data: Mapping[str, Any]
    ) -> None:
        """Fire and forget, still in order with the call's other writes."""
        try:
            op = self._event_op(info, kind, at_ms, data)
        except EvidenceError as exc:
            log.error("call %s: could not record event %s: %s", info.call_id, kind, exc)
            return

        def append() -> None:
            try:
                self.spool.append([op])
            except EvidenceError as exc:
                log.error("call %s: could not record event %s: %s", info.call_id, kind, exc)
                return
            self._wake.set()
            metrics.SPOOL_DEPTH.inc()

        self._appender.submit(append)

    def spool_segment(
        self,
        info: CallInfo,
        segment: Segment,
        *,
        turn_index: int | None = None,
        segment_index: int | None = None,
    ) -> int:
        """Keep a closed segment's audio (μ-law) until its turn is judged; returns its
        segment index (the next one of the call unless given). Fire and forget."""
        n = self._number(info.tenant, info.call_id)
        index = n.next_segment if segment_index is None else segment_index
        n.next_segment = max(n.next_segment, index + 1)
        if turn_index is not None:
            n.closed_turns = max(n.closed_turns, turn_index + 1)
        if not self._spool_audio:
            return index
        pcm = np.frombuffer(segment.pcm16, dtype="<i2").astype(np.int16)
        spooled = SpooledSegment(
            info.tenant,
            info.call_id,
            index,
            segment.speaker,
            segment.start_ms,
            segment.end_ms,
            segment.sample_rate,
            "PCMU",
            ulaw_encode(pcm),
            turn_index,
        )

        def put() -> None:
            try:
                self.audio.put_segment(spooled)
            except EvidenceError as exc:
                log.error("call %s: segment %d not spooled: %s", info.call_id, index, exc)

        self._audio_io.submit(put)
        return index

    def segments_done(self, judged: Judged) -> None:
        """Drop spooled segments whose turn was recorded another way (a gap)."""

        def drop() -> None:
            try:
                self.audio.judged(judged)
            except EvidenceError as exc:
                log.error("call %s: judged segments not dropped: %s", judged.call_id, exc)

        self._audio_io.submit(drop)

    # ------------------------------------------------------------------ draining

    def _resolve(self, ops: Sequence[LedgerOp]) -> None:
        with self._waiters_lock:
            found = [self._waiters.pop(op.op_id, None) for op in ops]
        for item in found:
            if item is not None:
                loop, fut = item
                loop.call_soon_threadsafe(_set_done, fut)

    def _drain_loop(self) -> None:
        backoff = 0.05
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while True:
                try:
                    batch = self.spool.peek(200)
                except EvidenceError as exc:
                    log.error("evidence spool unreadable: %s", exc)
                    batch = []
                if not batch:
                    break
                ops = [op for _, op in batch]
                try:
                    self.ledger.apply(ops)
                except Exception as exc:  # anything: the writes stay spooled, retried
                    if self.ledger_error is None:
                        log.error(
                            "%s; writes wait in the spool",
                            exc,
                            exc_info=not isinstance(exc, EvidenceError),
                        )
                    self.ledger_error = (
                        str(exc).removeprefix("evidence ledger could not write: ")
                        if isinstance(exc, EvidenceError)
                        else f"internal error ({type(exc).__name__})"
                    )
                    metrics.LEDGER_WRITE_FAILURES.inc()
                    self._failed_at = time.monotonic()
                    if self._urgent.wait(backoff):
                        time.sleep(0.05)
                    if self._stop.is_set():
                        return
                    backoff = min(2.0, backoff * 2)
                    continue
                try:
                    self.spool.remove([i for i, _ in batch])
                except EvidenceError as exc:  # stored anyway; replayed ops are skipped
                    log.error("evidence spool: %s", exc)
                metrics.SPOOL_DEPTH.dec(len(batch))
                self._resolve(ops)
                if self.ledger_error is not None:
                    log.warning("evidence ledger is back; draining the spool")
                    self.ledger_error = None
                backoff = 0.05
            if self._stop.is_set():
                return

    def depth(self) -> int:
        return self.spool.depth()

    async def wait_stored(self, timeout_s: float) -> bool:
        """Until every write spooled so far is in the ledger (True), or ``timeout_s`` passed
        (False: the rest stays durable in the spool, for this process or the next)."""
        deadline = time.monotonic() + timeout_s
        while (await asyncio.to_thread(self.spool.depth)) > 0:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.02)
        return True

    async def close(self, drain_s: float = 10.0) -> None:
        """Flush appends, give the drainer ``drain_s`` to empty the spool, then stop; what
        is still spooled is stored by the next start."""
        await asyncio.to_thread(self._appender.shutdown, True)
        await asyncio.to_thread(self._audio_io.shutdown, True)
        started = time.monotonic()
        self._urgent.set()
        while (await asyncio.to_thread(self.spool.depth)) > 0:
            waited = time.monotonic() - started
            # A ledger that still fails now will not come back in time: do not hold the exit.
            failing = self.ledger_error is not None and self._failed_at > started
            if waited > drain_s or (failing and waited > 1.0):
                break
            self._wake.set()
            await asyncio.sleep(0.05)
        self._stop.set()
        self._wake.set()
        await asyncio.to_thread(self._drainer.join, drain_s)
        left = await asyncio.to_thread(self.spool.depth)
        if left:
            log.warning("%d evidence writes left in the spool %s", left, self.spool.path)
        self.ledger.close()
        self.spool.close()
        if self.audio is not self.spool:
            self.audio.close()


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
