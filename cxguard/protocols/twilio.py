"""Twilio Media Streams as a sans-I/O state machine: JSON text frames in, model events out.

:class:`TwilioStream` follows the stream contract of :mod:`cxguard.protocols.base`: hand it
each frame, drain :meth:`~TwilioStream.events_received`; nothing is ever sent back (a forked
``<Start><Stream>`` expects no replies). A violation is recorded, not raised: the stream's
:attr:`~TwilioStream.error` is a :class:`~cxguard.errors.TwilioProtocolError`, the call ends
with ``protocol_error`` and :attr:`~TwilioStream.close` names the close code. After ``stop``
the close is :attr:`CloseCode.NORMAL_CLOSURE`; later frames are ignored.

Close codes (:class:`~cxguard.protocols.base.CloseCode`):

- ``PROTOCOL_ERROR`` (1002): ``media``/``mark``/``dtmf``/``stop`` before ``start``, a second
  ``start``, ``connected`` after ``start``.
- ``UNSUPPORTED_DATA`` (1003): a binary frame (Twilio only sends text), an unknown ``event``
  (chosen over 1008 because it is data we cannot interpret, like binary, rather than a policy
  breach), a ``mediaFormat`` other than ``audio/x-mulaw`` / 8000 Hz / mono.
- ``INVALID_PAYLOAD`` (1007): bad JSON, a non-object, missing or wrong-typed fields, bad
  base64, lone surrogates in any string, unknown or unannounced tracks, a
  ``streamSid``/``callSid`` that differs from ``start``, counters out of order (below).
- ``MESSAGE_TOO_BIG`` (1009): a frame over ``max_message_bytes``, a payload over
  ``max_payload_bytes``.

Ordering tolerance: ``sequenceNumber`` must strictly increase across the stream, and
``media.chunk`` per track; gaps are allowed in both (a lost frame upstream must not end
monitoring of the call), repeats and reversals are not, and a count starting at 0 is taken
though Twilio starts at 1. ``media.timestamp`` must not decrease within a track (equal is
fine); the two tracks are checked separately because Twilio interleaves them without a
shared order. All three are decimal strings of at most 15 digits.

Trusted signals: ``customParameters`` come from our own TwiML ``<Parameter>`` nouns, and
marks named ``cxguard.<name>`` or ``cxguard.<name>=<value>`` from our own agent side; both
become :class:`~cxguard.model.ControlEvent` through
:func:`~cxguard.protocols.controls.control_event` (a malformed one is recorded as
``invalid_control``, not dropped, and the stream goes on).
Caller-identity parameters (``From``, ``caller_id`` …) are hashed or dropped
(:mod:`cxguard.protocols.caller_id`). Unknown extra fields are ignored.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Literal, NoReturn, assert_never

from cxguard.errors import ProtocolError, TwilioProtocolError
from cxguard.model import AudioChunk, CallInfo, CallStarted, Dtmf, Mark, ProtocolEvent, Speaker
from cxguard.protocols import twilio_parse as parse
from cxguard.protocols.base import Close, CloseCode, MediaStream, utf8_size_exceeds
from cxguard.protocols.caller_id import protect_parameters
from cxguard.protocols.controls import control_event
from cxguard.protocols.twilio_messages import (
    CHANNELS,
    MULAW_ENCODING,
    SAMPLE_RATE,
    DtmfMessage,
    MarkMessage,
    MediaMessage,
    StartMessage,
    StopMessage,
    TrackName,
)

_TRUE_VALUES = frozenset({"true", "1", "yes"})
_CONTROL_PREFIX = "cxguard."
_State = Literal["awaiting_start", "streaming", "stopped", "failed"]


@dataclass(frozen=True)
class TwilioOptions:
    inbound_speaker: Speaker = "customer"
    """Who speaks on Twilio's ``inbound`` track (the caller, for an inbound call)."""
    outbound_speaker: Speaker = "agent"
    tenant_parameter: str = "tenant"
    """``customParameters`` key that names the tenant."""
    default_tenant: str = "default"
    tenant: str | None = None
    """Set by the runtime from the signed upgrade; wins over ``customParameters``."""
    max_message_bytes: int = 64 * 1024
    max_payload_bytes: int = 16 * 1024
    """Decoded μ-law bytes per ``media`` frame; Twilio sends 160 (20 ms)."""
    caller_id_key: bytes | None = None
    """Key for hashing caller-identity parameters; None drops them (see ``caller_id``)."""


