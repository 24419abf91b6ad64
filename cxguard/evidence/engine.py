"""Database engines for the ledger: SQLite (default) and PostgreSQL via psycopg 3.

SQLite gets WAL (readers never wait for the writer), a busy timeout, and ``BEGIN IMMEDIATE``
for write transactions, so a writer takes the database lock *before* it reads a chain head:
two processes appending to one call cannot both read the same head. PostgreSQL locks the
call's row instead (``SELECT ... FOR UPDATE``).

Every database call is bounded: PostgreSQL gets a connect timeout, server-side statement,
lock and idle-in-transaction timeouts, TCP keepalives and a user timeout; a server that is
frozen (it accepts bytes but never answers, so no server-side timeout fires) is cut off by
:class:`Watchdog`, which shuts the connection's socket down from outside. A read-only ledger
never creates a file, a table or a row.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    timeout_s: float = 5.0
    """Bound on one database call: PostgreSQL statement/lock timeouts, the watchdog (plus a
    second), SQLite's busy timeout."""
    connect_timeout_s: float = 3.0
    pool_size: int = 5
    echo: bool = False
    read_only: bool = False
    """Open an existing ledger for reading only: a missing database is an error."""


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


def sqlite_path(url: sa.URL) -> Path | None:
    """The file of a SQLite ledger (None for PostgreSQL or in-memory)."""
    if url.get_backend_name() != "sqlite" or is_memory(url):
        return None
    return Path(str(url.database))


def _pg_options(options: LedgerOptions) -> dict[str, Any]:
    ms = int(options.timeout_s * 1000)
    server = [
        f"-c statement_timeout={ms}",
        f"-c lock_timeout={ms}",
        f"-c idle_in_transaction_session_timeout={4 * ms}",
    ]
    if options.read_only:
        server.append("-c default_transaction_read_only=on")
    return {
        "connect_timeout": max(1, round(options.connect_timeout_s)),
        "options": " ".join(server),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": ms,
        "application_name": "cxguard-ledger",
    }


def make_engine(url: sa.URL, options: LedgerOptions) -> sa.Engine:
    if url.get_backend_name() == "postgresql":
        # No pre-ping: against a frozen server the ping itself would hang before any
        # watchdog holds the connection. A dead pooled connection fails its statement, is
        # invalidated, and the caller's retry gets a fresh one.
        return sa.create_engine(
            url,
            pool_size=options.pool_size,
            pool_pre_ping=False,
            pool_timeout=options.timeout_s,
            echo=options.echo,
            connect_args=_pg_options(options),
        )
    memory = is_memory(url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        # One shared connection: every pooled connection would otherwise get its own
        # empty in-memory database.
        kwargs["poolclass"] = StaticPool
    elif options.read_only:
        path = sqlite_path(url)
        assert path is not None
        if not path.is_file():
            raise EvidenceError(f"no ledger at {path}")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"

        def read_only_connection() -> sqlite3.Connection:
            # mode=ro: SQLite itself refuses to create the file or write to it.
            return sqlite3.connect(uri, uri=True, check_same_thread=False)

        kwargs = {"creator": read_only_connection}
    engine = sa.create_engine(url, echo=options.echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (pysqlite's own BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory and not options.read_only:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(options.timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Watchdog:
    """Cuts a PostgreSQL connection off when one call outlives ``timeout_s``.

    A frozen server (SIGSTOP, a hung host) never answers, so its statement timeout never
    fires and the client waits forever; shutting the socket down makes the driver fail at
    once, and SQLAlchemy discards the connection. SQLite needs none (busy timeout)."""

    def __init__(self, conn: sa.Connection, timeout_s: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        if self._conn.dialect.name == "postgresql":
            self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        try:
            fd = self._conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
            sock = socket.socket(fileno=socket.dup(int(fd)))
        except Exception:  # the connection is already gone: nothing to cut
            return
        self.fired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_ADDRESS = re.compile(
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\[[0-9a-fA-F:]+\]|\bport \d+\b|\bhost\S*|/\S+\.s\.PGSQL\.\d+"
)


def summarise_db_error(exc: BaseException) -> str:
    """A driver error as a short phrase that names no host, port, user or database: what
    alerts and evidence may carry. The log gets the full error."""
    orig = getattr(exc, "orig", None) or exc
    name = type(orig).__name__
    code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    text = str(orig).lower()
    for needle, phrase in (
        ("timeout", "timed out"),
        ("timed out", "timed out"),
        ("canceling statement", "timed out"),
        ("connection refused", "connection refused"),
        ("could not connect", "connection failed"),
        ("connection failed", "connection failed"),
        ("server closed the connection", "connection lost"),
        ("connection is lost", "connection lost"),
        ("terminating connection", "connection lost"),
        ("consuming input failed", "connection lost"),
        ("permission denied", "permission denied"),
        ("not permitted to log in", "permission denied"),
        ("authentication failed", "authentication failed"),
        ("does not exist", "missing database object"),
        ("no such table", "missing table"),
        ("database is locked", "database locked"),
        ("disk", "disk error"),
        ("read-only", "read-only database"),
        ("readonly", "read-only database"),
    ):
        if needle in text:
            detail = phrase
            break
    else:
        first = _ADDRESS.sub("…", _QUOTED.sub("…", str(orig).splitlines()[0] if str(orig) else ""))
        detail = first[:80]
    return f"{name}{f' {code}' if code else ''}: {detail}"
