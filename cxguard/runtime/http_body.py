"""HTTP requests with a body on the websocket port (the control API's ``POST``).

The ``websockets`` server parses every request as an opening handshake and refuses one with
a body. :class:`BodyConnection` reads a ``POST``'s ``Content-Length`` body before the
library sees the request, keeps it as :attr:`BodyConnection.body`, and hands the library the
head with ``Content-Length: 0``; ``process_request`` then answers it like any plain route
(and the same credential checks, failure delay and logging apply). A ``POST`` without one
well-formed ``Content-Length`` (chunked, say) is answered 411 here, one with a body over
:data:`MAX_BODY_BYTES` 413, and the connection closed. Anything else (an upgrade, a
``GET``) goes to the library unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Final

from websockets.asyncio.server import ServerConnection

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 16 * 1024
_LENGTH: Final = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*(?=\r\n)", re.IGNORECASE)


class BodyConnection(ServerConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body = b""
        """The request body of a ``POST`` (empty for everything else)."""
        self._head: bytearray | None = bytearray()

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES or not b"POST ".startswith(self._head[:5]):
                self._pass_through()
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        if not head.startswith(b"POST "):
            self._pass_through()
            return
        lengths = _LENGTH.findall(head)
        lower = head.lower()
        if lower.count(b"\r\ncontent-length:") != len(lengths):
            self._refuse(400, "Bad Request")  # a Content-Length that is not a number
            return
        if b"\r\ntransfer-encoding:" in lower or len(lengths) > 1 or (not lengths and rest):
            self._refuse(411, "Length Required")
            return
        length = int(lengths[0]) if lengths else 0
        if length > MAX_BODY_BYTES:
            self._refuse(413, "Content Too Large")
            return
        if length == 0:
            self._pass_through()
            return
        if len(rest) < length:
            return  # the rest of the body is on its way (the handshake timeout bounds it)
        self.body, self._head = rest[:length], None
        head = _LENGTH.sub(b"\r\nContent-Length: 0", head)
        super().data_received(head + rest[length:])

    def _refuse(self, status: int, phrase: str) -> None:
        self._head = None
        body = f"{phrase}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _pass_through(self) -> None:
        assert self._head is not None
        data, self._head = bytes(self._head), None
        super().data_received(data)
