"""Play two mono recordings through the generic media websocket (``/stream``): stereo in one
connection, in cxguard's, Vonage's or mod_audio_fork's first-message shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cxguard.runtime.simulate import Cue, Playback, load_tracks_for, play
from cxguard.simulate.stream import StreamClient, Style


@dataclass(frozen=True)
class StreamSimulation:
    fast: bool = False
    speed: float = 1.0
    encoding: Literal["PCMU", "L16"] = "L16"
    sample_rate: int = 16000
    channel_map: tuple[str, ...] = ("customer", "agent")
    style: Style = "cxguard"
    token: str | None = None
    """Sent as ``Authorization: Bearer <token>``."""
    call_id: str | None = None
    tenant: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)


async def simulate_stream_call(
    url: str,
    agent: Path,
    customer: Path,
    options: StreamSimulation = StreamSimulation(),
    cues: Sequence[Cue] = (),
) -> Playback:
    client = StreamClient(
        call_id=options.call_id,
        encoding=options.encoding,
        sample_rate=options.sample_rate,
        channel_map=options.channel_map,
        tenant=options.tenant,
        parameters=options.parameters,
        style=options.style,
    )
    agent_audio, customer_audio = load_tracks_for(client, agent, customer)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    return await play(
        url,
        client,
        customer_audio,
        agent_audio,
        headers=headers,
        fast=options.fast,
        speed=options.speed,
        cues=cues,
    )
