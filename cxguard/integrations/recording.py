"""Where a guard's decisions become evidence and alerts, without holding the conversation up.

An integration judges turns itself (in its own process, on its own clock) and hands each
decision to a :class:`TurnRecorder`: the sidecar's implementation
(:class:`cxguard.runtime.guard_evidence.CallRecorder`) builds the verdicts with the
sidecar's builder, redacts them, writes them to the ledger and alerts through the same
outbox and sinks as a tapped call. The integration's rooms never import the runtime: they
only know this protocol.

:class:`RecordQueue` runs the recorder's calls in order in a task of their own, so a slow
ledger never delays what the bot says; :meth:`RecordQueue.drain` waits for them at the end
of the conversation. A recorder that raises is logged and the conversation goes on (the
sidecar's recorder itself never raises: it records its own failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

from cxguard.model import ControlEvent, TurnText
from cxguard.policy.engine import AssertionResult

log = logging.getLogger(__name__)


class TurnRecorder(Protocol):
    """One conversation's evidence (see :mod:`cxguard.runtime.guard_evidence`)."""

    async def started(self) -> None: ...

    async def judged(
        self, turn: TurnText, results: Sequence[AssertionResult], policy_ms: float
    ) -> None:
        """A turn's verdicts of record (``turn`` in clear: the recorder redacts)."""
        ...

    async def decided(
        self,
        results: Sequence[AssertionResult],
        phase: Literal["event", "finish"],
        event: ControlEvent | None = None,
    ) -> None:
        """Verdicts decided after their turn (a signal, the end of the conversation)."""
        ...

    async def signal(self, event: ControlEvent) -> None: ...

    async def failed(
        self, where: str, error: str, at_ms: float, turn_index: int | None = None
    ) -> None: ...

    async def ended(self, at_ms: float, reason: str) -> None: ...


Job = Callable[[TurnRecorder], Awaitable[None]]


class RecordQueue:
    """The recorder's calls, in order, off the frame path."""

    def __init__(self, recorder: TurnRecorder) -> None:
        self._recorder = recorder
        self._jobs: asyncio.Queue[Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, job: Job) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._jobs.put_nowait(job)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Every call queued so far done (or ``timeout_s`` passed: the rest is cancelled)."""
        if self._task is None:
            return
        self._jobs.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("cxguard: evidence of the conversation not recorded in %s s", timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                await job(self._recorder)
            except Exception:  # a recording bug must not stop the conversation
                log.exception("cxguard: recording evidence failed")
