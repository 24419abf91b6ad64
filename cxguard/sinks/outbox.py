"""The durable outbox: every alert and handoff signal is written here first, then delivered
to each sink by that sink's own worker, at least once, in order.

* **Durable**: a SQLite file (WAL, ``synchronous=FULL``) in the state directory. ``put``
  is one local transaction (about a millisecond), so publishing never waits on a network;
  what was put survives a crash and is delivered after the restart.
* **At least once, idempotent**: a message stays ``pending`` for a sink until that sink
  took it. A sink that is down (:class:`~cxguard.errors.SinkUnavailable`, a timeout) is
  retried with capped backoff for as long as it takes; one that refuses a message
  (:class:`~cxguard.errors.SinkError`) ``refused_attempts`` times fails it for good.
  Messages carry a stable id (:mod:`~cxguard.sinks.messages`); the same id put twice is
  stored once, and sinks deduplicate on it (Redis: ``SET NX`` in the script that appends).
* **In order**: each sink's worker delivers its messages in the order they were put and
  does not pass one it must retry, so a call's alerts arrive in order.
* **Visible**: every state change (``delivered``, ``retrying`` on the first failure,
  ``failed``) is handed to ``on_state``, which the runtime records as evidence.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from cxguard.errors import SinkError, SinkUnavailable
from cxguard.sinks.messages import MessageKind, OutboxMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

DeliveryState = Literal["delivered", "retrying", "failed"]
StateListener = Callable[[OutboxMessage, str, DeliveryState, Mapping[str, Any]], None]


class Sink(Protocol):
    """What the outbox delivers to. Adding a sink is one class with these members (and a
    line in :mod:`~cxguard.sinks.registry`)."""

    name: str
    """Unique among the configured sinks (it keys the sink's rows in the outbox)."""

    def accepts(self, message: OutboxMessage) -> bool: ...

    async def deliver(self, message: OutboxMessage) -> Mapping[str, Any] | None:
        """Deliver or raise: SinkUnavailable (retried), SinkError (refused). What it returns
        is added to the ``delivered`` state (e.g. ``folded``: a rate limit put it in a
        digest)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Route:
    """One sink and the messages it gets (empty filters: all)."""

    sink: Sink
    kinds: frozenset[MessageKind] = frozenset({"alert", "handoff"})
    tenants: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    max_age_s: float | None = None
    """Fail a message still undelivered this long after it was put (a late handoff is no
    help); None: retry for as long as it takes."""
    record: bool = True
    """Hand this sink's delivery states to ``on_state`` (the log sink's are not worth it)."""

    def wants(self, message: OutboxMessage) -> bool:
        return (
            message.kind in self.kinds
            and (not self.tenants or message.tenant in self.tenants)
            and (not self.severities or message.severity in self.severities)
            and self.sink.accepts(message)
        )


@dataclass(frozen=True)
class OutboxOptions:
    retry_initial_s: float = 0.1
    retry_max_s: float = 1.0
    """Backoff cap: after an outage a sink is back in use within this long."""
    attempt_timeout_s: float = 5.0
    refused_attempts: int = 3
    batch: int = 100
    retain_s: float = 24 * 3600.0
    """Delivered messages are kept this long (a message put again meanwhile is dropped)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at REAL,
    UNIQUE (sink, message_id)
);
CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (sink, state, id);
"""

_COLUMNS = "id, message_id, kind, tenant, call_id, severity, body, created_at, attempts"


class OutboxStore:
    """The outbox file; synchronous and thread-safe (the :class:`Outbox` runs it in one thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"cannot open the alert outbox {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """``durable=False`` skips the fsync: losing a delivery mark in a power cut only
        means a redelivery, which the sinks drop by id."""
        with self._lock:
            try:
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SinkError(f"the alert outbox could not be written: {exc}") from exc

    def put(self, rows: Sequence[tuple[str, OutboxMessage]]) -> int:
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (sink, message_id, kind, tenant, call_id, severity,"
                " body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (s, m.message_id, m.kind, m.tenant, m.call_id, m.severity, m.body, m.created_at)
                    for s, m in rows
                ],
            )
            return db.total_changes - before

    def pending(self, sink: str, limit: int) -> list[OutboxMessage]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE sink = ? AND state = 'pending'"
                " ORDER BY id LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [
            OutboxMessage(
                message_id=r[1],
                kind=r[2],
                tenant=r[3],
                call_id=r[4],
                severity=r[5],
                body=r[6],
                created_at=r[7],
                attempts=r[8],
                row_id=r[0],
            )
            for r in rows
        ]

    def recent(self, sink: str, tenant: str, limit: int) -> list[OutboxMessage]:
        """A sink's latest messages of ``tenant``, newest first, whatever their state (what a
        live view shows on load)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE sink = ? AND tenant = ?"
                " ORDER BY id DESC LIMIT ?",
                (sink, tenant, limit),
            ).fetchall()
        return [OutboxMessage(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[0]) for r in rows]

    def mark(self, row_id: int, state: str, attempts: int, error: str | None) -> None:
        done = None if state == "pending" else time.time()
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, last_error = ?, done_at = ?"
                " WHERE id = ?",
                (state, attempts, error, done, row_id),
            )

    def prune(self, before: float) -> None:
        with self._tx(durable=False) as db:
            db.execute("DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?", (before,))

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sink, state, count(*) FROM outbox GROUP BY sink, state"
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for sink, state, n in rows:
            out.setdefault(sink, {})[state] = int(n)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def describe(exc: BaseException) -> str:
    """A failure as evidence may carry it: its class and a fixed phrase, no host or URL."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, SinkUnavailable):
        return "unavailable (unreachable or timed out)"
    if isinstance(exc, SinkError):
        text = str(exc)
        status = next((w for w in text.split() if len(w) == 4 and w[:3].isdigit()), "")
        return f"refused{f' (HTTP {status[:3]})' if 'HTTP' in text and status else ''}"
    return f"sink error ({type(exc).__name__})"


@dataclass
class _Worker:
    route: Route
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    retrying_since: float | None = None


class Outbox:
    """``await outbox.put([message])``; workers run from :meth:`start` to :meth:`close`."""

    def __init__(
        self,
        store: OutboxStore,
        routes: Sequence[Route],
        options: OutboxOptions | None = None,
        on_state: StateListener | None = None,
    ) -> None:
        names = [r.sink.name for r in routes]
        if len(set(names)) != len(names):
            raise SinkError(f"two sinks share a name: {sorted(names)}")
        self.store = store
        self.options = options or OutboxOptions()
        self._on_state = on_state
        self._io = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._workers = {r.sink.name: _Worker(r) for r in routes}
        self._closing = False

    @property
    def routes(self) -> list[Route]:
        return [w.route for w in self._workers.values()]

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, worker in self._workers.items():
            worker.task = loop.create_task(self._deliver_loop(worker), name=f"outbox:{name}")
            worker.wake.set()  # deliver what an earlier process left

    async def put(self, messages: Sequence[OutboxMessage]) -> int:
        """Store ``messages`` for every sink that wants them; returns rows stored (a message
        whose id the sink has already is not stored again)."""
        rows = [
            (w.route.sink.name, m)
            for m in messages
            for w in self._workers.values()
            if w.route.wants(m)
        ]
        if not rows:
            return 0
        stored = await self._run_io(self.store.put, rows)
        for name in {s for s, _ in rows}:
            self._workers[name].wake.set()
        return stored

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self._run_io(self.store.counts)

    async def recent(self, sink: str, tenant: str, limit: int = 200) -> list[OutboxMessage]:
        return await self._run_io(self.store.recent, sink, tenant, limit)

    def _state(self, route: Route, msg: OutboxMessage, state: DeliveryState, **data: Any) -> None:
        if route.record and self._on_state is not None:
            try:
                self._on_state(msg, route.sink.name, state, data)
            except Exception:  # recording must not stop delivery
                log.exception("could not record delivery state")

    async def _deliver_loop(self, worker: _Worker) -> None:
        opts, route = self.options, worker.route
        backoff = opts.retry_initial_s
        pruned = 0.0
        while not self._closing:
            worker.wake.clear()
            try:
                batch = await self._run_io(self.store.pending, route.sink.name, opts.batch)
            except SinkError as exc:  # the outbox file itself: say so, try again
                log.error("outbox unreadable for sink %s: %s", route.sink.name, exc)
                await asyncio.sleep(opts.retry_max_s)
                continue
            if not batch:
                if time.monotonic() - pruned > 600:
                    pruned = time.monotonic()
                    await self._run_io(self.store.prune, time.time() - opts.retain_s)
                await worker.wake.wait()
                continue
            for msg in batch:
                if not await self._attempt(worker, msg):
                    await asyncio.sleep(backoff)
                    backoff = min(opts.retry_max_s, backoff * 2)
                    break
                backoff = opts.retry_initial_s

    async def _attempt(self, worker: _Worker, msg: OutboxMessage) -> bool:
        """Try ``msg`` once; False: retry it (the sink is down) before anything after it."""
        route, opts = worker.route, self.options
        name, attempts = route.sink.name, msg.attempts + 1
        if route.max_age_s is not None and time.time() - msg.created_at > route.max_age_s:
            await self._run_io(self.store.mark, msg.row_id, "failed", msg.attempts, "expired")
            self._state(route, msg, "failed", attempts=msg.attempts, error="expired")
            return True
        try:
            async with asyncio.timeout(opts.attempt_timeout_s):
                note = await route.sink.deliver(msg)
        except (SinkUnavailable, TimeoutError, OSError) as exc:
            return await self._failed(worker, msg, attempts, exc, final=False)
        except SinkError as exc:
            return await self._failed(
                worker, msg, attempts, exc, final=attempts >= opts.refused_attempts
            )
        except Exception as exc:  # a sink bug must not stop the others
            log.exception("sink %s failed on message %s", name, msg.message_id)
            return await self._failed(
                worker, msg, attempts, exc, final=attempts >= opts.refused_attempts
            )
        await self._run_io(self.store.mark, msg.row_id, "delivered", attempts, None)
        if worker.retrying_since is not None:
            log.warning(
                "sink %s is back after %.1f s", name, time.monotonic() - worker.retrying_since
            )
            worker.retrying_since = None
        delay_ms = round(1000 * (time.time() - msg.created_at), 1)
        self._state(route, msg, "delivered", attempts=attempts, delay_ms=delay_ms, **(note or {}))
        return True

    async def _failed(
        self, worker: _Worker, msg: OutboxMessage, attempts: int, exc: BaseException, *, final: bool
    ) -> bool:
        route, detail = worker.route, describe(exc)
        if worker.retrying_since is None:
            worker.retrying_since = time.monotonic()
            log.warning(
                "sink %s: %s (%s); messages wait in the outbox", route.sink.name, detail, exc
            )
        state = "failed" if final else "pending"
        await self._run_io(self.store.mark, msg.row_id, state, attempts, detail)
        if final:
            log.error(
                "sink %s refused message %s for good: %s", route.sink.name, msg.message_id, exc
            )
            self._state(route, msg, "failed", attempts=attempts, error=detail)
            return True
        if attempts == 1:
            self._state(route, msg, "retrying", attempts=attempts, error=detail)
        return False

    async def close(self, flush_s: float = 2.0) -> None:
        """Give the workers up to ``flush_s`` to deliver what is pending, then stop; what is
        still undelivered stays in the file for the next start."""
        deadline = time.monotonic() + flush_s
        while time.monotonic() < deadline:
            counts = await self.counts()
            if not any(c.get("pending") for c in counts.values()):
                break
            await asyncio.sleep(0.05)
        self._closing = True
        for worker in self._workers.values():
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(
            *(w.task for w in self._workers.values() if w.task is not None), return_exceptions=True
        )
        for worker in self._workers.values():
            try:
                await worker.route.sink.close()
            except SinkError as exc:
                log.warning("closing sink %s: %s", worker.route.sink.name, exc)
        await self._run_io(self.store.close)
        self._io.shutdown(wait=True)
