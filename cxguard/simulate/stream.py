"""A platform's side of ``/stream``, in each first-message shape the server accepts.

``style="cxguard"`` sends ``{"event": "start", …}``; ``"vonage"`` sends Vonage's
``websocket:connected`` with ``content-type: audio/l16;rate=…`` and the call's facts as
headers (mono, one speaker); ``"audio_fork"`` sends mod_audio_fork-style metadata (no
``event``; L16). Audio is binary: one speaker's frames for mono, samples interleaved in
``channel_map`` order for stereo, 20 ms per frame. Closing without :meth:`finish` is how
Vonage and mod_audio_fork end; :meth:`finish` sends ``{"event": "stop"}`` for cxguard.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final, Literal

Style = Literal["cxguard", "vonage", "audio_fork"]
FRAME_MS: Final = 20


class StreamClient:
    frame_ms = FRAME_MS

    def __init__(
        self,
        *,
        call_id: str | None = None,
        encoding: Literal["PCMU", "L16"] = "L16",
        sample_rate: int = 16000,
        channel_map: tuple[str, ...] = ("customer", "agent"),
        tenant: str | None = None,
        parameters: Mapping[str, str] | None = None,
        style: Style = "cxguard",
        send_stop: bool = True,
    ) -> None:
        if style != "cxguard" and encoding != "L16":
            raise ValueError(f"{style} sends L16 only")
        if style == "vonage" and len(channel_map) != 1:
            raise ValueError("a Vonage websocket carries one speaker")
        self.call_id = call_id or f"call-{uuid.uuid4().hex}"
        self.encoding: str = encoding
        self.sample_rate = sample_rate
        self.channel_map = channel_map
        self.tenant = tenant
        self.parameters = dict(parameters or {})
        self.style = style
        self._send_stop = send_stop and style == "cxguard"
        self._outbox: list[str | bytes] = []
        self._started = self._finished = False
        self.messages_received: list[str | bytes] = []
        self._problems: list[str] = []

    @property
    def problems(self) -> list[str]:
        return self._problems

    def start(self) -> None:
        self._outbox.append(json.dumps(self.start_message()))
        self._started = True

    def start_message(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"call_id": self.call_id}
        if self.tenant:
            facts["tenant"] = self.tenant
        if self.style == "vonage":
            kind = f"audio/l16;rate={self.sample_rate}"
            return (
                {
                    "event": "websocket:connected",
                    "content-type": kind,
                    "speaker": self.channel_map[0],
                }
                | facts
                | self.parameters
            )
        shape: dict[str, Any] = {
            "encoding": "mulaw" if self.encoding == "PCMU" else "l16",
            "sample_rate": self.sample_rate,
            "channels": len(self.channel_map),
            "parameters": self.parameters,
        }
        shape |= (
            {"speaker": self.channel_map[0]}
            if len(self.channel_map) == 1
            else {"channel_map": list(self.channel_map)}
        )
        return ({"event": "start"} if self.style == "cxguard" else {}) | facts | shape

    def ready(self) -> bool:
        return self._started

    def send_audio(self, customer: bytes, agent: bytes) -> None:
        by_speaker = {"customer": customer, "agent": agent}
        parts = [by_speaker[s] for s in self.channel_map]
        if len(parts) == 1:
            self._outbox.append(parts[0])
            return
        width = 2 if self.encoding == "L16" else 1
        first, second = parts
        if len(first) != len(second):
            raise ValueError(f"channel lengths differ: {len(first)} != {len(second)}")
        frame = bytearray(2 * len(first))
        for offset in range(width):
            frame[offset :: 2 * width] = first[offset::width]
            frame[width + offset :: 2 * width] = second[offset::width]
        self._outbox.append(bytes(frame))

    def send_control(self, name: str, value: str | None = None) -> None:
        message = {"event": "control", "name": name} | ({"value": value} if value else {})
        self._outbox.append(json.dumps(message))

    def send_dtmf(self, digit: str) -> None:
        event = "websocket:dtmf" if self.style == "vonage" else "dtmf"
        self._outbox.append(json.dumps({"event": event, "digit": digit}))

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._send_stop:
                self._outbox.append(json.dumps({"event": "stop"}))

    def finished(self) -> bool:
        return self._finished

    def data_to_send(self) -> list[str | bytes]:
        frames, self._outbox = self._outbox, []
        return frames

    def receive_text(self, text: str) -> None:
        self.messages_received.append(text)
        self._problems.append("server sent a message on a listen-only stream")

    def receive_bytes(self, data: bytes) -> None:
        self.messages_received.append(data)
        self._problems.append("server sent audio on a listen-only stream")
