"""The one stream contract every media-stream protocol core follows (sans-I/O).

Modelled on the ``websockets`` library's ``Protocol``: the transport hands each received
WebSocket message to :meth:`MediaStream.receive_text` / :meth:`~MediaStream.receive_bytes`,
and the end of the connection to :meth:`~MediaStream.receive_eof`; after each call it drains

- :meth:`~MediaStream.events_received` — model events for the call pipeline;
- :meth:`~MediaStream.data_to_send` — text frames to send back, in order;
- :meth:`~MediaStream.close_expected` — the stream is over: once :meth:`~MediaStream.awaits_peer`
  is False (or a short grace has passed) close the connection with :attr:`~MediaStream.close`.

:meth:`~MediaStream.going_away` is the server's own end (a drain on SIGTERM), sent the same way.

A peer's violation is *recorded*, never raised: the protocol's own goodbye (an AudioHook
``disconnect``) is queued, the call ends with ``protocol_error``, the state moves on, and the
error is available as :attr:`~MediaStream.error`, a :class:`~cxguard.errors.ProtocolError`
whose ``close_code`` is one of :class:`CloseCode`. A bug in the core itself is recorded the
same way with :attr:`CloseCode.INTERNAL_ERROR` and the original exception as ``__cause__``,
so one broken stream never takes the transport down. No ``receive_*`` method raises.
Input after the close has been decided is ignored, except what :meth:`awaits_peer` waits for.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cxguard.errors import ProtocolError
from cxguard.model import CallEnded, CallInfo, CallStarted, ProtocolEvent

_MAX_REASON_BYTES: Final = 123  # RFC 6455 §5.5: a control frame's payload is ≤ 125 bytes


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 §7.4.1) that the protocol cores use."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    """A message out of order or in the wrong state (``media`` before ``start``)."""
    UNSUPPORTED_DATA = 1003
    """Data we cannot interpret: binary where only text is defined, an unknown event."""
    INVALID_PAYLOAD = 1007
    """Bad JSON, wrong types, bad base64, lone surrogates, counters out of order."""
    POLICY_VIOLATION = 1008
    """The stream claims an identity its signed upgrade did not prove."""
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    """A bug in cxguard, not the peer's fault."""


@dataclass(frozen=True)
class Close:
    """The close frame to send once the stream is over."""

    code: CloseCode
    reason: str = ""

    def __post_init__(self) -> None:
        encoded = self.reason.encode("utf-8", "replace")
        if len(encoded) > _MAX_REASON_BYTES:
            short = encoded[:_MAX_REASON_BYTES].decode("utf-8", "ignore")
            object.__setattr__(self, "reason", short)


class MediaStream(ABC):
    """Base of the protocol cores: the shared queues, the close decision and error capture.

    Subclasses implement :meth:`_on_text`, :meth:`_on_bytes` (raising
    :class:`~cxguard.errors.ProtocolError` for a peer's violation), and may override
    :meth:`_on_eof`, :meth:`_on_failure` and :meth:`awaits_peer`."""

    def __init__(self) -> None:
        self._events: list[ProtocolEvent] = []
        self._outbox: list[str] = []
        self._close: Close | None = None
        self._error: ProtocolError | None = None
        self._eof = False
        self._call: CallInfo | None = None
        self._call_open = False

    # ------------------------------------------------------------------ the contract

    def receive_text(self, text: str) -> None:
        if self._accepts_input():
            self._guard(lambda: self._on_text(text))

    def receive_bytes(self, data: bytes) -> None:
        if self._accepts_input():
            self._guard(lambda: self._on_bytes(data))

    def receive_eof(self) -> None:
        """The connection is gone: a call still open ends with ``connection_lost``."""
        if self._eof:
            return
        self._eof = True
        self._guard(self._on_eof)
        self._end_call("connection_lost")
        if self._close is None:
            self._close = Close(CloseCode.NORMAL_CLOSURE, "connection closed")

    def events_received(self) -> list[ProtocolEvent]:
        """Return and forget the events parsed since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        """Return and forget the text frames to send back, in order."""
        frames, self._outbox = self._outbox, []
        return frames

    def close_expected(self) -> bool:
        """True once the stream is over (ended normally, failed, or the peer went away)."""
        return self._close is not None

    def awaits_peer(self) -> bool:
        """True while the protocol still waits for the peer's side of a closing handshake
        (AudioHook's ``close`` after our ``disconnect``); the transport bounds that wait."""
        return False

    def going_away(self) -> None:
        """The server is shutting down (its calls already judged): end the stream the
        protocol's way. A call still open ends with ``shutdown``; the default closes with
        1001 at once, AudioHook sends ``disconnect`` and waits for the client's ``close``."""
        self._guard(self._on_going_away)

    @property
    def close(self) -> Close | None:
        """The close frame to send, once :meth:`close_expected`."""
        return self._close

    @property
    def error(self) -> ProtocolError | None:
        """The first violation (or internal error) that ended the stream; None if none."""
        return self._error

    @property
    def call_info(self) -> CallInfo | None:
        """The call this stream carries, once it started."""
        return self._call

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _on_text(self, text: str) -> None: ...

    @abstractmethod
    def _on_bytes(self, data: bytes) -> None: ...

    def _on_eof(self) -> None:  # noqa: B027 - a hook; most protocols need nothing here
        """Hook: the connection ended (before the base ends the call)."""

    def _on_going_away(self) -> None:
        self._end_call("shutdown")
        self._finish(Close(CloseCode.GOING_AWAY, "server shutting down"))

    def _on_failure(self, error: ProtocolError) -> None:
        """Hook: queue the protocol's own goodbye and end the call. Default: end it."""
        self._end_call("protocol_error")

    def _accepts_input(self) -> bool:
        return not self._eof and (self._close is None or self.awaits_peer())

    def _finish(self, close: Close) -> None:
        """The stream ended the way its protocol ends (``stop``, ``closed``)."""
        if self._close is None:
            self._close = close

    def _fail(self, error: ProtocolError) -> None:
        """Record the peer's violation; only the first counts."""
        if self._error is not None:
            return
        self._error = error
        self._on_failure(error)
        code = _close_code(error.close_code)
        self._close = Close(code, str(error))

    def _start_call(self, started: CallStarted) -> None:
        self._call = started.info
        self._call_open = True
        self._events.append(started)

    def _end_call(self, reason: str) -> None:
        if self._call_open:
            self._call_open = False
            self._events.append(CallEnded(reason, self._position_ms()))

    def _position_ms(self) -> float | None:
        return None

    def _guard(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except ProtocolError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug in the core must not take the transport down
            internal = ProtocolError(
                f"internal error: {type(exc).__name__}", CloseCode.INTERNAL_ERROR
            )
            internal.__cause__ = exc
            self._fail(internal)


def _close_code(value: int) -> CloseCode:
    try:
        return CloseCode(value)
    except ValueError:
        return CloseCode.INTERNAL_ERROR


def utf8_size_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes as UTF-8 (without encoding when the
    length alone decides: a character takes 1 to 4 bytes)."""
    if len(text) > limit:
        return True
    return 4 * len(text) > limit and len(text.encode("utf-8", "surrogatepass")) > limit


def is_utf8(value: str) -> bool:
    """False for a string with a lone surrogate (``json.loads`` makes one of ``"\\ud800"``):
    later rooms could not write it to Redis, SQL or files, so parsers refuse it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["Close", "CloseCode", "MediaStream", "is_utf8", "utf8_size_exceeds"]
