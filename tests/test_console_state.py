"""The console's per-tenant view and its hub, without a server: what is shown, deduplicated,
redacted, and pushed only to the tenant's own pages; tokens map to exactly one tenant."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from cxguard.errors import ConfigError, SinkError
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.schema import events
from cxguard.evidence.spool import Spool
from cxguard.model import Alert, CallInfo, TurnText, Verdict
from cxguard.runtime.console.hub import ConsoleHub
from cxguard.runtime.console.state import TenantView
from cxguard.runtime.console.web import ConsoleWeb
from cxguard.runtime.evidence_writer import EvidenceWriter
from cxguard.runtime.settings import Settings, TenantSettings
from cxguard.runtime.settings_loader import load
from cxguard.sinks import alert_message

CARD = "4111 1111 1111 1111"


def _alert(tenant: str, call: str, turn: int, evidence: str = "matched") -> Alert:
    v = Verdict(call, tenant, turn, "agent", 0.0, 1.0, f"card {CARD}", "pii.no_full_card_number",
                "fail", evidence, severity="critical", decided_at_wall=1.0)  # fmt: skip
    return Alert(v, "violation", f"failed: {evidence}")


def test_an_alert_delivered_twice_is_shown_once_and_its_text_is_redacted() -> None:
    view = TenantView("acme")
    body = alert_message(_alert("acme", "CA1", 3, f"read back {CARD}")).data()
    first = view.on_alert(body)
    assert first is not None and view.on_alert(body) is None
    shown = first["alert"]
    assert shown["assertion"] == "pii.no_full_card_number" and shown["turn"] == 3
    assert "4111" not in str(shown) and "[CARD]" in shown["text"]
    assert shown["alert_id"] == body["alert_id"]  # ids are shown as given, never masked


def test_turns_calls_actions_and_handoffs_fold_in() -> None:
    view = TenantView("acme")
    view.on_call_started("CA1", "twilio", 100.0, {"authenticated": "false", "intent": "billing"})
    assert view.on_speaking("CA1", ("agent",)) is not None
    assert view.on_speaking("CA1", ("agent",)) is None  # nothing changed: nothing pushed
    view.on_control("CA1", "authenticated", {})
    update = view.on_turn("CA1", {"index": 0, "speaker": "customer", "text": f"it is {CARD}"})
    assert "4111" not in str(update)
    alert = view.on_alert(alert_message(_alert("acme", "CA1", 0)).data())
    assert alert is not None
    alert_id = alert["alert"]["alert_id"]
    action = {"action_id": "x1", "action": "assign", "alert_id": alert_id, "by": "Dana",
              "assignee": "Lee", "note": f"customer said {CARD}"}  # fmt: skip
    assert view.on_action(action) is not None and view.on_action(action) is None
    view.on_handoff("CA1", "handoff.requested", {"assertion": "esc", "key": "h1"}, 5.0)
    view.on_handoff("CA1", "handoff.retrying", {"sink": "webhook", "id": "h1"}, 6.0)
    view.on_handoff("CA1", "handoff.delivered", {"sink": "twilio", "id": "h1"}, 6.0)
    view.on_call_ended("CA1", 200.0, "stop")
    snap = view.snapshot()
    (call,) = snap["calls"]
    assert call["authenticated"] is True and call["intent"] == "billing" and not call["live"]
    assert call["speaking"] == [] and len(call["turns"]) == 1
    (shown,) = snap["alerts"]
    assert shown["assignee"] == "Lee" and "4111" not in str(shown["actions"])
    (handoff,) = snap["handoffs"]
    assert handoff["state"] == "retrying" and handoff["sinks"] == {
        "webhook": "retrying",
        "twilio": "delivered",
    }


async def test_updates_reach_only_the_tenants_own_pages() -> None:
    hub = ConsoleHub()
    page_a, page_b = hub.subscribe("acme"), hub.subscribe("globex")
    await hub.route().sink.deliver(alert_message(_alert("acme", "CA1", 1)))
    hub._on_turn(  # as Services.listeners call it
        CallInfo("CA1", "acme", "twilio"), TurnText(1, "agent", "hello", 0.0, 1.0), []
    )
    assert [page_a.queue.get_nowait()["type"] for _ in range(2)] == ["alert", "turn"]
    assert page_b.queue.empty()
    assert hub.view("globex").snapshot()["alerts"] == []
    with pytest.raises(SinkError, match="no such alert"):  # B cannot act on A's alert
        await hub.act("globex", next(iter(hub.view("acme").alerts)), "acknowledge", by="x")


def test_each_console_token_opens_exactly_its_tenant() -> None:
    settings = Settings(
        tenants=(
            TenantSettings("acme", console_token="token-a-0123456789"),
            TenantSettings("globex", console_token="token-b-0123456789"),
            TenantSettings("initech"),
        )
    )
    web = ConsoleWeb(ConsoleHub(), settings)
    assert web.tenant_of("/console?token=token-a-0123456789", None) == "acme"
    assert web.tenant_of("/console/live", "Bearer token-b-0123456789") == "globex"
    assert web.tenant_of("/console?token=token-a-012345678", None) is None
    assert web.tenant_of("/console", None) is None
    assert web.tenant_of("/console?token=", "Basic abc") is None
    assert not ConsoleWeb(ConsoleHub(), Settings()).has_tokens


def test_console_tokens_come_from_the_environment_or_files_and_are_never_shared(
    tmp_path: Path,
) -> None:
    single = load(None, None, {"CXGUARD_CONSOLE_TOKEN": "single-tenant-token-0123"})
    assert single.tenant("default") is not None
    assert single.tenant("default").console_token == "single-tenant-token-0123"  # type: ignore[union-attr]
    (tmp_path / "t").write_text("shared-token-0123456789\n")
    config = tmp_path / "server.yaml"
    config.write_text(
        "tenants:\n"
        f"  - {{name: acme, console_token_file: {tmp_path / 't'}}}\n"
        "  - {name: globex, console_token: shared-token-0123456789}\n"
    )
    with pytest.raises(ConfigError, match="reuses the console token"):
        load(config, None, {})


async def test_an_acknowledgement_is_chained_evidence_that_verify_checks(
    tmp_path: Path, url: str
) -> None:
    """On SQLite and PostgreSQL (the ``url`` fixture)."""
    writer = EvidenceWriter(EvidenceLedger(url), Spool(tmp_path / "spool.db"), owner="me")
    hub = ConsoleHub()
    hub._services = SimpleNamespace(evidence=writer)  # the one part act() writes through
    info = CallInfo("CA7", "acme", "twilio")
    try:
        await writer.event(info, "call_started", 0.0, {})
        await hub.route().sink.deliver(alert_message(_alert("acme", "CA7", 2)))
        alert_id = next(iter(hub.view("acme").alerts))
        done = await hub.act("acme", alert_id, "comment", by="Dana", note=f"said {CARD}")
        await writer.event(info, "call_ended", 9.0, {"reason": "stop"})
        deadline = time.monotonic() + 10
        while writer.depth():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        (row,) = writer.ledger.events("CA7", "acme", "console.comment")
        assert row["data"]["action_id"] == done["action_id"] and row["data"]["by"] == "Dana"
        assert "4111" not in str(row["data"]) and "[CARD]" in row["data"]["note"]
        assert writer.ledger.verify(call_id="CA7").ok
        with writer.ledger._engine.begin() as conn:  # someone rewrites who said what
            conn.execute(
                sa.update(events)
                .where(events.c.kind == "console.comment")
                .values(data={**row["data"], "by": "someone else"})
            )
        report = writer.ledger.verify(call_id="CA7")
        assert not report.ok and any(p.table == "events" for p in report.problems)
    finally:
        await writer.close()
