"""AudioHook end to end: a signed stereo session of the bundled call is evaluated exactly as the
Twilio path evaluates the same audio — same turns, same verdicts. Unsigned, wrongly signed and
replayed upgrades are refused before any audio is read."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support_services import ByCall, ledger_settings, serving
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.protocols.audiohook_auth import sign_request
from cxguard.protocols.twilio_signature import compute_signature
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import TenantSettings
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from cxguard.runtime.simulate_audiohook import AudioHookSimulation, simulate_audiohook_call

SECRET = b"0123456789abcdef0123456789abcdef"
API_KEY = "northwind-audiohook-key"
TOKEN = "twilio-auth-token-northwind"


@pytest.fixture
async def signed_sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str, ByCall]]:
    tenant = TenantSettings(
        "northwind",
        twilio_auth_token=TOKEN,
        audiohook_api_key=API_KEY,
        audiohook_client_secret=base64.b64encode(SECRET).decode(),
    )
    recorder = ByCall()
    async with serving(ledger_settings(tmp_path, tenants=(tenant,)), recorder) as (side, host):
        yield side, host, recorder


async def test_audiohook_and_twilio_give_the_same_turns_and_verdicts(
    signed_sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    side, host, recorder = signed_sidecar
    agent, customer = demo_audio()
    twilio = await simulate_call(
        f"ws://{host}/twilio",
        agent,
        customer,
        SimulationOptions(fast=True, auth_token=TOKEN, parameters={"authenticated": "false"}),
    )
    hook = await simulate_audiohook_call(
        f"ws://{host}/audiohook",
        agent,
        customer,
        AudioHookSimulation(fast=True, api_key=API_KEY, client_secret=SECRET),
    )
    await side.drain()
    assert twilio.close_code == 1000
    assert [m["type"] for m in hook.server_messages] == ["opened", "closed"]

    def turns(call: str) -> list[tuple[str, float, float, str]]:
        return [(t.speaker, t.start_ms, t.end_ms, t.text) for t in recorder.turns[call]]

    def verdicts(call: str) -> list[tuple[int, str, str]]:
        return sorted((v.turn_index, v.assertion_id, v.outcome) for v in recorder.verdicts[call])

    assert len(recorder.turns[twilio.call_sid]) >= 18
    assert turns(hook.conversation_id) == turns(twilio.call_sid)
    assert verdicts(hook.conversation_id) == verdicts(twilio.call_sid)
    assert {v.tenant for v in recorder.verdicts[hook.conversation_id]} == {"northwind"}

    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        rows = list(ledger.export(call_id=hook.conversation_id, tenant="northwind"))
    finally:
        ledger.close()
    assert len(rows) == len(recorder.verdicts[hook.conversation_id])


def _audiohook_headers(host: str, **overrides: object) -> dict[str, str]:
    args: dict[str, object] = dict(
        path="/audiohook",
        authority=host,
        api_key=API_KEY,
        client_secret=SECRET,
        organization_id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
    )
    args.update(overrides)
    return sign_request(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "status"),
    [("unsigned", 401), ("wrong_secret", 401), ("unknown_key", 401), ("expired", 401)],
)
async def test_bad_audiohook_upgrades_are_refused(
    signed_sidecar: tuple[Sidecar, str, ByCall], case: str, status: int
) -> None:
    _, host, recorder = signed_sidecar
    if case == "unsigned":
        headers = {
            "X-API-KEY": API_KEY,
            "Audiohook-Organization-Id": str(uuid.uuid4()),
            "Audiohook-Session-Id": str(uuid.uuid4()),
        }
    elif case == "wrong_secret":
        headers = _audiohook_headers(host, client_secret=b"not-the-secret-at-all-0123456789")
    elif case == "unknown_key":
        headers = _audiohook_headers(host, api_key="someone-else")
    else:
        headers = _audiohook_headers(host, created=1_600_000_000)
    with pytest.raises(InvalidStatus) as err:
        async with connect(f"ws://{host}/audiohook", additional_headers=headers):
            pass
    assert err.value.response.status_code == status
    assert recorder.turns == {}


async def test_replayed_audiohook_signature_is_refused(
    signed_sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    _, host, _ = signed_sidecar
    headers = _audiohook_headers(host)
    async with connect(f"ws://{host}/audiohook", additional_headers=headers):
        pass
    with pytest.raises(InvalidStatus) as err:
        async with connect(f"ws://{host}/audiohook", additional_headers=headers):
            pass
    assert err.value.response.status_code in (401, 403)


@pytest.mark.parametrize("signature", [None, "bad", "tampered-url"])
async def test_bad_twilio_signatures_are_refused(
    signed_sidecar: tuple[Sidecar, str, ByCall], signature: str | None
) -> None:
    _, host, _ = signed_sidecar
    url = f"ws://{host}/twilio"
    headers = {}
    if signature == "bad":
        headers["X-Twilio-Signature"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    elif signature == "tampered-url":
        headers["X-Twilio-Signature"] = compute_signature(TOKEN, url + "?tenant=other", {})
    with pytest.raises(InvalidStatus) as err:
        async with connect(url, additional_headers=headers):
            pass
    assert err.value.response.status_code == (401 if signature is None else 403)


async def test_signed_twilio_upgrade_is_accepted(
    signed_sidecar: tuple[Sidecar, str, ByCall],
) -> None:
    _, host, _ = signed_sidecar
    url = f"ws://{host}/twilio"
    assert urlsplit(url).netloc == host
    async with connect(
        url, additional_headers={"X-Twilio-Signature": compute_signature(TOKEN, url, {})}
    ) as ws:
        await ws.close()
        assert ws.close_code == 1000
