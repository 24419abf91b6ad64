"""Twilio Media Streams as a sans-I/O state machine: JSON text frames in, model events out.

No sockets and no asyncio, in the manner of ``h11``/``websockets``: the caller hands each
received frame to :meth:`TwilioStream.receive_text` (or :meth:`~TwilioStream.receive_bytes`)
and drains :meth:`TwilioStream.events_received`. A frame either yields all its events or
raises :class:`~cxguard.errors.TwilioProtocolError`, whose ``close_code`` is the WebSocket
close code to answer with; the stream is then closed and all further input raises too.

Close codes:

- 1002 protocol error: ``media``/``mark``/``dtmf``/``stop`` before ``start``, a second
  ``start``, ``connected`` after ``start``, any frame after ``stop``.
- 1003 unsupported data: a binary frame (Twilio only sends text), an unknown ``event``
  (chosen over 1008 because it is data we cannot interpret, like binary, rather than a policy
  breach), a ``mediaFormat`` other than ``audio/x-mulaw`` / 8000 Hz / mono.
- 1007 invalid payload: bad JSON, a non-object, missing or wrong-typed fields, bad base64,
  unknown or unannounced tracks, a ``streamSid``/``callSid`` that differs from ``start``,
  counters out of order (below).
- 1009 too big: a frame over ``max_message_bytes``, a payload over ``max_payload_bytes``.

Ordering tolerance: ``sequenceNumber`` must strictly increase across the stream, and
``media.chunk`` per track; gaps are allowed in both (a lost frame upstream must not end
monitoring of the call), repeats and reversals are not, and a count starting at 0 is taken
though Twilio starts at 1. ``media.timestamp`` must not decrease within a track (equal is
fine); the two tracks are checked separately because Twilio interleaves them without a
shared order. All three are decimal strings of at most 15 digits.

Trusted signals: ``customParameters`` come from our own TwiML ``<Parameter>`` nouns, and
marks named ``cxguard.<name>`` or ``cxguard.<name>=<value>`` from our own agent side; both
become :class:`~cxguard.model.ControlEvent`. Unknown extra fields are ignored.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Literal, NoReturn, assert_never

from cxguard.errors import TwilioProtocolError
from cxguard.model import (
    AudioChunk,
    CallEnded,
    CallInfo,
    CallStarted,
    ControlEvent,
    Dtmf,
    Mark,
    ProtocolEvent,
    Speaker,
)
from cxguard.protocols import twilio_parse as parse
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
    max_message_bytes: int = 64 * 1024
    max_payload_bytes: int = 16 * 1024
    """Decoded μ-law bytes per ``media`` frame; Twilio sends 160 (20 ms)."""


class TwilioStream:
    """Parser for one Media Streams WebSocket connection (one stream, one call)."""

    def __init__(self, options: TwilioOptions = TwilioOptions()) -> None:
        self._options = options
        self._state: _State = "awaiting_start"
        self._error: TwilioProtocolError | None = None
        self._connected = False
        self._events: list[ProtocolEvent] = []
        self._call_info: CallInfo | None = None
        self._stream_sid = ""
        self._tracks: frozenset[TrackName] = frozenset()
        self._sequence = -1  # Twilio counts from 1; a peer counting from 0 is let through
        self._chunk: dict[TrackName, int] = {}
        self._timestamp: dict[TrackName, int] = {}
        self._position_ms: float | None = None

    # ------------------------------------------------------------------ public surface

    @property
    def call_info(self) -> CallInfo | None:
        return self._call_info

    @property
    def closed(self) -> bool:
        """True after ``stop`` or after a protocol error."""
        return self._state in ("stopped", "failed")

    @property
    def position_ms(self) -> float | None:
        """Timestamp of the latest ``media`` frame on any track; None before the first."""
        return self._position_ms

    def events_received(self) -> list[ProtocolEvent]:
        """Return and forget the events parsed since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        """Frames to send back: none, a forked ``<Start><Stream>`` expects no replies.

        Kept so the runtime can drive Twilio and AudioHook the same way."""
        return []

    def receive_bytes(self, data: bytes) -> None:
        self._check_open()
        self._fail_with(TwilioProtocolError("Twilio sends only text frames, got binary", 1003))

    def receive_text(self, text: str) -> None:
        """Parse one JSON text frame; raises :class:`TwilioProtocolError` and closes on error."""
        self._check_open()
        try:
            self._receive(text)
        except TwilioProtocolError as exc:
            self._fail_with(exc)
        except Exception as exc:
            # A bug here, not the peer's fault: let it show as it is, and refuse further input
            # with 1011 (internal error) rather than parse on from a half-updated state.
            self._state = "failed"
            self._error = TwilioProtocolError(f"internal error: {exc!r:.80}", 1011)
            raise

    # ------------------------------------------------------------------ dispatch

    def _check_open(self) -> None:
        if self._error is not None:
            raise TwilioProtocolError(
                f"stream already failed: {self._error}", self._error.close_code
            )
        if self._state == "stopped":
            raise TwilioProtocolError("frame received after stop", 1002)

    def _fail_with(self, exc: TwilioProtocolError) -> NoReturn:
        self._state = "failed"
        self._error = exc
        raise exc

    def _receive(self, text: str) -> None:
        limit = self._options.max_message_bytes
        if _utf8_size_exceeds(text, limit):
            _fail(f"frame exceeds {limit} bytes", 1009)
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            _fail(f"frame is not valid JSON: {exc}", 1007)
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
            _fail("'connected' must come once, before 'start'", 1002)
        self._connected = True

    def _on_start(self, msg: StartMessage) -> None:
        if self._state != "awaiting_start":
            _fail("second 'start' on one stream", 1002)
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
                1003,
            )
        self._check_sequence(msg["sequenceNumber"])
        params = body["customParameters"]
        opts = self._options
        info = CallInfo(
            call_id=body["callSid"],
            tenant=params.get(opts.tenant_parameter) or opts.default_tenant,
            source="twilio",
            stream_id=body["streamSid"],
            account_sid=body["accountSid"],
            parameters=params,
        )
        events: list[ProtocolEvent] = [CallStarted(info, encoding="PCMU", sample_rate=SAMPLE_RATE)]
        if params.get("authenticated", "").strip().lower() in _TRUE_VALUES:
            events.append(ControlEvent("authenticated", 0.0))
        if intent := params.get("intent", "").strip():
            events.append(ControlEvent("intent", 0.0, {"intent": intent}))
        self._state = "streaming"
        self._call_info = info
        self._stream_sid = body["streamSid"]
        self._tracks = frozenset(body["tracks"])
        self._events.extend(events)

    def _on_media(self, msg: MediaMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        media = msg["media"]
        track = media["track"]
        if track not in self._tracks:
            _fail(f"media on track {track!r} that 'start' did not announce", 1007)
        chunk, timestamp = int(media["chunk"]), int(media["timestamp"])
        last_chunk, last_timestamp = self._chunk.get(track, -1), self._timestamp.get(track, 0)
        if chunk <= last_chunk:
            _fail(f"{track} chunk {chunk} does not follow chunk {last_chunk}", 1007)
        if timestamp < last_timestamp:
            _fail(f"{track} timestamp {timestamp} goes back from {last_timestamp}", 1007)
        try:
            payload = binascii.a2b_base64(media["payload"], strict_mode=True)
        except ValueError as exc:  # binascii.Error, and non-ASCII text
            _fail(f"media.payload is not valid base64: {exc}", 1007)
        if len(payload) > self._options.max_payload_bytes:
            _fail(f"media payload of {len(payload)} bytes exceeds the limit", 1009)
        self._chunk[track], self._timestamp[track] = chunk, timestamp
        self._position_ms = max(self._position_ms or 0.0, float(timestamp))
        opts = self._options
        speaker = opts.inbound_speaker if track == "inbound" else opts.outbound_speaker
        self._events.append(AudioChunk(speaker, payload, float(timestamp), "PCMU", SAMPLE_RATE))

    def _on_mark(self, msg: MarkMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        name = msg["mark"]["name"]
        self._events.append(Mark(name))
        if name.startswith(_CONTROL_PREFIX):
            control, sep, value = name[len(_CONTROL_PREFIX) :].partition("=")
            if control:
                data = {control: value} if sep else {}
                self._events.append(ControlEvent(control, self._position_ms or 0.0, data))

    def _on_dtmf(self, msg: DtmfMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        self._events.append(Dtmf(msg["dtmf"]["digit"], self._position_ms or 0.0))

    def _on_stop(self, msg: StopMessage) -> None:
        self._check_in_stream(msg["event"], msg["streamSid"])
        self._check_sequence(msg["sequenceNumber"])
        body = msg.get("stop")
        if body is not None and self._call_info and body["callSid"] != self._call_info.call_id:
            _fail(f"stop.callSid {body['callSid']!r:.40} differs from start", 1007)
        self._state = "stopped"
        self._events.append(CallEnded("stop", self._position_ms))

    # ------------------------------------------------------------------ checks

    def _check_in_stream(self, event: str, stream_sid: str) -> None:
        if self._state != "streaming":
            _fail(f"'{event}' before 'start'", 1002)
        if stream_sid != self._stream_sid:
            _fail(f"streamSid {stream_sid!r:.40} differs from start's", 1007)

    def _check_sequence(self, text: str) -> None:
        number = int(text)
        if number <= self._sequence:
            _fail(f"sequenceNumber {number} does not follow {self._sequence}", 1007)
        self._sequence = number


def _utf8_size_exceeds(text: str, limit: int) -> bool:
    # A character takes 1 to 4 UTF-8 bytes: encode only when the length cannot decide.
    if len(text) > limit:
        return True
    return 4 * len(text) > limit and len(text.encode("utf-8", "surrogatepass")) > limit


def _fail(message: str, close_code: int) -> NoReturn:
    raise TwilioProtocolError(message, close_code)


__all__ = ["TwilioOptions", "TwilioProtocolError", "TwilioStream"]
