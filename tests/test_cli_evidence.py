"""``cxguard evidence``, run as a user would: read commands never write, verify finds what the
ledger lacks, keyed heads catch a rewrite, heads export round-trips."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from cxguard.evidence import EvidenceLedger, HeadKey
from cxguard.model import TurnText, Verdict

CLI = [sys.executable, "-m", "cxguard.cli", "evidence"]
KEY = b"evidence key kept in a secret file"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def digest(path: Path) -> str:
    """The database and its write-ahead log (``-shm`` is the readers' shared index)."""
    parts = [path, path.with_name(path.name + "-wal")]
    return hashlib.sha256(b"".join(p.read_bytes() for p in parts if p.exists())).hexdigest()


def fill(path: Path) -> None:
    with EvidenceLedger(str(path), key=HeadKey(KEY)) as led:
        for n, call in enumerate(("CA1", "CA2")):
            led.record_event(call, "acme", "call_started", 0.0, {})
            for i in range(3):
                led.write_turn(call, "acme", TurnText(i, "agent", f"turn {i}", i, i + 1))
                outcome = "fail" if n else "pass"
                v = Verdict(call, "acme", i, "agent", i, i + 1, "t", "a", outcome, "e")
                led.write_verdicts([v])
            led.record_event(call, "acme", "call_ended", 9.0, {"reason": "stop"})


def test_verify_of_a_missing_database_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    result = run("verify", "--evidence", f"sqlite:///{db}")
    assert result.returncode == 2 and "no ledger" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert run("report", "--evidence", f"sqlite:///{db}").returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_read_commands_write_nothing_and_report_records_only_when_asked(tmp_path: Path) -> None:
    db = tmp_path / "ev.db"
    fill(db)
    before = digest(db)
    assert run("verify", "--evidence", str(db)).returncode == 0
    assert run("export", "--evidence", str(db)).returncode == 0
    assert run("heads", "--evidence", str(db)).returncode == 0
    assert run("report", "--evidence", str(db), "--json").returncode == 0
    assert digest(db) == before
    assert run("report", "--evidence", str(db), "--record").returncode == 0
    with EvidenceLedger(str(db)) as led:
        assert led.findings("acme") == []  # nothing drifted: nothing recorded either


def test_keyed_verify_catches_a_rewrite_the_chain_cannot(tmp_path: Path) -> None:
    db, key_file = tmp_path / "ev.db", tmp_path / "key"
    fill(db)
    key_file.write_bytes(KEY + b"\n")
    heads = run("heads", "--evidence", str(db)).stdout
    assert [json.loads(line)["call_id"] for line in heads.splitlines()] == ["CA1", "CA2"]
    (tmp_path / "heads.jsonl").write_text(heads)
    ok = run("verify", "--evidence", str(db), "--key-file", str(key_file),
             "--heads", str(tmp_path / "heads.jsonl"))  # fmt: skip
    assert ok.returncode == 0 and json.loads(ok.stdout)["signed"] is True
    # Turn the fail into a pass and recompute the chain from there, as a forger would.
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = []
        for table in ("turns", "verdicts", "events"):
            rows += [
                (table, dict(r)) for r in conn.execute(f"SELECT * FROM {table} WHERE call_id='CA2'")
            ]
        rows.sort(key=lambda t: t[1]["seq"])
        from cxguard.evidence.chain import GENESIS, row_hash

        prev = GENESIS
        for table, row in rows:
            for k in ("model_ids", "segments", "data", "actions", "scores", "latency"):
                if isinstance(row.get(k), str):
                    row[k] = json.loads(row[k])
            if table == "verdicts":
                row["outcome"] = "pass"
            row["prev_hash"], row["row_hash"] = prev, row_hash(table, {**row, "prev_hash": prev})
            prev = row["row_hash"]
            extra = ", outcome=?" if table == "verdicts" else ""
            conn.execute(
                f"UPDATE {table} SET prev_hash=?, row_hash=?{extra} WHERE id=?",
                (
                    row["prev_hash"],
                    row["row_hash"],
                    *(["pass"] if table == "verdicts" else []),
                    row["id"],
                ),
            )
        conn.execute("UPDATE calls SET head_hash=? WHERE call_id='CA2'", (prev,))
    assert run("verify", "--evidence", str(db)).returncode == 0  # unkeyed: looks intact
    keyed = run("verify", "--evidence", str(db), "--key-file", str(key_file))
    assert keyed.returncode == 1
    problems = json.loads(keyed.stdout)["problems"]
    assert [(p["call_id"], p["kind"]) for p in problems] == [("CA2", "signature")]
    held = run("verify", "--evidence", str(db), "--heads", str(tmp_path / "heads.jsonl"))
    assert held.returncode == 1 and "chain rewritten" in held.stdout  # no key: the kept heads


def test_verify_reports_missing_turns_and_unended_calls(tmp_path: Path) -> None:
    db = tmp_path / "ev.db"
    with EvidenceLedger(str(db)) as led:
        led.record_event("CA1", "acme", "call_started", 0.0, {})
        led.write_turn("CA1", "acme", TurnText(0, "agent", "a", 0, 1))
        led.write_turn("CA1", "acme", TurnText(2, "agent", "c", 2, 3))
    result = run("verify", "--evidence", str(db))
    kinds = sorted(p["kind"] for p in json.loads(result.stdout)["problems"])
    assert result.returncode == 1 and kinds == ["missing_turn", "unended"]
    tolerant = json.loads(run("verify", "--evidence", str(db), "--allow-open").stdout)
    assert [p["kind"] for p in tolerant["problems"]] == ["missing_turn"]
    assert tolerant["open_calls"] == [{"tenant": "acme", "call_id": "CA1"}]


def test_export_of_turns_carries_their_segments(tmp_path: Path) -> None:
    db = tmp_path / "ev.db"
    fill(db)
    rows = [
        json.loads(line)
        for line in run("export", "--evidence", str(db), "--turns").stdout.splitlines()
    ]
    assert len(rows) == 6 and rows[0]["segments"] == [] and rows[0]["turn"] == 0
    verdicts = [
        json.loads(line) for line in run("export", "--evidence", str(db)).stdout.splitlines()
    ]
    assert {"trigger_turn", "segments", "turn"} <= verdicts[0].keys()
