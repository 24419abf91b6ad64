"""Admission control: /readyz answers 503 while a sidecar is at its active-call cap (or its ASR
backlog cap), the call in progress is judged to the end, and readiness comes back after it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.admission import refusal
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import AdmissionSettings, AsrSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

DATA = Path(__file__).parent / "data" / "turns"


async def _readyz(port: int) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_readiness_is_withdrawn_at_the_call_cap_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        asr=AsrSettings(device="cpu"),
        admission=AdmissionSettings(max_active_calls=1),
    )
    services = await Services.start(settings)
    turns: list[TurnText] = []
    verdicts: list[Verdict] = []

    def record(info: CallInfo, text: TurnText | None, found: list[Verdict]) -> None:
        turns.extend([text] if text else [])
        verdicts.extend(found)

    services.listeners.append(record)
    seen: list[tuple[int, dict[str, object]]] = []
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            assert (await _readyz(port))[0] == 200
            call = asyncio.get_running_loop().create_task(
                simulate_call(
                    f"ws://127.0.0.1:{port}/twilio",
                    DATA / "agent.wav",
                    DATA / "customer.wav",
                    SimulationOptions(speed=4.0, parameters={"authenticated": "false"}),
                )
            )
            while not call.done():
                seen.append(await _readyz(port))
                await asyncio.sleep(0.5)
            await call
            await side.drain()
            after = await _readyz(port)
    finally:
        await services.close()
    busy = [body for status, body in seen if status == 503]
    assert busy and busy[0]["ready"] is False and busy[0]["active_calls"] == 1
    assert "active calls (cap 1)" in str(busy[0]["refusing"])
    assert after[0] == 200 and after[1]["active_calls"] == 0
    assert len(turns) == 5 and verdicts  # the call under the cap was judged to its end


def test_asr_backlog_cap() -> None:
    caps = AdmissionSettings(max_asr_backlog=8)
    assert refusal(caps, 100, 7) is None
    assert refusal(caps, 0, 8) == "8 segments waiting for ASR (cap 8)"
    assert refusal(AdmissionSettings(), 10_000, 10_000) is None  # no caps: always admit
