"""Play two mono recordings as one Genesys AudioHook session (stereo PCMU, external = customer,
internal = agent), as Genesys Cloud would: signed upgrade, ``open``, binary audio, ``close``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from cxguard.protocols import audiohook_messages as ahm
from cxguard.protocols.audiohook_auth import sign_request
from cxguard.runtime.simulate import load_tracks

FRAME_MS = 100
FRAME_SAMPLES = 800


@dataclass(frozen=True)
class AudioHookSimulation:
    fast: bool = False
    api_key: str = "cxguard-simulator"
    client_secret: bytes = b""
    organization_id: str = "d7934305-0972-4844-938e-9060eef73d05"
    conversation_id: str | None = None
    custom_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioHookResult:
    conversation_id: str
    frames: int
    server_messages: list[dict[str, Any]]
    close_code: int | None


async def simulate_audiohook_call(
    url: str, agent: Path, customer: Path, options: AudioHookSimulation = AudioHookSimulation()
) -> AudioHookResult:
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    session_id = str(uuid.uuid4())
    conversation_id = options.conversation_id or str(uuid.uuid4())
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = sign_request(
        path=path,
        authority=parts.netloc,
        api_key=options.api_key,
        client_secret=options.client_secret,
        organization_id=options.organization_id,
        session_id=session_id,
        correlation_id=str(uuid.uuid4()),
    )
    received: list[dict[str, Any]] = []
    frames = len(agent_ulaw) // FRAME_SAMPLES
    async with connect(url, additional_headers=headers, max_size=2**20) as ws:
        await ws.send(
            ahm.open_message(
                session_id,
                1,
                organization_id=options.organization_id,
                conversation_id=conversation_id,
                custom_config=options.custom_config,
            )
        )
        await _expect(ws, received, "opened")
        started = time.monotonic()
        for i in range(frames):
            if not options.fast:
                delay = started + i * FRAME_MS / 1000.0 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            part = slice(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES)
            await ws.send(ahm.interleave_stereo(customer_ulaw[part], agent_ulaw[part]))
            if options.fast and i % 10 == 0:
                await asyncio.sleep(0)
        serverseq = max(int(m.get("seq", 0)) for m in received)
        await ws.send(
            ahm.close_message(session_id, 2, serverseq=serverseq, position_ms=frames * FRAME_MS)
        )
        await _expect(ws, received, "closed")
        await ws.close()
        code = ws.close_code
    return AudioHookResult(conversation_id, frames, received, code)


async def _expect(ws: ClientConnection, received: list[dict[str, Any]], kind: str) -> None:
    async with asyncio.timeout(10):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                continue
            parsed = json.loads(message)
            received.append(parsed)
            if parsed.get("type") == kind:
                return
            if parsed.get("type") == "disconnect":
                raise ConnectionError(f"server disconnected: {parsed.get('parameters')}")
