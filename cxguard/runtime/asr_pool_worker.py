"""Pooled ASR, the worker's side (``cxguard asr-worker``): one model, many sidecars.

The worker is one consumer of the ``asr.group`` consumer group on both work streams. Each
round it first claims (``XAUTOCLAIM``) segments another worker took and left unacknowledged
for ``asr.claim_idle_ms`` — that worker is taken for dead — then reads new ones, agent
segments before customer ones, up to ``batch_size``, and transcribes them in one batch with
the same :class:`~cxguard.asr.transcriber.Transcriber` (guards and fallbacks) a sidecar uses
in-process. Each result is appended to the owning sidecar's reply stream *before* the entry
is acknowledged (``XACK``) and deleted: a worker killed at any point leaves its segment
pending, to be claimed, never lost. A worker killed between the reply and the ack makes the
claimer transcribe it again; the sidecar keeps the first answer (segment ids).

A segment past its deadline (the sidecar's ``asr.max_wait_ms`` after publishing) is answered
with :class:`AsrOverloaded` unread: ``undetermined``, as in-process.

Plain blocking code on purpose: the process has nothing else to do, and the model runs on
this thread (the one-thread discipline of :func:`~cxguard.runtime.services.load_transcriber`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.exceptions as rexc

from cxguard.errors import AsrError, AsrOverloaded
from cxguard.model import Transcript
from cxguard.runtime.asr_wire import Fields, WorkItem, encode_result, work_streams
from cxguard.runtime.settings import AsrSettings

log = logging.getLogger(__name__)

Result = Transcript | AsrError
BatchFn = Callable[..., list[Result]]
READ_BLOCK_MS = 500


@dataclass
class _Taken:
    stream: str
    entry_id: bytes
    item: WorkItem | None
    """None: an entry that could not be decoded (acknowledged and logged, not retried)."""


def ensure_group(client: redis.Redis, settings: AsrSettings) -> None:
    for stream in work_streams(settings.stream):
        try:
            client.xgroup_create(stream, settings.group, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def reply_ttl_ms(settings: AsrSettings) -> int:
    """How long a reply stream lives after its last reply: twice the pool's deadline."""
    return int(2 * settings.pool_timeout_ms)


