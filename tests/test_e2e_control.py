"""A mid-call fact from the control API changes the verdicts of the turns after it: the
bundled call (an unauthenticated caller offered a payment plan on agent turn 4) played
through a real sidecar over Twilio and over ``/stream``, real ASR, with ``authenticated``
posted while the customer asks for installments (between agent turns 2 and 4)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support_services import ByCall, ledger_settings, serving

from cxguard.audio.codec import ulaw_decode
from cxguard.audio.vad import VadOptions, VadSegmenter
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import TenantSettings
from cxguard.runtime.simulate import Cue, SimulationOptions, load_tracks, simulate_call
from cxguard.runtime.simulate_stream import StreamSimulation, simulate_stream_call

CONTROL = "control-token-northwind-0123456789"
STREAM = "stream-token-northwind-0123456789"
TWILIO = "twilio-token-northwind"
PAYMENT = "billing.no_payment_arrangements_unauthenticated"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, ByCall]]:
    tenant = TenantSettings(
        "northwind", twilio_auth_token=TWILIO, stream_token=STREAM, control_token=CONTROL
    )
    recorder = ByCall()
    async with serving(ledger_settings(tmp_path, tenants=(tenant,)), recorder) as (side, host):
        yield side, host, recorder


def agent_pause_before_the_payment_plan() -> tuple[float, float]:
    """(end of agent turn 2, start of agent turn 4) in the bundled call, by the same VAD."""
    agent, customer = demo_audio()
    agent_ulaw, _ = load_tracks(agent, customer)
    vad = VadSegmenter("agent", 8000, VadOptions())
    segments = vad.feed(ulaw_decode(agent_ulaw), 0.0) + vad.flush()
    pauses = [(a.end_ms, b.start_ms) for a, b in itertools.pairwise(segments)]
    long = [p for p in pauses if p[1] - p[0] > 2000]  # the customer speaks in between
    return long[1]


async def test_authenticated_mid_call_changes_later_payment_verdicts(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    side, host, recorder = sidecar
    agent, customer = demo_audio()
    quiet_from, payment_plan_at = agent_pause_before_the_payment_plan()
    cue_ms = (quiet_from + payment_plan_at) / 2
    answers: dict[str, httpx.Response] = {}

    def authenticate(call_id: str) -> Cue:
        async def post() -> None:
            await asyncio.sleep(0.3)  # the audio sent so far has been read
            async with httpx.AsyncClient() as http:
                answers[call_id] = await http.post(
                    f"http://{host}/calls/{call_id}/events",
                    json={"authenticated": True},
                    headers={"Authorization": f"Bearer {CONTROL}"},
                )

        return cue_ms, post

    params = {"authenticated": "false"}
    twilio = "CA" + "1" * 32
    await simulate_call(
        f"ws://{host}/twilio",
        agent,
        customer,
        SimulationOptions(fast=True, auth_token=TWILIO, parameters=params, call_sid=twilio),
        cues=[authenticate(twilio)],
    )
    stream = "fork-" + "2" * 16
    options = StreamSimulation(
        fast=True,
        encoding="PCMU",
        sample_rate=8000,
        token=STREAM,
        call_id=stream,
        parameters=params,
    )
    await simulate_stream_call(
        f"ws://{host}/stream", agent, customer, options, cues=[authenticate(stream)]
    )
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all

    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        for call_id in (twilio, stream):
            answer = answers[call_id]
            assert answer.status_code == 202, answer.text
            at_ms = answer.json()["at_ms"]
            assert quiet_from < at_ms < payment_plan_at
            events = ledger.events(call_id=call_id, kind="control.authenticated")
            assert [(e["at_ms"], e["data"]) for e in events] == [(at_ms, {"source": "control_api"})]

            turns = recorder.turns[call_id]
            plan = next(t for t in turns if t.speaker == "agent" and "payment plan" in t.text)
            assert plan.start_ms > at_ms
            by_turn = {
                (v.turn_index, v.assertion_id): v.outcome for v in recorder.verdicts[call_id]
            }
            # Before the fact: judged as the call began (the AI-disclosure fail still stands).
            assert by_turn[(turns[0].index, "disclosure.ai_identifies")] == "fail"
            # After it: the caller is authenticated, a payment plan is allowed.
            assert by_turn[(plan.index, PAYMENT)] == "not_applicable"
            later = [o for (i, a), o in by_turn.items() if a == PAYMENT and i >= plan.index]
            assert later and set(later) == {"not_applicable"}

            # The same words without the fact: turn 4 fails (so the fact is what changed it).
            conversation = side.services.engine.start(params)
            for turn in turns:
                results = conversation.evaluate(turn)
                if turn.index == plan.index:
                    assert {r.assertion_id: r.outcome for r in results}[PAYMENT] == "fail"
    finally:
        ledger.close()


async def test_cxguard_simulate_posts_facts_mid_call(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    import json
    import os
    import sys

    side, host, recorder = sidecar
    agent, customer = demo_audio()
    quiet_from, payment_plan_at = agent_pause_before_the_payment_plan()
    cue_ms = (quiet_from + payment_plan_at) / 2
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cxguard.cli", "simulate", "--protocol", "stream"),
        *("--url", f"ws://{host}/stream", "--agent", str(agent), "--customer", str(customer)),
        *("--fast", "--encoding", "mulaw", "--rate", "8000", "--token", STREAM),
        *("--param", "authenticated=false", "--fact", f"{cue_ms}:authenticated"),
        *("--fact", f"{cue_ms}:agent_version=bot-2.4", "--control-token", CONTROL),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out
    report = json.loads(out)
    assert [(f["status"], f["applied"]) for f in report["facts"]] == [
        (202, ["authenticated"]),
        (202, ["agent_version"]),
    ]
    await side.drain()
    assert await side.services.evidence.wait_stored(10)
    call_id = report["call_id"]
    turns = recorder.turns[call_id]
    plan = next(t for t in turns if t.speaker == "agent" and "payment plan" in t.text)
    by_turn = {(v.turn_index, v.assertion_id): v.outcome for v in recorder.verdicts[call_id]}
    assert by_turn[(plan.index, PAYMENT)] == "not_applicable"
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        version = ledger.events(call_id=call_id, kind="control.agent_version")
    finally:
        ledger.close()
    assert [e["data"]["agent_version"] for e in version] == ["bot-2.4"]
