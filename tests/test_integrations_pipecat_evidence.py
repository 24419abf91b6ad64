"""A Pipecat agent's verdicts as evidence: a real Pipecat pipeline (pipecat's run_test
harness) with PolicyGuard recording through the sidecar's own path (GuardEvidence: verdict
builder, redaction, ledger, outbox) into a SQLite ledger and the real Redis on 6379."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.integrations.pipecat import CxguardControlFrame, GuardOptions, PolicyGuard
from cxguard.policy.classifier import OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import default_pack_path, load_pack
from cxguard.runtime.guard_evidence import GuardEvidence
from cxguard.runtime.settings import LedgerSettings, Settings

with warnings.catch_warnings():  # pipecat 1.14 imports audioop (deprecated since 3.11)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import (
        Frame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TranscriptionFrame,
    )
    from pipecat.tests.utils import run_test

REDIS = "redis://127.0.0.1:6379/0"
ENGINE = PolicyEngine(load_pack(default_pack_path()), OnnxTextScorer())
PAYMENT = "billing.no_payment_arrangements_unauthenticated"
CARD = "pii.no_full_card_number"


def response(*chunks: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(c) for c in chunks),
            LLMFullResponseEndFrame()]  # fmt: skip


def customer(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "caller", "2026-01-01T00:00:00Z")


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = aioredis.Redis.from_url(REDIS, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def tenant(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    name = f"pc-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [k async for k in redis_client.scan_iter(match=f"cxguard:{name}:*")]
    if keys:
        await redis_client.delete(*keys)


async def test_a_failing_response_lands_in_the_ledger_and_the_alert_stream(
    tmp_path: Path, redis_client: aioredis.Redis, tenant: str
) -> None:
    settings = Settings(
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        redis_url=REDIS,
        ledger=LedgerSettings(state_dir=str(tmp_path / "state")),
    )
    evidence = await GuardEvidence.open(settings, ENGINE)
    options = GuardOptions(
        mode="enforce", call_id=f"pc-call-{uuid.uuid4().hex[:8]}", tenant=tenant,
        parameters={"authenticated": "false"},
    )  # fmt: skip
    recorder = evidence.recorder(options.call_id, options.tenant, options.parameters)
    guard = PolicyGuard(ENGINE, options, recorder=recorder)
    frames = [
        *response("Hello, I'm Sam, a virtual assistant for Northwind Energy billing."),
        customer("Can I pay my bill in installments?"),
        *response("Yes, we can set up a payment plan. ", "You can pay half now."),
        customer("Which card do you have on file?"),
        *response("Your card number is 4532 0151 1283 0366."),
        CxguardControlFrame("authenticated"),
        customer("And now?"),
        *response("Now we can set up a payment plan."),
    ]
    try:
        await run_test(guard, frames_to_send=frames)
    finally:
        await evidence.close()

    ledger = EvidenceLedger(settings.evidence_url)
    try:
        rows = list(ledger.export(call_id=options.call_id))
        events = ledger.events(call_id=options.call_id)
        turns = ledger.turns(call_id=options.call_id)
        report = ledger.verify(call_id=options.call_id)
    finally:
        ledger.close()
    by = {(r["turn"], r["assertion"]): r for r in rows}
    assert by[(2, PAYMENT)]["verdict"] == "fail"
    assert by[(2, PAYMENT)]["policy_hash"] == ENGINE.pack.hash
    assert by[(4, CARD)]["verdict"] == "fail"
    assert by[(6, PAYMENT)]["verdict"] == "not_applicable"  # after the signal
    texts = [r["text"] for r in rows] + [r["evidence"] for r in rows] + [t["text"] for t in turns]
    assert "[CARD]" in turns[4]["text"]
    assert not [t for t in texts if "4532" in t or "1283" in t]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert "control.authenticated" in kinds
    assert [t["turn"] for t in turns] == list(range(7))
    assert report.ok, report.as_dict()

    entries = await redis_client.xrange(f"cxguard:{tenant}:alerts")
    alerts = [json.loads(str((fields or {})["data"])) for _, fields in entries or []]
    failed = {(a["verdict"]["turn_index"], a["verdict"]["assertion_id"]) for a in alerts}
    assert {(2, PAYMENT), (4, CARD)} <= failed
    assert all(a["verdict"]["call_id"] == options.call_id for a in alerts)
    assert not [a for a in alerts if "4532" in a["verdict"]["text"] + a["message"]]
