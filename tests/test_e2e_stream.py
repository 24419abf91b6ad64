"""``/stream`` end to end: the bundled call as stereo μ-law 8 kHz and L16 16 kHz through the
generic media websocket (bearer token), judged like the Twilio path; bad tokens refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support_services import ByCall, ledger_settings, serving
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import TenantSettings
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from cxguard.runtime.simulate_stream import StreamSimulation, simulate_stream_call

TOKEN = "stream-token-for-northwind-0123456789"
TWILIO = "twilio-token-northwind"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, ByCall]]:
    tenant = TenantSettings("northwind", stream_token=TOKEN, twilio_auth_token=TWILIO)
    recorder = ByCall()
    async with serving(ledger_settings(tmp_path, tenants=(tenant,)), recorder) as (side, host):
        yield side, host, recorder


async def test_stream_gives_the_twilio_paths_turns_in_both_encodings(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    side, host, recorder = sidecar
    agent, customer = demo_audio()
    params = {"authenticated": "false"}
    twilio = await simulate_call(
        f"ws://{host}/twilio",
        agent,
        customer,
        SimulationOptions(fast=True, auth_token=TWILIO, parameters=params),
    )
    plays = {}
    for encoding, rate in (("PCMU", 8000), ("L16", 16000)):
        options = StreamSimulation(
            fast=True, encoding=encoding, sample_rate=rate, token=TOKEN, parameters=params
        )
        plays[encoding] = await simulate_stream_call(
            f"ws://{host}/stream", agent, customer, options
        )
        assert plays[encoding].close_code == 1000 and plays[encoding].problems == ()
    await side.drain()

    def timeline(call: str) -> list[tuple[str, float, float]]:
        return [(t.speaker, t.start_ms, t.end_ms) for t in recorder.turns[call]]

    reference = timeline(twilio.call_sid)
    assert len(reference) >= 18
    # The same μ-law bytes through another protocol: the very same turns.
    assert timeline(plays["PCMU"].call_id) == reference
    # L16 16 kHz is other audio (not through μ-law): the same speakers in the same order,
    # boundaries within a VAD frame or two.
    wide = timeline(plays["L16"].call_id)
    assert [s for s, _, _ in wide] == [s for s, _, _ in reference]
    assert all(
        abs(a - c) <= 60 and abs(b - d) <= 60
        for (_, a, b), (_, c, d) in zip(wide, reference, strict=True)
    )
    for play in plays.values():
        verdicts = recorder.verdicts[play.call_id]
        agent_turns = {t.index for t in recorder.turns[play.call_id] if t.speaker == "agent"}
        assert agent_turns <= {v.turn_index for v in verdicts}
        assert {v.tenant for v in verdicts} == {"northwind"}
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        started = ledger.events(call_id=plays["L16"].call_id, kind="call_started")
        ended = ledger.events(call_id=plays["L16"].call_id, kind="call_ended")
    finally:
        ledger.close()
    assert len(started) == 1 and ended[0]["data"]["reason"] == "stop"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Token {TOKEN}"}, 401),
        ({"Authorization": "Basic !!!"}, 401),
    ],
)
async def test_bad_stream_credentials_are_refused(
    sidecar: tuple[Sidecar, str, ByCall], headers: dict[str, str], status: int
) -> None:
    _, host, recorder = sidecar
    with pytest.raises(InvalidStatus) as err:
        async with connect(f"ws://{host}/stream", additional_headers=headers):
            pass
    assert err.value.response.status_code == status
    assert recorder.turns == {}


async def test_basic_auth_with_the_token_as_password_is_accepted(
    sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    import base64

    _, host, _ = sidecar
    basic = base64.b64encode(f"freeswitch:{TOKEN}".encode()).decode()
    async with connect(
        f"ws://{host}/stream", additional_headers={"Authorization": f"Basic {basic}"}
    ) as ws:
        await ws.close()
    assert ws.close_code == 1000
