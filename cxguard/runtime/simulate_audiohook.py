"""Play two mono recordings as one Genesys AudioHook session, as Genesys Cloud would: a signed
upgrade, ``open``, stereo PCMU (external = customer, internal = agent), ``close``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cxguard.protocols.audiohook_auth import sign_request
from cxguard.runtime.simulate import Cue, load_tracks, play
from cxguard.simulate.audiohook import DEFAULT_ORGANIZATION, AudioHookClient


@dataclass(frozen=True)
class AudioHookSimulation:
    fast: bool = False
    speed: float = 1.0
    api_key: str = "cxguard-simulator"
    client_secret: bytes = b""
    organization_id: str = DEFAULT_ORGANIZATION
    conversation_id: str | None = None
    custom_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioHookResult:
    conversation_id: str
    frames: int
    server_messages: list[dict[str, Any]]
    close_code: int | None
    seconds: float = 0.0
    problems: tuple[str, ...] = ()


async def simulate_audiohook_call(
    url: str,
    agent: Path,
    customer: Path,
    options: AudioHookSimulation = AudioHookSimulation(),
    cues: Sequence[Cue] = (),
) -> AudioHookResult:
    client = AudioHookClient(
        organization_id=options.organization_id,
        conversation_id=options.conversation_id,
        custom_config=options.custom_config,
    )
    agent_ulaw, customer_ulaw = load_tracks(agent, customer, client.frame_ms * 8)
    parts = urlsplit(url)
    headers = sign_request(
        path=parts.path + (f"?{parts.query}" if parts.query else ""),
        authority=parts.netloc,
        api_key=options.api_key,
        client_secret=options.client_secret,
        organization_id=options.organization_id,
        session_id=client.session_id,
        correlation_id=str(uuid.uuid4()),
    )
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
    return AudioHookResult(
        client.conversation_id,
        result.frames,
        client.messages_received,
        result.close_code,
        result.seconds,
        result.problems,
    )
