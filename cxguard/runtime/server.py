"""The websocket sidecar: ``/twilio``, ``/audiohook``, ``/metrics``, ``/healthz``, ``/readyz``.

The server only listens: it never sends media back and never holds the call up. A stream
that breaks its protocol is closed with the protocol's own error; other calls carry on.
Evaluation of a call goes on after its socket closes (its last turns are still in ASR).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cxguard.errors import AuthenticationError, ProtocolError
from cxguard.model import CallStarted, ProtocolEvent
from cxguard.runtime import metrics
from cxguard.runtime.auth import FAILURE_DELAY_S, Admission, Authenticator, UpgradeRequest
from cxguard.runtime.services import Services
from cxguard.runtime.session import CallSession
from cxguard.runtime.streams import PinnedStream, open_stream

log = logging.getLogger(__name__)


class Sidecar:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = Authenticator(services.settings)
        self._calls: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._admissions: weakref.WeakKeyDictionary[ServerConnection, Admission] = (
            weakref.WeakKeyDictionary()
        )
        self.ready = False

    # ---------------------------------------------------------------- HTTP before the upgrade

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Plain HTTP routes, and every door's credential check before an upgrade.

        A coroutine: a refusal waits out :data:`FAILURE_DELAY_S` without holding the loop."""
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return _plain(connection, http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if not self.ready:
                return _plain(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "starting\n")
            body = json.dumps({"ready": True, **self.services.health()}) + "\n"
            return _plain(connection, http.HTTPStatus.OK, body, "application/json")
        door = _DOORS.get(path)
        if door is None:
            return _plain(connection, http.HTTPStatus.NOT_FOUND, "no such route\n")
        arrived = time.monotonic()
        try:
            upgrade = UpgradeRequest.of(request.path, request.headers, connection.local_address)
            admission = await self.auth.admit(door, upgrade)
        except AuthenticationError as exc:
            metrics.AUTH_FAILURES.labels(protocol=door).inc()
            log.warning("refused /%s from %s: %s", door, _peer(connection), exc)
            await asyncio.sleep(max(0.0, arrived + FAILURE_DELAY_S - time.monotonic()))
            status = http.HTTPStatus(exc.status)
            # The reason stays in our log: telling the peer would be an oracle.
            return _plain(connection, status, f"{status.phrase}\n")
        if door == "metrics":
            return _plain(
                connection,
                http.HTTPStatus.OK,
                metrics.render().decode(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        self._admissions[connection] = admission
        return None

    # ---------------------------------------------------------------- one media stream

    async def handle(self, ws: ServerConnection) -> None:
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        path = ws.request.path.split("?", 1)[0] if ws.request else ""
        protocol = path.lstrip("/")
        admission = self._admissions.pop(ws, Admission())
        stream = open_stream(protocol, self.services.settings, admission)
        session: CallSession | None = None
        try:
            async for message in ws:
                if isinstance(message, str):
                    stream.receive_text(message)
                else:
                    stream.receive_bytes(message)
                session = self._dispatch(stream.events_received(), session)
                for out in stream.data_to_send():
                    await ws.send(out)
        except ProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(protocol=protocol).inc()
            call = session.info.call_id if session else "(not started)"
            log.error("%s stream %s closed: %s", protocol, call, exc)
            session = self._dispatch(stream.events_received(), session)
            for out in stream.data_to_send():
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(out)
            await self._await_client_close(ws, stream)
            await ws.close(exc.close_code, str(exc)[:120])
        except ConnectionClosed:
            pass  # the platform hung up without a stop/close: the call still gets evaluated
        finally:
            stream.receive_eof()
            session = self._dispatch(stream.events_received(), session)
            if session is not None:
                session.end("disconnected")
                self._track(session)

    @staticmethod
    async def _await_client_close(ws: ServerConnection, stream: PinnedStream) -> None:
        """AudioHook clients answer our ``disconnect`` with ``close``; give them a moment."""
        if not stream.awaits_close:
            return
        with contextlib.suppress(TimeoutError, ConnectionClosed, ProtocolError):
            async with asyncio.timeout(2.0):
                while stream.awaits_close:
                    message = await ws.recv()
                    if isinstance(message, str):
                        stream.receive_text(message)
                    for out in stream.data_to_send():
                        await ws.send(out)

    def _dispatch(
        self, events: list[ProtocolEvent], session: CallSession | None
    ) -> CallSession | None:
        for event in events:
            if isinstance(event, CallStarted):
                session = CallSession(self.services, event)
                log.info(
                    "call %s started (%s, tenant %s)",
                    event.info.call_id,
                    event.info.source,
                    event.info.tenant,
                )
            elif session is not None:
                session.handle(event)
        return session

    def _track(self, session: CallSession) -> None:
        async def finish() -> None:
            summary = await session.wait_closed()
            log.info(
                "call %s evaluated: %d turns, %s", summary.call_id, summary.turns, summary.verdicts
            )

        task = asyncio.get_running_loop().create_task(finish())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def drain(self) -> None:
        """Wait for open streams to end and every call still being evaluated."""
        while self._calls or self._handlers:
            current = asyncio.current_task()
            pending = [t for t in (*self._calls, *self._handlers) if t is not current]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)


_DOORS = {"/twilio": "twilio", "/audiohook": "audiohook", "/metrics": "metrics"}


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"


def _plain(
    connection: ServerConnection,
    status: http.HTTPStatus,
    body: str,
    content_type: str = "text/plain; charset=utf-8",
) -> Response:
    response = connection.respond(status, body)
    response.headers["Content-Type"] = content_type
    return response


@contextlib.asynccontextmanager
async def running_sidecar(
    services: Services, host: str, port: int
) -> AsyncIterator[tuple[Sidecar, Server]]:
    sidecar = Sidecar(services)
    settings = services.settings
    async with serve(
        sidecar.handle,
        host,
        port,
        process_request=sidecar.process_request,
        max_size=settings.max_message_bytes,
        ping_interval=20,
        ping_timeout=20,
    ) as server:
        sidecar.ready = True
        try:
            yield sidecar, server
        finally:
            sidecar.ready = False
            server.close()
            await server.wait_closed()
            await sidecar.drain()
            await sidecar.auth.close()
