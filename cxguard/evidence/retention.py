"""Retention: how long a tenant's calls are kept, and purging what is past it.

Profiles: ``6m`` (the default, 183 days), ``12m`` (366 days: PCI DSS 10.5.1's year of audit
history), ``6y`` (2192 days, e.g. record-keeping duties of regulated finance). Only call data
is purged: a call whose chain ended (``call_ended`` / ``call_interrupted``, or never started)
and whose last row was recorded before the cutoff loses its turns, verdicts and events; its
``calls`` row stays as the tombstone (state ``purged``, its signed head unchanged), and a
``purge`` finding on the tenant's chain records the call's head (``next_seq``, ``head_hash``,
``head_mac``), the rows removed, the profile and the cutoff. ``verify`` accepts a purged call
only when such a finding, on the intact tenant chain, matches its head; findings (releases,
drift, notes on findings, purges) are never purged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cxguard.errors import ConfigError
from cxguard.evidence.schema import CHAINED, calls

DAY = 86_400.0
PROFILES: Mapping[str, float] = {"6m": 183 * DAY, "12m": 366 * DAY, "6y": 2192 * DAY}
DEFAULT_PROFILE = "6m"
PURGED = "purged"
"""``calls.state`` of a tombstone."""


def retention_s(profile: str) -> float:
    try:
        return PROFILES[profile]
    except KeyError:
        raise ConfigError(f"retention profile {profile!r}: one of {', '.join(PROFILES)}") from None


@dataclass
class PurgeSummary:
    tenant: str
    profile: str
    cutoff: float
    dry_run: bool
    calls: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "profile": self.profile,
            "cutoff": self.cutoff,
            "dry_run": self.dry_run,
            "calls": list(self.calls),
            "rows": dict(self.rows),
        }


def due(conn: sa.Connection, tenant: str, cutoff: float) -> list[sa.Row[Any]]:
    """Calls of ``tenant`` past the cutoff: not live, not purged, every row older."""
    stmt = (
        sa.select(calls)
        .where(calls.c.tenant == tenant)
        .where(calls.c.state.not_in(("live", PURGED)))
        .where(calls.c.updated_at < cutoff)
        .order_by(calls.c.created_at, calls.c.call_id)
    )
    out = []
    for row in conn.execute(stmt).all():
        # A note written after the call ended keeps the call as long as it is itself kept.
        newest = [
            conn.execute(
                sa.select(sa.func.max(t.c.recorded_at)).where(
                    (t.c.tenant == tenant) & (t.c.call_id == row.call_id)
                )
            ).scalar_one_or_none()
            for t in CHAINED.values()
        ]
        if all(n is None or n < cutoff for n in newest):
            out.append(row)
    return out


def remove_rows(conn: sa.Connection, tenant: str, call_id: str) -> dict[str, int]:
    removed = {}
    for name, table in CHAINED.items():
        result = conn.execute(
            sa.delete(table).where((table.c.tenant == tenant) & (table.c.call_id == call_id))
        )
        removed[name] = int(result.rowcount or 0)
    key = (calls.c.tenant == tenant) & (calls.c.call_id == call_id)
    conn.execute(sa.update(calls).where(key).values(state=PURGED))
    return removed
