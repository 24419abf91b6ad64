"""Schema migrations of the ledger, additive only: columns are added (NULL on old rows, which
are then hashed without them, :data:`~cxguard.evidence.schema.HASHED_WHEN_SET`), never changed
or dropped, so every chain written before a migration still verifies after it.

A ledger opened for writing is migrated in the transaction that checks its schema; a read-only
open of an older ledger is an error that says how to migrate (``cxguard evidence migrate``).
"""

from __future__ import annotations

import sqlalchemy as sa

from cxguard.errors import EvidenceError
from cxguard.evidence.schema import ADDED_COLUMNS, SCHEMA_VERSION, ledger_meta, verdicts

MIGRATES_FROM = ("2",)
"""Versions this code can bring to :data:`SCHEMA_VERSION`."""


def needs_migration(version: str | None) -> bool:
    return version in MIGRATES_FROM


def migrate(conn: sa.Connection, version: str) -> list[str]:
    """Bring the ledger at ``version`` to :data:`SCHEMA_VERSION` (inside the caller's
    transaction); returns the columns added."""
    if version not in MIGRATES_FROM:
        raise EvidenceError(f"cannot migrate ledger schema {version!r} to {SCHEMA_VERSION}")
    present = {c["name"] for c in sa.inspect(conn).get_columns("verdicts")}
    added = []
    for since, columns in sorted(ADDED_COLUMNS.items()):
        if since <= version:
            continue
        for name in columns:
            if name in present:
                continue  # a migration interrupted after this column (SQLite DDL commits)
            column = verdicts.c[name]
            type_ = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE verdicts ADD COLUMN {name} {type_}")
            added.append(name)
    for index in verdicts.indexes:
        index.create(conn, checkfirst=True)
    conn.execute(
        sa.update(ledger_meta)
        .where(ledger_meta.c.key == "schema_version")
        .values(value=SCHEMA_VERSION)
    )
    return added
