"""The evidence ledger on real SQLite files and a real (throwaway) PostgreSQL database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cxguard.errors import EvidenceError
from cxguard.evidence import EvidenceLedger
from cxguard.evidence.chain import row_hash
from cxguard.model import TurnText, Verdict

CARD = "4111111111111111"


@pytest.fixture
def ledger(url: str) -> Iterator[EvidenceLedger]:
    with EvidenceLedger(url) as led:
        yield led


def raw(url: str) -> sa.Engine:
    """A plain engine on the same database, for reading and tampering behind the ledger."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def verdict(call: str, turn: int, assertion: str, outcome: str = "pass", **kw: object) -> Verdict:
    fields: dict[str, object] = {
        "call_id": call,
        "tenant": "acme",
        "turn_index": turn,
        "speaker": "agent",
        "start_ms": 1000.0 * turn,
        "end_ms": 1000.0 * turn + 750,
        "text": f"agent turn {turn}",
        "assertion_id": assertion,
        "outcome": outcome,
        "evidence": "matched rule",
        "scores": {"p": 0.25},
        "policy_hash": "sha256:abc",
        "model_ids": {"asr": "tiny.en-int8"},
        "latency_ms": {"asr": 410.5, "policy": 1.25},
        "decided_at_wall": 1_700_000_000.0 + turn,
    }
    fields.update(kw)
    return Verdict(**fields)  # type: ignore[arg-type]


def fill(led: EvidenceLedger, call: str = "CA1", tenant: str = "acme") -> None:
    led.record_event(call, tenant, "call_started", 0.0, {"source": "twilio"})
    for i in range(3):
        speaker = "customer" if i % 2 == 0 else "agent"
        led.write_turn(
            call, tenant, TurnText(i, speaker, f"turn {i}", i * 1000.0, i * 1000.0 + 900)
        )
    led.write_verdicts(
        [verdict(call, 1, "b", tenant=tenant), verdict(call, 1, "a", "fail", tenant=tenant)]
    )
    led.record_event(call, tenant, "call_ended", 3000.0, {"reason": "stop"})


# --------------------------------------------------------------------------- writing and reading


def test_export_shape_and_order(ledger: EvidenceLedger) -> None:
    ledger.write_verdicts([verdict("CB", 2, "z"), verdict("CB", 0, "b"), verdict("CB", 0, "a")])
    ledger.write_verdicts([verdict("CA", 5, "a", "undetermined")])
    rows = list(ledger.export())
    assert [(r["call_id"], r["turn"], r["assertion"]) for r in rows] == [
        ("CA", 5, "a"),
        ("CB", 0, "a"),
        ("CB", 0, "b"),
        ("CB", 2, "z"),
    ]
    first = rows[0]
    assert first["start"] == 5.0 and first["end"] == 5.75
    assert first["verdict"] == "undetermined" and first["speaker"] == "agent"
    assert first["scores"] == {"p": 0.25} and first["latency_ms"] == {"asr": 410.5, "policy": 1.25}
    assert first["model_ids"] == {"asr": "tiny.en-int8"} and first["policy_hash"] == "sha256:abc"
    assert first["decided_at"] == 1_700_000_005.0
    json.dumps(rows)  # JSON-ready as is
    assert [r["assertion"] for r in ledger.export(call_id="CB")] == ["a", "b", "z"]


def test_export_pages_through_many_rows(tmp_path: Path) -> None:
    with EvidenceLedger(str(tmp_path / "many.db")) as led:  # a bare path is a SQLite file
        led.write_verdicts([verdict("C", t, f"a{k}") for t in range(260) for k in range(5)])
        rows = list(led.export())
    assert len(rows) == 1300
    keys = [(r["turn"], r["assertion"]) for r in rows]
    assert keys == sorted(keys)


def test_turns_of_both_speakers_and_events(ledger: EvidenceLedger) -> None:
    fill(ledger)
    turns = ledger.turns("CA1")
    assert [(t["turn"], t["speaker"], t["text"]) for t in turns] == [
        (0, "customer", "turn 0"),
        (1, "agent", "turn 1"),
        (2, "customer", "turn 2"),
    ]
    assert [e["kind"] for e in ledger.events("CA1")] == ["call_started", "call_ended"]
    (call,) = ledger.calls()
    assert call["source"] == "twilio" and call["started_at_ms"] == 0.0
    assert call["ended_at_ms"] == 3000.0 and call["end_reason"] == "stop"
    assert ledger.outcome_counts() == {"a": {"fail": 1}, "b": {"pass": 1}}
    assert ledger.failures() == {"a": [("CA1", 1)]}
    assert ledger.head("acme", "CA1")[0] == 7


def test_undetermined_turn_and_odd_values(ledger: EvidenceLedger) -> None:
    ledger.write_turn(
        "C", "acme", TurnText(0, "agent", "", 0, 10, "asr_overloaded", None), model_ids={"asr": "x"}
    )
    ledger.write_verdicts([verdict("C", 0, "a", scores={"p": float("nan")}, start_ms=0, end_ms=10)])
    (turn,) = ledger.turns("C")
    assert turn["undetermined_reason"] == "asr_overloaded" and turn["model_ids"] == {"asr": "x"}
    (row,) = ledger.export()
    assert row["scores"] == {"p": None}
    assert ledger.verify().ok