class PoolWorker:
    def __init__(
        self,
        client: redis.Redis,
        settings: AsrSettings,
        transcribe_batch: BatchFn,
        *,
        batch_size: int | None = None,
        name: str | None = None,
        heartbeat: str | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._heartbeat = Path(heartbeat) if heartbeat else None
        self._redis = client
        self._settings = settings
        self._transcribe = transcribe_batch
        self._batch = max(1, batch_size or settings.batch_size)
        self._streams = work_streams(settings.stream)
        self._claim_cursor = {s: "0-0" for s in self._streams}
        self.stop = threading.Event()
        self.done = 0
        ensure_group(client, settings)

    def run(self) -> None:
        log.info("ASR worker %s consuming %s", self.name, ", ".join(self._streams))
        while not self.stop.is_set():
            if self._heartbeat is not None:  # a liveness probe reads its age
                self._heartbeat.touch()
            try:
                taken = self._claim() or self._read()
                if taken:
                    self._work(taken)
            except rexc.RedisError as exc:
                # What this worker holds unanswered stays pending: claimed after the outage
                # (by another worker, or by this one: XAUTOCLAIM does not mind who).
                log.error("ASR worker: Redis unavailable (%s); retrying", exc)
                time.sleep(1.0)

    def _claim(self) -> list[_Taken]:
        """Segments a dead worker left: they are the oldest, so they go first."""
        taken: list[_Taken] = []
        for stream in self._streams:
            if len(taken) >= self._batch:
                break
            cursor, entries, *_ = self._redis.xautoclaim(
                stream,
                self._settings.group,
                self.name,
                min_idle_time=int(self._settings.claim_idle_ms),
                start_id=self._claim_cursor[stream],
                count=self._batch - len(taken),
            )
            self._claim_cursor[stream] = cursor.decode() if isinstance(cursor, bytes) else cursor
            gone = [e for e, f in entries if not f]  # deleted while pending: nothing to do
            if gone:
                self._redis.xack(stream, self._settings.group, *gone)
            taken += [self._taken(stream, e, f) for e, f in entries if f]
        if taken:
            log.warning("ASR worker %s claimed %d abandoned segments", self.name, len(taken))
        return taken

    def _read(self) -> list[_Taken]:
        taken: list[_Taken] = []
        for stream in self._streams:  # agent first
            if len(taken) < self._batch:
                taken += self._xread({stream: ">"}, self._batch - len(taken), None)
        if not taken:
            taken = self._xread(dict.fromkeys(self._streams, ">"), self._batch, READ_BLOCK_MS)
        return taken

    def _xread(self, streams: dict[str, str], count: int, block: int | None) -> list[_Taken]:
        got: Any = self._redis.xreadgroup(
            self._settings.group,
            self.name,
            streams,  # type: ignore[arg-type]
            count=count,
            block=block,
        )
        return [
            self._taken(name.decode() if isinstance(name, bytes) else name, e, f)
            for name, entries in got or []
            for e, f in entries
        ]

    @staticmethod
    def _taken(stream: str, entry_id: bytes, fields: Fields) -> _Taken:
        try:
            return _Taken(stream, entry_id, WorkItem.decode(fields))
        except (KeyError, ValueError) as exc:
            log.error("ASR worker: unreadable entry %s on %s: %r", entry_id, stream, exc)
            return _Taken(stream, entry_id, None)

    def _work(self, taken: list[_Taken]) -> None:
        now = time.time()
        live: list[_Taken] = []
        for t in taken:
            if t.item is None:
                self._ack(t)
            elif now > t.item.deadline:
                waited = (now - t.item.published) * 1000
                self._answer(t, AsrOverloaded(f"segment waited {waited:.0f} ms for ASR"))
            else:
                live.append(t)
        # One batch per sample rate (the transcriber takes one rate per call).
        for rate in sorted({t.item.segment.sample_rate for t in live if t.item}):
            group = [t for t in live if t.item and t.item.segment.sample_rate == rate]
            audio = [np.frombuffer(t.item.segment.pcm16, dtype=np.int16) for t in group if t.item]
            answered: set[int] = set()

            def early(
                i: int, result: Result, group: list[_Taken] = group, answered: set[int] = answered
            ) -> None:
                answered.add(i)
                self._answer(group[i], result)

            try:
                results = self._transcribe(audio, rate, on_done=early)
            except AsrError as exc:
                results = [exc] * len(group)
            except Exception as exc:  # third-party model code: never let it kill the worker
                log.exception("ASR batch failed")
                results = [AsrError(f"ASR failed: {exc!r}")] * len(group)
            for i, (t, result) in enumerate(zip(group, results, strict=True)):
                if i not in answered:
                    self._answer(t, result)

    def _answer(self, t: _Taken, result: Result) -> None:
        assert t.item is not None
        # The reply first, the ack after: dying in between repeats work, never loses it.
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(t.item.reply_to, encode_result(t.item.id, result, self.name))  # type: ignore[arg-type]
        # A sidecar that died leaves its reply stream unread: it expires. Each reply pushes
        # the expiry on; a live sidecar reads its replies long before (it has settled any
        # segment as undetermined by ``pool_timeout_ms``, so a later reply is of no use).
        pipe.pexpire(t.item.reply_to, reply_ttl_ms(self._settings))
        pipe.execute()
        self._ack(t)
        self.done += 1

    def _ack(self, t: _Taken) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(t.stream, self._settings.group, t.entry_id)
        pipe.xdel(t.stream, t.entry_id)
        pipe.execute()


def run_worker(
    redis_url: str, settings: AsrSettings, transcribe_batch: BatchFn, **kw: object
) -> PoolWorker:
    """A worker on ``redis_url`` until SIGTERM/SIGINT (finishing the batch in hand)."""
    import signal

    client = redis.Redis.from_url(redis_url, socket_timeout=30.0)
    worker = PoolWorker(client, settings, transcribe_batch, **kw)  # type: ignore[arg-type]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop.set())
    try:
        worker.run()
    finally:
        client.close()
    return worker
