"""The ledger behind one writer thread: ordered, durable, never on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cxguard.errors import EvidenceError
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, TurnText, Verdict

log = logging.getLogger(__name__)


class EvidenceWriter:
    def __init__(self, ledger: EvidenceLedger) -> None:
        self.ledger = ledger
        # One thread: writes of a call keep their order and SQLite sees a single writer.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="evidence")
        self._pending: set[Future[None]] = set()

    @classmethod
    def open(cls, url: str) -> EvidenceWriter:
        return cls(EvidenceLedger(url))

    def _write(self, info: CallInfo, text: TurnText | None, verdicts: Sequence[Verdict]) -> None:
        if text is not None:
            self.ledger.write_turn(info.call_id, info.tenant, text)
        if verdicts:
            self.ledger.write_verdicts(verdicts)

    async def write(
        self, info: CallInfo, text: TurnText | None, verdicts: Sequence[Verdict]
    ) -> None:
        """Raises EvidenceError: the caller must not alert on a verdict that was not stored."""
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self._write, info, text, verdicts
        )

    def _event(self, info: CallInfo, kind: str, at_ms: float, data: Mapping[str, Any]) -> None:
        try:
            self.ledger.record_event(info.call_id, info.tenant, kind, at_ms, dict(data))
        except EvidenceError:
            log.exception("call %s: could not record event %s", info.call_id, kind)

    async def event(self, info: CallInfo, kind: str, at_ms: float, data: Mapping[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self._event, info, kind, at_ms, data
        )

    def submit_event(
        self, info: CallInfo, kind: str, at_ms: float, data: Mapping[str, Any]
    ) -> None:
        """Fire and forget, still in order with the call's other writes."""
        fut = self._pool.submit(self._event, info, kind, at_ms, data)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True)
        self.ledger.close()
