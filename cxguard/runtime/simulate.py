"""Play two mono recordings as one Twilio ``both_tracks`` Media Stream over a real websocket.

Twilio sends 20 ms of 8 kHz μ-law (160 bytes) per media message and track, each track with its
own chunk counter and a ``timestamp`` in ms since the stream started. We do the same, at real
time by default (so latency figures mean what they say) or as fast as the socket takes it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from websockets.asyncio.client import connect

from cxguard.audio.codec import ulaw_encode
from cxguard.audio.files import read_audio
from cxguard.protocols import twilio_messages as tm
from cxguard.protocols.twilio_signature import compute_signature

FRAME_MS = 20
FRAME_SAMPLES = 160


@dataclass(frozen=True)
class SimulationOptions:
    fast: bool = False
    speed: float = 1.0
    """Pace multiplier when not ``fast`` (2.0 = twice real time)."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    """Sign the upgrade with ``X-Twilio-Signature`` like Twilio does."""
    call_sid: str | None = None
    account_sid: str = "AC" + "0" * 32


@dataclass(frozen=True)
class SimulationResult:
    call_sid: str
    stream_sid: str
    frames: int
    seconds: float
    close_code: int | None
    close_reason: str


def load_tracks(agent: Path, customer: Path) -> tuple[bytes, bytes]:
    """Both recordings as 8 kHz μ-law of equal length (the shorter padded with silence)."""
    a = read_audio(agent, 8000)
    c = read_audio(customer, 8000)
    n = max(len(a), len(c))
    n += (-n) % FRAME_SAMPLES
    a = np.pad(a, (0, n - len(a)))
    c = np.pad(c, (0, n - len(c)))
    return ulaw_encode(a), ulaw_encode(c)


async def simulate_call(
    url: str, agent: Path, customer: Path, options: SimulationOptions = SimulationOptions()
) -> SimulationResult:
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    call_sid = options.call_sid or "CA" + uuid.uuid4().hex
    stream_sid = "MZ" + uuid.uuid4().hex
    headers = {}
    if options.auth_token:
        headers["X-Twilio-Signature"] = compute_signature(options.auth_token, url, {})
    frames = len(agent_ulaw) // FRAME_SAMPLES
    started = time.monotonic()
    async with connect(url, additional_headers=headers, max_size=2**20) as ws:
        seq = 1
        await ws.send(tm.connected_message())
        seq += 1
        await ws.send(
            tm.start_message(
                stream_sid,
                call_sid,
                options.account_sid,
                custom_parameters=dict(options.parameters),
                sequence_number=seq,
            )
        )
        for i in range(frames):
            if not options.fast:
                due = started + i * FRAME_MS / 1000.0 / options.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            part = slice(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES)
            tracks: tuple[tuple[Literal["inbound", "outbound"], bytes], ...] = (
                ("inbound", customer_ulaw),
                ("outbound", agent_ulaw),
            )
            for track, audio in tracks:
                seq += 1
                await ws.send(
                    tm.media_message(stream_sid, track, i + 1, i * FRAME_MS, audio[part], seq)
                )
            if options.fast and i % 50 == 0:
                await asyncio.sleep(0)  # let the server's reader keep up
        seq += 1
        await ws.send(tm.stop_message(stream_sid, call_sid, options.account_sid, seq))
        await ws.close()
        code, reason = ws.close_code, ws.close_reason or ""
    return SimulationResult(call_sid, stream_sid, frames, time.monotonic() - started, code, reason)
