"""The evidence ledger: every turn, verdict and call event, redacted and hash-chained.

Methods are synchronous and thread-safe; the runtime calls them from a worker thread, never
from the event loop. Every string that may carry speech (turn text, verdict text and
evidence, event data) goes through :func:`cxguard.pii.redact` here, so the
database never holds a card number or SSN even when a caller forgets to redact. Database
errors surface as :class:`~cxguard.errors.EvidenceError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cxguard.errors import EvidenceError
from cxguard.evidence import queries
from cxguard.evidence.chain import GENESIS, ChainRow, VerifyReport, check_call, row_hash
from cxguard.evidence.engine import (
    DEFAULT_URL,
    WRITE_OPTION,
    LedgerOptions,
    is_memory,
    make_engine,
    normalise_url,
)
from cxguard.evidence.rows import event_values, turn_values, update_call, verdict_values
from cxguard.evidence.schema import CHAINED, calls, events, metadata, turns, verdicts
from cxguard.model import TurnText, Verdict

TENANT_STREAM_PREFIX = "tenant:"
"""``call_id`` of the chain that holds a tenant's events that belong to no call (drift)."""


def tenant_stream(tenant: str) -> str:
    return f"{TENANT_STREAM_PREFIX}{tenant}"


@dataclass
class _Head:
    next_seq: int
    head_hash: str


@contextmanager
def _db_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        # The driver's message, not SQLAlchemy's, which repeats the statement's parameters.
        detail = getattr(exc, "orig", None) or exc
        raise EvidenceError(f"evidence ledger could not {action}: {detail}") from exc


