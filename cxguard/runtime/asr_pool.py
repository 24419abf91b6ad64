"""Pooled ASR, the sidecar's side: segments go to a Redis Stream, transcripts come back.

:class:`RedisAsrPool` has the in-process :class:`~cxguard.runtime.asr_worker.AsrWorker`'s
face (``submit`` → a future, ``depth``, ``close``), so a call's session does not know which
one it has. Each segment is published (``XADD``) to the agent or the customer work stream
(workers drain the agent one first: agent turns are the ones judged); ``cxguard asr-worker``
processes (:mod:`cxguard.runtime.asr_pool_worker`) transcribe it and append the result to
this sidecar's own reply stream, which one task here reads.

Every segment ends in exactly one settlement: the first reply for its id settles it, a
second one (a claimed segment transcribed twice) is counted and dropped; a segment with no
reply after ``asr.pool_timeout_ms``, or one that could not be published, fails with
:class:`AsrOverloaded` / :class:`AsrError` — ``undetermined``, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from cxguard.errors import AsrError, AsrOverloaded
from cxguard.model import CallInfo, Segment, Transcript
from cxguard.runtime import metrics
from cxguard.runtime.asr_wire import WorkItem, decode_result, reply_stream, work_stream
from cxguard.runtime.settings import AsrSettings

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
"""How long one read of the reply stream blocks (bounds how late ``close`` is noticed)."""


@dataclass
class _Waiting:
    future: asyncio.Future[Transcript]
    timer: asyncio.TimerHandle


class RedisAsrPool:
    def __init__(self, redis_url: str, settings: AsrSettings, *, sidecar: str | None = None):
        self.sidecar = sidecar or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._settings = settings
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=10.0)
        self._reader_redis = aioredis.Redis.from_url(redis_url)
        self._reply = reply_stream(settings.stream, self.sidecar)
        self._waiting: dict[str, _Waiting] = {}
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.duplicates = 0
        """Replies for a segment already settled (transcribed twice after a claim)."""
        self.settled = 0
        self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    @property
    def depth(self) -> int:
        """Segments published and not yet answered."""
        return len(self._waiting)

    def submit(self, turn: Segment, call: CallInfo | None = None) -> asyncio.Future[Transcript]:
        """Publish a segment; raises AsrOverloaded at once when too many are unanswered."""
        if len(self._waiting) >= self._settings.queue_size:
            metrics.ASR_DROPPED.labels(reason="queue_full").inc()
            raise AsrOverloaded(
                f"ASR pool full ({self._settings.queue_size} segments unanswered)"
            ) from None
        loop = asyncio.get_running_loop()
        self._seq += 1
        item_id = f"{self.sidecar}:{self._seq}"
        now = time.time()
        item = WorkItem(
            item_id,
            self._reply,
            call.call_id if call else "",
            call.tenant if call else "",
            turn,
            now,
            now + self._settings.max_wait_ms / 1000.0,
        )
        future: asyncio.Future[Transcript] = loop.create_future()
        timeout_s = self._settings.pool_timeout_ms / 1000.0
        timer = loop.call_later(timeout_s, self._timed_out, item_id)
        self._waiting[item_id] = _Waiting(future, timer)
        task = loop.create_task(self._publish(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        metrics.ASR_QUEUE_DEPTH.set(len(self._waiting))
        return future

    async def _publish(self, item: WorkItem) -> None:
        stream = work_stream(self._settings.stream, item.segment.speaker)
        try:
            await self._redis.xadd(stream, item.encode())  # type: ignore[arg-type]
        except rexc.RedisError as exc:
            self._settle(item.id, AsrError(f"ASR pool unreachable: {exc}"))

    def _timed_out(self, item_id: str) -> None:
        metrics.ASR_DROPPED.labels(reason="deadline").inc()
        self._settle(
            item_id,
            AsrOverloaded(
                f"no transcript from the ASR pool in {self._settings.pool_timeout_ms:.0f} ms"
            ),
        )

    def _settle(self, item_id: str, result: Transcript | AsrError) -> None:
        waiting = self._waiting.pop(item_id, None)
        if waiting is None:
            self.duplicates += 1  # already settled: the first answer stands
            return
        waiting.timer.cancel()
        metrics.ASR_QUEUE_DEPTH.set(len(self._waiting))
        self.settled += 1
        if waiting.future.done():
            return
        if isinstance(result, AsrError):
            waiting.future.set_exception(result)
        else:
            waiting.future.set_result(result)

    async def _read_replies(self) -> None:
        last = "0-0"  # the reply stream is this sidecar's own, fresh: read it from the start
        while True:
            try:
                got: Any = await self._reader_redis.xread({self._reply: last}, block=READ_BLOCK_MS)
            except rexc.RedisError as exc:
                log.error("ASR pool: reply stream unreadable (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            ids = []
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    ids.append(last)
                    try:
                        item_id, result = decode_result(fields)
                    except (KeyError, ValueError) as exc:
                        log.error("ASR pool: unreadable reply %s: %r", last, exc)
                        continue
                    self._settle(item_id, result)
            if ids:
                with contextlib.suppress(rexc.RedisError):
                    await self._reader_redis.xdel(self._reply, *ids)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)
        for item_id in list(self._waiting):
            self._settle(item_id, AsrError("server shutting down"))
        with contextlib.suppress(rexc.RedisError):
            await self._redis.delete(self._reply)
        await self._redis.aclose()
        await self._reader_redis.aclose()
