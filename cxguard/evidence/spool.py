"""The local write-ahead spool: durable before acknowledged, drained into the ledger later.

A SQLite file (WAL, ``synchronous=FULL``: a write that returned survives a power cut) next
to the ledger or in the state directory. It holds two things:

* **ledger ops** (:class:`~cxguard.evidence.rows.LedgerOp`, already checked and redacted)
  in arrival order, until :meth:`Spool.remove` after the ledger stored them; so a database
  outage delays rows and loses none, and a crash replays them (the ledger skips ops it has);
* **closed segments' audio** (8 kHz μ-law, 8 kB/s) with (tenant, call id, segment index,
  speaker, times), until the turn they belong to is judged; after a crash the runtime finds
  them with :meth:`Spool.pending` and judges them, or records a gap.

The file holds speech audio until its turn is judged (never turn text in clear): it is
created ``0600`` in a ``0700`` directory. Methods are thread-safe and synchronous.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxguard.errors import EvidenceError
from cxguard.evidence.rows import LedgerOp

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    body TEXT NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    tenant TEXT NOT NULL,
    call_id TEXT NOT NULL,
    segment_index INTEGER NOT NULL,
    turn_index INTEGER,
    speaker TEXT NOT NULL,
    start_ms REAL NOT NULL,
    end_ms REAL NOT NULL,
    sample_rate INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    audio BLOB NOT NULL,
    spooled_at REAL NOT NULL,
    PRIMARY KEY (tenant, call_id, segment_index)
);
"""


@dataclass(frozen=True)
class SpooledSegment:
    """A closed VAD segment whose turn was not judged yet."""

    tenant: str
    call_id: str
    index: int
    """Per-call segment number (both speakers, in closing order)."""
    speaker: str
    start_ms: float
    end_ms: float
    sample_rate: int
    encoding: str
    """``PCMU`` (μ-law bytes)."""
    audio: bytes
    turn_index: int | None = None
    """The speaker turn it was given when it closed, if the session knew it already."""


@dataclass(frozen=True)
class Judged:
    """Segments a write makes obsolete: those of ``turn_index`` and before (turns are judged
    in order), or exactly ``segments``."""

    tenant: str
    call_id: str
    through_turn: int | None = None
    segments: tuple[int, ...] = ()


class Spool:
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if read_only:
                if not self.path.is_file():
                    raise EvidenceError(f"no spool at {self.path}")
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            self._db.execute("PRAGMA busy_timeout=5000")
        except (OSError, sqlite3.Error) as exc:
            raise EvidenceError(f"cannot open the evidence spool {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self, what: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; ``durable=False`` skips the fsync (for bookkeeping whose loss
        only means a replay, which is harmless)."""
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
                raise EvidenceError(f"the evidence spool could not {what}: {exc}") from exc

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return list(self._db.execute(sql, tuple(args)))
            except sqlite3.Error as exc:
                raise EvidenceError(f"the evidence spool could not be read: {exc}") from exc

    # ------------------------------------------------------------------ ledger ops

    def append(self, ops: Sequence[LedgerOp], judged: Judged | None = None) -> None:
        """Spool ``ops`` durably (and drop the segments ``judged`` covers) in one transaction."""
        now = time.time()
        with self._tx("append") as db:
            db.executemany(
                "INSERT OR IGNORE INTO ops(op_id, tenant, call_id, body, spooled_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(op.op_id, op.tenant, op.call_id, json.dumps(op.to_record()), now) for op in ops],
            )
            if judged is not None:
                self._drop_judged(db, judged)

    def peek(self, limit: int = 200) -> list[tuple[int, LedgerOp]]:
        """The oldest spooled ops, in order."""
        rows = self._read("SELECT id, body FROM ops ORDER BY id LIMIT ?", (limit,))
        return [(int(i), LedgerOp.from_record(json.loads(str(b)))) for i, b in rows]

    def remove(self, ids: Sequence[int]) -> None:
        with self._tx("remove stored ops", durable=False) as db:  # a replay is skipped
            db.executemany("DELETE FROM ops WHERE id = ?", [(i,) for i in ids])

    def depth(self) -> int:
        return int(self._read("SELECT count(*) FROM ops")[0][0])

    def pending_counts(self) -> dict[tuple[str, str], int]:
        """Spooled ops not yet in the ledger, per (tenant, call id)."""
        rows = self._read("SELECT tenant, call_id, count(*) FROM ops GROUP BY tenant, call_id")
        return {(str(t), str(c)): int(n) for t, c, n in rows}

    # ------------------------------------------------------------------ segments

    def put_segment(self, segment: SpooledSegment) -> None:
        with self._tx("spool a segment") as db:
            db.execute(
                "INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    segment.tenant,
                    segment.call_id,
                    segment.index,
                    segment.turn_index,
                    segment.speaker,
                    segment.start_ms,
                    segment.end_ms,
                    segment.sample_rate,
                    segment.encoding,
                    segment.audio,
                    time.time(),
                ),
            )

    @staticmethod
    def _drop_judged(db: sqlite3.Connection, judged: Judged) -> None:
        key = (judged.tenant, judged.call_id)
        if judged.through_turn is not None:
            db.execute(
                "DELETE FROM segments WHERE tenant = ? AND call_id = ? AND turn_index <= ?",
                (*key, judged.through_turn),
            )
        db.executemany(
            "DELETE FROM segments WHERE tenant = ? AND call_id = ? AND segment_index = ?",
            [(*key, i) for i in judged.segments],
        )

    def judged(self, judged: Judged) -> None:
        """Drop segments whose turn is judged (or recorded as a gap)."""
        with self._tx("drop judged segments", durable=False) as db:
            self._drop_judged(db, judged)

    def pending(self, tenant: str, call_id: str) -> list[SpooledSegment]:
        """The call's closed segments whose turn was never judged, in segment order."""
        rows = self._read(
            "SELECT tenant, call_id, segment_index, speaker, start_ms, end_ms, sample_rate,"
            " encoding, audio, turn_index FROM segments WHERE tenant = ? AND call_id = ?"
            " ORDER BY segment_index",
            (tenant, call_id),
        )
        return [
            SpooledSegment(
                str(r[0]),
                str(r[1]),
                int(r[2]),
                str(r[3]),
                float(r[4]),
                float(r[5]),
                int(r[6]),
                str(r[7]),
                bytes(r[8]),
                None if r[9] is None else int(r[9]),
            )
            for r in rows
        ]

    def segment_calls(self) -> dict[tuple[str, str], int]:
        """``{(tenant, call id): unjudged segments}`` for every call that has some."""
        rows = self._read("SELECT tenant, call_id, count(*) FROM segments GROUP BY tenant, call_id")
        return {(str(t), str(c)): int(n) for t, c, n in rows}

    def segment_progress(self, tenant: str, call_id: str) -> tuple[int, int]:
        """``(next segment index, next turn index)`` implied by the call's spooled segments."""
        ((seg, turn),) = self._read(
            "SELECT max(segment_index), max(turn_index) FROM segments"
            " WHERE tenant = ? AND call_id = ?",
            (tenant, call_id),
        )
        return (-1 if seg is None else int(seg)) + 1, (-1 if turn is None else int(turn)) + 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
