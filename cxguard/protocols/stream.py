"""A generic media websocket (``/stream``) as a sans-I/O state machine.

For platforms that fork a call's audio over a plain websocket: one JSON *text* message
first, then *binary* audio frames, JSON control messages in between, an optional JSON stop.
Three first-message shapes are accepted:

- cxguard's own: ``{"event": "start", "call_id": "…", "encoding": "mulaw"|"l16",
  "sample_rate": 8000|16000, "channels": 1|2, "channel_map": ["customer", "agent"],
  "speaker": "customer"|"agent", "tenant": "…", "parameters": {"k": "v"}}``;
- Vonage Voice API websockets: ``{"event": "websocket:connected",
  "content-type": "audio/l16;rate=16000", …}`` — the NCCO endpoint's ``headers`` arrive as
  the other keys (``call_id``, ``speaker``, ``tenant``; the rest become parameters);
- FreeSWITCH ``mod_audio_fork``: its ``<metadata>`` JSON, which has no ``event``: the same
  keys as cxguard's start, ``encoding`` defaulting to ``l16`` (what the module sends); give
  ``"channels": 2`` for its ``stereo`` mix (caller first).

``call_id`` is required (1-128 characters). One channel needs ``speaker`` (default
``customer``: a Vonage websocket carries the caller's leg); two channels are interleaved
sample by sample in ``channel_map`` order (default customer, agent). L16 is 16-bit signed
little-endian. A mono connection is judged as a call with that one speaker; joining two
per-speaker connections into one call is not done here.

After the start: ``{"event": "control", "name": "authenticated"}`` (or with ``"value"``),
``{"event": "mark", "name": "cxguard.<name>=<value>"}``, ``{"event": "dtmf", "digit": "5"}``
(Vonage's ``websocket:dtmf`` too), ``{"event": "stop"}``. Vonage's acknowledgements
(``websocket:cleared``, ``websocket:notify``) are ignored. Closing the connection ends the
call with ``closed`` (Vonage and mod_audio_fork send no stop).

Violations are recorded (:mod:`cxguard.protocols.base`), close codes: 1002 audio or control
before the start, a second start; 1003 unknown event, unsupported encoding/rate/channels;
1007 bad JSON, wrong types, lone surrogates, a frame that is not whole samples; 1009 a frame
over ``max_message_bytes``. Caller identity in parameters is hashed or dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from cxguard.errors import ProtocolError
from cxguard.model import AudioChunk, CallInfo, CallStarted, Dtmf, Mark, Speaker
from cxguard.protocols.base import Close, CloseCode, MediaStream, is_utf8, utf8_size_exceeds
from cxguard.protocols.caller_id import protect_parameters
from cxguard.protocols.controls import control_event

Encoding = Literal["PCMU", "L16"]
ENCODINGS: Final[dict[str, Encoding]] = {"mulaw": "PCMU", "pcmu": "PCMU", "l16": "L16"}
SAMPLE_RATES: Final = (8000, 16000)
SPEAKERS: Final[dict[str, Speaker]] = {"customer": "customer", "agent": "agent"}
MAX_PARAMETERS: Final = 64
MAX_PARAMETER_CHARS: Final = 1024
_VONAGE_TYPE: Final = re.compile(r"audio/l16;\s*rate=(\d{4,5})")
_STARTS: Final = frozenset({"start", "websocket:connected", None})
_IGNORED: Final = frozenset({"websocket:cleared", "websocket:notify"})
_RESERVED: Final = frozenset(
    {"event", "call_id", "tenant", "encoding", "sample_rate", "channels", "channel_map"}
    | {"speaker", "parameters", "content-type"}
)
_TRUE_VALUES: Final = frozenset({"true", "1", "yes"})


@dataclass(frozen=True)
class StreamOptions:
    default_tenant: str = "default"
    tenant: str | None = None
    """Set by the runtime from the authenticated upgrade; wins over the start message."""
    max_message_bytes: int = 64 * 1024
    caller_id_key: bytes | None = None


@dataclass(frozen=True)
class _Format:
    encoding: Encoding
    sample_rate: int
    speakers: tuple[Speaker, ...]

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "L16" else 1


class GenericStream(MediaStream):
    """One ``/stream`` connection (one call, or one speaker of it)."""

    def __init__(self, options: StreamOptions = StreamOptions()) -> None:
        super().__init__()
        self._options = options
        self._format: _Format | None = None
        self._samples = 0
        self._stopped = False

    @property
    def position_ms(self) -> float:
        rate = self._format.sample_rate if self._format else 8000
        return 1000 * self._samples / rate

    def _position_ms(self) -> float:
        return self.position_ms

    def _on_eof(self) -> None:
        self._end_call("closed")  # no stop message in Vonage's or mod_audio_fork's protocol

    # ------------------------------------------------------------------ text

    def _on_text(self, text: str) -> None:
        if utf8_size_exceeds(text, self._options.max_message_bytes):
            _fail("text message too large", CloseCode.MESSAGE_TOO_BIG)
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            _invalid("text message is not valid JSON")
        if not isinstance(message, dict):
            _invalid("message is not a JSON object")
        _check_strings(message)
        event = message.get("event")
        if event is not None and not isinstance(event, str):
            _invalid("'event' must be a string")
        if self._format is None:
            if event not in _STARTS:
                _fail(f"{event!r:.40} before the start message", CloseCode.PROTOCOL_ERROR)
            self._on_start(message, event)
            return
        if event in _STARTS:
            _fail("a second start message", CloseCode.PROTOCOL_ERROR)
        at = self.position_ms
        if event == "control":
            name, value = _text(message, "name"), message.get("value")
            if value is not None and not isinstance(value, str):
                _invalid("control 'value' must be a string")
            self._events.append(control_event(name, value, at))
        elif event == "mark":
            name = _text(message, "name")
            self._events.append(Mark(name))
            if name.startswith("cxguard."):
                control, sep, value = name[len("cxguard.") :].partition("=")
                self._events.append(control_event(control, value if sep else None, at))
        elif event in ("dtmf", "websocket:dtmf"):
            digit = _text(message, "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCD":
                _invalid(f"dtmf digit {digit!r:.10} is not one of 0-9, *, #, A-D")
            self._events.append(Dtmf(digit, at))
        elif event == "stop":
            self._end_call("stop")
            self._finish(Close(CloseCode.NORMAL_CLOSURE, "stop"))
        elif event not in _IGNORED:
            _fail(f"unknown event {event!r:.40}", CloseCode.UNSUPPORTED_DATA)

    def _on_start(self, message: dict[str, Any], event: str | None) -> None:
        if event == "websocket:connected":
            kind = _text(message, "content-type").lower()
            match = _VONAGE_TYPE.fullmatch(kind)
            if not match:
                _fail(f"content-type {kind!r:.40} is not audio/l16", CloseCode.UNSUPPORTED_DATA)
            encoding: Encoding = "L16"
            rate = int(match.group(1))
            channels = 1
        else:
            default = "l16" if event is None else None
            name = message.get("encoding", default)
            if not isinstance(name, str):
                _invalid("'encoding' must be a string")
            found = ENCODINGS.get(name.lower())
            if found is None:
                _fail(f"encoding {name!r:.20} is not mulaw or l16", CloseCode.UNSUPPORTED_DATA)
            encoding = found
            rate = _integer(message, "sample_rate")
            channels = _integer(message, "channels", 1)
        if rate not in SAMPLE_RATES:
            _fail(f"sample rate {rate} is not 8000 or 16000", CloseCode.UNSUPPORTED_DATA)
        if channels not in (1, 2):
            _fail(f"{channels} channels: only 1 or 2", CloseCode.UNSUPPORTED_DATA)
        speakers = self._speakers(message, channels)
        call_id = _text(message, "call_id")
        if not 1 <= len(call_id) <= 128:
            _invalid("'call_id' must have 1 to 128 characters")
        opts = self._options
        claimed = message.get("tenant")
        if claimed is not None and not isinstance(claimed, str):
            _invalid("'tenant' must be a string")
        parameters = _parameters(message, event)
        if claimed:
            parameters["tenant"] = claimed
        info = CallInfo(
            call_id=call_id,
            tenant=opts.tenant or claimed or opts.default_tenant,
            source="stream",
            stream_id=call_id,
            parameters=protect_parameters(parameters, opts.caller_id_key),
        )
        self._format = _Format(encoding, rate, speakers)
        self._start_call(CallStarted(info, encoding, rate))
        if parameters.get("authenticated", "").strip().lower() in _TRUE_VALUES:
            self._events.append(control_event("authenticated", None, 0.0))
        if parameters.get("intent", "").strip():
            self._events.append(control_event("intent", parameters["intent"], 0.0))

    @staticmethod
    def _speakers(message: dict[str, Any], channels: int) -> tuple[Speaker, ...]:
        if channels == 1:
            name = message.get("speaker", "customer")
            speaker = SPEAKERS.get(name) if isinstance(name, str) else None
            if speaker is None:
                _invalid("'speaker' must be customer or agent")
            return (speaker,)
        names = message.get("channel_map", ["customer", "agent"])
        if not isinstance(names, list) or sorted(map(str, names)) != ["agent", "customer"]:
            _invalid("'channel_map' must name customer and agent once each")
        return tuple(SPEAKERS[str(n)] for n in names)

    # ------------------------------------------------------------------ audio

    def _on_bytes(self, data: bytes) -> None:
        fmt = self._format
        if fmt is None:
            _fail("audio before the start message", CloseCode.PROTOCOL_ERROR)
        if len(data) > self._options.max_message_bytes:
            _fail("binary message too large", CloseCode.MESSAGE_TOO_BIG)
        width = fmt.bytes_per_sample * len(fmt.speakers)
        if len(data) % width:
            _invalid(f"audio frame of {len(data)} bytes is not whole {width}-byte samples")
        if not data:
            return
        start_ms = self.position_ms
        if len(fmt.speakers) == 1:
            chunks = [bytes(data)]
        else:
            view = memoryview(data).cast("H") if fmt.encoding == "L16" else memoryview(data)
            chunks = [view[0::2].tobytes(), view[1::2].tobytes()]
        for speaker, payload in zip(fmt.speakers, chunks, strict=True):
            self._events.append(
                AudioChunk(speaker, payload, start_ms, fmt.encoding, fmt.sample_rate)
            )
        self._samples += len(data) // width


def _parameters(message: dict[str, Any], event: str | None) -> dict[str, str]:
    """``parameters`` (cxguard, mod_audio_fork) or the other keys (Vonage headers)."""
    if event == "websocket:connected":
        raw = {k: v for k, v in message.items() if k not in _RESERVED}
    else:
        given = message.get("parameters", {})
        if not isinstance(given, dict):
            _invalid("'parameters' must be an object")
        raw = given
    if len(raw) > MAX_PARAMETERS:
        _invalid(f"more than {MAX_PARAMETERS} parameters")
    parameters = {}
    for key, value in raw.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if len(key) > 128 or len(text) > MAX_PARAMETER_CHARS:
            _invalid(f"parameter {key[:40]!r} is too long")
        parameters[key] = text
    return parameters


def _check_strings(value: object) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_utf8(item):
                _invalid("a string holds a lone surrogate")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _text(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        _invalid(f"{key!r} must be a string")
    return value


def _integer(message: dict[str, Any], key: str, default: int | None = None) -> int:
    value = message.get(key, default)
    if type(value) is not int:
        _invalid(f"{key!r} must be an integer")
    return value


def _fail(message: str, code: CloseCode) -> NoReturn:
    raise ProtocolError(message, code)


def _invalid(message: str) -> NoReturn:
    _fail(message, CloseCode.INVALID_PAYLOAD)


__all__ = ["GenericStream", "StreamOptions"]
