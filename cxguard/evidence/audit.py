"""``verify``: broken links, and what the ledger lacks.

Per call it checks the hash chain (:func:`~cxguard.evidence.chain.check_chain`), the head's
HMAC when a key is given, and completeness:

* **missing turns**: speaker-turn indices run 0, 1, 2, ... per call; a hole (or a tail short
  of the ``turns_closed`` count that ``call_ended`` / ``call_interrupted`` carry) that no
  ``gap`` event lists is reported, since a turn that was closed but never stored is exactly
  the silent loss the ledger exists to prevent;
* **duplicate turns**: one index stored twice (a reconnect that started again at 0);
* **unended calls**: a call whose last lifecycle event is ``call_started`` (still live, or
  its sidecar crashed and has not restarted); tolerated with ``allow_open``;
* **interrupted calls** are named (a restart found them; their gaps are recorded);
* rows still waiting in the local spool (``pending``) are reported, as is every exported
  head (``heads``) the ledger no longer reaches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence, Set
from typing import Any

import sqlalchemy as sa

from cxguard.evidence import queries
from cxguard.evidence.chain import ChainEnd, ChainProblem, ChainRow, VerifyReport, check_chain
from cxguard.evidence.heads import HeadKey, SignedHead
from cxguard.evidence.retention import PURGED
from cxguard.evidence.rows import LIFECYCLE
from cxguard.evidence.schema import CHAINED, findings


def _completeness(
    tenant: str, call_id: str, rows: Sequence[ChainRow], allow_open: bool
) -> tuple[list[ChainProblem], bool, bool, int]:
    """``(problems, interrupted, open, gaps)`` of one call."""
    problems: list[ChainProblem] = []
    indices: Counter[int] = Counter()
    covered: set[int] = set()
    closed = 0
    last_lifecycle: str | None = None
    interrupted = False
    gaps = 0
    for row in sorted(rows, key=lambda r: r.seq):
        v = row.values
        if row.table == "turns":
            indices[int(v["turn_index"])] += 1
        elif row.table == "events":
            data: Mapping[str, Any] = v["data"] if isinstance(v["data"], dict) else {}
            if v["kind"] == "gap":
                gaps += 1
                covered |= {int(t) for t in data.get("turns", []) if isinstance(t, int)}
            if v["kind"] in LIFECYCLE:
                last_lifecycle = v["kind"]
                interrupted |= v["kind"] == "call_interrupted"
                if isinstance(data.get("turns_closed"), int):
                    closed = max(closed, int(data["turns_closed"]))

    def problem(kind: Any, reason: str) -> None:
        problems.append(ChainProblem(tenant, call_id, "turns", None, None, reason, kind))

    top = max([*indices, *covered, closed - 1], default=-1)
    missing = [i for i in range(top + 1) if i not in indices and i not in covered]
    if missing:
        problem(
            "missing_turn",
            f"turn{'s' if len(missing) > 1 else ''} {_ranges(missing)} closed but not stored, "
            "and no gap recorded",
        )
    repeated = sorted(i for i, n in indices.items() if n > 1)
    if repeated:
        problem("duplicate_turn", f"turn index {_ranges(repeated)} stored more than once")
    is_open = last_lifecycle == "call_started"
    if is_open and not allow_open:
        problems.append(
            ChainProblem(
                tenant,
                call_id,
                "events",
                None,
                None,
                "call never ended: no call_ended or call_interrupted (still live, or its "
                "sidecar stopped and has not restarted)",
                "unended",
            )
        )
    return problems, interrupted, is_open, gaps


def _ranges(numbers: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _check_heads(
    exported: Sequence[SignedHead],
    ends: Mapping[tuple[str, str], ChainEnd],
    hashes: Mapping[tuple[str, str], Mapping[int, str]],
    key: HeadKey | None,
    purged: Set[tuple[str, str]] = frozenset(),
) -> list[ChainProblem]:
    """Every head a third party kept must still be on its chain (for a purged call: not
    beyond its tombstone; the rows an earlier head named are gone by retention)."""
    problems = []
    for h in exported:
        where = (h.tenant, h.call_id)

        def problem(reason: str, h: SignedHead = h) -> None:
            problems.append(
                ChainProblem(h.tenant, h.call_id, "heads", None, h.next_seq, reason, "heads")
            )

        if key is not None and (why := key.check(h.head_mac, *where, h.next_seq, h.head_hash)):
            problem(f"exported head: {why}")
        end = ends.get(where)
        if end is None:
            problem("an exported head's chain is gone from the ledger (deleted)")
        elif end.next_seq < h.next_seq:
            problem(f"chain cut back: {end.next_seq} rows, an exported head had {h.next_seq}")
        elif where in purged:
            if h.next_seq == end.next_seq and h.head_hash != end.head_hash:
                problem("an exported head differs from the purged call's tombstone")
        elif h.next_seq and hashes.get(where, {}).get(h.next_seq - 1) != h.head_hash:
            problem(f"row {h.next_seq - 1} differs from the exported head (chain rewritten)")
    return problems


def verify(
    conn: sa.Connection,
    *,
    call_id: str | None,
    tenant: str | None,
    key: HeadKey | None,
    heads: Sequence[SignedHead],
    pending: Mapping[tuple[str, str], int],
    allow_open: bool,
) -> VerifyReport:
    problems: list[ChainProblem] = []
    interrupted: list[tuple[str, str]] = []
    open_calls: list[tuple[str, str]] = []
    ends: dict[tuple[str, str], ChainEnd] = {}
    hashes: dict[tuple[str, str], dict[int, str]] = {}
    n_calls = n_rows = n_gaps = 0
    tombstones = _tombstones(conn, tenant)
    purged: set[tuple[str, str]] = set()
    for call in queries.call_heads(conn, call_id, tenant):
        where = (call.tenant, call.call_id)
        if call.state == PURGED:
            n_calls += 1
            purged.add(where)
            problems += _check_purged(conn, call, tombstones.get(where))
            ends[where] = ChainEnd(int(call.next_seq), str(call.head_hash))
            if key is not None and (why := key.check(call.head_mac, *where, *_end(ends[where]))):
                problems.append(
                    ChainProblem(*where, "calls", None, call.next_seq, why, "signature")
                )
            continue
        rows = [
            ChainRow(name, row)
            for name, table in CHAINED.items()
            for row in queries.chain_rows(conn, table, call.tenant, call.call_id)
        ]
        n_calls, n_rows = n_calls + 1, n_rows + len(rows)
        found, end = check_chain(*where, rows, call.next_seq, call.head_hash)
        problems += found
        ends[where] = end
        hashes[where] = {r.seq: str(r.values["row_hash"]) for r in rows}
        if key is not None and (why := key.check(call.head_mac, *where, *_end(end))):
            problems.append(ChainProblem(*where, "calls", None, end.next_seq, why, "signature"))
        found, was_interrupted, is_open, gaps = _completeness(*where, rows, allow_open)
        problems += found
        n_gaps += gaps
        if was_interrupted:
            interrupted.append(where)
        if is_open:
            open_calls.append(where)
    if call_id is None:
        for t in queries.tenant_heads(conn, tenant):
            rows = [
                ChainRow("findings", r) for r in queries.chain_rows(conn, findings, t.tenant, None)
            ]
            n_rows += len(rows)
            found, end = check_chain(t.tenant, "", rows, t.next_seq, t.head_hash, "tenants")
            problems += found
            ends[(t.tenant, "")] = end
            hashes[(t.tenant, "")] = {r.seq: str(r.values["row_hash"]) for r in rows}
            if key is not None and (why := key.check(t.head_mac, t.tenant, "", *_end(end))):
                problems.append(
                    ChainProblem(t.tenant, "", "tenants", None, end.next_seq, why, "signature")
                )
    problems += queries.orphans(conn, call_id, tenant)
    wanted = [
        h
        for h in heads
        if (tenant is None or h.tenant == tenant) and (call_id is None or h.call_id == call_id)
    ]
    problems += _check_heads(wanted, ends, hashes, key, purged)
    for (who, cid), n in sorted(pending.items()):
        if (tenant is None or who == tenant) and (call_id is None or cid == call_id) and n:
            reason = f"{n} writes still in the local spool"
            problems.append(ChainProblem(who, cid, "spool", None, None, reason, "spool"))
    return VerifyReport(
        ok=not problems,
        calls_checked=n_calls,
        rows_checked=n_rows,
        problems=tuple(problems),
        interrupted=tuple(interrupted),
        open_calls=tuple(open_calls),
        gaps=n_gaps,
        signed=key is not None,
    )


def _tombstones(conn: sa.Connection, tenant: str | None) -> dict[tuple[str, str], dict[str, Any]]:
    """``purge`` findings by the call they purged (their chain is verified with the tenant's)."""
    stmt = sa.select(findings.c.tenant, findings.c.data).where(findings.c.kind == "purge")
    if tenant is not None:
        stmt = stmt.where(findings.c.tenant == tenant)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for who, data in conn.execute(stmt):
        if isinstance(data, dict) and isinstance(data.get("call_id"), str):
            out[(who, data["call_id"])] = data
    return out


def _check_purged(
    conn: sa.Connection, call: Any, tombstone: Mapping[str, Any] | None
) -> list[ChainProblem]:
    where = (call.tenant, call.call_id)
    problems = []
    if tombstone is None:
        reason = "call marked purged, but no purge finding on the tenant chain records it"
        problems.append(ChainProblem(*where, "calls", None, None, reason))
    elif (tombstone.get("next_seq"), tombstone.get("head_hash")) != (
        int(call.next_seq),
        str(call.head_hash),
    ):
        reason = "purged call's head differs from the head its purge finding recorded"
        problems.append(ChainProblem(*where, "calls", None, None, reason))
    left = sum(
        len(queries.chain_rows(conn, t, call.tenant, call.call_id)) for t in CHAINED.values()
    )
    if left:
        reason = f"call marked purged still has {left} rows"
        problems.append(ChainProblem(*where, "calls", None, None, reason))
    return problems


def _end(end: ChainEnd) -> tuple[int, str]:
    return end.next_seq, end.head_hash
