"""Twilio Media Streams wire messages: ``TypedDict`` shapes.

Shapes follow https://www.twilio.com/docs/voice/media-streams/websocket-messages. Every
message is one JSON *text* frame with an ``event`` discriminator; numbers that Twilio counts
(``sequenceNumber``, ``media.chunk``, ``media.timestamp``) travel as decimal strings, while
``mediaFormat.sampleRate``/``channels`` are JSON numbers. ``media.track`` is ``inbound`` /
``outbound`` but ``dtmf.track`` is ``inbound_track`` — Twilio spells them differently.

The parser lives in :mod:`cxguard.protocols.twilio`; the Twilio side of a stream (what
Twilio sends, numbered as Twilio numbers it) in :mod:`cxguard.simulate.twilio`.
"""

from __future__ import annotations

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
