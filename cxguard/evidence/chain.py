"""The hash chains: canonical row form, hashing, and checking a chain.

``row_hash = sha256(prev_hash + canonical_json(row))`` where the canonical form is the row's
hashed columns plus its table name, as JSON with sorted keys and no spaces. The tenant and
call id are hashed columns, so a row cannot be moved to another tenant's call unseen. Values
are normalised *before* they are written (floats stay floats, JSON columns hold only JSON
types, strings are valid UTF-8), so the form computed when writing equals the one recomputed
from what the database returns.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cxguard.evidence.schema import HASHED_WHEN_SET, UNHASHED

GENESIS = "0" * 64
"""``prev_hash`` of a chain's first row."""


def canonical_json(table: str, row: Mapping[str, Any]) -> str:
    body = {
        k: v
        for k, v in row.items()
        if k not in UNHASHED and not (v is None and k in HASHED_WHEN_SET)
    }
    body["__table__"] = table
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def row_hash(table: str, row: Mapping[str, Any]) -> str:
    payload = str(row["prev_hash"]) + canonical_json(table, row)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def valid_text(value: str) -> str:
    """``value`` as text every database and UTF-8 encoder accepts: lone surrogates (which a
    JSON parser lets through as ``\\ud800``) become U+FFFD, NUL is dropped."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value.replace("\x00", "")


def jsonable(value: Any, text: Callable[[str], str] | None = None) -> Any:
    """``value`` as plain JSON types; strings (keys too) are made valid text and pass through
    ``text`` (redaction) when given.

    Non-finite floats become ``None`` (PostgreSQL's JSON rejects NaN); unknown objects become
    their ``str``.
    """
    if isinstance(value, str):
        clean = valid_text(value)
        return text(clean) if text is not None else clean
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {valid_text(str(k)): jsonable(v, text) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, text) for v in value]
    return jsonable(str(value), text)


ProblemKind = Literal[
    "chain", "signature", "missing_turn", "duplicate_turn", "unended", "spool", "heads"
]


@dataclass(frozen=True)
class ChainProblem:
    """One finding: which row (table, id, seq) of which call, what kind, and why.

    ``kind`` is ``chain`` (a broken link), ``signature`` (a head whose HMAC does not match),
    ``missing_turn`` / ``duplicate_turn`` (a hole or a repeat in a call's turn indices that
    no recorded gap explains), ``unended`` (a call with neither ``call_ended`` nor
    ``call_interrupted``), ``spool`` (rows still waiting in the local spool) or ``heads``
    (an exported head the ledger no longer reaches). An empty ``call_id`` means the tenant's
    own chain of findings."""

    tenant: str
    call_id: str
    table: str
    row_id: int | None
    seq: int | None
    reason: str
    kind: ProblemKind = "chain"

    def __str__(self) -> str:
        who = (
            f"tenant {self.tenant} call {self.call_id}" if self.call_id else f"tenant {self.tenant}"
        )
        where = f"{self.table} row id={self.row_id} seq={self.seq}" if self.row_id else self.table
        return f"{who}: {where}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    calls_checked: int
    rows_checked: int
    problems: tuple[ChainProblem, ...] = field(default_factory=tuple)
    interrupted: tuple[tuple[str, str], ...] = ()
    """``(tenant, call_id)`` of calls marked ``call_interrupted`` (a restart found them)."""
    open_calls: tuple[tuple[str, str], ...] = ()
    """Calls with no end yet (live, or their sidecar crashed and has not restarted)."""
    gaps: int = 0
    """Recorded gaps (turns that could not be judged, audio the stream did not carry)."""
    signed: bool = False
    """Whether chain heads were checked against a key."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "calls_checked": self.calls_checked,
            "rows_checked": self.rows_checked,
            "signed": self.signed,
            "gaps": self.gaps,
            "interrupted": [{"tenant": t, "call_id": c} for t, c in self.interrupted],
            "open_calls": [{"tenant": t, "call_id": c} for t, c in self.open_calls],
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


@dataclass(frozen=True)
class ChainEnd:
    """Where a chain ends, as recomputed from its rows."""

    next_seq: int
    head_hash: str


def check_chain(
    tenant: str,
    call_id: str,
    rows: Iterable[ChainRow],
    next_seq: int,
    head_hash: str,
    anchor: str = "calls",
) -> tuple[list[ChainProblem], ChainEnd]:
    """Problems in one chain and where it really ends; ``rows`` in any order,
    ``next_seq``/``head_hash`` from its anchor row. A modified row fails its own hash; a
    deleted or reordered row breaks the sequence and the following row's ``prev_hash``; a
    deleted tail misses the head."""
    problems: list[ChainProblem] = []
    expected_seq, expected_prev = 0, GENESIS
    for row in sorted(rows, key=lambda r: (r.seq, r.table)):
        v = row.values

        def problem(reason: str, row: ChainRow = row, v: Mapping[str, Any] = v) -> None:
            problems.append(ChainProblem(tenant, call_id, row.table, v.get("id"), row.seq, reason))

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
                tenant,
                call_id,
                anchor,
                None,
                next_seq,
                f"chain head mismatch: ledger expects {next_seq} rows ending in "
                f"{head_hash[:12]}, found {expected_seq} ending in {expected_prev[:12]} "
                "(rows at the end deleted)",
            )
        )
    return problems, ChainEnd(expected_seq, expected_prev)
