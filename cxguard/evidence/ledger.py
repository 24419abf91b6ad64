"""The evidence ledger: every turn, verdict and call event, redacted and hash-chained.

Methods are synchronous and thread-safe; the runtime calls them from a worker thread, never
from the event loop, and normally through the spool (:mod:`~cxguard.evidence.spool`), which
hands over :class:`~cxguard.evidence.rows.LedgerOp` batches to :meth:`EvidenceLedger.apply`.
Every string that may carry speech (turn text, verdict text and evidence, event data) goes
through :func:`cxguard.pii.redact` when the op is built, so the database never holds a card
number or SSN even when a caller forgets to redact. Database errors surface as
:class:`~cxguard.errors.EvidenceError` with a summary that names no host, port or database;
every database call is bounded in time (:mod:`~cxguard.evidence.engine`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cxguard.errors import EvidenceError
from cxguard.evidence import audit, progress, queries, rates, retention
from cxguard.evidence.chain import GENESIS, VerifyReport, row_hash
from cxguard.evidence.engine import (
    DEFAULT_URL,
    WRITE_OPTION,
    LedgerOptions,
    Watchdog,
    is_memory,
    make_engine,
    normalise_url,
    summarise_db_error,
)
from cxguard.evidence.heads import HeadKey, SignedHead
from cxguard.evidence.migrate import migrate, needs_migration
from cxguard.evidence.rows import (
    LedgerOp,
    event_op,
    finding_op,
    finding_values,
    note_data,
    stable_op_id,
    turn_op,
    update_call,
    verdict_ops,
)
from cxguard.evidence.schema import (
    CHAINED,
    SCHEMA_VERSION,
    applied_ops,
    calls,
    findings,
    ledger_meta,
    metadata,
    tenants,
)
from cxguard.model import TurnText, Verdict

log = logging.getLogger(__name__)
T = TypeVar("T")

_TABLES: dict[str, sa.Table] = {**CHAINED, "findings": findings}


@dataclass
class _Head:
    next_seq: int
    head_hash: str


@contextmanager
def _db_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        log.debug("ledger could not %s: %s", action, getattr(exc, "orig", None) or exc)
        raise EvidenceError(
            f"evidence ledger could not {action}: {summarise_db_error(exc)}"
        ) from exc


class EvidenceLedger:
    """``EvidenceLedger("sqlite:///evidence.db")`` or ``("postgresql+psycopg://...")``.

    ``key`` signs every chain head it moves (:mod:`~cxguard.evidence.heads`).
    ``LedgerOptions(read_only=True)`` opens an existing ledger without creating or writing
    anything (a missing one is an error)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        options: LedgerOptions | None = None,
        *,
        key: HeadKey | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self._options = options or LedgerOptions()
        self._key = key
        self._sqlite = self.url.get_backend_name() == "sqlite"
        # SQLite has one writer anyway; queueing writers here beats spinning on busy_timeout.
        self._write_lock = threading.Lock()
        self._read_guard: AbstractContextManager[object] = (
            self._write_lock if is_memory(self.url) else nullcontext()
        )
        with _db_errors("open the database"):
            self._engine = make_engine(self.url, self._options)
        try:
            with _db_errors("open the database"):
                self._check_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def read_only(self) -> bool:
        return self._options.read_only

    def _check_schema(self) -> None:
        with self._engine.connect() as conn, Watchdog(conn, self._options.timeout_s + 1):
            if not self.read_only:
                # BEGIN IMMEDIATE: a read transaction that later writes would fail at once
                # (SQLITE_BUSY, no busy wait) when another process wrote meanwhile.
                conn.execution_options(**{WRITE_OPTION: True})
            names = set(sa.inspect(conn).get_table_names())
            if "calls" in names and "ledger_meta" not in names:
                raise EvidenceError(
                    "this ledger has the first schema (calls keyed by call id alone): export it "
                    "with the cxguard that wrote it and start a new ledger"
                )
            if self.read_only:
                if "ledger_meta" not in names:
                    raise EvidenceError("no evidence ledger in this database")
            else:
                metadata.create_all(conn)
                insert = sqlite_insert if self._sqlite else pg_insert
                conn.execute(
                    insert(ledger_meta)
                    .values(key="schema_version", value=SCHEMA_VERSION)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
            version = conn.execute(
                sa.select(ledger_meta.c.value).where(ledger_meta.c.key == "schema_version")
            ).scalar_one_or_none()
            if needs_migration(version) and not self.read_only:
                assert version is not None
                added = migrate(conn, version)
                log.warning("evidence ledger migrated to schema %s (%s)", SCHEMA_VERSION, added)
                version = SCHEMA_VERSION
            conn.commit()
        if needs_migration(version):
            raise EvidenceError(
                f"ledger schema version {version!r} is older than {SCHEMA_VERSION}: migrate it "
                "with `cxguard evidence migrate --evidence URL` (additive, chains still verify)"
            )
        if version != SCHEMA_VERSION:
            raise EvidenceError(f"ledger schema version {version!r}, expected {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        if self.read_only:
            raise EvidenceError("the ledger was opened read-only")
        lock: AbstractContextManager[object] = self._write_lock if self._sqlite else nullcontext()
        with (
            lock,
            _db_errors("write"),
            self._engine.connect() as conn,
            Watchdog(conn, self._options.timeout_s + 1),
        ):
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with (
            self._read_guard,
            _db_errors("read"),
            self._engine.connect() as conn,
            Watchdog(conn, self._options.timeout_s + 1),
            conn.begin(),
        ):
            yield conn

    def _insert(self) -> Any:
        return sqlite_insert if self._sqlite else pg_insert

    def _lock_heads(
        self, conn: sa.Connection, keys: Sequence[tuple[str, str]], now: float
    ) -> dict[tuple[str, str], _Head]:
        """Create missing anchor rows (``calls``, or ``tenants`` for call id "") and lock them,
        in a fixed order (no deadlocks)."""
        heads: dict[tuple[str, str], _Head] = {}
        for tenant, call_id in sorted(set(keys)):
            if call_id:
                conn.execute(
                    self._insert()(calls)
                    .values(
                        tenant=tenant,
                        call_id=call_id,
                        source="",
                        owner="",
                        state="",
                        created_at=now,
                        updated_at=now,
                        next_seq=0,
                        head_hash=GENESIS,
                    )
                    .on_conflict_do_nothing(index_elements=["tenant", "call_id"])
                )
                where = (calls.c.tenant == tenant) & (calls.c.call_id == call_id)
                row = conn.execute(
                    sa.select(calls.c.next_seq, calls.c.head_hash).where(where).with_for_update()
                ).one()
            else:
                conn.execute(
                    self._insert()(tenants)
                    .values(tenant=tenant, created_at=now, next_seq=0, head_hash=GENESIS)
                    .on_conflict_do_nothing(index_elements=["tenant"])
                )
                row = conn.execute(
                    sa.select(tenants.c.next_seq, tenants.c.head_hash)
                    .where(tenants.c.tenant == tenant)
                    .with_for_update()
                ).one()
            heads[(tenant, call_id)] = _Head(int(row.next_seq), str(row.head_hash))
        return heads

    @staticmethod
    def _link(head: _Head, table: str, values: Mapping[str, Any], now: float) -> dict[str, Any]:
        """``values`` as the next row of the chain at ``head`` (which moves on)."""
        row = {**values, "seq": head.next_seq, "prev_hash": head.head_hash, "recorded_at": now}
        row["row_hash"] = row_hash(table, row)
        head.next_seq, head.head_hash = head.next_seq + 1, row["row_hash"]
        return row

    def _store_heads(self, conn: sa.Connection, heads: Mapping[tuple[str, str], _Head]) -> None:
        for (tenant, call_id), head in heads.items():
            mac = (
                self._key.sign(tenant, call_id, head.next_seq, head.head_hash)
                if self._key
                else None
            )
            values = {"next_seq": head.next_seq, "head_hash": head.head_hash, "head_mac": mac}
            if call_id:
                where = (calls.c.tenant == tenant) & (calls.c.call_id == call_id)
                conn.execute(sa.update(calls).where(where).values(**values))
            else:
                conn.execute(sa.update(tenants).where(tenants.c.tenant == tenant).values(**values))

    # ------------------------------------------------------------------ writes

    def apply(self, ops: Sequence[LedgerOp]) -> int:
        """Store ``ops`` in one transaction, in order; ops stored before (same ``op_id``) are
        skipped. Returns how many were new."""
        if not ops:
            return 0
        now = time.time()
        with self._writing() as conn:
            ids = [op.op_id for op in ops]
            seen = set(
                conn.execute(sa.select(applied_ops.c.op_id).where(applied_ops.c.op_id.in_(ids)))
                .scalars()
                .all()
            )
            fresh = [op for op in ops if op.op_id not in seen]
            if not fresh:
                return 0
            heads = self._lock_heads(conn, [(op.tenant, op.call_id) for op in fresh], now)
            for op in fresh:
                head = heads[(op.tenant, op.call_id)]
                rows = [self._link(head, op.table, r, now) for r in op.rows]
                conn.execute(sa.insert(_TABLES[op.table]), rows)
                if op.table == "events":
                    for row in rows:
                        update_call(conn, row, op, now)
            self._store_heads(conn, heads)
            conn.execute(
                sa.insert(applied_ops),
                [{"op_id": op.op_id, "tenant": op.tenant, "applied_at": now} for op in fresh],
            )
        return len(fresh)

    def write_turn(
        self,
        call_id: str,
        tenant: str,
        turn: TurnText,
        *,
        model_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Record one speaker turn of either speaker (with or without verdicts), redacted."""
        self.apply([turn_op(call_id, tenant, turn, model_ids)])

    def write_verdicts(self, batch: Sequence[Verdict]) -> None:
        """Record verdicts (of one or several calls) in one transaction, in the given order.

        A verdict whose ``decided_at_wall`` is 0 is stamped with the time of writing.
        """
        self.apply(verdict_ops(batch, time.time()))

    def record_event(
        self,
        call_id: str,
        tenant: str,
        kind: str,
        at_ms: float | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        owner: str = "",
        source: str = "",
    ) -> None:
        """Record a call event: ``kind`` matches ``[A-Za-z][A-Za-z0-9_.:-]{0,63}``, e.g.
        ``call_started``, ``call_ended``, ``call_interrupted`` (these three also update
        :meth:`calls`), ``stream_ended``, ``control.*``, ``gap``, ``alert.delivered`` /
        ``.retrying`` / ``.failed``, ``handoff.*``. Strings anywhere in ``data`` are
        redacted. A ``gap`` whose ``data["turns"]`` lists turn indices marks those turns as
        knowingly unjudged (``verify`` then does not report them missing)."""
        self.apply([event_op(call_id, tenant, kind, at_ms, data, owner=owner, source=source)])

    def record_finding(self, tenant: str, kind: str, data: Mapping[str, Any] | None) -> None:
        """A finding about a tenant that belongs to no call (``drift_detected``), on the
        tenant's own chain."""
        self.apply([finding_op(tenant, kind, data)])

    def record_once(self, tenant: str, kind: str, key: str, data: Mapping[str, Any]) -> bool:
        """A finding stored at most once per ``(tenant, kind, key)`` whoever records it (a
        ``release`` seen, a ``drift_detected`` finding); True if it was new."""
        op = finding_op(tenant, kind, data, op_id=stable_op_id(kind, tenant, key))
        return self.apply([op]) == 1

    def annotate(
        self,
        tenant: str,
        kind: str,
        text: str,
        by: str,
        *,
        call_id: str | None = None,
        finding_id: str | None = None,
        about: Mapping[str, Any] | None = None,
    ) -> None:
        """A remediation ``note`` or an ``ack`` (console acknowledgement) by ``by``: a chained
        event on the call's chain, or a chained finding on the tenant's chain naming the
        finding (``finding_id``). ``about`` adds context (``turn``, ``assertion``,
        ``alert_id``). The call or finding must exist: a note never creates a chain."""
        if (call_id is None) == (finding_id is None):
            raise EvidenceError("a note is about one call or one finding")
        if call_id is not None:
            with self._reading() as conn:
                known = queries.call_heads(conn, call_id, tenant)
            if not known:
                raise EvidenceError(f"no call {call_id!r} of tenant {tenant!r} in the ledger")
            data = note_data(kind, text, by, about)
            self.apply([event_op(call_id, tenant, kind, None, data)])
            return
        assert finding_id is not None
        if not any(f["data"].get("finding_id") == finding_id for f in self.findings(tenant)):
            raise EvidenceError(f"no finding {finding_id!r} of tenant {tenant!r} in the ledger")
        data = note_data(kind, text, by, {**dict(about or {}), "finding_id": finding_id})
        self.apply([finding_op(tenant, kind, data)])

    def purge(
        self, tenant: str, profile: str, now: float | None = None, *, dry_run: bool = False
    ) -> retention.PurgeSummary:
        """Remove the calls of ``tenant`` past ``profile``'s retention, each in its own
        transaction with its tombstone (:mod:`~cxguard.evidence.retention`)."""
        at = time.time() if now is None else now
        cutoff = at - retention.retention_s(profile)
        summary = retention.PurgeSummary(tenant, profile, cutoff, dry_run)
        with self._reading() as conn:
            candidates = [r.call_id for r in retention.due(conn, tenant, cutoff)]
        for call_id in candidates:
            if dry_run:
                summary.calls.append(call_id)
                continue
            with self._writing() as conn:
                heads = self._lock_heads(conn, [(tenant, "")], at)
                # Re-read under the lock: the call may have moved on since.
                still = [r for r in retention.due(conn, tenant, cutoff) if r.call_id == call_id]
                if not still:
                    continue
                call = still[0]
                removed = retention.remove_rows(conn, tenant, call_id)
                data = {
                    "call_id": call_id,
                    "next_seq": int(call.next_seq),
                    "head_hash": call.head_hash,
                    "head_mac": call.head_mac,
                    "rows": removed,
                    "profile": profile,
                    "cutoff": cutoff,
                }
                row = self._link(
                    heads[(tenant, "")], "findings", finding_values(tenant, "purge", data), at
                )
                conn.execute(sa.insert(findings), [row])
                self._store_heads(conn, heads)
            summary.calls.append(call_id)
            for name, n in removed.items():
                summary.rows[name] = summary.rows.get(name, 0) + n
        return summary

    # ------------------------------------------------------------------ reads

    def export(
        self, call_id: str | None = None, tenant: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Verdict rows as JSON-ready dicts (:func:`~cxguard.evidence.queries.export_row`),
        ordered by tenant, call, turn index, assertion. Read page by page: no connection is
        held between the rows handed out."""
        after: tuple[Any, ...] | None = None
        while True:
            with self._reading() as conn:
                page = queries.verdict_page(conn, call_id, tenant, after)
            if not page:
                return
            for row in page:
                yield queries.export_row(row)
            after = queries.page_key(page[-1])

    def turns(self, call_id: str | None = None, tenant: str | None = None) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return queries.turn_rows(conn, call_id, tenant)

    def events(
        self, call_id: str | None = None, tenant: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return queries.event_rows(conn, call_id, tenant, kind)

    def findings(self, tenant: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return queries.finding_rows(conn, tenant, kind)

    def calls(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Calls, oldest first."""
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

    def query(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one read transaction: the read queries of
        :mod:`~cxguard.evidence.rates` (what reports are made of), writing nothing."""
        with self._reading() as conn:
            return fn(conn, *args)

    def rate_counts(
        self, tenant: str, since: float | None = None, until: float | None = None
    ) -> list[rates.Count]:
        """Verdict counts by (release, assertion, intent, mode, outcome) decided in
        ``[since, until)`` (:mod:`~cxguard.evidence.rates`)."""
        with self._reading() as conn:
            return rates.counts(conn, tenant, since, until)

    def release_spans(self, tenant: str) -> list[rates.ReleaseSpan]:
        with self._reading() as conn:
            return rates.release_spans(conn, tenant)

    def deviations(
        self, tenant: str, since: float | None = None, until: float | None = None
    ) -> list[Any]:
        with self._reading() as conn:
            return list(rates.deviations(conn, tenant, since, until))

    def head(self, tenant: str, call_id: str) -> tuple[int, str]:
        """``(row count, last row_hash)`` of a call's chain."""
        with self._reading() as conn:
            rows = queries.call_heads(conn, call_id, tenant)
        if not rows:
            raise EvidenceError(f"no call {call_id!r} of tenant {tenant!r} in the ledger")
        return int(rows[0].next_seq), str(rows[0].head_hash)

    def heads(self, tenant: str | None = None) -> list[SignedHead]:
        """Every chain head (calls, then tenants' findings) with its HMAC, to keep elsewhere."""
        now = time.time()
        with self._reading() as conn:
            call_rows = queries.call_heads(conn, None, tenant)
            tenant_rows = queries.tenant_heads(conn, tenant)
        out = [
            SignedHead(r.tenant, r.call_id, int(r.next_seq), r.head_hash, r.head_mac, now)
            for r in call_rows
        ]
        out += [
            SignedHead(r.tenant, "", int(r.next_seq), r.head_hash, r.head_mac, now)
            for r in tenant_rows
        ]
        return out

    def call_progress(self, tenant: str, call_id: str) -> progress.CallProgress:
        """Where a call's numbering stands and what it said, for a restart or a reconnect
        (see :class:`~cxguard.evidence.progress.CallProgress`)."""
        with self._reading() as conn:
            return progress.call_progress(conn, tenant, call_id)

    def calls_to_recover(self, owner: str) -> list[tuple[str, str]]:
        """``(tenant, call_id)`` of calls ``owner`` started that never ended."""
        with self._reading() as conn:
            return progress.unended_calls(conn, owner)

    def recent_calls(self, owner: str, since: float) -> list[tuple[str, str]]:
        """Calls ``owner`` started or updated since ``since`` (epoch s): reconnect candidates."""
        with self._reading() as conn:
            return progress.recent_calls(conn, owner, since)

    def verify(
        self,
        call_id: str | None = None,
        tenant: str | None = None,
        *,
        key: HeadKey | None = None,
        heads: Sequence[SignedHead] = (),
        pending: Mapping[tuple[str, str], int] | None = None,
        allow_open: bool = False,
    ) -> VerifyReport:
        """Check every chain (of one call, or of ``tenant``, or all) and what the ledger
        lacks: see :func:`~cxguard.evidence.audit.verify`."""
        with self._reading() as conn:
            report = audit.verify(
                conn,
                call_id=call_id,
                tenant=tenant,
                key=key,
                heads=heads,
                pending=pending or {},
                allow_open=allow_open,
            )
        if call_id is not None and report.calls_checked == 0 and not report.problems:
            raise EvidenceError(f"no call {call_id!r} in the ledger")
        return report

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> EvidenceLedger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
