"""Shutdown without dropping calls: what the sidecar does with each open stream on SIGTERM.

The server has already stopped admitting (new upgrades get 503, ``/readyz`` says
``draining``). For each open stream, concurrently, bounded by ``drain_timeout_s`` in all:

1. the call stops taking audio at its current position and is finished there: open
   segments are closed and transcribed, every turn is judged, ``call_ended`` (reason
   ``shutdown``) is recorded;
2. the evidence written so far is stored in the ledger (or stays durable in the spool);
3. the stream ends the protocol's way (:meth:`~cxguard.protocols.base.MediaStream.going_away`):
   AudioHook sends ``disconnect`` (reason ``completed``, info ``server shutting down``) and
   the client's ``close`` is answered with ``closed`` by the stream's own loop; Twilio and
   ``/stream`` close with 1001.

What is left when the time is up is closed with 1001 by the server (a call not yet judged is
then finished by its pipeline as before, and recovered by the next start if the process
dies first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from cxguard.protocols.base import MediaStream
from cxguard.runtime.services import Services
from cxguard.runtime.session import CallSession

log = logging.getLogger(__name__)

REASON = "shutdown"


async def retire(
    ws: ServerConnection,
    stream: MediaStream,
    session: CallSession | None,
    services: Services,
    *,
    handler: asyncio.Task[object] | None,
    grace_s: float,
) -> None:
    """Finish one open stream's call, then end the stream (the caller bounds the time)."""
    if session is not None:
        session.end(REASON)
        await session.wait_closed()
        await services.evidence.wait_stored(grace_s)
    stream.going_away()
    with contextlib.suppress(ConnectionClosed):
        for out in stream.data_to_send():
            await ws.send(out)
        if stream.awaits_peer() and handler is not None:
            # The stream's loop reads the peer's answer (AudioHook ``close``) and closes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(handler), grace_s)
        close = stream.close
        if close is not None and ws.state is not State.CLOSED:
            await ws.close(close.code, close.reason)