class TwilioStream(MediaStream):
    """Parser for one Media Streams WebSocket connection (one stream, one call)."""

    def __init__(self, options: TwilioOptions = TwilioOptions()) -> None:
        super().__init__()
        self._options = options
        self._state: _State = "awaiting_start"
        self._connected = False
        self._stream_sid = ""
        self._tracks: frozenset[TrackName] = frozenset()
        self._sequence = -1  # Twilio counts from 1; a peer counting from 0 is let through
        self._chunk: dict[TrackName, int] = {}
        self._timestamp: dict[TrackName, int] = {}
        self._position: float | None = None

    # ------------------------------------------------------------------ public surface

    @property
    def closed(self) -> bool:
        """True after ``stop``, a protocol error or the end of the connection."""
        return self.close_expected()

    @property
    def position_ms(self) -> float | None:
        """Timestamp of the latest ``media`` frame on any track; None before the first."""
        return self._position

    # ------------------------------------------------------------------ dispatch

    def _on_bytes(self, data: bytes) -> None:
        _fail("Twilio sends only text frames, got binary", CloseCode.UNSUPPORTED_DATA)

    def _on_failure(self, error: ProtocolError) -> None:
        self._state = "failed"
        self._end_call("protocol_error")

    def _position_ms(self) -> float | None:
        return self._position

    def _on_text(self, text: str) -> None:
        limit = self._options.max_message_bytes
        if utf8_size_exceeds(text, limit):
            _fail(f"frame exceeds {limit} bytes", CloseCode.MESSAGE_TOO_BIG)
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            _fail(f"frame is not valid JSON: {exc}", CloseCode.INVALID_PAYLOAD)
        message = parse.as_object(obj, "frame")
        event = parse.event_name(message)
        match event:
            case "connected":
                self._on_connected()
            case "start":
                self._on_start(parse.start(message))
            case "media":
                self._on_media(parse.media(message))
            case "mark":
                self._on_mark(parse.mark(message))
            case "dtmf":
                self._on_dtmf(parse.dtmf(message))
            case "stop":
                self._on_stop(parse.stop(message))
            case _:
                assert_never(event)

    # ------------------------------------------------------------------ handlers

    def _on_connected(self) -> None:
        if self._state != "awaiting_start" or self._connected:
            _fail("'connected' must come once, before 'start'", CloseCode.PROTOCOL_ERROR)
        self._connected = True

    def _on_start(self, msg: StartMessage) -> None:
        if self._state != "awaiting_start":
            _fail("second 'start' on one stream", CloseCode.PROTOCOL_ERROR)
        body = msg["start"]
        fmt = body["mediaFormat"]
        if (fmt["encoding"], fmt["sampleRate"], fmt["channels"]) != (
            MULAW_ENCODING,
            SAMPLE_RATE,
            CHANNELS,
        ):
            _fail(
                f"unsupported mediaFormat {fmt['encoding']!r:.40}/{fmt['sampleRate']}/"
                f"{fmt['channels']}; only {MULAW_ENCODING}/{SAMPLE_RATE}/{CHANNELS}",
                CloseCode.UNSUPPORTED_DATA,
            )
        self._check_sequence(msg["sequenceNumber"])
        opts = self._options
        sent = body["customParameters"]
        tenant = opts.tenant or sent.get(opts.tenant_parameter) or opts.default_tenant
        info = CallInfo(
            call_id=body["callSid"],
            tenant=tenant,
            source="twilio",
            stream_id=body["streamSid"],
            account_sid=body["accountSid"],
            parameters=protect_parameters(sent, opts.caller_id_key),
        )
        self._state = "streaming"
        self._stream_sid = body["streamSid"]
        self._tracks = frozenset(body["tracks"])
        self._start_call(CallStarted(info, encoding="PCMU", sample_rate=SAMPLE_RATE))
        if sent.get("authenticated", "").strip().lower() in _TRUE_VALUES:
            self._events.append(control_event("authenticated", None, 0.0))
        if sent.get("intent", "").strip():
            self._events.append(control_event("intent", sent["intent"], 0.0))

    def _on_media(self, msg: MediaMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        media = msg["media"]
        track = media["track"]
        if track not in self._tracks:
            _invalid(f"media on track {track!r} that 'start' did not announce")
        chunk, timestamp = int(media["chunk"]), int(media["timestamp"])
        last_chunk, last_timestamp = self._chunk.get(track, -1), self._timestamp.get(track, 0)
        if chunk <= last_chunk:
            _invalid(f"{track} chunk {chunk} does not follow chunk {last_chunk}")
        if timestamp < last_timestamp:
            _invalid(f"{track} timestamp {timestamp} goes back from {last_timestamp}")
        try:
            payload = binascii.a2b_base64(media["payload"], strict_mode=True)
        except ValueError as exc:  # binascii.Error, and non-ASCII text
            _invalid(f"media.payload is not valid base64: {exc}")
        if len(payload) > self._options.max_payload_bytes:
            _fail(
                f"media payload of {len(payload)} bytes exceeds the limit",
                CloseCode.MESSAGE_TOO_BIG,
            )
        self._chunk[track], self._timestamp[track] = chunk, timestamp
        self._position = max(self._position or 0.0, float(timestamp))
        opts = self._options
        speaker = opts.inbound_speaker if track == "inbound" else opts.outbound_speaker
        self._events.append(AudioChunk(speaker, payload, float(timestamp), "PCMU", SAMPLE_RATE))

    def _on_mark(self, msg: MarkMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        name = msg["mark"]["name"]
        events: list[ProtocolEvent] = [Mark(name)]
        if name.startswith(_CONTROL_PREFIX):
            control, sep, value = name[len(_CONTROL_PREFIX) :].partition("=")
            events.append(control_event(control, value if sep else None, self._position or 0.0))
        self._events.extend(events)

    def _on_dtmf(self, msg: DtmfMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        self._events.append(Dtmf(msg["dtmf"]["digit"], self._position or 0.0))

    def _on_stop(self, msg: StopMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        body = msg.get("stop")
        if body is not None and self._call and body["callSid"] != self._call.call_id:
            _invalid(f"stop.callSid {body['callSid']!r:.40} differs from start")
        self._state = "stopped"
        self._end_call("stop")
        self._finish(Close(CloseCode.NORMAL_CLOSURE, "stop"))

    # ------------------------------------------------------------------ checks

    def _check_in_stream(self, event: str, stream_sid: str) -> None:
        if self._state != "streaming":
            _fail(f"'{event}' before 'start'", CloseCode.PROTOCOL_ERROR)
        if stream_sid != self._stream_sid:
            _invalid(f"streamSid {stream_sid!r:.40} differs from start's")

    def _check_sequence(self, text: str) -> None:
        number = int(text)
        if number <= self._sequence:
            _invalid(f"sequenceNumber {number} does not follow {self._sequence}")
        self._sequence = number


def _fail(message: str, close_code: CloseCode) -> NoReturn:
    raise TwilioProtocolError(message, close_code)


def _invalid(message: str) -> NoReturn:
    _fail(message, CloseCode.INVALID_PAYLOAD)


__all__ = ["TwilioOptions", "TwilioProtocolError", "TwilioStream"]
