"""The per-call hash chain: canonical row form, hashing, and checking a chain.

``row_hash = sha256(prev_hash + canonical_json(row))`` where the canonical form is the row's
hashed columns plus its table name, as JSON with sorted keys and no spaces. Values are
normalised *before* they are written (floats stay floats, JSON columns hold only JSON types),
so the form computed when writing equals the one recomputed from what the database returns.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cxguard.evidence.schema import UNHASHED

GENESIS = "0" * 64
"""``prev_hash`` of a call's first row."""


def canonical_json(table: str, row: Mapping[str, Any]) -> str:
    body = {k: v for k, v in row.items() if k not in UNHASHED}
    body["__table__"] = table
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def row_hash(table: str, row: Mapping[str, Any]) -> str:
    payload = str(row["prev_hash"]) + canonical_json(table, row)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def jsonable(value: Any, text: Any = None) -> Any:
    """``value`` as plain JSON types; strings pass through ``text`` (redaction) when given.

    Non-finite floats become ``None`` (PostgreSQL's JSON rejects NaN); unknown objects become
    their ``str``.
    """
    if isinstance(value, str):
        return text(value) if text is not None else value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, text) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, text) for v in value]
    return jsonable(str(value), text)


@dataclass(frozen=True)
class ChainProblem:
    """One broken link: which row (table, id, seq) of which call, and why."""

    call_id: str
    table: str
    row_id: int | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.table} row id={self.row_id} seq={self.seq}" if self.row_id else self.table
        return f"call {self.call_id}: {where}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    calls_checked: int
    rows_checked: int
    problems: tuple[ChainProblem, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "calls_checked": self.calls_checked,
            "rows_checked": self.rows_checked,
            "problems": [asdict(p) | {"message": str(p)} for p in self.problems],
        }

    def __str__(self) -> str:
        head = (
            f"{'OK' if self.ok else 'BROKEN'}: {self.calls_checked} calls, {self.rows_checked} rows"
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


@dataclass(frozen=True)
class ChainRow:
    table: str
    values: Mapping[str, Any]

    @property
    def seq(self) -> int:
        return int(self.values["seq"])


def check_call(
    call_id: str, rows: Iterable[ChainRow], next_seq: int, head_hash: str
) -> list[ChainProblem]:
    """Problems in one call's chain; ``rows`` in any order, ``next_seq``/``head_hash`` from
    its ``calls`` row. A modified row fails its own hash; a deleted or reordered row breaks
    the sequence and the following row's ``prev_hash``; a deleted tail misses the head."""
    problems: list[ChainProblem] = []
    expected_seq, expected_prev = 0, GENESIS
    for row in sorted(rows, key=lambda r: (r.seq, r.table)):
        v = row.values

        def problem(reason: str, row: ChainRow = row, v: Mapping[str, Any] = v) -> None:
            problems.append(ChainProblem(call_id, row.table, v.get("id"), row.seq, reason))

        if row.seq != expected_seq:
            what = "a row is missing or was reordered" if row.seq > expected_seq else "duplicate"
            problem(f"sequence broken: expected seq {expected_seq} ({what})")
        if v["prev_hash"] != expected_prev:
            problem("prev_hash does not match the previous row (deleted or reordered)")
        if row_hash(row.table, v) != v["row_hash"]:
            problem("content does not match row_hash (row modified)")
        # Follow the *stored* hash, so one modified row is reported once, not down the chain.
        expected_seq, expected_prev = row.seq + 1, str(v["row_hash"])
    if expected_seq != next_seq or expected_prev != head_hash:
        problems.append(
            ChainProblem(
                call_id,
                "calls",
                None,
                next_seq,
                f"chain head mismatch: ledger expects {next_seq} rows ending in "
                f"{head_hash[:12]}, found {expected_seq} ending in {expected_prev[:12]} "
                "(rows at the end deleted)",
            )
        )
    return problems
