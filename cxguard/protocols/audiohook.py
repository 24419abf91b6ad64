"""Genesys AudioHook v2 (server side) as a sans-I/O state machine.

:class:`AudioHookSession` follows the stream contract of :mod:`cxguard.protocols.base`: hand
it each WebSocket frame, send every string of :meth:`~AudioHookSession.data_to_send` back as a
text frame, drain :meth:`~AudioHookSession.events_received`. No sockets, no clocks, no logs.

Behaviour follows Genesys's reference server (``serversessionimpl.ts``):

- ``open`` → ``opened`` with one chosen medium (see :func:`select_media`); no usable PCMU
  8 kHz offer fails the session. An all-zero ``conversationId`` is a *connection probe*:
  it is answered (``opened``, later ``closed``) but yields no events at all.
- ``ping`` → ``pong``; ``update`` → ``updated``; ``close`` → ``closed``; ``error`` from the
  client becomes a ``client_error`` control event.
- ``paused``/``resumed``/``discarded`` keep the stream timeline: the position is the audio
  received plus every discarded span, and each span is a :class:`~cxguard.model.Gap`
  (``client_pause`` — e.g. a secure pause while a card is read —, ``server_pause`` after
  :meth:`~AudioHookSession.request_pause`, or ``discarded``). A span starts at our own
  position, which equals the message's ``start`` for a conforming client.
- Every client message must carry ``seq`` = previous + 1 and a ``serverseq`` no higher than
  ours; every message we send carries ``seq`` + 1 and ``clientseq`` = last client ``seq``.
- The caller's number and name (``participant.ani``/``aniName``) and caller-identity keys of
  ``customConfig`` are hashed with ``caller_id_key`` or dropped (:mod:`.caller_id`).

A violation is recorded, not raised: ``disconnect`` (reason ``error``, or ``unauthorized``
for a wrong organization) is queued with the reason as ``info``, the call ends with
``protocol_error``, and :attr:`~AudioHookSession.error` is an :class:`AudioHookProtocolError`
(``close_code`` from :class:`~cxguard.protocols.base.CloseCode`, ``code`` from
:class:`~cxguard.protocols.audiohook_messages.AudioHookCode`): 400 malformed (1007 bad JSON,
lone surrogates or odd stereo frame, 1002 otherwise), 401 organization mismatch (1008), 409
audio before ``opened`` or while paused (1002), 413 frame too big (1009), 415 no usable medium
(1003). After that the session only answers a ``close`` with ``closed`` — the protocol's way to
end — and ignores everything else: :meth:`~AudioHookSession.awaits_peer` is True until then,
and the transport waits for it a bounded moment before it closes with that close code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NoReturn, assert_never

from cxguard.errors import AudioHookProtocolError, ConfigError, ProtocolError
from cxguard.model import AudioChunk, CallInfo, CallStarted, ControlEvent, Gap, Speaker
from cxguard.protocols import audiohook_messages as wire
from cxguard.protocols.audiohook_messages import (
    NULL_UUID,
    AudioHookCode,
    ClientMessage,
    DisconnectReason,
    MediaChannel,
    OpenMessage,
    select_media,
)
from cxguard.protocols.base import Close, CloseCode, MediaStream, utf8_size_exceeds
from cxguard.protocols.caller_id import protect, protect_parameters
from cxguard.protocols.controls import control_event

_US_PER_SAMPLE = 1_000_000 // wire.SAMPLE_RATE  # 125 µs: positions stay exact integers
_TRUE_VALUES = frozenset({"true", "1", "yes"})
State = Literal["preparing", "active", "paused", "failed", "unauthorized", "closed"]
SHUTDOWN_INFO = "server shutting down"
"""``disconnect`` info of a drain (reason ``completed``: the session's audio was judged)."""


@dataclass(frozen=True)
class AudioHookOptions:
    external_speaker: Speaker = "customer"
    """Who is on Genesys's ``external`` channel (the caller)."""
    internal_speaker: Speaker = "agent"
    tenant: str = "default"
    """Set by the runtime from the authenticated credential."""
    max_message_bytes: int = 64 * 1024
    """For text and binary frames alike (the reference server allows 64 KiB of text)."""
    mono_preference: Speaker = "agent"
    """Whose channel to take when only mono is offered and both channels are."""
    supported_languages: tuple[str, ...] = ()
    """Sent in ``opened`` when ``open`` asks (``supportedLanguages: true``)."""
    caller_id_key: bytes | None = None
    """Key for hashing the caller's number and name; None drops them (see ``caller_id``)."""

    def __post_init__(self) -> None:
        if self.external_speaker == self.internal_speaker:
            raise ConfigError("external_speaker and internal_speaker must differ")
        if self.max_message_bytes <= 0:
            raise ConfigError("max_message_bytes must be positive")


class AudioHookSession(MediaStream):
    """One AudioHook WebSocket connection (one session, at most one call)."""

    def __init__(
        self,
        options: AudioHookOptions = AudioHookOptions(),
        *,
        organization_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        """``organization_id``/``session_id``: the signed ``Audiohook-Organization-Id`` and
        ``Audiohook-Session-Id`` headers; when given, messages must match them."""
        super().__init__()
        self._options = options
        self._organization_id = organization_id
        self._id = session_id or NULL_UUID
        self._state: State = "preparing"
        self._seq = 0
        self._clientseq = 0
        self._position_us = 0
        self._channels: tuple[MediaChannel, ...] = ()
        self._probe = False
        self._conversation_id: str | None = None
        self._start_paused = False
        self._pause_requested = False
        self._pause_reason = "client_pause"
        self._disconnect_sent = False
        self._no_media = False
        self._sample_bytes = 1

    # ------------------------------------------------------------------ public surface

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        """True once ``closed`` was sent or the connection ended (:meth:`receive_eof`)."""
        return self._state == "closed"

    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    @property
    def session_id(self) -> str:
        return self._id

    @property
    def is_probe(self) -> bool:
        return self._probe

    @property
    def position_ms(self) -> float:
        """Stream position: audio received plus discarded/paused spans."""
        return self._position_us / 1000

    def awaits_peer(self) -> bool:
        """After our ``disconnect`` (or a failure), until the client's ``close``."""
        return self._disconnect_sent and self._state != "closed"

    def request_pause(self) -> None:
        """Ask Genesys to stop sending audio (before ``open``: start paused)."""
        self._pause_requested = True
        if self._state == "preparing":
            self._start_paused = True
        elif self._state in ("active", "paused"):
            self._send("pause", {})

    def request_resume(self) -> None:
        self._pause_requested = False
        if self._state == "preparing":
            self._start_paused = False
        elif self._state in ("active", "paused"):
            self._send("resume", {})

    def disconnect(self, reason: DisconnectReason = "completed", info: str | None = None) -> None:
        """Ask Genesys to end the session; it answers with ``close``.

        ``unauthorized`` and ``error`` stop the call at once (its audio is ignored)."""
        if self._state not in ("preparing", "active", "paused") or self._disconnect_sent:
            return
        self._disconnect_sent = True
        self._send("disconnect", {"reason": reason} | ({"info": info} if info else {}))
        if reason == "completed":
            self._finish(Close(CloseCode.NORMAL_CLOSURE, "disconnect"))
            return
        self._state = "unauthorized" if reason == "unauthorized" else "failed"
        self._end_call(reason)
        code = CloseCode.POLICY_VIOLATION if reason == "unauthorized" else CloseCode.INTERNAL_ERROR
        self._finish(Close(code, reason))

    def send_event(self, entities: list[dict[str, Any]]) -> None:
        """An ``event`` message (transcripts, verdicts) while the session is open; dropped
        silently before ``opened`` and after a ``disconnect`` (there is no one to tell)."""
        if self._state in ("active", "paused") and not self._disconnect_sent and entities:
            self._send("event", {"entities": entities})

    def channel_id(self, speaker: Speaker) -> int | None:
        """The index of ``speaker``'s channel in the opened medium (None: not carried)."""
        for index, channel in enumerate(self._channels):
            if self._speaker(channel) == speaker:
                return index
        return None

    # ------------------------------------------------------------------ the contract's hooks

    def _on_going_away(self) -> None:
        if self._state not in ("active", "paused") or self._disconnect_sent:
            super()._on_going_away()
            return
        # The call was judged up to here; Genesys answers with ``close`` (reason
        # ``disconnect``), which we answer with ``closed`` as at any other end.
        self._end_call("shutdown")
        self.disconnect("completed", SHUTDOWN_INFO)

    def _on_text(self, text: str) -> None:
        if self._state in ("failed", "unauthorized"):
            self._receive_after_failure(text)
            return
        if utf8_size_exceeds(text, self._options.max_message_bytes):
            raise AudioHookProtocolError(
                "text message too large", CloseCode.MESSAGE_TOO_BIG, AudioHookCode.PAYLOAD_TOO_LARGE
            )
        message = wire.parse_client_message(text)
        self._check_sequence(message)
        self._dispatch(message)

    def _on_bytes(self, data: bytes) -> None:
        if self._state in ("failed", "unauthorized") or (self._probe and not self._no_media):
            return
        if self._no_media:
            raise AudioHookProtocolError(
                "audio received but no medium was opened",
                CloseCode.PROTOCOL_ERROR,
                AudioHookCode.CONFLICT,
            )
        self._on_audio(data)

    def _on_eof(self) -> None:
        self._state = "closed"

    def _on_failure(self, error: ProtocolError) -> None:
        unauthorized = getattr(error, "code", None) == AudioHookCode.UNAUTHORIZED
        reason: DisconnectReason = "unauthorized" if unauthorized else "error"
        if self._state != "closed" and not self._disconnect_sent:
            self._send("disconnect", {"reason": reason, "info": str(error)})
            self._disconnect_sent = True
        if self._state != "closed":
            self._state = "unauthorized" if unauthorized else "failed"
        self._end_call("unauthorized" if unauthorized else "protocol_error")

    def _position_ms(self) -> float:
        return self.position_ms

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message: ClientMessage) -> None:
        position_us = wire.parse_duration_us(message["position"])
        match message["type"]:
            case "open":
                self._on_open(message)
            case "ping":
                self._send("pong", {})
            case "update":
                if self._state in ("active", "paused"):
                    language = message["parameters"]["language"]
                    self._send("updated", {})
                    self._control("language", {"language": language})
            case "paused":
                if self._state == "active":
                    self._state = "paused"
                    self._pause_reason = "server_pause" if self._pause_requested else "client_pause"
                    initiator = "server" if self._pause_requested else "client"
                    self._control("paused", {"initiator": initiator})
            case "resumed":
                if self._state in ("active", "paused"):
                    reason = self._pause_reason if self._state == "paused" else "client_pause"
                    self._state = "active"
                    self._pause_requested = False
                    discarded = self._skip(message["parameters"]["discarded"], reason)
                    self._control("resumed", {"discarded_ms": f"{Decimal(discarded) / 1000:f}"})
            case "discarded":
                if self._state in ("active", "paused"):
                    self._skip(message["parameters"]["discarded"], "discarded")
            case "error":
                params = message["parameters"]
                data = {"code": str(params["code"]), "message": params["message"][:500]}
                self._control("client_error", data)
            case "close":
                self._on_close(message["parameters"]["reason"], position_us)
            case _:
                assert_never(message["type"])

    def _on_open(self, message: OpenMessage) -> None:
        if self._state != "preparing":
            return  # the reference server ignores a second open too
        params = message["parameters"]
        org = params["organizationId"]
        if self._organization_id is not None and org.lower() != self._organization_id.lower():
            raise AudioHookProtocolError(
                "organizationId differs from the Audiohook-Organization-Id header",
                CloseCode.POLICY_VIOLATION,
                AudioHookCode.UNAUTHORIZED,
            )
        opts = self._options
        first: MediaChannel = (
            "external" if opts.external_speaker == opts.mono_preference else "internal"
        )
        second: MediaChannel = "internal" if first == "external" else "external"
        medium = select_media(params["media"], (first, second))
        if medium is None and params["media"]:
            raise AudioHookProtocolError(
                "no PCMU or L16 8000 Hz audio among the offered media",
                CloseCode.UNSUPPORTED_DATA,
                AudioHookCode.UNSUPPORTED_MEDIA,
            )
        media = [medium] if medium is not None else []
        opened: dict[str, Any] = {"media": media, "startPaused": self._start_paused}
        if params.get("supportedLanguages") is True:
            opened["supportedLanguages"] = list(opts.supported_languages)
        self._send("opened", opened)
        self._state = "active"
        self._conversation_id = params["conversationId"]
        self._probe = params["conversationId"] == NULL_UUID
        if medium is None:
            # An empty offer is answered with an empty medium (as the reference server
            # does): no audio will come, so there is no call to judge.
            self._no_media = True
            return
        self._channels = tuple(_as_channel(c) for c in medium["channels"])
        self._sample_bytes = 2 if medium["format"] == "L16" else 1
        if self._probe:
            return
        encoding: Literal["PCMU", "L16"] = "L16" if self._sample_bytes == 2 else "PCMU"
        self._start_call(CallStarted(self._call_info(message), encoding, wire.SAMPLE_RATE))
        config = params.get("customConfig", {})
        if str(config.get("authenticated", "")).strip().lower() in _TRUE_VALUES:
            self._events.append(control_event("authenticated", None, self.position_ms))
        if str(config.get("intent", "")).strip():
            self._events.append(control_event("intent", str(config["intent"]), self.position_ms))

    def _call_info(self, message: OpenMessage) -> CallInfo:
        params = message["parameters"]
        key = self._options.caller_id_key
        config = {k: _as_text(v) for k, v in params.get("customConfig", {}).items()}
        parameters = protect_parameters(config, key)
        # Protocol facts override customConfig keys of the same name.
        participant = params["participant"]
        for name in ("participant.ani", "participant.aniName"):
            parameters.pop(name, None)
        parameters["participant.id"] = participant["id"]
        parameters["participant.dnis"] = participant["dnis"]
        for field in ("ani", "aniName"):
            if (hashed := protect(participant[field], key)) is not None:
                parameters[f"participant.{field}"] = hashed
        parameters["organizationId"] = params["organizationId"]
        parameters["channels"] = ",".join(self._channels)
        if continued := params.get("continuedSessions"):
            # Evidence of which sessions the call was carried by; the call id (the
            # conversation) is what joins them, so the numbering and state go on.
            parameters["continued_sessions"] = ",".join(c["id"] for c in continued)
        if "language" in params:
            parameters["language"] = params["language"]
        return CallInfo(
            call_id=params["conversationId"],
            tenant=self._options.tenant,
            source="audiohook",
            stream_id=message["id"],
            account_sid=params["organizationId"],
            parameters=parameters,
        )

    def _on_close(self, reason: str, position_us: int) -> None:
        if self._state == "paused":
            # The call ends inside a pause: the rest of the stream is one gap.
            end_us = max(self._position_us, position_us)
            self._gap(self._position_us, end_us, self._pause_reason)
            self._position_us = end_us
        self._send("closed", {})
        self._end_call(reason)
        self._state = "closed"
        self._finish(Close(CloseCode.NORMAL_CLOSURE, "closed"))

    def _on_audio(self, data: bytes) -> None:
        if len(data) > self._options.max_message_bytes:
            raise AudioHookProtocolError(
                "binary message too large",
                CloseCode.MESSAGE_TOO_BIG,
                AudioHookCode.PAYLOAD_TOO_LARGE,
            )
        if self._state == "preparing":
            raise AudioHookProtocolError(
                "audio received before 'opened'", CloseCode.PROTOCOL_ERROR, AudioHookCode.CONFLICT
            )
        if self._state == "paused":
            raise AudioHookProtocolError(
                "audio received while paused", CloseCode.PROTOCOL_ERROR, AudioHookCode.CONFLICT
            )
        width, size = len(self._channels), self._sample_bytes
        if len(data) % (width * size):
            raise AudioHookProtocolError(
                "stereo audio frame of odd length" if size == 1 else "L16 frame of partial samples",
                CloseCode.INVALID_PAYLOAD,
                AudioHookCode.BAD_REQUEST,
            )
        if not data:
            return
        start_ms = self.position_ms
        encoding: Literal["PCMU", "L16"] = "L16" if size == 2 else "PCMU"
        for index, channel in enumerate(self._channels):
            payload = _channel_bytes(data, index, width, size)
            self._events.append(
                AudioChunk(self._speaker(channel), payload, start_ms, encoding, wire.SAMPLE_RATE)
            )
        self._position_us += len(data) // (width * size) * _US_PER_SAMPLE

    # ------------------------------------------------------------------ helpers

    def _check_sequence(self, message: ClientMessage) -> None:
        if message["seq"] != self._clientseq + 1:
            _sequence_error(f"seq {message['seq']} does not follow {self._clientseq}")
        self._clientseq = message["seq"]
        if message["serverseq"] > self._seq:
            _sequence_error(f"serverseq {message['serverseq']} is beyond our seq {self._seq}")
        if self._id == NULL_UUID:
            self._id = message["id"]  # no session header was given: the first message names it
        elif message["id"].lower() != self._id.lower():
            _sequence_error("session id differs from the session's")

    def _receive_after_failure(self, text: str) -> None:
        # After a disconnect only the client's close transaction matters.
        try:
            message = wire.parse_client_message(text)
        except AudioHookProtocolError:
            return
        self._clientseq = max(self._clientseq, message["seq"])
        if message["type"] == "close":
            self._send("closed", {})
            self._state = "closed"

    def _skip(self, discarded: str, reason: str) -> int:
        span_us = wire.parse_duration_us(discarded)
        self._gap(self._position_us, self._position_us + span_us, reason)
        self._position_us += span_us
        return span_us

    def _gap(self, start_us: int, end_us: int, reason: str) -> None:
        if self._call_open and end_us > start_us:
            self._events.append(Gap(start_us / 1000, end_us / 1000, reason))

    def _control(self, name: str, data: dict[str, str]) -> None:
        if self._call_open:
            self._events.append(ControlEvent(name, self.position_ms, data))

    def _speaker(self, channel: MediaChannel) -> Speaker:
        opts = self._options
        return opts.external_speaker if channel == "external" else opts.internal_speaker

    def _send(self, kind: wire.ServerMessageType, parameters: dict[str, Any]) -> None:
        self._seq += 1
        self._outbox.append(
            wire.server_message(kind, self._id, self._seq, self._clientseq, parameters)
        )


def _channel_bytes(data: bytes, index: int, width: int, size: int) -> bytes:
    """Channel ``index`` of ``width`` interleaved channels of ``size``-byte samples."""
    if width == 1:
        return bytes(data)
    if size == 1:
        return bytes(data[index::width])
    step = width * size
    out = bytearray(len(data) // width)
    for byte in range(size):
        out[byte::size] = data[index * size + byte :: step]
    return bytes(out)


def _sequence_error(message: str) -> NoReturn:
    raise AudioHookProtocolError(message, CloseCode.PROTOCOL_ERROR, AudioHookCode.BAD_REQUEST)


def _as_channel(name: str) -> MediaChannel:
    return "external" if name == "external" else "internal"


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"))
    except (ValueError, RecursionError):  # parsed from JSON, so only absurd nesting gets here
        return ""


__all__ = ["AudioHookOptions", "AudioHookProtocolError", "AudioHookSession", "State"]
