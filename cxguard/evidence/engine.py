"""Database engines for the ledger: SQLite (default) and PostgreSQL via psycopg 3.

SQLite gets WAL (readers never wait for the writer), a busy timeout, and ``BEGIN IMMEDIATE``
for write transactions, so a writer takes the database lock *before* it reads a chain head:
two processes appending to one call cannot both read the same head. PostgreSQL locks the
call's row instead (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from cxguard.errors import EvidenceError

DEFAULT_URL = "sqlite:///cxguard-evidence.db"

WRITE_OPTION = "cxguard_write"
"""Execution option marking a connection whose next transaction writes."""


@dataclass(frozen=True)
class LedgerOptions:
    sqlite_busy_timeout_ms: int = 30_000
    pool_size: int = 5
    echo: bool = False


def normalise_url(url: str) -> sa.URL:
    """``url`` as a SQLAlchemy URL; a bare path means a SQLite file, and a PostgreSQL URL
    without a driver uses psycopg 3 (psycopg2 is not a dependency)."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise EvidenceError(f"invalid ledger URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise EvidenceError(f"unsupported ledger backend {parsed.get_backend_name()!r}")
    return parsed


def is_memory(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: sa.URL, options: LedgerOptions) -> sa.Engine:
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(
            url, pool_size=options.pool_size, pool_pre_ping=True, echo=options.echo
        )
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if is_memory(url):
        # One shared connection: every pooled connection would otherwise get its own
        # empty in-memory database.
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, echo=options.echo, **kwargs)
    memory = is_memory(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (pysqlite's own BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(options.sqlite_busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
