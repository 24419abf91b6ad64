"""Play two mono recordings as one call over a real websocket, through a protocol client.

The clients (:mod:`cxguard.simulate`) build and number what the platform sends and check
what the server answers; this module does the I/O: it reads the recordings as 8 kHz μ-law,
connects, paces the frames at real time (so latency figures mean what they say) or sends
them as fast as the socket takes them, feeds every server message back to the client and
waits, bounded, for the stream's end handshake. :func:`simulate_call` plays a Twilio Media
Stream; :mod:`cxguard.runtime.simulate_audiohook` an AudioHook session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cxguard.audio.codec import ulaw_encode
from cxguard.audio.files import read_audio
from cxguard.protocols.twilio_signature import compute_signature
from cxguard.simulate.base import MediaClient
from cxguard.simulate.twilio import DEFAULT_ACCOUNT, TwilioClient

SAMPLE_RATE = 8000
HANDSHAKE_TIMEOUT_S = 10.0

Cue = tuple[float, Callable[[], Awaitable[object]]]
"""``(stream_ms, action)``: awaited once, before the frame that starts at ``stream_ms`` is
sent (e.g. a control-API request at a chosen point of the call), or before the stream's end
when it is not that long."""


@dataclass(frozen=True)
class SimulationOptions:
    fast: bool = False
    speed: float = 1.0
    """Pace multiplier when not ``fast`` (2.0 = twice real time)."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    """Sign the upgrade with ``X-Twilio-Signature`` like Twilio does."""
    call_sid: str | None = None
    account_sid: str = DEFAULT_ACCOUNT


@dataclass(frozen=True)
class Playback:
    """How one played stream went."""

    call_id: str
    frames: int
    seconds: float
    close_code: int | None
    close_reason: str
    problems: tuple[str, ...]
    """Server behaviour the client's protocol does not allow (empty for a good server)."""


@dataclass(frozen=True)
class SimulationResult:
    call_sid: str
    stream_sid: str
    frames: int
    seconds: float
    close_code: int | None
    close_reason: str
    problems: tuple[str, ...] = ()


def load_tracks(
    agent: Path,
    customer: Path,
    frame_samples: int = 160,
    encoding: str = "PCMU",
    sample_rate: int = SAMPLE_RATE,
) -> tuple[bytes, bytes]:
    """Both recordings, of equal length padded with silence to whole frames, as μ-law
    (``PCMU``) or 16-bit little-endian PCM (``L16``) at ``sample_rate``."""
    a = read_audio(agent, sample_rate)
    c = read_audio(customer, sample_rate)
    n = max(len(a), len(c))
    n += (-n) % frame_samples
    a = np.pad(a, (0, n - len(a)))
    c = np.pad(c, (0, n - len(c)))
    if encoding == "L16":
        return a.astype("<i2").tobytes(), c.astype("<i2").tobytes()
    return ulaw_encode(a), ulaw_encode(c)


def load_tracks_for(client: MediaClient, agent: Path, customer: Path) -> tuple[bytes, bytes]:
    """The recordings in ``client``'s wire format, padded to its frames."""
    frame_samples = client.frame_ms * client.sample_rate // 1000
    return load_tracks(agent, customer, frame_samples, client.encoding, client.sample_rate)


async def play(
    url: str,
    client: MediaClient,
    customer: bytes,
    agent: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    fast: bool = False,
    speed: float = 1.0,
    cues: Sequence[Cue] = (),
) -> Playback:
    """Play ``customer``/``agent`` (equal lengths, in the client's encoding and rate; see
    :func:`load_tracks_for`) through ``client`` to ``url``, running each of ``cues`` when
    the stream reaches it."""
    width = 2 if client.encoding == "L16" else 1
    frame_bytes = client.frame_ms * client.sample_rate // 1000 * width
    frames = len(agent) // frame_bytes
    sent = 0
    pending = sorted(cues, key=lambda cue: cue[0])
    begun = time.monotonic()
    async with connect(url, additional_headers=dict(headers or {}), max_size=2**20) as ws:
        changed = asyncio.Event()
        reader = asyncio.create_task(_read(ws, client, changed))
        try:
            with contextlib.suppress(ConnectionClosed):  # the server ended the stream
                client.start()
                await _flush(ws, client)
                await _until(client.ready, reader, changed, "accepted the stream")
                started = time.monotonic()
                for i in range(frames):
                    if reader.done():
                        break
                    if not fast:
                        due = started + i * client.frame_ms / 1000.0 / speed
                        if (delay := due - time.monotonic()) > 0:
                            await asyncio.sleep(delay)
                    while pending and pending[0][0] <= i * client.frame_ms:
                        await pending.pop(0)[1]()
                    part = slice(i * frame_bytes, (i + 1) * frame_bytes)
                    client.send_audio(customer[part], agent[part])
                    await _flush(ws, client)
                    sent += 1
                    if fast and i % 10 == 0:
                        await asyncio.sleep(0)  # let the server's reader keep up
                for _, action in pending:  # cues past the last frame: before the end
                    await action()
                if not reader.done():
                    client.finish()
                    await _flush(ws, client)
                    await _until(client.finished, reader, changed, "ended the stream")
            await ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        code, reason = ws.close_code, ws.close_reason or ""
    seconds = time.monotonic() - begun
    return Playback(client.call_id, sent, seconds, code, reason, tuple(client.problems))


async def simulate_call(
    url: str,
    agent: Path,
    customer: Path,
    options: SimulationOptions = SimulationOptions(),
    cues: Sequence[Cue] = (),
) -> SimulationResult:
    """Play two mono recordings as one Twilio ``both_tracks`` Media Stream."""
    agent_ulaw, customer_ulaw = load_tracks(agent, customer)
    client = TwilioClient(
        call_sid=options.call_sid,
        account_sid=options.account_sid,
        custom_parameters=options.parameters,
    )
    headers = {}
    if options.auth_token:
        headers["X-Twilio-Signature"] = compute_signature(options.auth_token, url, {})
    result = await play(
        url,
        client,
        customer_ulaw,
        agent_ulaw,
        headers=headers,
        fast=options.fast,
        speed=options.speed,
        cues=cues,
    )
    return SimulationResult(
        client.call_sid,
        client.stream_sid,
        result.frames,
        result.seconds,
        result.close_code,
        result.close_reason,
        result.problems,
    )


async def _flush(ws: ClientConnection, client: MediaClient) -> None:
    for frame in client.data_to_send():
        await ws.send(frame)


async def _read(ws: ClientConnection, client: MediaClient, changed: asyncio.Event) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if isinstance(message, str):
                client.receive_text(message)
            else:
                client.receive_bytes(message)
            await _flush(ws, client)  # the client's answers (``paused``, ``close`` …)
            changed.set()
    changed.set()


async def _until(
    done: Callable[[], bool], reader: asyncio.Task[None], changed: asyncio.Event, what: str
) -> None:
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        while not done():
            if reader.done():
                raise ConnectionError(f"the server closed the connection before it {what}")
            changed.clear()
            await changed.wait()
