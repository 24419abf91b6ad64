"""Release markers in the ledger: schema 3 columns, the migration of a schema 2 ledger (old
chains still verify, new rows are hashed with their release), findings recorded once, and
remediation notes / acknowledgements as chained rows — on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from cxguard.errors import EvidenceError
from cxguard.evidence import EvidenceLedger
from cxguard.evidence.engine import LedgerOptions
from cxguard.evidence.rows import LedgerOp, new_op_id, verdict_values
from cxguard.evidence.schema import ADDED_COLUMNS
from cxguard.model import Release, Verdict

NEW = ADDED_COLUMNS["3"]


def raw(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def verdict(call: str, turn: int, **kw: object) -> Verdict:
    fields: dict[str, object] = {
        "call_id": call,
        "tenant": "acme",
        "turn_index": turn,
        "speaker": "agent",
        "start_ms": 1000.0 * turn,
        "end_ms": 1000.0 * turn + 700,
        "text": f"agent turn {turn}",
        "assertion_id": "disclosure.ai_identifies",
        "outcome": "pass",
        "evidence": "matched",
        "policy_hash": "sha256:abc",
        "model_ids": {"asr": "tiny.en"},
        "decided_at_wall": 1_700_000_000.0 + turn,
    }
    fields.update(kw)
    return Verdict(**fields)  # type: ignore[arg-type]


def _as_schema_2(url: str) -> None:
    """A ledger as cxguard wrote it before schema 3: a call whose verdict rows were hashed
    without the release columns, then those columns gone and the version back at 2."""
    with EvidenceLedger(url) as led:
        led.record_event("CA1", "acme", "call_started", 0.0, {})
        rows = []
        for turn in range(2):
            row = verdict_values(verdict("CA1", turn), 0.0)
            for name in NEW:
                row.pop(name)
            rows.append(row)
        led.apply([LedgerOp(new_op_id(), "verdicts", "acme", "CA1", tuple(rows))])
        led.record_event("CA1", "acme", "call_ended", 2000.0, {"reason": "stop"})
        assert led.verify().ok
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_verdicts_tenant_release")
        for name in NEW:
            conn.exec_driver_sql(f"ALTER TABLE verdicts DROP COLUMN {name}")
        conn.exec_driver_sql("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()


def test_a_schema_2_ledger_is_migrated_and_its_chains_still_verify(url: str) -> None:
    _as_schema_2(url)
    with pytest.raises(EvidenceError, match="evidence migrate"):
        EvidenceLedger(url, LedgerOptions(read_only=True))
    release = Release("sha256:abc", {"asr": "tiny.en"}, "v2")
    with EvidenceLedger(url) as led:  # opened for writing: migrated
        assert led.verify().ok
        led.record_event("CA2", "acme", "call_started", 0.0, {})
        led.write_verdicts(
            [
                verdict(
                    "CA2",
                    0,
                    release_id=release.id,
                    agent_version="v2",
                    intent="billing",
                    mode="live",
                )
            ]
        )
        led.record_event("CA2", "acme", "call_ended", 900.0, {"reason": "stop"})
        rows = {r["call_id"]: r for r in led.export()}
        assert led.verify().ok
    assert rows["CA1"]["release_id"] is None and rows["CA1"]["mode"] is None
    assert rows["CA2"]["release_id"] == release.id
    assert (rows["CA2"]["agent_version"], rows["CA2"]["intent"]) == ("v2", "billing")
    with EvidenceLedger(url, LedgerOptions(read_only=True)) as led:
        assert led.verify().ok  # read-only now that it is at schema 3

    # A release marker is hashed on rows written since: clearing it breaks the chain.
    engine = raw(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE verdicts SET release_id = NULL WHERE call_id = 'CA2'")
    engine.dispose()
    with EvidenceLedger(url, LedgerOptions(read_only=True)) as led:
        report = led.verify()
    assert not report.ok
    assert [p.call_id for p in report.problems] == ["CA2"]


def test_findings_once_and_notes_on_calls_and_findings(url: str, tmp_path: Path) -> None:
    with EvidenceLedger(url) as led:
        assert led.record_once("acme", "release", "rel-1", {"release_id": "rel-1"})
        assert not led.record_once("acme", "release", "rel-1", {"release_id": "rel-1"})
        assert led.record_once("beta", "release", "rel-1", {"release_id": "rel-1"})
        led.record_once("acme", "drift_detected", "drift-1", {"finding_id": "drift-1"})
        led.record_event("CA1", "acme", "call_started", 0.0, {})
        led.write_verdicts([verdict("CA1", 0, outcome="fail")])
        led.record_event("CA1", "acme", "call_ended", 900.0, {"reason": "stop"})

        led.annotate("acme", "note", "Retrained; see ticket 12", "dana", finding_id="drift-1")
        led.annotate(
            "acme", "ack", "Seen, coaching booked", "sam", call_id="CA1", about={"turn": 0}
        )
        with pytest.raises(EvidenceError, match="no call"):
            led.annotate("acme", "note", "x", "dana", call_id="CA404")
        with pytest.raises(EvidenceError, match="no finding"):
            led.annotate("acme", "note", "x", "dana", finding_id="drift-404")
        with pytest.raises(EvidenceError, match="text"):
            led.annotate("acme", "note", "  ", "dana", call_id="CA1")
        with pytest.raises(EvidenceError, match="kind"):
            led.annotate("acme", "approve", "x", "dana", call_id="CA1")

        assert [f["data"]["release_id"] for f in led.findings("acme", "release")] == ["rel-1"]
        notes = led.findings("acme", "note")
        assert [(n["data"]["finding_id"], n["data"]["by"]) for n in notes] == [("drift-1", "dana")]
        acks = led.events("CA1", "acme", "ack")
        assert acks[0]["data"] == {"turn": 0, "text": "Seen, coaching booked", "by": "sam"}
        assert led.calls("acme")[0]["state"] == "ended"  # a note after the end moves nothing
        assert led.verify().ok
