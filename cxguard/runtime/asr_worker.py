"""One shared speech model for every call, off the event loop, behind a bounded queue.

Turns wait in a priority queue (agent turns first: they are the ones being judged), workers
take up to ``batch_size`` waiting turns at once and hand them to the model in a thread. A full
queue or a turn that waited past ``max_wait_ms`` is refused with :class:`AsrOverloaded`, which
the session turns into ``undetermined`` verdicts — visible backpressure, never a silent skip.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cxguard.errors import AsrError, AsrOverloaded
from cxguard.model import CallInfo, Segment, Transcript
from cxguard.runtime import metrics

log = logging.getLogger(__name__)

Result = Transcript | AsrError


class BatchFn(Protocol):
    """Transcribes segments in order; a segment refused by the ASR guards gets its error in
    place. ``on_done(i, result)``, called from the worker thread as soon as segment ``i`` is
    final, lets a segment leave before another one's fallback decodes are over."""

    def __call__(
        self, items: Sequence[np.ndarray], *, on_done: Callable[[int, Result], None] | None = None
    ) -> Sequence[Result]: ...


class AsrQueue(Protocol):
    """What a call's session needs of ASR: this in-process worker, or the Redis pool of
    :mod:`cxguard.runtime.asr_pool`."""

    def submit(self, turn: Segment, call: CallInfo | None = None) -> asyncio.Future[Transcript]: ...

    @property
    def depth(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    turn: Segment = field(compare=False)
    enqueued: float = field(compare=False)
    future: asyncio.Future[Transcript] = field(compare=False)


class AsrWorker:
    def __init__(
        self,
        transcribe_batch: BatchFn,
        *,
        workers: int = 1,
        queue_size: int = 64,
        max_wait_ms: float = 10_000.0,
        batch_size: int = 4,
    ) -> None:
        self._transcribe_batch = transcribe_batch
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue(maxsize=queue_size)
        self._max_wait_s = max_wait_ms / 1000.0
        self._batch_size = max(1, batch_size)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._seq = itertools.count()
        self._tasks = [asyncio.get_running_loop().create_task(self._run()) for _ in range(workers)]

    def submit(self, turn: Segment, call: CallInfo | None = None) -> asyncio.Future[Transcript]:
        """Queue a turn; raises AsrOverloaded at once when the queue is full. (``call`` is
        for the pooled ASR's wire; one process has no use for it.)"""
        loop = asyncio.get_running_loop()
        job = _Job(
            0 if turn.speaker == "agent" else 1,
            next(self._seq),
            turn,
            time.monotonic(),
            loop.create_future(),
        )
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            metrics.ASR_DROPPED.labels(reason="queue_full").inc()
            raise AsrOverloaded(f"ASR queue full ({self._queue.maxsize} turns waiting)") from None
        metrics.ASR_QUEUE_DEPTH.set(self._queue.qsize())
        return job.future

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            metrics.ASR_QUEUE_DEPTH.set(self._queue.qsize())
            live = self._expire(batch)
            if not live:
                continue
            audio = [np.frombuffer(j.turn.pcm16, dtype=np.int16) for j in live]

            def early(i: int, result: Result, jobs: list[_Job] = live) -> None:
                loop.call_soon_threadsafe(self._settle, jobs[i], result)

            work = functools.partial(self._transcribe_batch, audio, on_done=early)
            try:
                results = await loop.run_in_executor(self._executor, work)
            except AsrError as exc:
                self._fail(live, exc)
                continue
            except Exception as exc:  # the model is third-party code: never let it kill the worker
                log.exception("ASR batch failed")
                self._fail(live, AsrError(f"ASR failed: {exc!r}"))
                continue
            for job, result in zip(live, results, strict=True):
                self._settle(job, result)

    @staticmethod
    def _settle(job: _Job, result: Result) -> None:
        if job.future.done():
            return
        if isinstance(result, AsrError):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    def _expire(self, batch: list[_Job]) -> list[_Job]:
        now = time.monotonic()
        live = []
        for job in batch:
            if job.future.cancelled():
                continue
            waited = now - job.enqueued
            if waited > self._max_wait_s:
                metrics.ASR_DROPPED.labels(reason="deadline").inc()
                job.future.set_exception(
                    AsrOverloaded(
                        f"turn waited {waited * 1000:.0f} ms for ASR (limit "
                        f"{self._max_wait_s * 1000:.0f} ms)"
                    )
                )
            else:
                live.append(job)
        return live

    @staticmethod
    def _fail(jobs: list[_Job], exc: AsrError) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            self._fail([self._queue.get_nowait()], AsrError("server shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)
