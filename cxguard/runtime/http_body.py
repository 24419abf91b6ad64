"""HTTP requests with a body on the websocket port (the control API's ``POST``), and a
handshake the peer cannot trip up.

The ``websockets`` server parses every request as an opening handshake and refuses one with
a body. :class:`BodyConnection` reads a ``POST``'s ``Content-Length`` body before the
library sees the request, keeps it as :attr:`BodyConnection.body`, and hands the library the
head with ``Content-Length: 0``; ``process_request`` then answers it like any plain route
(and the same credential checks, failure delay and logging apply). A ``POST`` without one
well-formed ``Content-Length`` (chunked, say) is answered 411 here, a malformed one 400, one
with a body over :data:`MAX_BODY_BYTES` 413, and the connection closed.

It also keeps whatever the peer sends after the request head (bytes, or its end of stream)
until the handshake has been answered: a client may not send frames before the ``101``
(RFC 6455 §4.1), and fed to the library while a refusal waits out its delay, such bytes made
it trip over its own assertion when the answer went out (an ERROR with a traceback per
request, which a hostile peer could repeat at will). After an accepted handshake they are
delivered; after a refusal, dropped with the connection.
"""

from __future__ import annotations

import re
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 16 * 1024
_LENGTH: Final = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*(?=\r\n)", re.IGNORECASE)


class BodyConnection(ServerConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body = b""
        """The request body of a ``POST`` (empty for everything else)."""
        self._head: bytearray | None = bytearray()
        self._early = bytearray()
        self._eof_held = False
        self._handshaking = True

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        finally:
            self._handshaking = False
            early, self._early = bytes(self._early), bytearray()
            if early and self.protocol.state is State.OPEN:
                super().data_received(early)
            self._release_eof()

    def send_data(self) -> None:
        super().send_data()
        if not self._answering():
            self._release_eof()  # the answer is out: the library may hear it now

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            if self._handshaking:
                self._early += data
            else:
                super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._give_up()
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        if head.startswith(b"POST "):
            lengths = _LENGTH.findall(head)
            lower = head.lower()
            if lower.count(b"\r\ncontent-length:") != len(lengths):
                self._refuse(400, "Bad Request")  # a Content-Length that is not a number
                return
            if b"\r\ntransfer-encoding:" in lower or len(lengths) > 1:
                self._refuse(411, "Length Required")
                return
            length = int(lengths[0]) if lengths else 0
            if length > MAX_BODY_BYTES:
                self._refuse(413, "Content Too Large")
                return
            if len(rest) < length:
                return  # the rest of the body is on its way (the handshake timeout bounds it)
            self.body, rest = rest[:length], rest[length:]
            head = _LENGTH.sub(b"\r\nContent-Length: 0", head)
        self._head = None
        self._early += rest
        super().data_received(head)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        # asyncio lets a protocol keep a half-closed transport open by returning True; the
        # library annotates None (it always lets the transport close).
        if self._head is not None:
            self._give_up()  # a head cut short: the library refuses it
        if self._answering():
            self._eof_held = True
            return True  # keep the transport open for our answer
        super().eof_received()
        return None

    def _answering(self) -> bool:
        """A request is in and its answer not yet sent."""
        protocol = self.protocol
        return (
            self.request is not None
            and protocol.state is State.CONNECTING
            and not protocol.eof_sent
        )

    def _release_eof(self) -> None:
        if self._eof_held:
            self._eof_held = False
            super().eof_received()
            # What asyncio does when eof_received returns None (it got True from us): the
            # peer is done sending, our side is done too once the answer is flushed.
            self.transport.close()

    def _refuse(self, status: int, phrase: str) -> None:
        self._head = None
        body = f"{phrase}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _give_up(self) -> None:
        """Not a head we can read (too long, cut short): the library answers it."""
        assert self._head is not None
        data, self._head = bytes(self._head), None
        super().data_received(data)