def test_tenant_findings_have_their_own_chain(ledger: EvidenceLedger) -> None:
    """Findings of no call (drift) are keyed by tenant: no call id is reserved for them."""
    ledger.record_finding("acme", "drift_detected", {"assertion_id": "a"})
    ledger.record_event("tenant:acme", "acme", "call_started", 0.0, {})  # just a call id
    (finding,) = ledger.findings(tenant="acme", kind="drift_detected")
    assert finding["data"] == {"assertion_id": "a"} and finding["seq"] == 0
    assert [c["call_id"] for c in ledger.calls()] == ["tenant:acme"]
    assert ledger.findings(tenant="globex") == []
    report = ledger.verify(allow_open=True)
    assert report.ok and report.rows_checked == 2


# --------------------------------------------------------------------------- redaction before write


def test_never_stores_a_card_number_or_ssn(url: str, ledger: EvidenceLedger) -> None:
    spoken = "four one one one one one one one one one one one one one one one"
    ledger.write_turn("C", "acme", TurnText(0, "customer", f"my card is {spoken}", 0, 900))
    ledger.write_verdicts(
        [verdict("C", 1, "no_pan", "fail", text=f"so that's {CARD}?", evidence=f"echoed {CARD}")]
    )
    ledger.record_event("C", "acme", "control", 950.0, {"note": ["ssn 123-45-6789", {"c": CARD}]})
    ledger.close()
    engine = raw(url)
    with engine.connect() as conn:
        dumped = " ".join(
            str(row)
            for table in ("turns", "verdicts", "events", "calls")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    engine.dispose()
    assert "[CARD]" in dumped and "[SSN]" in dumped
    for secret in (CARD, "123-45-6789", "one one one one"):
        assert secret not in dumped
    if url.startswith("sqlite:///"):  # and not in any byte of the files (WAL included)
        db = Path(url.removeprefix("sqlite:///"))
        blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert CARD.encode() not in blob and b"123-45-6789" not in blob


# --------------------------------------------------------------------------- tamper evidence


def _problems(ledger: EvidenceLedger, call_id: str = "CA1") -> list[tuple[str, int | None, str]]:
    report = ledger.verify(call_id)
    assert not report.ok
    return [(p.table, p.seq, p.reason) for p in report.problems]


def test_intact_chain_verifies(ledger: EvidenceLedger) -> None:
    fill(ledger)
    fill(ledger, "CA2", "other")
    report = ledger.verify()
    assert report.ok and report.calls_checked == 2 and report.rows_checked == 14
    assert ledger.verify(tenant="other").calls_checked == 1


def test_modified_row_is_named(url: str, ledger: EvidenceLedger) -> None:
    fill(ledger)
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE verdicts SET outcome = 'pass' WHERE assertion_id = 'a'")
        row_id = conn.exec_driver_sql("SELECT id, seq FROM verdicts WHERE assertion_id = 'a'").one()
    engine.dispose()
    report = ledger.verify()
    (problem,) = report.problems
    assert (problem.table, problem.row_id, problem.seq) == ("verdicts", row_id.id, row_id.seq)
    assert "modified" in problem.reason and f"id={row_id.id}" in str(problem)


def test_modified_row_with_recomputed_hash_breaks_the_next_link(
    url: str, ledger: EvidenceLedger
) -> None:
    fill(ledger)
    engine = raw(url)
    with engine.begin() as conn:  # a careful forger also recomputes the row's own hash
        row = dict(conn.execute(sa.text("SELECT * FROM turns WHERE seq = 1")).one()._mapping)
        row["text"] = "something else"
        for key in ("model_ids", "segments"):  # JSON columns are text in a raw SQLite read
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
        forged = row_hash("turns", row)
        conn.execute(
            sa.text("UPDATE turns SET text = :t, row_hash = :h WHERE seq = 1"),
            {"t": row["text"], "h": forged},
        )
    engine.dispose()
    assert _problems(ledger) == [
        ("turns", 2, "prev_hash does not match the previous row (deleted or reordered)"),
    ]


def test_deleted_row_is_found(url: str, ledger: EvidenceLedger) -> None:
    fill(ledger)
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM turns WHERE seq = 2")
    engine.dispose()
    problems = _problems(ledger)
    assert problems[0][:2] == ("turns", 3)
    assert "expected seq 2" in problems[0][2]


def test_deleted_tail_is_found(url: str, ledger: EvidenceLedger) -> None:
    fill(ledger)
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events WHERE kind = 'call_ended'")
    engine.dispose()
    (table, _seq, reason), unended = _problems(ledger)
    assert table == "calls" and "rows at the end deleted" in reason
    assert "call never ended" in unended[2]  # and, with call_ended gone, it looks live


def test_reordered_rows_are_found(url: str, ledger: EvidenceLedger) -> None:
    fill(ledger)
    engine = raw(url)
    with engine.begin() as conn:  # swap turns 1 and 2 in the sequence
        conn.exec_driver_sql("UPDATE turns SET seq = 100 WHERE seq = 1")
        conn.exec_driver_sql("UPDATE turns SET seq = 1 WHERE seq = 2")
        conn.exec_driver_sql("UPDATE turns SET seq = 2 WHERE seq = 100")
    engine.dispose()
    problems = _problems(ledger)
    assert {(t, s) for t, s, _ in problems} >= {("turns", 1), ("turns", 2)}


# --------------------------------------------------------------------------- tenants and errors


def test_tenant_isolation(ledger: EvidenceLedger) -> None:
    fill(ledger, "CA1", "acme")
    fill(ledger, "CB1", "globex")
    assert {r["call_id"] for r in ledger.export(tenant="globex")} == {"CB1"}
    assert list(ledger.export(call_id="CA1", tenant="globex")) == []
    assert ledger.turns("CA1", tenant="globex") == []
    assert {e["call_id"] for e in ledger.events(tenant="acme")} == {"CA1"}
    assert [c["call_id"] for c in ledger.calls("globex")] == ["CB1"]
    assert ledger.failures("globex") == {"a": [("CB1", 1)]}
    # The same call id in another tenant is another call, with its own chain.
    ledger.write_verdicts([verdict("CA1", 9, "a", tenant="globex")])
    assert ledger.head("acme", "CA1")[0] == 7 and ledger.head("globex", "CA1")[0] == 1
    assert {r["tenant"] for r in ledger.export(call_id="CA1")} == {"acme", "globex"}
    assert ledger.verify().ok


@pytest.mark.parametrize(
    "bad",
    [
        {"outcome": "maybe"},
        {"speaker": "robot"},
        {"tenant": ""},
        {"call_id": "x" * 200},
        {"assertion_id": "a" * 129},
        {"start_ms": float("inf")},
    ],
)
def test_invalid_verdicts_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    ledger = EvidenceLedger(str(tmp_path / "v.db"))
    with pytest.raises(EvidenceError):
        ledger.write_verdicts([verdict("C", 0, "a", **bad)])
    with pytest.raises(EvidenceError, match="event kind"):
        ledger.record_event("C", "acme", "Bad Kind!", 0.0, {})
    ledger.close()


def test_unreachable_or_broken_databases_raise_evidence_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError):
        EvidenceLedger("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(EvidenceError):
        EvidenceLedger(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(EvidenceError, match="unsupported"):
        EvidenceLedger("mysql://localhost/x")
    with pytest.raises(EvidenceError, match="no call"):
        EvidenceLedger(str(tmp_path / "e.db")).verify("nope")


def test_db_error_during_write_is_evidence_error(url: str, ledger: EvidenceLedger) -> None:
    ledger.write_verdicts([verdict("C", 0, "a")])
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE verdicts")
    engine.dispose()
    with pytest.raises(EvidenceError, match="could not write"):
        ledger.write_verdicts([verdict("C", 1, "a")])
    with pytest.raises(EvidenceError, match="could not read"):
        list(ledger.export())


def test_in_memory_sqlite() -> None:
    with EvidenceLedger("sqlite://") as led:
        fill(led)
        assert led.verify().ok and len(list(led.export())) == 2


# --------------------------------------------------------------------------- concurrency


def test_threads_writing_calls_keep_every_chain_intact(ledger: EvidenceLedger) -> None:
    """Six threads: two per call on three calls, plus each its own call, all interleaved."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            shared, own = f"shared-{worker % 3}", f"own-{worker}"
            for i in range(15):
                for call in (shared, own):
                    # Two workers share a call: each its own turn indices, none missing.
                    index = i if call == own else 2 * i + worker // 3
                    ledger.write_turn(
                        call, "acme", TurnText(index, "agent", f"w{worker} {i}", i, i + 1)
                    )
                    ledger.write_verdicts([verdict(call, i, f"a{worker}"), verdict(call, i, "b")])
                    ledger.record_event(call, "acme", "control", float(i), {"w": worker})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = ledger.verify()
    assert report.ok, str(report)
    assert report.calls_checked == 9 and report.rows_checked == 6 * 2 * 15 * 4
    assert ledger.head("acme", "shared-0")[0] == 2 * 15 * 4


def test_two_ledgers_on_one_sqlite_file_share_a_chain(tmp_path: Path) -> None:
    """Two ledgers (as two processes would) append to one call; BEGIN IMMEDIATE serialises
    them in the database, where no in-process lock reaches."""
    path = str(tmp_path / "shared.db")
    ledgers = [EvidenceLedger(path), EvidenceLedger(path)]

    def work(led: EvidenceLedger, worker: int) -> None:
        for i in range(40):
            led.write_verdicts([verdict("C", i, f"w{worker}")])

    threads = [threading.Thread(target=work, args=(ledgers[w % 2], w)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = ledgers[0].verify()
    for led in ledgers:
        led.close()
    assert report.ok, str(report)
    assert report.rows_checked == 160
