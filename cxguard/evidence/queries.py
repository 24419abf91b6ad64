"""Read queries of the ledger; every one filters by tenant when a tenant is given."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from cxguard.evidence.chain import ChainProblem
from cxguard.evidence.schema import CHAINED, calls, events, findings, tenants, turns, verdicts

PAGE = 1000
_EXPORT_ORDER = (
    verdicts.c.tenant,
    verdicts.c.call_id,
    verdicts.c.turn_index,
    verdicts.c.assertion_id,
    verdicts.c.id,
)


def _by_tenant(stmt: Any, column: sa.ColumnElement[str], tenant: str | None) -> Any:
    return stmt if tenant is None else stmt.where(column == tenant)


def _of_call(stmt: Any, table: sa.Table, call_id: str | None, tenant: str | None) -> Any:
    stmt = _by_tenant(stmt, table.c.tenant, tenant)
    return stmt if call_id is None else stmt.where(table.c.call_id == call_id)


def verdict_page(
    conn: sa.Connection, call_id: str | None, tenant: str | None, after: tuple[Any, ...] | None
) -> list[sa.Row[Any]]:
    stmt = _of_call(
        sa.select(verdicts).order_by(*_EXPORT_ORDER).limit(PAGE), verdicts, call_id, tenant
    )
    if after is not None:
        stmt = stmt.where(sa.tuple_(*_EXPORT_ORDER) > sa.tuple_(*after))
    return list(conn.execute(stmt).all())


def page_key(row: sa.Row[Any]) -> tuple[Any, ...]:
    return (row.tenant, row.call_id, row.turn_index, row.assertion_id, row.id)


def _seconds(ms: float) -> float:
    return round(ms / 1000.0, 3)


def export_row(row: sa.Row[Any]) -> dict[str, Any]:
    """A verdict row for export: ``turn`` is the speaker-turn index, ``trigger_turn`` the turn
    whose obligation it judges (temporal assertions), ``segments`` the VAD segments."""
    return {
        "call_id": row.call_id,
        "tenant": row.tenant,
        "turn": row.turn_index,
        "speaker": row.speaker,
        "start": _seconds(row.start_ms),
        "end": _seconds(row.end_ms),
        "text": row.text,
        "assertion": row.assertion_id,
        "verdict": row.outcome,
        "evidence": row.evidence,
        "severity": row.severity,
        "actions": row.actions,
        "scores": row.scores,
        "policy_hash": row.policy_hash,
        "model_ids": row.model_ids,
        "latency_ms": row.latency,
        "decided_at": row.decided_at,
        "trigger_turn": row.trigger_turn,
        "segments": row.segments,
        "release_id": row.release_id,
        "agent_version": row.agent_version,
        "intent": row.intent,
        "mode": row.mode,
        "seq": row.seq,
        "row_hash": row.row_hash,
    }


def turn_row(r: sa.Row[Any]) -> dict[str, Any]:
    return {
        "call_id": r.call_id,
        "tenant": r.tenant,
        "turn": r.turn_index,
        "speaker": r.speaker,
        "start": _seconds(r.start_ms),
        "end": _seconds(r.end_ms),
        "text": r.text,
        "undetermined_reason": r.undetermined_reason,
        "confidence": r.confidence,
        "model_ids": r.model_ids,
        "segments": r.segments,
        "seq": r.seq,
        "row_hash": r.row_hash,
    }


def turn_rows(conn: sa.Connection, call_id: str | None, tenant: str | None) -> list[dict[str, Any]]:
    stmt = sa.select(turns).order_by(
        turns.c.tenant, turns.c.call_id, turns.c.turn_index, turns.c.seq
    )
    return [turn_row(r) for r in conn.execute(_of_call(stmt, turns, call_id, tenant))]


def event_rows(
    conn: sa.Connection, call_id: str | None, tenant: str | None, kind: str | None
) -> list[dict[str, Any]]:
    stmt = _of_call(
        sa.select(events).order_by(events.c.tenant, events.c.call_id, events.c.seq),
        events,
        call_id,
        tenant,
    )
    if kind is not None:
        stmt = stmt.where(events.c.kind == kind)
    return [
        {
            "call_id": r.call_id,
            "tenant": r.tenant,
            "kind": r.kind,
            "at_ms": r.at_ms,
            "data": r.data,
            "recorded_at": r.recorded_at,
            "seq": r.seq,
        }
        for r in conn.execute(stmt)
    ]


def finding_rows(conn: sa.Connection, tenant: str | None, kind: str | None) -> list[dict[str, Any]]:
    stmt = _by_tenant(
        sa.select(findings).order_by(findings.c.tenant, findings.c.seq), findings.c.tenant, tenant
    )
    if kind is not None:
        stmt = stmt.where(findings.c.kind == kind)
    return [
        {
            "tenant": r.tenant,
            "kind": r.kind,
            "data": r.data,
            "recorded_at": r.recorded_at,
            "seq": r.seq,
        }
        for r in conn.execute(stmt)
    ]


def call_rows(conn: sa.Connection, tenant: str | None) -> list[dict[str, Any]]:
    stmt = sa.select(calls).order_by(calls.c.created_at, calls.c.tenant, calls.c.call_id)
    return [dict(r._mapping) for r in conn.execute(_by_tenant(stmt, calls.c.tenant, tenant))]


def _window(stmt: Any, since: float | None, until: float | None) -> Any:
    if since is not None:
        stmt = stmt.where(verdicts.c.decided_at >= since)
    if until is not None:
        stmt = stmt.where(verdicts.c.decided_at < until)
    return stmt


def outcome_counts(
    conn: sa.Connection, tenant: str | None, since: float | None, until: float | None
) -> dict[str, dict[str, int]]:
    stmt = sa.select(verdicts.c.assertion_id, verdicts.c.outcome, sa.func.count()).group_by(
        verdicts.c.assertion_id, verdicts.c.outcome
    )
    stmt = _window(_by_tenant(stmt, verdicts.c.tenant, tenant), since, until)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for assertion_id, outcome, n in conn.execute(stmt):
        out[assertion_id][outcome] = int(n)
    return dict(out)


def failures(
    conn: sa.Connection, tenant: str | None, since: float | None, until: float | None, limit: int
) -> dict[str, list[tuple[str, int]]]:
    stmt = (
        sa.select(verdicts.c.assertion_id, verdicts.c.call_id, verdicts.c.turn_index)
        .where(verdicts.c.outcome == "fail")
        .order_by(verdicts.c.assertion_id, verdicts.c.decided_at, verdicts.c.id)
    )
    stmt = _window(_by_tenant(stmt, verdicts.c.tenant, tenant), since, until)
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for assertion_id, call_id, turn_index in conn.execute(stmt):
        if len(out[assertion_id]) < limit:
            out[assertion_id].append((call_id, int(turn_index)))
    return dict(out)


def call_heads(conn: sa.Connection, call_id: str | None, tenant: str | None) -> list[sa.Row[Any]]:
    stmt = sa.select(
        calls.c.tenant,
        calls.c.call_id,
        calls.c.next_seq,
        calls.c.head_hash,
        calls.c.head_mac,
        calls.c.state,
    ).order_by(calls.c.tenant, calls.c.call_id)
    return list(conn.execute(_of_call(stmt, calls, call_id, tenant)).all())


def tenant_heads(conn: sa.Connection, tenant: str | None) -> list[sa.Row[Any]]:
    stmt = sa.select(tenants).order_by(tenants.c.tenant)
    return list(conn.execute(_by_tenant(stmt, tenants.c.tenant, tenant)).all())


def chain_rows(
    conn: sa.Connection, table: sa.Table, tenant: str, call_id: str | None
) -> list[dict[str, Any]]:
    stmt = sa.select(table).where(table.c.tenant == tenant).order_by(table.c.seq)
    if call_id is not None:
        stmt = stmt.where(table.c.call_id == call_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def orphans(conn: sa.Connection, call_id: str | None, tenant: str | None) -> list[ChainProblem]:
    """Chained rows whose anchor (``calls`` / ``tenants`` row) is gone."""
    found: list[ChainProblem] = []
    for name, table in CHAINED.items():
        anchored = sa.exists().where(
            (calls.c.tenant == table.c.tenant) & (calls.c.call_id == table.c.call_id)
        )
        stmt = (
            sa.select(table.c.tenant, table.c.call_id, table.c.id, table.c.seq)
            .where(~anchored)
            .order_by(table.c.tenant, table.c.call_id, table.c.seq)
        )
        for r in conn.execute(_of_call(stmt, table, call_id, tenant)):
            found.append(
                ChainProblem(r.tenant, r.call_id, name, r.id, r.seq, "no calls row anchors it")
            )
    if call_id is None:
        stmt = (
            sa.select(findings.c.tenant, findings.c.id, findings.c.seq)
            .where(~sa.exists().where(tenants.c.tenant == findings.c.tenant))
            .order_by(findings.c.tenant, findings.c.seq)
        )
        for r in conn.execute(_by_tenant(stmt, findings.c.tenant, tenant)):
            found.append(
                ChainProblem(r.tenant, "", "findings", r.id, r.seq, "no tenants row anchors it")
            )
    return found
