"""A customer turn ASR refuses, through the real sidecar: its unsure readings decide it.

The call of ``tests/data/unsure_call`` (``make_unsure_call.py``) streams as a Twilio Media
Stream: a greeting, a customer turn every decode of tiny.en is unsure of and no two agree on,
an offer of more help. The customer turn is recorded as unread (its reason kept) but, since
no reading of it asks for closure or sets the intent, the closure verdict is decided, and
nothing but the greeting's expected verdicts is alerted."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import AsrSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

CALL = Path(__file__).parent / "data" / "unsure_call"
REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSURE = "billing.closure_escalation"


async def test_an_unsure_customer_turn_is_decided_on_its_readings(tmp_path: Path) -> None:
    tenant = f"unsure{uuid.uuid4().hex[:8]}"
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        redis_url=REDIS_URL,
        default_tenant=tenant,
    )
    # The base model is not part of the default cascade; keep it out where it is installed.
    settings = replace(settings, asr=replace(AsrSettings(), fallback_model=None))
    final: list[tuple[TurnText, list[Verdict]]] = []

    def on_final(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if text is not None:
            final.append((text, verdicts))

    services = await Services.start(settings)
    services.listeners.append(on_final)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                CALL / "agent.wav",
                CALL / "customer.wav",
                SimulationOptions(fast=True),
            )
            await side.drain()
        alerts = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        await services.close()
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    customer = [(t, vs) for t, vs in final if t.speaker == "customer"]
    assert len(customer) == 1, [t.text for t, _ in final]
    turn, verdicts = customer[0]
    assert turn.undetermined_reason is not None and "low_logprob" in turn.undetermined_reason
    assert turn.text == ""
    closure = {v.assertion_id: v for v in verdicts}[CLOSURE]
    assert closure.outcome == "not_applicable", closure.evidence
    assert "unsure readings" in closure.evidence
    assert not [v for _, vs in final for v in vs if v.outcome == "undetermined"]
    assert all(fields.get("kind") != "undetermined" for _, fields in alerts), alerts
