"""What ``verify`` finds beyond broken links, keyed heads, read-only opening and the schema of
the turns work, on SQLite and a throwaway PostgreSQL database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cxguard.errors import EvidenceError
from cxguard.evidence import EvidenceLedger, HeadKey, LedgerOptions
from cxguard.evidence.chain import GENESIS, row_hash
from cxguard.evidence.engine import summarise_db_error
from cxguard.evidence.heads import parse_heads
from cxguard.evidence.rows import turn_op
from cxguard.model import SegmentSpan, TurnText, Verdict

KEY = HeadKey(b"a key that is not in the database")


@pytest.fixture
def ledger(url: str) -> Iterator[EvidenceLedger]:
    with EvidenceLedger(url, key=KEY) as led:
        yield led


def raw(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def call(led: EvidenceLedger, call_id: str, turns: list[int], *, end: str | None = "call_ended",
         tenant: str = "acme", closed: int | None = None) -> None:  # fmt: skip
    led.record_event(call_id, tenant, "call_started", 0.0, {})
    for i in turns:
        led.write_turn(
            call_id, tenant, TurnText(i, "agent" if i % 2 else "customer", f"t{i}", i, i)
        )
    if end is not None:
        data = {} if closed is None else {"turns_closed": closed}
        led.record_event(call_id, tenant, end, 99.0, data)


def kinds(led: EvidenceLedger, **kw: object) -> list[tuple[str, str]]:
    return [(p.kind, p.reason) for p in led.verify(**kw).problems]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- completeness


def test_missing_turns_are_reported_unless_a_gap_names_them(ledger: EvidenceLedger) -> None:
    call(ledger, "C1", [0, 1, 3, 4])
    ((kind, reason),) = kinds(ledger)
    assert kind == "missing_turn" and "turn 2 closed but not stored" in reason
    ledger.record_event("C1", "acme", "gap", None, {"turns": [2], "reason": "lost"})
    report = ledger.verify()
    assert report.ok and report.gaps == 1


def test_a_short_tail_is_missing_when_the_end_says_how_many_closed(ledger: EvidenceLedger) -> None:
    call(ledger, "C1", [0, 1], closed=4)
    ((kind, reason),) = kinds(ledger)
    assert kind == "missing_turn" and "turns 2-3" in reason


def test_duplicate_turn_indices_are_reported(ledger: EvidenceLedger) -> None:
    call(ledger, "C1", [0, 1, 1, 2])
    ((kind, reason),) = kinds(ledger)
    assert kind == "duplicate_turn" and "turn index 1" in reason


def test_unended_and_interrupted_calls(ledger: EvidenceLedger) -> None:
    call(ledger, "live", [0], end=None)
    call(ledger, "crashed", [0, 1], end="call_interrupted")
    report = ledger.verify()
    assert [(p.call_id, p.kind) for p in report.problems] == [("live", "unended")]
    assert report.interrupted == (("acme", "crashed"),)
    tolerant = ledger.verify(allow_open=True)
    assert tolerant.ok and tolerant.open_calls == (("acme", "live"),)
    # A reconnect after the interruption makes the call live again, numbering continued.
    ledger.record_event("crashed", "acme", "call_started", 0.0, {})
    ledger.write_turn("crashed", "acme", TurnText(2, "customer", "again", 5, 6))
    ledger.record_event("crashed", "acme", "call_ended", 9.0, {})
    assert ledger.verify().interrupted == (("acme", "crashed"),)
    assert [c["state"] for c in ledger.calls()] == ["live", "ended"]


def test_spooled_writes_are_reported(ledger: EvidenceLedger) -> None:
    call(ledger, "C1", [0])
    ((kind, reason),) = kinds(ledger, pending={("acme", "C1"): 3, ("acme", "C2"): 1}, call_id="C1")
    assert kind == "spool" and "3 writes" in reason


# --------------------------------------------------------------------------- keyed heads


def _rewrite(url: str, table: str, seq: int, column: str, value: object) -> None:
    """What a forger with database access does: change a row, recompute every hash after it
    and the head, so the unkeyed chain verifies."""
    engine = raw(url)
    with engine.begin() as conn:
        rows = []
        for name in ("turns", "verdicts", "events"):
            for r in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY seq")):
                rows.append((name, dict(r._mapping)))
        rows.sort(key=lambda item: item[1]["seq"])
        prev = GENESIS
        for name, row in rows:
            for key in ("model_ids", "segments", "data", "actions", "scores", "latency"):
                if isinstance(row.get(key), str):
                    row[key] = json.loads(row[key])
            if name == table and row["seq"] == seq:
                row[column] = value
            row["prev_hash"] = prev
            row["row_hash"] = prev = row_hash(name, row)
            values = {"p": row["prev_hash"], "h": row["row_hash"], "i": row["id"]}
            changed = ""
            if name == table and row["seq"] == seq:
                changed, values["v"] = f"{column} = :v, ", row[column]
            update = f"UPDATE {name} SET {changed}prev_hash = :p, row_hash = :h WHERE id = :i"
            conn.execute(sa.text(update), values)
        conn.execute(sa.text("UPDATE calls SET head_hash = :h"), {"h": prev})
    engine.dispose()


def test_a_rewritten_chain_with_recomputed_hashes_fails_only_the_key(
    url: str, ledger: EvidenceLedger
) -> None:
    call(ledger, "C1", [0, 1, 2])
    assert ledger.verify(key=KEY).ok and ledger.verify(key=KEY).signed
    _rewrite(url, "turns", 2, "text", "the agent said nothing wrong")
    assert ledger.verify().ok  # the unkeyed chain cannot tell
    ((kind, reason),) = kinds(ledger, key=KEY)
    assert kind == "signature" and "chain rewritten" in reason
    other = HeadKey(b"someone else's key, not ours")
    assert "another key" in kinds(ledger, key=other)[0][1]


def test_unsigned_heads_fail_a_keyed_verify(url: str) -> None:
    with EvidenceLedger(url) as led:
        call(led, "C1", [0])
        ((kind, reason),) = kinds(led, key=KEY)
    assert kind == "signature" and "not signed" in reason


def test_exported_heads_catch_a_deleted_or_cut_back_chain(
    url: str, ledger: EvidenceLedger, tmp_path: Path
) -> None:
    call(ledger, "C1", [0, 1])
    call(ledger, "C2", [0, 1])
    ledger.record_finding("acme", "drift_detected", {"a": 1})
    exported = tmp_path / "heads.jsonl"
    exported.write_text("".join(h.to_json() + "\n" for h in ledger.heads()))
    heads = parse_heads(exported.read_text(), str(exported))
    assert {(h.call_id, h.next_seq) for h in heads} == {("C1", 4), ("C2", 4), ("", 1)}
    ledger.write_turn("C1", "acme", TurnText(2, "customer", "later", 3, 4))  # the chain goes on
    assert ledger.verify(key=KEY, heads=heads, allow_open=True).ok
    engine = raw(url)
    with engine.begin() as conn:  # delete C2 whole, cut C1 back to before the export
        for table in ("turns", "verdicts", "events"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE call_id = 'C2'")
        conn.exec_driver_sql("DELETE FROM calls WHERE call_id = 'C2'")
        for table in ("turns", "events"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE call_id = 'C1' AND seq >= 2")
        conn.exec_driver_sql("UPDATE calls SET next_seq = 2 WHERE call_id = 'C1'")
    engine.dispose()
    found = [(p.call_id, p.kind, p.reason) for p in ledger.verify(heads=heads).problems]
    assert ("C2", "heads", "an exported head's chain is gone from the ledger (deleted)") in found
    assert any(c == "C1" and k == "heads" and "cut back" in r for c, k, r in found)
    with pytest.raises(EvidenceError, match=r"heads\.jsonl:2"):
        parse_heads(
            '{"tenant": "a", "call_id": "b", "next_seq": 1, "head_hash": "x"}\n[]', "heads.jsonl"
        )


def test_short_keys_are_refused() -> None:
    with pytest.raises(EvidenceError, match="16 bytes"):
        HeadKey(b"short")


# --------------------------------------------------------------------------- opening, schema


def test_read_only_never_creates_or_writes(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(EvidenceError, match="no ledger"):
        EvidenceLedger(str(missing), LedgerOptions(read_only=True))
    assert not missing.exists()
    path = tmp_path / "ev.db"
    with EvidenceLedger(str(path)) as led:
        call(led, "C1", [0])
    before = path.read_bytes()
    with EvidenceLedger(str(path), LedgerOptions(read_only=True)) as ro:
        assert ro.verify().ok and len(ro.turns("C1")) == 1
        with pytest.raises(EvidenceError, match="read-only"):
            ro.record_event("C1", "acme", "x", 0.0, {})
    assert path.read_bytes() == before


def test_read_only_refuses_a_database_without_a_ledger(url: str) -> None:
    """An empty PostgreSQL database, a SQLite file that does not exist: nothing to read."""
    with pytest.raises(EvidenceError, match=r"no (evidence )?ledger"):
        EvidenceLedger(url, LedgerOptions(read_only=True))


def test_a_first_schema_ledger_is_refused_loudly(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, tenant TEXT)")
    with pytest.raises(EvidenceError, match="first schema"):
        EvidenceLedger(str(path))


def test_turn_segments_and_verdict_trigger_are_stored_and_exported(ledger: EvidenceLedger) -> None:
    spans = (SegmentSpan(4, 1000.0, 1800.0), SegmentSpan(5, 2500.0, 3100.0))
    ledger.write_turn(
        "C1", "acme", TurnText(2, "agent", "two segments", 1000, 3100, segments=spans)
    )
    ledger.write_verdicts(
        [
            Verdict(
                "C1", "acme", 2, "agent", 1000, 3100, "t", "esc", "fail", "e",
                trigger_turn=1, segments=spans,
            )
        ]
    )  # fmt: skip
    (turn,) = ledger.turns("C1")
    assert turn["segments"] == [
        {"index": 4, "start_ms": 1000.0, "end_ms": 1800.0},
        {"index": 5, "start_ms": 2500.0, "end_ms": 3100.0},
    ]
    (row,) = ledger.export()
    assert row["turn"] == 2 and row["trigger_turn"] == 1 and row["segments"] == turn["segments"]
    progress = ledger.call_progress("acme", "C1")
    assert progress.next_turn == 3 and progress.next_segment == 6
    assert progress.turns[0].segments == spans


def test_an_op_applied_twice_is_stored_once(ledger: EvidenceLedger) -> None:
    op = turn_op("C1", "acme", TurnText(0, "agent", "once", 0, 1))
    assert ledger.apply([op]) == 1
    assert ledger.apply([op]) == 0  # replayed from the spool after a crash
    assert len(ledger.turns("C1")) == 1


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=()), max_size=40))
def test_any_string_is_stored_as_valid_text(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """Lone surrogates (a JSON parser lets ``\\ud800`` through) and NUL never break a write."""
    path = tmp_path_factory.mktemp("s") / "ev.db"
    with EvidenceLedger(str(path)) as led:
        led.record_event("C1", "acme", "control.update", 0.0, {text: [text], "k": text})
        led.write_turn("C1", "acme", TurnText(0, "agent", text, 0, 1))
        assert led.verify().ok
        (event,) = led.events("C1")
        json.dumps(event["data"]).encode("utf-8")


def test_driver_errors_are_summarised_without_addresses() -> None:
    with pytest.raises(EvidenceError) as info:
        EvidenceLedger("postgresql://cxguard@127.0.0.1:1/secretdb")
    message = str(info.value)
    assert "connection" in message
    for leak in ("127.0.0.1", "port 1", "secretdb", "cxguard@"):
        assert leak not in message
    odd = ValueError('server at "10.1.2.3", port 5433 said: role "ops" unknown')
    summary = summarise_db_error(odd)
    assert summary.startswith("ValueError")
    for leak in ("10.1.2.3", "5433", "ops"):
        assert leak not in summary