class EvidenceLedger:
    """``EvidenceLedger("sqlite:///evidence.db")`` or ``("postgresql+psycopg://...")``."""

    def __init__(self, url: str = DEFAULT_URL, options: LedgerOptions | None = None) -> None:
        self.url = normalise_url(url)
        self._options = options or LedgerOptions()
        self._sqlite = self.url.get_backend_name() == "sqlite"
        # SQLite has one writer anyway; queueing writers here beats spinning on busy_timeout.
        self._write_lock = threading.Lock()
        self._read_guard: AbstractContextManager[object] = (
            self._write_lock if is_memory(self.url) else nullcontext()
        )
        with _db_errors("open the database"):
            self._engine = make_engine(self.url, self._options)
            metadata.create_all(self._engine)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        lock: AbstractContextManager[object] = self._write_lock if self._sqlite else nullcontext()
        with lock, _db_errors("write"), self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with self._read_guard, _db_errors("read"), self._engine.connect() as conn, conn.begin():
            yield conn

    def _lock_heads(self, conn: sa.Connection, owners: Mapping[str, str]) -> dict[str, _Head]:
        """Create missing ``calls`` rows and lock them, in a fixed order (no deadlocks)."""
        heads: dict[str, _Head] = {}
        insert = pg_insert if not self._sqlite else sqlite_insert
        for call_id in sorted(owners):
            tenant = owners[call_id]
            source = "ledger" if call_id.startswith(TENANT_STREAM_PREFIX) else ""
            conn.execute(
                insert(calls)
                .values(
                    call_id=call_id,
                    tenant=tenant,
                    source=source,
                    created_at=time.time(),
                    next_seq=0,
                    head_hash=GENESIS,
                )
                .on_conflict_do_nothing(index_elements=["call_id"])
            )
            row = conn.execute(
                sa.select(calls.c.tenant, calls.c.next_seq, calls.c.head_hash)
                .where(calls.c.call_id == call_id)
                .with_for_update()
            ).one()
            if row.tenant != tenant:
                raise EvidenceError(f"call {call_id!r} belongs to another tenant")
            heads[call_id] = _Head(int(row.next_seq), str(row.head_hash))
        return heads

    @staticmethod
    def _link(head: _Head, table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` as the next row of the chain at ``head`` (which moves on)."""
        row = {**values, "seq": head.next_seq, "prev_hash": head.head_hash}
        row["recorded_at"] = time.time()
        row["row_hash"] = row_hash(table.name, row)
        head.next_seq, head.head_hash = head.next_seq + 1, row["row_hash"]
        return row

    @staticmethod
    def _store_heads(conn: sa.Connection, heads: Mapping[str, _Head]) -> None:
        for call_id, head in heads.items():
            conn.execute(
                sa.update(calls)
                .where(calls.c.call_id == call_id)
                .values(next_seq=head.next_seq, head_hash=head.head_hash)
            )

    # ------------------------------------------------------------------ writes

    def write_turn(
        self,
        call_id: str,
        tenant: str,
        turn: TurnText,
        *,
        model_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Record one turn of either speaker (with or without verdicts), text redacted."""
        values = turn_values(call_id, tenant, turn, model_ids)
        with self._writing() as conn:
            heads = self._lock_heads(conn, {call_id: tenant})
            conn.execute(sa.insert(turns), [self._link(heads[call_id], turns, values)])
            self._store_heads(conn, heads)

    def write_verdicts(self, batch: Sequence[Verdict]) -> None:
        """Record verdicts (of one or several calls) in one transaction, in the given order.

        A verdict whose ``decided_at_wall`` is 0 is stamped with the time of writing.
        """
        if not batch:
            return
        now = time.time()
        rows = [verdict_values(v, now) for v in batch]
        owners: dict[str, str] = {}
        for row in rows:
            if owners.setdefault(row["call_id"], row["tenant"]) != row["tenant"]:
                raise EvidenceError(f"call {row['call_id']!r} appears with two tenants")
        with self._writing() as conn:
            heads = self._lock_heads(conn, owners)
            chained = [self._link(heads[r["call_id"]], verdicts, r) for r in rows]
            conn.execute(sa.insert(verdicts), chained)
            self._store_heads(conn, heads)

    def record_event(
        self,
        call_id: str | None,
        tenant: str,
        kind: str,
        at_ms: float | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a call event: ``kind`` matches ``[A-Za-z][A-Za-z0-9_.:-]{0,63}``, e.g.
        ``call_started``, ``call_ended`` (these two also update :meth:`calls`), ``control.*``,
        ``gap``, ``handoff.requested``/``.delivered``/``.failed``, ``alert.failed``,
        ``drift_detected``. Strings anywhere in ``data`` are redacted. ``call_id=None`` files
        it under the tenant's own chain (:func:`tenant_stream`), for findings of no call."""
        call_id = tenant_stream(tenant) if call_id is None else call_id
        values = event_values(call_id, tenant, kind, at_ms, data)
        with self._writing() as conn:
            heads = self._lock_heads(conn, {call_id: tenant})
            conn.execute(sa.insert(events), [self._link(heads[call_id], events, values)])
            self._store_heads(conn, heads)
            update_call(conn, values)

    # ------------------------------------------------------------------ reads

    def export(
        self, call_id: str | None = None, tenant: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Verdict rows as JSON-ready dicts (``call_id, turn, speaker, start, end, text,
        assertion, verdict`` + the rest; ``start``/``end`` in seconds on the stream timeline),
        ordered by call, turn index, assertion. Read page by page: no connection is held
        between the rows handed out."""
        after: tuple[Any, ...] | None = None
        while True:
            with self._reading() as conn:
                page = queries.verdict_page(conn, call_id, tenant, after)
            if not page:
                return
            for row in page:
                yield queries.export_row(row)
            last = page[-1]
            after = (last.call_id, last.turn_index, last.assertion_id, last.id)

    def turns(self, call_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return queries.turn_rows(conn, call_id, tenant)

    def events(
        self, call_id: str | None = None, tenant: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return queries.event_rows(conn, call_id, tenant, kind)

    def calls(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Calls (not tenant streams), oldest first."""
        with self._reading() as conn:
            return queries.call_rows(conn, tenant)

    def outcome_counts(
        self, tenant: str | None = None, since: float | None = None, until: float | None = None
    ) -> dict[str, dict[str, int]]:
        """``{assertion_id: {outcome: count}}`` for verdicts decided in ``[since, until)``."""
        with self._reading() as conn:
            return queries.outcome_counts(conn, tenant, since, until)

    def failures(
        self,
        tenant: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit_per_assertion: int = 50,
    ) -> dict[str, list[tuple[str, int]]]:
        """``{assertion_id: [(call_id, turn_index), ...]}`` of failed verdicts, oldest first."""
        with self._reading() as conn:
            return queries.failures(conn, tenant, since, until, limit_per_assertion)

    def head(self, call_id: str) -> tuple[int, str]:
        """``(row count, last row_hash)`` of a call's chain, to anchor outside the database."""
        with self._reading() as conn:
            row = conn.execute(
                sa.select(calls.c.next_seq, calls.c.head_hash).where(calls.c.call_id == call_id)
            ).one_or_none()
        if row is None:
            raise EvidenceError(f"no call {call_id!r} in the ledger")
        return int(row.next_seq), str(row.head_hash)

    def verify(self, call_id: str | None = None, tenant: str | None = None) -> VerifyReport:
        """Check the hash chain of one call, or of every call (of ``tenant`` when given)."""
        problems = []
        n_calls = n_rows = 0
        with self._reading() as conn:
            for call in queries.chain_heads(conn, call_id, tenant):
                rows = [
                    ChainRow(name, row)
                    for name, table in CHAINED.items()
                    for row in queries.chain_rows(conn, table, call.call_id)
                ]
                n_calls, n_rows = n_calls + 1, n_rows + len(rows)
                problems += check_call(call.call_id, rows, call.next_seq, call.head_hash)
            problems += queries.orphans(conn, call_id, tenant)
        if call_id is not None and n_calls == 0 and not problems:
            raise EvidenceError(f"no call {call_id!r} in the ledger")
        return VerifyReport(not problems, n_calls, n_rows, tuple(problems))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> EvidenceLedger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
