"""Twilio's side of a Media Stream: the messages Twilio sends, numbered as Twilio numbers them.

The builders write one message each (any counter value, so tests can write broken streams);
:class:`TwilioClient` numbers them — one ``sequenceNumber`` across the stream, a ``chunk``
counter and a ``timestamp`` (ms since the stream started) per track — like Twilio's own
``<Start><Stream track="both_tracks">``: 20 ms of 8 kHz μ-law (160 bytes) per media message.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from cxguard.protocols.twilio_messages import (
    CHANNELS,
    MULAW_ENCODING,
    SAMPLE_RATE,
    TRACKS,
    ConnectedMessage,
    DtmfMessage,
    DtmfTrack,
    MarkMessage,
    MediaMessage,
    StartMessage,
    StopMessage,
    TrackName,
    TwilioMessage,
)

FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000
DEFAULT_ACCOUNT: Final = "AC" + "0" * 32


def encode(message: TwilioMessage) -> str:
    """Serialise a wire message compactly, as Twilio does."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def connected_message() -> str:
    msg: ConnectedMessage = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    return encode(msg)


def start_message(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    tracks: Iterable[TrackName] = TRACKS,
    custom_parameters: Mapping[str, str] | None = None,
    sequence_number: int = 1,
) -> str:
    msg: StartMessage = {
        "event": "start",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "start": {
            "streamSid": stream_sid,
            "accountSid": account_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "customParameters": dict(custom_parameters or {}),
            "mediaFormat": {
                "encoding": MULAW_ENCODING,
                "sampleRate": SAMPLE_RATE,
                "channels": CHANNELS,
            },
        },
    }
    return encode(msg)


def media_message(
    stream_sid: str,
    track: TrackName,
    chunk: int,
    timestamp_ms: int,
    payload: bytes,
    sequence_number: int,
) -> str:
    msg: MediaMessage = {
        "event": "media",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "media": {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(payload).decode("ascii"),
        },
    }
    return encode(msg)


def mark_message(stream_sid: str, name: str, sequence_number: int) -> str:
    msg: MarkMessage = {
        "event": "mark",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "mark": {"name": name},
    }
    return encode(msg)


def dtmf_message(
    stream_sid: str, digit: str, sequence_number: int, track: DtmfTrack = "inbound_track"
) -> str:
    msg: DtmfMessage = {
        "event": "dtmf",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "dtmf": {"track": track, "digit": digit},
    }
    return encode(msg)


def stop_message(stream_sid: str, call_sid: str, account_sid: str, sequence_number: int) -> str:
    msg: StopMessage = {
        "event": "stop",
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        "stop": {"accountSid": account_sid, "callSid": call_sid},
    }
    return encode(msg)


class TwilioClient:
    """Twilio's side of one stream (a forked ``<Start><Stream>``: the server sends nothing)."""

    frame_ms = FRAME_MS
    encoding = "PCMU"
    sample_rate = 8000

    def __init__(
        self,
        *,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        account_sid: str = DEFAULT_ACCOUNT,
        tracks: Iterable[TrackName] = TRACKS,
        custom_parameters: Mapping[str, str] | None = None,
        inbound_speaker: str = "customer",
    ) -> None:
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
        self.account_sid = account_sid
        self.tracks = tuple(tracks)
        self.custom_parameters = dict(custom_parameters or {})
        self._inbound_is_customer = inbound_speaker == "customer"
        self._sequence = 0
        self._chunk = dict.fromkeys(self.tracks, 0)
        self._samples = dict.fromkeys(self.tracks, 0)
        self._outbox: list[str | bytes] = []
        self._started = self._stopped = False
        self.messages_received: list[str | bytes] = []
        self._problems: list[str] = []

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def problems(self) -> list[str]:
        return self._problems

    def position_ms(self, track: TrackName) -> float:
        return 1000 * self._samples[track] / SAMPLE_RATE

    # ------------------------------------------------------------------ what Twilio sends

    def start(self) -> None:
        self._outbox.append(connected_message())
        self._outbox.append(
            start_message(
                self.stream_sid,
                self.call_sid,
                self.account_sid,
                self.tracks,
                self.custom_parameters,
                self._next(),
            )
        )
        self._started = True

    def ready(self) -> bool:
        return self._started

    def send_media(self, track: TrackName, payload: bytes) -> None:
        self._chunk[track] += 1
        timestamp = self._samples[track] * 1000 // SAMPLE_RATE
        self._samples[track] += len(payload)
        self._outbox.append(
            media_message(
                self.stream_sid, track, self._chunk[track], timestamp, payload, self._next()
            )
        )

    def send_audio(self, customer: bytes, agent: bytes) -> None:
        inbound, outbound = (customer, agent) if self._inbound_is_customer else (agent, customer)
        for track in self.tracks:
            self.send_media(track, inbound if track == "inbound" else outbound)

    def send_mark(self, name: str) -> None:
        self._outbox.append(mark_message(self.stream_sid, name, self._next()))

    def send_dtmf(self, digit: str) -> None:
        self._outbox.append(dtmf_message(self.stream_sid, digit, self._next()))

    def finish(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._outbox.append(
                stop_message(self.stream_sid, self.call_sid, self.account_sid, self._next())
            )

    def finished(self) -> bool:
        return self._stopped

    def data_to_send(self) -> list[str | bytes]:
        frames, self._outbox = self._outbox, []
        return frames

    # ------------------------------------------------------------------ what the server sends

    def receive_text(self, text: str) -> None:
        # cxguard only listens; a server that talks back on a forked stream is noted.
        self.messages_received.append(text)
        self._problems.append("server sent a message on a listen-only stream")

    def receive_bytes(self, data: bytes) -> None:
        self.messages_received.append(data)
        self._problems.append("server sent binary on a listen-only stream")

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence
