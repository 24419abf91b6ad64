"""A failed critical assertion reaches a human: through the real sidecar, the closure call's
handoff is sent as a Twilio call update (form ``Twiml``, basic auth) and as a signed webhook,
both to a local server that records them, and each delivery is evidence."""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import replace
from pathlib import Path

from support_http import RecordingServer, Reply

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import HandoffSettings, Settings, TenantSettings
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from cxguard.sinks.webhook import verify_signature

CLOSURE = Path(__file__).parent / "data" / "closure"
ACCOUNT = "AC" + "1" * 32
TOKEN = "northwind-twilio-token"
SECRET = "webhook-shared-secret"


async def test_closure_is_handed_to_a_human_over_twilio_and_webhook(tmp_path: Path) -> None:
    recorder = RecordingServer([Reply(200, body=b'{"status":"in-progress"}')])
    base = recorder.url.split("/hooks")[0]
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        tenants=(TenantSettings("northwind", twilio_auth_token=TOKEN, twilio_account_sid=ACCOUNT),),
    )
    settings = replace(
        settings,
        handoff=HandoffSettings(
            webhook_url=recorder.url, webhook_secret=SECRET, twilio_api_base=base
        ),
    )
    services = await Services.start(settings)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            result = await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                CLOSURE / "agent.wav",
                CLOSURE / "customer.wav",
                SimulationOptions(fast=True, auth_token=TOKEN, account_sid=ACCOUNT),
            )
            await side.drain()
    finally:
        await services.close()
        recorder.close()

    by_path = {r.path: r for r in recorder.received}
    twilio = by_path[f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{result.call_sid}.json"]
    assert (
        twilio.headers["authorization"]
        == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    )
    form = urllib.parse.parse_qs(twilio.body.decode())
    assert form["Twiml"] == ["<Response><Enqueue>human-agents</Enqueue></Response>"]

    hook = by_path["/hooks/handoff"]
    assert verify_signature(
        SECRET.encode(),
        hook.headers["x-cxguard-timestamp"],
        hook.body,
        hook.headers["x-cxguard-signature"],
    )
    body = json.loads(hook.body)
    assert body["call_id"] == result.call_sid
    assert body["assertion_id"] == "billing.closure_escalation"
    assert hook.headers["idempotency-key"] == body["idempotency_key"]
    assert len(recorder.received) == 2  # one handoff per call, each target once

    ledger = EvidenceLedger(settings.evidence_url)
    try:
        events = ledger.events(result.call_sid)
    finally:
        ledger.close()
    kinds = [e["kind"] for e in events]
    assert kinds.count("handoff.requested") == 1
    delivered = [e for e in events if e["kind"] == "handoff.delivered"]
    assert sorted(e["data"]["target"] for e in delivered) == ["twilio", "webhook"]
