"""Twilio Media Streams wire messages: ``TypedDict`` shapes and client-side builders.

Shapes follow https://www.twilio.com/docs/voice/media-streams/websocket-messages. Every
message is one JSON *text* frame with an ``event`` discriminator; numbers that Twilio counts
(``sequenceNumber``, ``media.chunk``, ``media.timestamp``) travel as decimal strings, while
``mediaFormat.sampleRate``/``channels`` are JSON numbers. ``media.track`` is ``inbound`` /
``outbound`` but ``dtmf.track`` is ``inbound_track`` — Twilio spells them differently.

The builders return the JSON text Twilio would send. ``cxguard simulate`` and the tests use
them to play the Twilio side of a stream; the parser lives in :mod:`cxguard.protocols.twilio`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Final, Literal, NotRequired, TypeAlias, TypedDict

TrackName: TypeAlias = Literal["inbound", "outbound"]
DtmfTrack: TypeAlias = Literal["inbound_track", "outbound_track"]
EventName: TypeAlias = Literal["connected", "start", "media", "mark", "dtmf", "stop"]

TRACKS: Final[tuple[TrackName, ...]] = ("inbound", "outbound")
DTMF_TRACKS: Final[tuple[DtmfTrack, ...]] = ("inbound_track", "outbound_track")
EVENT_NAMES: Final[tuple[EventName, ...]] = ("connected", "start", "media", "mark", "dtmf", "stop")

MULAW_ENCODING: Final = "audio/x-mulaw"
SAMPLE_RATE: Final = 8000
CHANNELS: Final = 1


class ConnectedMessage(TypedDict):
    event: Literal["connected"]
    protocol: NotRequired[str]
    version: NotRequired[str]


class MediaFormat(TypedDict):
    encoding: str
    sampleRate: int
    channels: int


class StartBody(TypedDict):
    streamSid: str
    accountSid: str
    callSid: str
    tracks: list[TrackName]
    customParameters: dict[str, str]
    mediaFormat: MediaFormat


class StartMessage(TypedDict):
    event: Literal["start"]
    sequenceNumber: str
    streamSid: str
    start: StartBody


class MediaBody(TypedDict):
    track: TrackName
    chunk: str
    timestamp: str
    payload: str
    """Base64 of raw μ-law bytes, no file header."""


class MediaMessage(TypedDict):
    event: Literal["media"]
    sequenceNumber: str
    streamSid: str
    media: MediaBody


class MarkBody(TypedDict):
    name: str


class MarkMessage(TypedDict):
    event: Literal["mark"]
    sequenceNumber: str
    streamSid: str
    mark: MarkBody


class DtmfBody(TypedDict):
    track: DtmfTrack
    digit: str


class DtmfMessage(TypedDict):
    event: Literal["dtmf"]
    sequenceNumber: str
    streamSid: str
    dtmf: DtmfBody


class StopBody(TypedDict):
    accountSid: str
    callSid: str


class StopMessage(TypedDict):
    event: Literal["stop"]
    sequenceNumber: str
    streamSid: str
    stop: NotRequired[StopBody]


TwilioMessage: TypeAlias = (
    ConnectedMessage | StartMessage | MediaMessage | MarkMessage | DtmfMessage | StopMessage
)


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
