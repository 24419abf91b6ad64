"""The write-ahead spool and the writer behind it: durable before acknowledged, drained into a
real ledger (a private PostgreSQL we stop, freeze and lock out), numbering kept per call."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from support_services import PostgresCluster

from cxguard.errors import EvidenceError
from cxguard.evidence import EvidenceLedger, Judged, LedgerOptions, Spool, SpooledSegment
from cxguard.evidence.rows import event_op, turn_op
from cxguard.model import CallInfo, Segment, TurnText, Verdict
from cxguard.runtime.evidence_writer import EvidenceWriter

CARD = "4111111111111111"
INFO = CallInfo("CA1", "acme", "twilio")


def verdict(turn: int, assertion: str = "a") -> Verdict:
    return Verdict("CA1", "acme", turn, "agent", 0, 1, "t", assertion, "pass", "e")


def segment(i: int, turn: int | None) -> SpooledSegment:
    return SpooledSegment("acme", "CA1", i, "agent", i * 1000.0, i * 1000.0 + 800, 8000, "PCMU",
                          bytes([i]) * 6400, turn)  # fmt: skip


def test_spool_survives_reopen_and_never_holds_a_card_number(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.db"
    spool = Spool(path)
    spool.append([turn_op("CA1", "acme", TurnText(0, "customer", f"card {CARD}", 0, 1))])
    spool.append([event_op("CA1", "acme", "call_started", 0.0, {"n": CARD})])
    spool.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert CARD.encode() not in b"".join(p.read_bytes() for p in path.parent.glob("spool.db*"))
    again = Spool(path)
    (first_id, first), (_, second) = again.peek()
    assert first.table == "turns" and "[CARD]" in first.rows[0]["text"]
    assert second.table == "events"
    assert again.pending_counts() == {("acme", "CA1"): 2}
    again.remove([first_id])
    assert again.depth() == 1
    again.close()
    ro = Spool(path, read_only=True)
    assert ro.depth() == 1
    ro.close()
    with pytest.raises(EvidenceError, match="no spool"):
        Spool(tmp_path / "none.db", read_only=True)


def test_segments_wait_until_their_turn_is_judged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    for i, turn in enumerate([0, 0, 1, 2]):
        spool.put_segment(segment(i, turn))
    spool.put_segment(segment(4, None))
    assert spool.segment_calls() == {("acme", "CA1"): 5}
    assert spool.segment_progress("acme", "CA1") == (5, 3)
    spool.append(
        [turn_op("CA1", "acme", TurnText(1, "agent", "x", 0, 1))], Judged("acme", "CA1", 1)
    )
    pending = spool.pending("acme", "CA1")
    assert [(s.index, s.turn_index) for s in pending] == [(3, 2), (4, None)]
    assert pending[0].audio == bytes([3]) * 6400
    spool.judged(Judged("acme", "CA1", segments=(4,)))
    assert [s.index for s in spool.pending("acme", "CA1")] == [3]
    assert spool.pending("other", "CA1") == []  # keyed by tenant too
    spool.close()


async def test_writer_acknowledges_stores_and_numbers(tmp_path: Path) -> None:
    ledger = EvidenceLedger(str(tmp_path / "ev.db"))
    writer = EvidenceWriter(ledger, Spool(tmp_path / "spool.db"), owner="me")
    try:
        writer.submit_event(INFO, "call_started", 0.0, {})
        pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes()
        assert writer.spool_segment(INFO, Segment("agent", pcm, 8000, 0, 1000), turn_index=0) == 0
        assert (
            writer.spool_segment(INFO, Segment("agent", pcm, 8000, 1000, 2000), turn_index=1) == 1
        )
        receipt = await writer.write(INFO, TurnText(0, "agent", "hi", 0, 1000), [verdict(0)])
        assert receipt.stored and receipt.note is None
        await writer.event(INFO, "call_ended", 2000.0, {"reason": "stop"})
        assert writer.next_turn_index(INFO) == 2 and writer.next_segment_index(INFO) == 2
        deadline = time.monotonic() + 5
        while writer.depth() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [s.index for s in writer.spool.pending("acme", "CA1")] == [1]  # turn 1 unjudged
    finally:
        await writer.close()
    with EvidenceLedger(str(tmp_path / "ev.db")) as led:
        (ended,) = led.events("CA1", kind="call_ended")
        assert ended["data"]["turns_closed"] == 2  # verify knows a turn is missing
        assert [p.kind for p in led.verify().problems] == ["missing_turn"]
        assert led.calls()[0]["owner"] == "me"


@pytest.mark.parametrize("fault", ["stop", "freeze", "revoke"])
async def test_a_database_outage_delays_rows_and_loses_none(tmp_path: Path, fault: str) -> None:
    """PostgreSQL stopped, frozen (SIGSTOP: it accepts bytes and never answers) or locking
    the ledger's role out: writes are acknowledged at once as pending, never block longer
    than the ack wait, and are all stored once it is back."""
    with PostgresCluster() as pg:
        ledger = EvidenceLedger(pg.url, LedgerOptions(timeout_s=1.0, connect_timeout_s=1.0))
        writer = EvidenceWriter(ledger, Spool(tmp_path / "spool.db"), ack_wait_s=0.2)
        try:
            assert (await writer.write(INFO, TurnText(0, "agent", "t", 0, 1), [verdict(0)])).stored
            {"stop": pg.stop, "freeze": pg.freeze, "revoke": pg.revoke}[fault]()
            took, notes = [], []
            for turn in range(1, 16):
                started = time.monotonic()
                receipt = await writer.write(
                    INFO, TurnText(turn, "agent", "t", turn, turn), [verdict(turn)]
                )
                took.append(time.monotonic() - started)
                notes.append(receipt.note)
                await asyncio.sleep(0.1)
            assert max(took) < 0.5, took
            assert all(n and n.startswith("evidence pending") for n in notes[3:]), notes
            assert "127.0.0.1" not in "".join(n or "" for n in notes)
            assert writer.depth() >= 10
            {"stop": pg.start, "freeze": pg.thaw, "revoke": pg.restore}[fault]()
            deadline = time.monotonic() + 30
            while writer.depth() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert writer.depth() == 0 and writer.ledger_error is None
            assert (await writer.write(INFO, None, [verdict(99)])).stored
        finally:
            await writer.close()
        with EvidenceLedger(pg.url) as led:
            turns = sorted({r["turn"] for r in led.export()})
            assert turns == [*range(16), 99]
            assert len(led.turns("CA1")) == 16
            assert led.verify().ok
