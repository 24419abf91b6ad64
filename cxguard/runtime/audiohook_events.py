"""Turns and violations back to Genesys: AudioHook ``event`` messages (``audiohook.send_events``).

A listener of the call pipeline: when a turn of an AudioHook call is judged, its transcript
(redacted, as stored) goes back on the call's open session as a ``transcript`` entity in the
shape of Genesys's transcription connector (``channelId`` of the speaker's channel,
``offset``/``duration`` on the session's own clock, ``isFinal: true``), followed by one
``cxguard.verdict`` entity per ``fail`` or ``undetermined`` verdict. A call whose session has
closed (its last turns are judged after the socket ended) sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.protocols.audiohook import AudioHookSession
from cxguard.protocols.audiohook_messages import transcript_entity, verdict_entity
from cxguard.protocols.base import MediaStream

Find = Callable[[str, str], "tuple[ServerConnection, MediaStream, float] | None"]
"""(tenant, call id) → the open connection, its protocol core, the session's clock offset."""


class AudioHookEvents:
    def __init__(self, find: Find) -> None:
        self._find = find
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if info.source != "audiohook":
            return
        found = self._find(info.tenant, info.call_id)
        if found is None:
            return
        ws, stream, offset_ms = found
        if not isinstance(stream, AudioHookSession):
            return
        entities = self._entities(info, stream, offset_ms, text, verdicts)
        stream.send_event(entities)
        frames = stream.data_to_send()
        if frames:
            task = asyncio.get_running_loop().create_task(_send(ws, frames))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    @staticmethod
    def _entities(
        info: CallInfo,
        stream: AudioHookSession,
        offset_ms: float,
        text: TurnText | None,
        verdicts: list[Verdict],
    ) -> list[dict[str, Any]]:
        entities = []
        if text is not None and text.text.strip():
            channel = stream.channel_id(text.speaker)
            if channel is not None:
                key = uuid.uuid5(uuid.NAMESPACE_URL, f"cxguard:{info.tenant}:{info.call_id}")
                entity_id = str(uuid.uuid5(key, str(text.index)))
                start_us = round(1000 * (text.start_ms - offset_ms))
                end_us = round(1000 * (text.end_ms - offset_ms))
                entities.append(transcript_entity(entity_id, channel, text.text, start_us, end_us))
        for v in verdicts:
            if v.outcome in ("fail", "undetermined"):
                data = {
                    "turnIndex": v.turn_index,
                    "assertionId": v.assertion_id,
                    "outcome": v.outcome,
                    "severity": v.severity,
                    "evidence": v.evidence,
                }
                entities.append(verdict_entity(data))
        return entities


async def _send(ws: ServerConnection, frames: list[str]) -> None:
    with contextlib.suppress(ConnectionClosed):  # the session ended meanwhile
        for frame in frames:
            await ws.send(frame)
