"""Shape checks that turn one decoded JSON object into a typed Twilio wire message.

Only shape is checked here: presence, JSON types, counters written as decimal strings, known
track names, text that can be written back as UTF-8. Order and state belong to
:class:`cxguard.protocols.twilio.TwilioStream`. Every failure raises
:class:`~cxguard.errors.TwilioProtocolError` with ``CloseCode.INVALID_PAYLOAD`` (1007), except
an unknown ``event``, which is ``CloseCode.UNSUPPORTED_DATA`` (1003).
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

from cxguard.errors import TwilioProtocolError
from cxguard.protocols.base import CloseCode, is_utf8
from cxguard.protocols.twilio_messages import (
    DTMF_TRACKS,
    EVENT_NAMES,
    TRACKS,
    DtmfMessage,
    DtmfTrack,
    EventName,
    MarkMessage,
    MediaFormat,
    MediaMessage,
    StartMessage,
    StopBody,
    StopMessage,
    TrackName,
)

JsonObject = dict[str, object]

# Fifteen digits keep every value exact as a float and stay clear of int()'s digit limit.
_COUNTER: Final = re.compile(r"[0-9]{1,15}")
_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
_EVENTS: Final[dict[str, EventName]] = {name: name for name in EVENT_NAMES}
_TRACKS: Final[dict[str, TrackName]] = {name: name for name in TRACKS}
_DTMF_TRACKS: Final[dict[str, DtmfTrack]] = {name: name for name in DTMF_TRACKS}
_MISSING: Final = object()


def invalid(message: str) -> NoReturn:
    raise TwilioProtocolError(message, CloseCode.INVALID_PAYLOAD)


def json_type(value: object) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def as_object(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        invalid(f"{where} must be a JSON object, got {json_type(value)}")
    return value


def member(obj: JsonObject, key: str, where: str) -> JsonObject:
    return as_object(obj.get(key, _MISSING), f"{where}.{key}")


def utf8(value: str, where: str) -> str:
    if not is_utf8(value):
        invalid(f"{where} holds a lone surrogate")
    return value


def text(obj: JsonObject, key: str, where: str) -> str:
    value = obj.get(key, _MISSING)
    if not isinstance(value, str):
        invalid(f"{where}.{key} must be a string, got {json_type(value)}")
    return utf8(value, f"{where}.{key}")


def counter(obj: JsonObject, key: str, where: str) -> str:
    value = text(obj, key, where)
    if not _COUNTER.fullmatch(value):
        invalid(f"{where}.{key} must be a decimal string of 1-15 digits, got {value!r:.40}")
    return value


def integer(obj: JsonObject, key: str, where: str) -> int:
    value = obj.get(key, _MISSING)
    if not isinstance(value, int) or isinstance(value, bool):
        invalid(f"{where}.{key} must be an integer, got {json_type(value)}")
    return value


def event_name(obj: JsonObject) -> EventName:
    name = text(obj, "event", "frame")
    event = _EVENTS.get(name)
    if event is None:
        raise TwilioProtocolError(f"unknown event {name!r:.40}", CloseCode.UNSUPPORTED_DATA)
    return event


def track(obj: JsonObject, where: str) -> TrackName:
    name = text(obj, "track", where)
    found = _TRACKS.get(name)
    if found is None:
        invalid(f"{where}.track {name!r:.40} is not one of {', '.join(TRACKS)}")
    return found


def start(obj: JsonObject) -> StartMessage:
    body = member(obj, "start", "frame")
    fmt = member(body, "mediaFormat", "start")
    media_format: MediaFormat = {
        "encoding": text(fmt, "encoding", "start.mediaFormat"),
        "sampleRate": integer(fmt, "sampleRate", "start.mediaFormat"),
        "channels": integer(fmt, "channels", "start.mediaFormat"),
    }
    raw_tracks = body.get("tracks", _MISSING)
    if not isinstance(raw_tracks, list) or not raw_tracks:
        invalid(f"start.tracks must be a non-empty array, got {json_type(raw_tracks)}")
    tracks = [track({"track": item}, "start.tracks") for item in raw_tracks]
    # Optional: Twilio always sends it (possibly {}), simulators and older examples may not.
    raw_params = as_object(body.get("customParameters", {}), "start.customParameters")
    params = {
        utf8(key, "start.customParameters key"): text(raw_params, key, "start.customParameters")
        for key in raw_params
    }
    stream_sid = text(body, "streamSid", "start")
    if text(obj, "streamSid", "frame") != stream_sid:
        invalid("frame.streamSid differs from start.streamSid")
    return {
        "event": "start",
        "sequenceNumber": counter(obj, "sequenceNumber", "frame"),
        "streamSid": stream_sid,
        "start": {
            "streamSid": stream_sid,
            "accountSid": text(body, "accountSid", "start"),
            "callSid": text(body, "callSid", "start"),
            "tracks": tracks,
            "customParameters": params,
            "mediaFormat": media_format,
        },
    }


def media(obj: JsonObject) -> MediaMessage:
    body = member(obj, "media", "frame")
    return {
        "event": "media",
        "sequenceNumber": counter(obj, "sequenceNumber", "frame"),
        "streamSid": text(obj, "streamSid", "frame"),
        "media": {
            "track": track(body, "media"),
            "chunk": counter(body, "chunk", "media"),
            "timestamp": counter(body, "timestamp", "media"),
            "payload": text(body, "payload", "media"),
        },
    }


def mark(obj: JsonObject) -> MarkMessage:
    body = member(obj, "mark", "frame")
    return {
        "event": "mark",
        "sequenceNumber": counter(obj, "sequenceNumber", "frame"),
        "streamSid": text(obj, "streamSid", "frame"),
        "mark": {"name": text(body, "name", "mark")},
    }


def dtmf(obj: JsonObject) -> DtmfMessage:
    body = member(obj, "dtmf", "frame")
    digit = text(body, "digit", "dtmf")
    if digit not in _DTMF_DIGITS:
        invalid(f"dtmf.digit {digit!r:.40} is not one of 0-9, *, #, A-D")
    name = text(body, "track", "dtmf")
    dtmf_track = _DTMF_TRACKS.get(name)
    if dtmf_track is None:
        invalid(f"dtmf.track {name!r:.40} is not one of {', '.join(DTMF_TRACKS)}")
    return {
        "event": "dtmf",
        "sequenceNumber": counter(obj, "sequenceNumber", "frame"),
        "streamSid": text(obj, "streamSid", "frame"),
        "dtmf": {"track": dtmf_track, "digit": digit},
    }


def stop(obj: JsonObject) -> StopMessage:
    message: StopMessage = {
        "event": "stop",
        "sequenceNumber": counter(obj, "sequenceNumber", "frame"),
        "streamSid": text(obj, "streamSid", "frame"),
    }
    # The body only repeats the call's identity; accept its absence, check it when present.
    if "stop" in obj:
        body = member(obj, "stop", "frame")
        stop_body: StopBody = {
            "accountSid": text(body, "accountSid", "stop"),
            "callSid": text(body, "callSid", "stop"),
        }
        message["stop"] = stop_body
    return message
