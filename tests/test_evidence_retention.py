"""Retention: `cxguard evidence purge` removes ended calls past their tenant's retention and
the ledger still verifies — keyed heads, exported heads, tombstones on the tenant's chain —
while a purge faked behind the ledger's back is caught. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

import cxguard.evidence.ledger as ledger_module
from cxguard.errors import ConfigError
from cxguard.evidence import EvidenceLedger, HeadKey
from cxguard.evidence.engine import LedgerOptions
from cxguard.evidence.retention import retention_s
from cxguard.evidence.trail import governance_trail
from cxguard.model import TurnText, Verdict
from cxguard.runtime.settings import LedgerSettings

KEY = HeadKey(b"retention-test-key-0123456789")
DAY = 86_400.0


def raw(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _call(led: EvidenceLedger, call: str, *, end: bool = True, tenant: str = "acme") -> None:
    led.record_event(call, tenant, "call_started", 0.0, {})
    led.write_turn(call, tenant, TurnText(0, "agent", "hello", 0.0, 900.0))
    led.write_verdicts(
        [
            Verdict(call, tenant, 0, "agent", 0.0, 900.0, "hello", "greet", "pass", "e"),
        ]
    )
    if end:
        led.record_event(call, tenant, "call_ended", 1000.0, {"reason": "stop"})


class _Clock:
    """The ledger's clock, set back: rows written now look ``days`` old (``recorded_at`` is
    hashed, so age cannot be faked after the fact without breaking the chain)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._patch = monkeypatch
        self.days = 0.0
        real = time.time
        monkeypatch.setattr(
            ledger_module, "time", SimpleNamespace(time=lambda: real() - self.days * DAY)
        )


def test_purge_keeps_every_chain_verifiable(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(monkeypatch)
    with EvidenceLedger(url, key=KEY) as led:
        for call, days in (("LIVE", 500), ("OLD", 400), ("MID", 100), ("NEW", 0)):
            clock.days = days
            _call(led, call, end=call != "LIVE")
        clock.days = 0
        exported = led.heads("acme")
    with EvidenceLedger(url, key=KEY) as led:
        assert led.purge("acme", "12m", dry_run=True).calls == ["OLD"]
        assert led.purge("acme", "6y").calls == []
        summary = led.purge("acme", "6m")
        assert summary.calls == ["OLD"]  # MID is younger, LIVE never ended
        assert summary.rows == {"turns": 1, "verdicts": 1, "events": 2}
        assert led.purge("acme", "6m").calls == []  # once
        assert [r["call_id"] for r in led.export(tenant="acme")] == ["LIVE", "MID", "NEW"]
        states = {c["call_id"]: c["state"] for c in led.calls("acme")}
        assert states["OLD"] == "purged"
        (tomb,) = led.findings("acme", "purge")
        assert tomb["data"]["call_id"] == "OLD" and tomb["data"]["profile"] == "6m"
        report = led.verify(tenant="acme", key=KEY, heads=exported, allow_open=True)
        assert report.ok, [str(p) for p in report.problems]
        assert report.calls_checked == 4
        doc = governance_trail(led, "acme", allow_open=True)
    retention = doc["tenants"][0]["retention"]
    assert retention["profile"] == "6m" and retention["purged_calls"] == 1

    # Purging behind the ledger's back (no tombstone on the tenant chain) is caught.
    engine = raw(url)
    with engine.begin() as conn:
        for table in ("turns", "verdicts", "events"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE call_id = 'MID'"))
        conn.execute(sa.text("UPDATE calls SET state = 'purged' WHERE call_id = 'MID'"))
    engine.dispose()
    with EvidenceLedger(url, LedgerOptions(read_only=True)) as led:
        report = led.verify(tenant="acme", key=KEY, allow_open=True)
    assert not report.ok
    assert [p.call_id for p in report.problems] == ["MID"]
    assert "no purge finding" in str(report.problems[0])


def test_profiles_settings_and_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert retention_s("6m") < retention_s("12m") < retention_s("6y")
    with pytest.raises(ConfigError, match="6m, 12m, 6y"):
        retention_s("forever")
    with pytest.raises(ConfigError):
        LedgerSettings(retention="1w")

    url = f"sqlite:///{tmp_path / 'ev.db'}"
    clock = _Clock(monkeypatch)
    clock.days = 400
    with EvidenceLedger(url) as led:
        _call(led, "OLD", tenant="northwind")
        _call(led, "OLD", tenant="bank")
    clock.days = 0
    config = tmp_path / "server.yaml"
    config.write_text("ledger:\n  retention: 6m\ntenants:\n  - name: bank\n    retention: 6y\n")

    def purge(*args: str) -> list[dict[str, object]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cxguard.cli",
                "evidence",
                "purge",
                "--evidence",
                url,
                "--config",
                str(config),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    dry = {r["tenant"]: r["calls"] for r in purge("--dry-run")}
    assert dry == {"bank": [], "northwind": ["OLD"]}  # the bank keeps six years
    done = {r["tenant"]: r["calls"] for r in purge()}
    assert done == {"bank": [], "northwind": ["OLD"]}
    with EvidenceLedger(url, LedgerOptions(read_only=True)) as led:
        assert led.verify().ok
        assert [r["tenant"] for r in led.export()] == ["bank"]
    report = subprocess.run(
        [sys.executable, "-m", "cxguard.cli", "evidence", "report", "--evidence", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "Retention in force: profile 6m" in report
    assert "No purge has run for this tenant" in report  # the bank
