"""Tables of the evidence ledger (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

A call is keyed by ``(tenant, call_id)`` everywhere: two tenants may use the same call id
and never touch each other's rows. ``turns``, ``verdicts`` and ``events`` are append-only and
share one hash chain per call: ``seq`` numbers a call's rows across the three tables,
``prev_hash`` is the ``row_hash`` of row ``seq - 1`` and ``calls.next_seq`` /
``calls.head_hash`` anchor the end of the chain, so deleting the last row shows too.
``calls.head_mac`` is an HMAC of that head under a key kept outside the database (see
:mod:`~cxguard.evidence.heads`). Findings about a tenant that belong to no call (drift) have
their own table, chained per tenant and anchored in ``tenants``.

Times on the stream timeline are milliseconds (``*_ms``); wall-clock times are epoch seconds
(``decided_at``, ``recorded_at``).
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = "3"
"""3 added the release columns of ``verdicts`` (see :data:`ADDED_COLUMNS`)."""

metadata = sa.MetaData()

_ID = sa.String(128)
_TENANT = sa.String(64)
_HASH = sa.String(64)
_MAC = sa.String(96)


def _chained(
    name: str, *columns: sa.Column[object], indexes: tuple[sa.Index, ...] = ()
) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", _TENANT, nullable=False),
        sa.Column("call_id", _ID, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        *columns,
        sa.Column("recorded_at", sa.Double, nullable=False),
        sa.Column("prev_hash", _HASH, nullable=False),
        sa.Column("row_hash", _HASH, nullable=False),
        sa.ForeignKeyConstraint(["tenant", "call_id"], ["calls.tenant", "calls.call_id"]),
        sa.UniqueConstraint("tenant", "call_id", "seq", name=f"uq_{name}_call_seq"),
        *indexes,
    )


calls = sa.Table(
    "calls",
    metadata,
    sa.Column("tenant", _TENANT, primary_key=True),
    sa.Column("call_id", _ID, primary_key=True),
    sa.Column("source", sa.String(32), nullable=False, default=""),
    # The sidecar instance that started the call (the id of its state directory): at
    # restart an instance marks only its own unended calls interrupted.
    sa.Column("owner", sa.String(64), nullable=False, default=""),
    # live / ended / interrupted, derived from the lifecycle events (which are chained).
    sa.Column("state", sa.String(16), nullable=False, default="live"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("started_at_ms", sa.Double, nullable=True),
    sa.Column("ended_at_ms", sa.Double, nullable=True),
    sa.Column("end_reason", sa.String(128), nullable=True),
    sa.Column("next_seq", sa.Integer, nullable=False, default=0),
    sa.Column("head_hash", _HASH, nullable=False),
    sa.Column("head_mac", _MAC, nullable=True),
    sa.Index("ix_calls_state", "state", "owner"),
)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant", _TENANT, primary_key=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("next_seq", sa.Integer, nullable=False, default=0),
    sa.Column("head_hash", _HASH, nullable=False),
    sa.Column("head_mac", _MAC, nullable=True),
)

turns = _chained(
    "turns",
    sa.Column("turn_index", sa.Integer, nullable=False),
    sa.Column("speaker", sa.String(16), nullable=False),
    sa.Column("start_ms", sa.Double, nullable=False),
    sa.Column("end_ms", sa.Double, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("undetermined_reason", sa.Text, nullable=True),
    sa.Column("confidence", sa.Double, nullable=True),
    sa.Column("model_ids", sa.JSON, nullable=False),
    sa.Column("segments", sa.JSON, nullable=False),
    indexes=(sa.Index("ix_turns_call_turn", "tenant", "call_id", "turn_index"),),
)

verdicts = _chained(
    "verdicts",
    sa.Column("turn_index", sa.Integer, nullable=False),
    sa.Column("speaker", sa.String(16), nullable=False),
    sa.Column("start_ms", sa.Double, nullable=False),
    sa.Column("end_ms", sa.Double, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("assertion_id", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("actions", sa.JSON, nullable=False),
    sa.Column("scores", sa.JSON, nullable=False),
    sa.Column("policy_hash", sa.String(128), nullable=False),
    sa.Column("model_ids", sa.JSON, nullable=False),
    sa.Column("latency", sa.JSON, nullable=False),
    sa.Column("decided_at", sa.Double, nullable=False),
    sa.Column("trigger_turn", sa.Integer, nullable=True),
    sa.Column("segments", sa.JSON, nullable=False),
    # Schema 3. NULL on rows written before the migration (and then not hashed).
    sa.Column("release_id", sa.String(32), nullable=True),
    sa.Column("agent_version", sa.String(128), nullable=True),
    sa.Column("intent", sa.String(128), nullable=True),
    sa.Column("mode", sa.String(16), nullable=True),
    indexes=(
        sa.Index("ix_verdicts_export", "tenant", "call_id", "turn_index", "assertion_id", "id"),
        sa.Index("ix_verdicts_tenant_assertion", "tenant", "assertion_id", "decided_at"),
        sa.Index("ix_verdicts_tenant_release", "tenant", "release_id", "decided_at"),
    ),
)

events = _chained(
    "events",
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("at_ms", sa.Double, nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    indexes=(sa.Index("ix_events_tenant_kind", "tenant", "kind"),),
)

findings = sa.Table(
    "findings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", _TENANT, sa.ForeignKey("tenants.tenant"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("recorded_at", sa.Double, nullable=False),
    sa.Column("prev_hash", _HASH, nullable=False),
    sa.Column("row_hash", _HASH, nullable=False),
    sa.UniqueConstraint("tenant", "seq", name="uq_findings_tenant_seq"),
    sa.Index("ix_findings_tenant_kind", "tenant", "kind"),
)

applied_ops = sa.Table(
    "applied_ops",
    metadata,
    sa.Column("op_id", sa.String(64), primary_key=True),
    sa.Column("tenant", _TENANT, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)
"""Spooled writes already applied: a write replayed after a crash is not stored twice."""

ledger_meta = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

CHAINED: dict[str, sa.Table] = {"turns": turns, "verdicts": verdicts, "events": events}
"""The tables whose rows carry a call's hash chain, by name."""

ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "3": ("release_id", "agent_version", "intent", "mode"),
}
"""``verdicts`` columns each schema version added (a migration adds them as NULL)."""

HASHED_WHEN_SET = frozenset(c for cols in ADDED_COLUMNS.values() for c in cols)
"""Columns hashed only when not NULL: a row written before they existed verifies as it was
written, and a row written since (always with a value) breaks if one is cleared."""

# Columns that are not part of a row's hashed content: ``id`` is assigned by the database
# after the hash is computed, ``row_hash`` is the hash itself.
UNHASHED = frozenset({"id", "row_hash"})
