"""Genesys's side of an AudioHook v2 session: the messages Genesys sends, numbered as it does.

The builders write one client message each with any ``seq``/``serverseq`` (tests use them to
write broken streams); :class:`AudioHookClient` is the one place that numbers them: ``seq``
counts our messages from 1, ``serverseq`` echoes the last server ``seq`` seen, ``position``
is the audio sent plus every discarded span. It answers the server as Genesys does
(``pause`` → ``paused``, ``resume`` → ``resumed``, ``disconnect`` → ``close``) unless told not
to, and records every server message that breaks the protocol in :attr:`problems`.
Stereo audio is interleaved one byte per channel in the negotiated order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, get_args

from cxguard.protocols.audiohook_messages import (
    NULL_UUID,
    PROTOCOL_VERSION,
    ClientMessageType,
    CloseReason,
    MediaChannel,
    MediaParameter,
    Participant,
    ServerMessageType,
    format_duration_ms,
    media_offer,
)

FRAME_MS: Final = 100
DEFAULT_ORGANIZATION: Final = "d7934305-0972-4844-938e-9060eef73d05"
_SERVER_TYPES: Final = frozenset(get_args(ServerMessageType))
ClientState = Literal["idle", "opening", "open", "paused", "closing", "closed"]


DEFAULT_OFFER: Final[tuple[MediaParameter, ...]] = (
    media_offer(("external", "internal")),
    media_offer(("external",)),
    media_offer(("internal",)),
)
"""What Genesys offers for a two-party call, in its order."""
L16_OFFER: Final[tuple[MediaParameter, ...]] = tuple(
    media_offer(m["channels"], "L16")  # type: ignore[arg-type]
    for m in DEFAULT_OFFER
)
"""The same offer in 16-bit linear PCM (``AudioHookClient(encoding="L16")``)."""


def client_message(
    kind: ClientMessageType | str,
    session_id: str,
    seq: int,
    serverseq: int,
    position_ms: float,
    parameters: Mapping[str, Any],
) -> str:
    message = {
        "version": PROTOCOL_VERSION,
        "id": session_id,
        "type": kind,
        "seq": seq,
        "serverseq": serverseq,
        "position": format_duration_ms(position_ms),
        "parameters": dict(parameters),
    }
    return json.dumps(message, separators=(",", ":"))


def open_message(
    session_id: str,
    seq: int = 1,
    *,
    organization_id: str,
    conversation_id: str,
    participant: Participant | None = None,
    media: Sequence[MediaParameter] = DEFAULT_OFFER,
    language: str | None = None,
    custom_config: Mapping[str, Any] | None = None,
    supported_languages: bool | None = None,
    continued_sessions: Sequence[Mapping[str, Any]] | None = None,
    serverseq: int = 0,
    position_ms: float = 0.0,
) -> str:
    params: dict[str, Any] = {
        "organizationId": organization_id,
        "conversationId": conversation_id,
        "participant": participant or {"id": NULL_UUID, "ani": "", "aniName": "", "dnis": ""},
        "media": list(media),
    }
    if language is not None:
        params["language"] = language
    if custom_config is not None:
        params["customConfig"] = dict(custom_config)
    if supported_languages is not None:
        params["supportedLanguages"] = supported_languages
    if continued_sessions is not None:
        shape = isinstance(continued_sessions, list | tuple)
        params["continuedSessions"] = list(continued_sessions) if shape else continued_sessions
    return client_message("open", session_id, seq, serverseq, position_ms, params)


def ping_message(
    session_id: str,
    seq: int,
    *,
    serverseq: int = 0,
    position_ms: float = 0.0,
    rtt_ms: float | None = None,
) -> str:
    params = {} if rtt_ms is None else {"rtt": format_duration_ms(rtt_ms)}
    return client_message("ping", session_id, seq, serverseq, position_ms, params)


def paused_message(
    session_id: str, seq: int, *, serverseq: int = 0, position_ms: float = 0.0
) -> str:
    return client_message("paused", session_id, seq, serverseq, position_ms, {})


def resumed_message(
    session_id: str,
    seq: int,
    *,
    start_ms: float,
    discarded_ms: float,
    serverseq: int = 0,
    position_ms: float | None = None,
) -> str:
    """``position_ms`` defaults to where audio goes on: ``start_ms + discarded_ms``."""
    return _gap("resumed", session_id, seq, start_ms, discarded_ms, serverseq, position_ms)


def discarded_message(
    session_id: str,
    seq: int,
    *,
    start_ms: float,
    discarded_ms: float,
    serverseq: int = 0,
    position_ms: float | None = None,
) -> str:
    """``position_ms`` defaults to where audio goes on: ``start_ms + discarded_ms``."""
    return _gap("discarded", session_id, seq, start_ms, discarded_ms, serverseq, position_ms)


def _gap(
    kind: Literal["resumed", "discarded"],
    session_id: str,
    seq: int,
    start_ms: float,
    discarded_ms: float,
    serverseq: int,
    position_ms: float | None,
) -> str:
    params = {"start": format_duration_ms(start_ms), "discarded": format_duration_ms(discarded_ms)}
    position = start_ms + discarded_ms if position_ms is None else position_ms
    return client_message(kind, session_id, seq, serverseq, position, params)


def update_message(
    session_id: str, seq: int, *, language: str, serverseq: int = 0, position_ms: float = 0.0
) -> str:
    return client_message("update", session_id, seq, serverseq, position_ms, {"language": language})


def close_message(
    session_id: str,
    seq: int,
    *,
    reason: CloseReason = "end",
    serverseq: int = 0,
    position_ms: float = 0.0,
) -> str:
    return client_message("close", session_id, seq, serverseq, position_ms, {"reason": reason})


def error_message(
    session_id: str,
    seq: int,
    *,
    code: int,
    message: str,
    retry_after_ms: float | None = None,
    serverseq: int = 0,
    position_ms: float = 0.0,
) -> str:
    params: dict[str, Any] = {"code": code, "message": message}
    if retry_after_ms is not None:
        params["retryAfter"] = format_duration_ms(retry_after_ms)
    return client_message("error", session_id, seq, serverseq, position_ms, params)


def interleave_stereo(external: bytes, internal: bytes, sample_bytes: int = 1) -> bytes:
    """One stereo frame: ``external[0] internal[0] external[1] …`` (samples of
    ``sample_bytes`` bytes: 1 for PCMU, 2 for L16)."""
    if len(external) != len(internal):
        raise ValueError(f"channel lengths differ: {len(external)} != {len(internal)}")
    frame = bytearray(2 * len(external))
    step = 2 * sample_bytes
    for byte in range(sample_bytes):
        frame[byte::step] = external[byte::sample_bytes]
        frame[sample_bytes + byte :: step] = internal[byte::sample_bytes]
    return bytes(frame)


class AudioHookClient:
    """Genesys Cloud's side of one AudioHook session."""

    frame_ms = FRAME_MS
    encoding = "PCMU"
    sample_rate = 8000

    def __init__(
        self,
        *,
        session_id: str | None = None,
        organization_id: str = DEFAULT_ORGANIZATION,
        conversation_id: str | None = None,
        participant: Participant | None = None,
        media: Sequence[MediaParameter] = DEFAULT_OFFER,
        language: str | None = None,
        custom_config: Mapping[str, Any] | None = None,
        supported_languages: bool | None = None,
        continued_sessions: Sequence[Mapping[str, Any]] | None = None,
        external_speaker: str = "customer",
        answer_server: bool = True,
        encoding: str = "PCMU",
    ) -> None:
        """``answer_server=False``: do not answer ``pause``/``resume``/``disconnect`` (tests
        that drive each message themselves). ``continued_sessions``: the sessions of this
        conversation this one continues (each one's :meth:`continuation`), as Genesys sends
        them when it reconnects. ``encoding="L16"``: offer and send 16-bit linear PCM
        (``send_audio`` then takes L16 frames)."""
        self.encoding = encoding
        if encoding == "L16" and media is DEFAULT_OFFER:
            media = L16_OFFER
        self.session_id = session_id or str(uuid.uuid4())
        self.organization_id = organization_id
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self._participant = participant
        self._media = tuple(media)
        self._language = language
        self._custom_config = dict(custom_config) if custom_config is not None else None
        self._supported_languages = supported_languages
        self._continued = continued_sessions  # as given: tests send malformed ones too
        self._external_is_customer = external_speaker == "customer"
        self._answer = answer_server
        self.state: ClientState = "idle"
        self.seq = 0
        self.serverseq = 0
        self._clientseq_seen = 0
        self.position_ms = 0.0
        self._pause_start_ms: float | None = None
        self.channels: tuple[MediaChannel, ...] = ()
        self.messages_received: list[dict[str, Any]] = []
        self._problems: list[str] = []
        self._outbox: list[str | bytes] = []

    @property
    def call_id(self) -> str:
        return self.conversation_id

    @property
    def problems(self) -> list[str]:
        return self._problems

    # ------------------------------------------------------------------ what Genesys sends

    def start(self) -> None:
        self.open()

    def open(self) -> None:
        self.state = "opening"
        self._outbox.append(
            open_message(
                self.session_id,
                self._next(),
                organization_id=self.organization_id,
                conversation_id=self.conversation_id,
                participant=self._participant,
                media=self._media,
                language=self._language,
                custom_config=self._custom_config,
                supported_languages=self._supported_languages,
                continued_sessions=self._continued,
                serverseq=self.serverseq,
                position_ms=self.position_ms,
            )
        )

    def ready(self) -> bool:
        return self.state in ("open", "paused")

    def continuation(self) -> dict[str, Any]:
        """This session as a later session's ``continuedSessions`` entry names it."""
        return {"id": self.session_id, "serverseq": self.serverseq, "clientseq": self.seq}

    def assume_opened(
        self, channels: tuple[MediaChannel, ...] = ("external", "internal"), serverseq: int = 1
    ) -> None:
        """Play on as if ``opened`` (seq ``serverseq``) had chosen ``channels``: a fuzzer
        pipelines a whole connection without waiting for the server."""
        self.channels = channels
        self.serverseq = serverseq
        self.state = "open"

    def send_audio(self, customer: bytes, agent: bytes) -> None:
        """One frame; while paused it is not sent but counted, as Genesys counts it."""
        if len(customer) != len(agent):
            raise ValueError(f"channel lengths differ: {len(customer)} != {len(agent)}")
        external, internal = (customer, agent) if self._external_is_customer else (agent, customer)
        width = 2 if self.encoding == "L16" else 1
        duration_ms = len(customer) / width * 1000 / 8000
        if self.state in ("closing", "closed"):
            return  # Genesys sends no audio after its ``close``
        if self.state == "paused":
            self.position_ms += duration_ms
            return
        if self.channels == ("external", "internal"):
            frame = interleave_stereo(external, internal, width)
        elif self.channels == ("internal", "external"):
            frame = interleave_stereo(internal, external, width)
        else:
            frame = external if self.channels == ("external",) else internal
        self.send_frame(frame, duration_ms)

    def send_frame(self, frame: bytes, duration_ms: float) -> None:
        """A raw binary frame (any content), moving the position by ``duration_ms``."""
        self._outbox.append(frame)
        self.position_ms += duration_ms

    def ping(self, rtt_ms: float | None = None) -> None:
        self._message(ping_message, rtt_ms=rtt_ms)

    def pause(self) -> None:
        """A secure pause: Genesys stops sending audio and says so."""
        self._message(paused_message)
        self._pause_start_ms = self.position_ms
        self.state = "paused"

    def resume(self, discarded_ms: float | None = None) -> None:
        """End a pause; ``discarded_ms`` defaults to the audio not sent since it began."""
        start = self._pause_start_ms if self._pause_start_ms is not None else self.position_ms
        if discarded_ms is None:
            discarded_ms = self.position_ms - start
        self.position_ms = start + discarded_ms
        self._message(resumed_message, start_ms=start, discarded_ms=discarded_ms)
        self._pause_start_ms = None
        self.state = "open"

    def discard(self, discarded_ms: float) -> None:
        start = self.position_ms
        self.position_ms += discarded_ms
        self._message(discarded_message, start_ms=start, discarded_ms=discarded_ms)

    def update(self, language: str) -> None:
        self._message(update_message, language=language)

    def error(self, code: int, message: str, retry_after_ms: float | None = None) -> None:
        self._message(error_message, code=code, message=message, retry_after_ms=retry_after_ms)

    def close(self, reason: CloseReason = "end") -> None:
        self._message(close_message, reason=reason)
        self.state = "closing"

    def finish(self) -> None:
        if self.state not in ("closing", "closed"):
            self.close("end")

    def finished(self) -> bool:
        return self.state == "closed"

    def send(self, kind: str, parameters: Mapping[str, Any], **fields: Any) -> None:
        """Any message, of any type; ``seq``/``serverseq``/``position_ms``/``session_id`` may
        be forced (tests and fuzzers write broken streams with it)."""
        seq = fields.pop("seq", None)
        self._outbox.append(
            client_message(
                kind,
                fields.pop("session_id", self.session_id),
                self._next() if seq is None else seq,
                fields.pop("serverseq", self.serverseq),
                fields.pop("position_ms", self.position_ms),
                parameters,
            )
        )

    def data_to_send(self) -> list[str | bytes]:
        frames, self._outbox = self._outbox, []
        return frames

    # ------------------------------------------------------------------ what the server sends

    def receive_bytes(self, data: bytes) -> None:
        self._problems.append("server sent a binary frame")

    def receive_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._problems.append("server message is not JSON")
            return
        if not isinstance(message, dict):
            self._problems.append("server message is not a JSON object")
            return
        self.messages_received.append(message)
        if not self._well_formed(message):
            return
        self.serverseq = message["seq"]
        self._clientseq_seen = message["clientseq"]
        self._react(message["type"], message["parameters"])

    def _well_formed(self, message: dict[str, Any]) -> bool:
        problems = []
        if message.get("version") != PROTOCOL_VERSION:
            problems.append("version is not '2'")
        if str(message.get("id", "")).lower() != self.session_id.lower():
            problems.append("id is not the session id")
        if message.get("type") not in _SERVER_TYPES:
            problems.append(f"unknown type {message.get('type')!r:.40}")
        seq, clientseq = message.get("seq"), message.get("clientseq")
        if type(seq) is not int or seq != self.serverseq + 1:
            problems.append(f"seq {seq!r:.20} does not follow {self.serverseq}")
        if type(clientseq) is not int or not self._clientseq_seen <= clientseq <= self.seq:
            problems.append(f"clientseq {clientseq!r:.20} is not between the last and our seq")
        if not isinstance(message.get("parameters"), dict):
            problems.append("parameters is not an object")
        self._problems += [f"{message.get('type')!s:.20}: {p}" for p in problems]
        return not problems

    def _react(self, kind: str, parameters: dict[str, Any]) -> None:
        if kind == "opened":
            media = parameters.get("media")
            chosen = media[0].get("channels") if isinstance(media, list) and media else None
            if not isinstance(chosen, list) or not chosen:
                self._problems.append("opened: no medium chosen")
                return
            self.channels = tuple("external" if c == "external" else "internal" for c in chosen)
            self.state = "paused" if parameters.get("startPaused") is True else "open"
            if self.state == "paused":
                self._pause_start_ms = self.position_ms
        elif kind == "closed":
            self.state = "closed"
        elif not self._answer:
            return
        elif kind == "pause" and self.state == "open":
            self.pause()
        elif kind == "resume" and self.state == "paused":
            self.resume()
        elif kind == "disconnect" and self.state not in ("closing", "closed"):
            self.close("disconnect")

    # ------------------------------------------------------------------ numbering

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _message(self, builder: Callable[..., str], **kwargs: Any) -> None:
        self._outbox.append(
            builder(
                self.session_id,
                self._next(),
                serverseq=self.serverseq,
                position_ms=self.position_ms,
                **kwargs,
            )
        )
