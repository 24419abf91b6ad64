"""What the playback driver needs from any protocol client."""

from __future__ import annotations

from typing import Protocol


class MediaClient(Protocol):
    """A platform's side of one media stream, without I/O.

    The driver calls :meth:`start`, sends :meth:`data_to_send` after every call, feeds every
    server message to :meth:`receive_text`/:meth:`receive_bytes`, plays audio with
    :meth:`send_audio` once :meth:`ready`, then :meth:`finish` and waits (bounded) until
    :meth:`finished`."""

    frame_ms: int
    """Audio per :meth:`send_audio` call, as the platform sends it."""
    encoding: str
    """``PCMU`` or ``L16`` (16-bit little-endian): what :meth:`send_audio` takes."""
    sample_rate: int

    @property
    def call_id(self) -> str: ...

    def start(self) -> None: ...

    def ready(self) -> bool:
        """Audio may flow (the server accepted the stream)."""
        ...

    def send_audio(self, customer: bytes, agent: bytes) -> None:
        """One frame per speaker (equal lengths) in :attr:`encoding` at :attr:`sample_rate`."""
        ...

    def finish(self) -> None: ...

    def finished(self) -> bool:
        """The stream's end handshake is complete (or the server ended it)."""
        ...

    def receive_text(self, text: str) -> None: ...

    def receive_bytes(self, data: bytes) -> None: ...

    def data_to_send(self) -> list[str | bytes]: ...

    @property
    def problems(self) -> list[str]:
        """What the server did that its protocol does not allow."""
        ...
