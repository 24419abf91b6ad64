"""Genesys AudioHook v2 wire messages: ``TypedDict`` shapes, parsing, server messages.

Shapes follow Genesys's reference implementation (purecloudlabs/audiohook-reference-implementation,
``protocol/message.ts`` and ``validators.ts``). Every control message is one JSON *text* frame:

- client → server (Genesys → us): ``version``, ``id`` (the session id), ``type``, ``seq``,
  ``serverseq`` (last server ``seq`` the client saw), ``position`` (ISO 8601 duration such as
  ``PT1.5S``) and ``parameters``;
- server → client (us → Genesys): the same without ``serverseq``/``position``, plus
  ``clientseq`` echoing the last client ``seq``.

Audio travels in *binary* frames; stereo PCMU interleaves one byte per channel (L R L R …)
in the order of the negotiated ``channels`` list.

:func:`parse_client_message` validates what Genesys sends (every string in it, keys included,
must be encodable as UTF-8: a lone surrogate such as ``"\\ud800"`` is refused); parameter keys
that are not known are tolerated, as in the reference server. What Genesys sends, built and
numbered, is :mod:`cxguard.simulate.audiohook`.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, NoReturn, NotRequired, TypeAlias, TypedDict, cast

from cxguard.errors import AudioHookProtocolError
from cxguard.protocols.base import CloseCode, is_utf8

MediaChannel: TypeAlias = Literal["external", "internal"]
CloseReason: TypeAlias = Literal["end", "error", "disconnect", "reconnect"]
DisconnectReason: TypeAlias = Literal["completed", "unauthorized", "error"]
ClientMessageType: TypeAlias = Literal[
    "open", "close", "discarded", "error", "paused", "ping", "resumed", "update"
]
ServerMessageType: TypeAlias = Literal[
    "opened", "closed", "disconnect", "event", "pause", "pong", "reconnect", "resume", "updated"
]

PROTOCOL_VERSION: Final = "2"
SAMPLE_RATE: Final = 8000
NULL_UUID: Final = "00000000-0000-0000-0000-000000000000"
"""A connection probe carries this ``conversationId`` (and participant id)."""
MEDIA_CHANNELS: Final[tuple[MediaChannel, MediaChannel]] = ("external", "internal")
MEDIA_FORMATS: Final = ("PCMU", "L16")
"""Taken at 8 kHz, in this order of preference (PCMU is what Genesys sends by default;
L16 is 16-bit little-endian linear PCM)."""
CLOSE_REASONS: Final[tuple[CloseReason, ...]] = ("end", "error", "disconnect", "reconnect")


class AudioHookCode(enum.IntEnum):
    """The HTTP-style code of an AudioHook failure (what ``disconnect``'s ``info`` explains)."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    CONFLICT = 409
    """Audio before ``opened`` or while paused."""
    PAYLOAD_TOO_LARGE = 413
    UNSUPPORTED_MEDIA = 415


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The reference accepts "PT1S", "PT1.5S", "PT.5S"; digits are bounded so no value is absurd.
_DURATION = re.compile(r"PT(\d{1,12}(?:\.\d{0,30})?|\.\d{1,30})S")
_US_PER_S: Final = 1_000_000


class MediaParameter(TypedDict):
    type: str
    format: str
    channels: list[str]
    rate: int


class Participant(TypedDict):
    id: str
    ani: str
    aniName: str
    dnis: str


class ContinuedSession(TypedDict):
    """An earlier session of the same conversation that this one continues."""

    id: str
    serverseq: int
    clientseq: int


class OpenParameters(TypedDict):
    organizationId: str
    conversationId: str
    participant: Participant
    media: list[MediaParameter]
    language: NotRequired[str]
    supportedLanguages: NotRequired[bool]
    continuedSessions: NotRequired[list[ContinuedSession]]
    customConfig: NotRequired[dict[str, Any]]


class CloseParameters(TypedDict):
    reason: CloseReason


class DiscardedParameters(TypedDict):
    """Also the parameters of ``resumed``: ``discarded`` audio from ``start`` on was not sent."""

    start: str
    discarded: str


class ErrorParameters(TypedDict):
    code: int
    message: str
    retryAfter: NotRequired[str]


class PingParameters(TypedDict):
    rtt: NotRequired[str]


class UpdateParameters(TypedDict):
    language: str


class _ClientBase(TypedDict):
    version: Literal["2"]
    id: str
    seq: int
    serverseq: int
    position: str


class OpenMessage(_ClientBase):
    type: Literal["open"]
    parameters: OpenParameters


class CloseMessage(_ClientBase):
    type: Literal["close"]
    parameters: CloseParameters


class DiscardedMessage(_ClientBase):
    type: Literal["discarded"]
    parameters: DiscardedParameters


class ErrorMessage(_ClientBase):
    type: Literal["error"]
    parameters: ErrorParameters


class PausedMessage(_ClientBase):
    type: Literal["paused"]
    parameters: dict[str, Any]


class PingMessage(_ClientBase):
    type: Literal["ping"]
    parameters: PingParameters


class ResumedMessage(_ClientBase):
    type: Literal["resumed"]
    parameters: DiscardedParameters


class UpdateMessage(_ClientBase):
    type: Literal["update"]
    parameters: UpdateParameters


ClientMessage: TypeAlias = (
    OpenMessage
    | CloseMessage
    | DiscardedMessage
    | ErrorMessage
    | PausedMessage
    | PingMessage
    | ResumedMessage
    | UpdateMessage
)


class OpenedParameters(TypedDict):
    media: list[MediaParameter]
    startPaused: bool
    supportedLanguages: NotRequired[list[str]]


class DisconnectParameters(TypedDict):
    reason: DisconnectReason
    info: NotRequired[str]


class ServerMessage(TypedDict):
    version: Literal["2"]
    id: str
    type: ServerMessageType
    seq: int
    clientseq: int
    parameters: dict[str, Any]


# --------------------------------------------------------------------------- durations


def parse_duration_us(value: object) -> int:
    """``"PT1.5S"`` → 1_500_000 µs (rounded to the microsecond); ValueError if malformed."""
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValueError(f"not an ISO 8601 duration in seconds: {value!r:.40}")
    try:
        return int((Decimal(value[2:-1]) * _US_PER_S).to_integral_value())
    except InvalidOperation as exc:  # unreachable for matched text; kept for safety
        raise ValueError(str(exc)) from None


def format_duration_us(us: int) -> str:
    """1_500_000 µs → ``"PT1.5S"``; whole seconds print without a fraction (``"PT0S"``)."""
    if us < 0:
        raise ValueError("durations are never negative")
    seconds = (Decimal(us) / _US_PER_S).normalize()
    return f"PT{seconds:f}S"


def format_duration_ms(ms: float) -> str:
    return format_duration_us(round(ms * 1000))


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


# --------------------------------------------------------------------------- parsing


def _bad(
    message: str,
    close_code: CloseCode = CloseCode.PROTOCOL_ERROR,
    code: AudioHookCode = AudioHookCode.BAD_REQUEST,
) -> NoReturn:
    raise AudioHookProtocolError(message, close_code, code)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # json.loads would otherwise accept NaN/Infinity


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass; it is no count


def _need(params: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str) -> None:
    if key not in params or not check(params[key]):
        _bad(f"parameter {key!r} missing or not {what}")


def _maybe(params: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str) -> None:
    if key in params and not check(params[key]):
        _bad(f"parameter {key!r} is not {what}")


def _is_duration(value: object) -> bool:
    try:
        parse_duration_us(value)
    except ValueError:
        return False
    return True


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_participant(value: object) -> bool:
    return (
        isinstance(value, dict)
        and is_uuid(value.get("id"))
        and all(isinstance(value.get(k), str) for k in ("ani", "aniName", "dnis"))
    )


MAX_CONTINUED_SESSIONS: Final = 64


def _is_continued(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_CONTINUED_SESSIONS
        and all(
            isinstance(c, dict)
            and is_uuid(c.get("id"))
            and all(type(c.get(k)) is int and c[k] >= 0 for k in ("serverseq", "clientseq"))
            for c in value
        )
    )


def _is_media_list(value: object) -> bool:
    # Entries are checked in full only where one is chosen (see select_media): an offer we
    # cannot use must not fail the session when a usable one is next to it.
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _check_open(p: Mapping[str, Any]) -> None:
    _need(p, "organizationId", is_uuid, "a UUID")
    _need(p, "conversationId", is_uuid, "a UUID")
    _need(p, "participant", _is_participant, "a participant object")
    _need(p, "media", _is_media_list, "a list of media objects")
    _maybe(p, "language", _is_str, "a string")
    _maybe(p, "supportedLanguages", lambda v: isinstance(v, bool), "a boolean")
    _maybe(p, "continuedSessions", _is_continued, "a list of {id, serverseq, clientseq}")
    _maybe(p, "customConfig", lambda v: isinstance(v, dict), "an object")


def _check_close(p: Mapping[str, Any]) -> None:
    _need(p, "reason", lambda v: v in CLOSE_REASONS, f"one of {', '.join(CLOSE_REASONS)}")


def _check_discarded(p: Mapping[str, Any]) -> None:
    _need(p, "start", _is_duration, "a duration")
    _need(p, "discarded", _is_duration, "a duration")


def _check_error(p: Mapping[str, Any]) -> None:
    _need(p, "code", lambda v: type(v) is int and 400 <= v < 10000, "an error code")
    _need(p, "message", _is_str, "a string")
    _maybe(p, "retryAfter", _is_duration, "a duration")


def _check_ping(p: Mapping[str, Any]) -> None:
    _maybe(p, "rtt", _is_duration, "a duration")


def _check_update(p: Mapping[str, Any]) -> None:
    _need(p, "language", _is_str, "a string")


def _check_nothing(p: Mapping[str, Any]) -> None:
    pass


_PARAMETER_CHECKS: Final[dict[str, Callable[[Mapping[str, Any]], None]]] = {
    "open": _check_open,
    "close": _check_close,
    "discarded": _check_discarded,
    "error": _check_error,
    "paused": _check_nothing,
    "ping": _check_ping,
    "resumed": _check_discarded,
    "update": _check_update,
}


def parse_client_message(text: str) -> ClientMessage:
    """Validate one text frame from Genesys; raises :class:`AudioHookProtocolError`."""
    try:
        raw = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        _bad("text message is not valid JSON", CloseCode.INVALID_PAYLOAD)
    if not isinstance(raw, dict):
        _bad("message is not a JSON object", CloseCode.INVALID_PAYLOAD)
    if "\\u" in text or not is_utf8(text):
        _check_strings(raw)
    if raw.get("version") != PROTOCOL_VERSION:
        _bad(f"'version' must be {PROTOCOL_VERSION!r}")
    if not is_uuid(raw.get("id")):
        _bad("'id' missing or not a UUID")
    if not _is_count(raw.get("seq")) or not _is_count(raw.get("serverseq")):
        _bad("'seq'/'serverseq' missing or not non-negative integers")
    if not _is_duration(raw.get("position")):
        _bad("'position' missing or not an ISO 8601 duration")
    kind = raw.get("type")
    params = raw.get("parameters")
    if not isinstance(kind, str) or not isinstance(params, dict):
        _bad("'type' or 'parameters' missing")
    check = _PARAMETER_CHECKS.get(kind)
    if check is None:
        _bad(f"{kind!r:.40} is not a supported client message")
    check(params)
    return cast(ClientMessage, raw)


def _check_strings(value: object) -> None:
    """Refuse lone surrogates anywhere (keys too); iterative, so depth cannot overflow."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_utf8(item):
                _bad("a string holds a lone surrogate", CloseCode.INVALID_PAYLOAD)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def select_media(
    offers: Sequence[Mapping[str, Any]], mono_order: Sequence[MediaChannel]
) -> MediaParameter | None:
    """Pick 8 kHz audio: stereo external+internal (either order), else mono in
    ``mono_order``; PCMU before L16 for the same channels."""
    usable: list[tuple[str, tuple[str, ...]]] = []
    for offer in offers:
        channels = offer.get("channels")
        if (
            offer.get("type") == "audio"
            and offer.get("format") in MEDIA_FORMATS
            and offer.get("rate") == SAMPLE_RATE
            and type(offer.get("rate")) is int
            and isinstance(channels, list)
            and 1 <= len(channels) <= 2
            and all(c in MEDIA_CHANNELS for c in channels)
            and len(set(channels)) == len(channels)
        ):
            usable.append((str(offer["format"]), tuple(channels)))
    wanted: list[tuple[MediaChannel, ...]] = [("external", "internal"), ("internal", "external")]
    wanted += [(c,) for c in mono_order]
    for choice in wanted:
        for fmt in MEDIA_FORMATS:
            if (fmt, choice) in usable:
                return media_offer(choice, fmt)
    return None


# --------------------------------------------------------------------------- server side


def server_message(
    kind: ServerMessageType,
    session_id: str,
    seq: int,
    clientseq: int,
    parameters: Mapping[str, Any],
) -> str:
    message: ServerMessage = {
        "version": PROTOCOL_VERSION,
        "id": session_id,
        "type": kind,
        "seq": seq,
        "clientseq": clientseq,
        "parameters": dict(parameters),
    }
    return json.dumps(message, separators=(",", ":"))


def transcript_entity(
    entity_id: str,
    channel_id: int,
    text: str,
    start_us: int,
    end_us: int,
    confidence: float = 1.0,
) -> dict[str, Any]:
    """A final transcript of one speaker turn, in the shape of Genesys's transcription
    connector (``EventEntityTranscript``): ``offset``/``duration`` on the session's clock."""
    return {
        "type": "transcript",
        "data": {
            "id": entity_id,
            "channelId": channel_id,
            "isFinal": True,
            "offset": format_duration_us(max(0, start_us)),
            "duration": format_duration_us(max(0, end_us - start_us)),
            "alternatives": [
                {
                    "confidence": confidence,
                    "interpretations": [{"type": "display", "transcript": text}],
                }
            ],
        },
    }


def verdict_entity(data: Mapping[str, Any]) -> dict[str, Any]:
    """A cxguard verdict (``fail``/``undetermined``) as an event entity of its own type, which
    a client that does not know it ignores."""
    return {"type": "cxguard.verdict", "data": dict(data)}


def media_offer(
    channels: Sequence[MediaChannel] = MEDIA_CHANNELS, audio_format: str = "PCMU"
) -> MediaParameter:
    return {
        "type": "audio",
        "format": audio_format,
        "channels": list(channels),
        "rate": SAMPLE_RATE,
    }
