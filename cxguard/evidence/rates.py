"""Verdict counts by release, assertion, intent and mode: what drift, the report and
``policy compare`` are computed from (read queries; every one is per tenant).

A row written before schema 3 has no release id; it is counted under ``policy:<hash>`` (its
pack hash), so a pack change before the migration still reads as a release change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cxguard.evidence.schema import verdicts

NOT_JUDGEMENTS = ("pipeline.error",)
"""Rows of the verdicts table that judge no assertion (a failure of the pipeline)."""


def release_key(release_id: str | None, policy_hash: str) -> str:
    return release_id or f"policy:{policy_hash}"


@dataclass(frozen=True)
class Count:
    release: str
    assertion_id: str
    intent: str
    mode: str
    outcome: str
    n: int


@dataclass(frozen=True)
class ReleaseSpan:
    release: str
    first: float
    last: float
    verdicts: int
    agent_version: str


def _window(stmt: Any, tenant: str, since: float | None, until: float | None) -> Any:
    stmt = stmt.where(verdicts.c.tenant == tenant).where(
        verdicts.c.assertion_id.not_in(NOT_JUDGEMENTS)
    )
    if since is not None:
        stmt = stmt.where(verdicts.c.decided_at >= since)
    if until is not None:
        stmt = stmt.where(verdicts.c.decided_at < until)
    return stmt


def counts(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> list[Count]:
    cols = (
        verdicts.c.release_id,
        verdicts.c.policy_hash,
        verdicts.c.assertion_id,
        verdicts.c.intent,
        verdicts.c.mode,
        verdicts.c.outcome,
    )
    stmt = _window(sa.select(*cols, sa.func.count()).group_by(*cols), tenant, since, until)
    return [
        Count(release_key(rid, ph), aid, intent or "", mode or "live", outcome, int(n))
        for rid, ph, aid, intent, mode, outcome, n in conn.execute(stmt)
    ]


def release_spans(conn: sa.Connection, tenant: str) -> list[ReleaseSpan]:
    """Every release the tenant's verdicts name, oldest first (by first verdict)."""
    stmt = _window(
        sa.select(
            verdicts.c.release_id,
            verdicts.c.policy_hash,
            sa.func.min(verdicts.c.decided_at),
            sa.func.max(verdicts.c.decided_at),
            sa.func.count(),
            sa.func.max(verdicts.c.agent_version),
        ).group_by(verdicts.c.release_id, verdicts.c.policy_hash),
        tenant,
        None,
        None,
    )
    merged: dict[str, ReleaseSpan] = {}
    for rid, ph, first, last, n, version in conn.execute(stmt):
        key = release_key(rid, ph)
        old = merged.get(key)
        span = ReleaseSpan(key, float(first), float(last), int(n), version or "")
        if old is not None:
            span = ReleaseSpan(
                key,
                min(old.first, span.first),
                max(old.last, span.last),
                old.verdicts + span.verdicts,
                old.agent_version or span.agent_version,
            )
        merged[key] = span
    return sorted(merged.values(), key=lambda s: (s.first, s.release))


def deviations(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> Iterable[sa.Row[Any]]:
    """``fail`` and ``undetermined`` verdicts (call, turn, assertion, outcome, mode, actions,
    severity), in decision order: what raised, or would have raised, an alert."""
    stmt = _window(
        sa.select(
            verdicts.c.call_id,
            verdicts.c.turn_index,
            verdicts.c.assertion_id,
            verdicts.c.outcome,
            verdicts.c.mode,
            verdicts.c.actions,
            verdicts.c.severity,
            verdicts.c.decided_at,
        )
        .where(verdicts.c.outcome.in_(("fail", "undetermined")))
        .order_by(verdicts.c.decided_at, verdicts.c.id),
        tenant,
        since,
        until,
    )
    return list(conn.execute(stmt))


def _day(conn: sa.Connection) -> Any:
    """The UTC day (epoch days) of ``decided_at``, in SQL (PostgreSQL's CAST rounds)."""
    days = verdicts.c.decided_at / 86400.0
    if conn.dialect.name == "sqlite":
        return sa.cast(days, sa.Integer)  # truncates: floor for positive times
    return sa.cast(sa.func.floor(days), sa.Integer)


def daily(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> list[tuple[int, str, str, str, int]]:
    """``(epoch day, assertion, mode, outcome, n)``, by day."""
    day = _day(conn).label("day")
    cols = (verdicts.c.assertion_id, verdicts.c.mode, verdicts.c.outcome)
    stmt = _window(
        sa.select(day, *cols, sa.func.count()).group_by(day, *cols).order_by(day),
        tenant,
        since,
        until,
    )
    return [(int(d), a, m or "live", o, int(n)) for d, a, m, o, n in conn.execute(stmt)]


def violations(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None, limit: int
) -> list[dict[str, Any]]:
    """``fail`` verdicts, oldest first (at most ``limit``)."""
    stmt = _window(
        sa.select(verdicts)
        .where(verdicts.c.outcome == "fail")
        .order_by(verdicts.c.decided_at, verdicts.c.id)
        .limit(limit),
        tenant,
        since,
        until,
    )
    return [
        {
            "call_id": r.call_id,
            "turn": r.turn_index,
            "assertion": r.assertion_id,
            "severity": r.severity,
            "mode": r.mode or "live",
            "intent": r.intent or "",
            "text": r.text,
            "evidence": r.evidence,
            "decided_at": r.decided_at,
            "release_id": release_key(r.release_id, r.policy_hash),
            "actions": r.actions,
        }
        for r in conn.execute(stmt)
    ]


def count_where(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None, outcome: str
) -> int:
    stmt = _window(
        sa.select(sa.func.count()).select_from(verdicts).where(verdicts.c.outcome == outcome),
        tenant,
        since,
        until,
    )
    return int(conn.execute(stmt).scalar_one())


def undetermined_reasons(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> list[tuple[str, int]]:
    """Why verdicts were ``undetermined`` (their evidence), most frequent first."""
    stmt = _window(
        sa.select(verdicts.c.evidence, sa.func.count())
        .where(verdicts.c.outcome == "undetermined")
        .group_by(verdicts.c.evidence)
        .order_by(sa.func.count().desc()),
        tenant,
        since,
        until,
    )
    return [(str(e), int(n)) for e, n in conn.execute(stmt)]


def judged_turns(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> dict[str, int]:
    """Speaker turns and calls the verdicts of the period judged: ``turns``, ``calls``."""
    base = _window(sa.select(verdicts.c.call_id, verdicts.c.turn_index), tenant, since, until)
    pairs = base.distinct().subquery()
    turns = conn.execute(sa.select(sa.func.count()).select_from(pairs)).scalar_one()
    callset = _window(sa.select(verdicts.c.call_id), tenant, since, until).distinct().subquery()
    ncalls = conn.execute(sa.select(sa.func.count()).select_from(callset)).scalar_one()
    return {"turns": int(turns), "calls": int(ncalls)}


def judged_calls(
    conn: sa.Connection, tenant: str, since: float | None, until: float | None
) -> set[str]:
    stmt = _window(sa.select(verdicts.c.call_id).distinct(), tenant, since, until)
    return {str(c) for (c,) in conn.execute(stmt)}
