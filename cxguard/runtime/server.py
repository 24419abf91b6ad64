"""The websocket sidecar: ``/twilio``, ``/audiohook``, ``/stream`` (a generic media websocket),
``/console`` (the supervisors' page, :mod:`cxguard.runtime.console.web`), ``/metrics``,
``/healthz``, ``/readyz``.

The server only listens: it never sends media back and never holds the call up. Every
protocol core follows one contract (:mod:`cxguard.protocols.base`), driven the same way by
:func:`_serve`. A stream that breaks its protocol is closed with the protocol's own error and
one rate-limited log line (:mod:`cxguard.runtime.rejections`); other calls carry on.
Evaluation of a call goes on after its socket closes (its last turns are still in ASR).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cxguard.errors import AuthenticationError, ProtocolError
from cxguard.model import CallStarted, ProtocolEvent
from cxguard.protocols.base import CloseCode, MediaStream
from cxguard.runtime import metrics
from cxguard.runtime.admission import refusal
from cxguard.runtime.auth import FAILURE_DELAY_S, Admission, Authenticator, UpgradeRequest
from cxguard.runtime.console.web import LIVE_PATH, ConsoleWeb, is_console
from cxguard.runtime.rejections import RejectionLog
from cxguard.runtime.services import Services
from cxguard.runtime.session import CallSession
from cxguard.runtime.streams import open_stream

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 2.0
"""How long a stream that ended may wait for the peer's side of the closing handshake
(AudioHook's ``close`` after our ``disconnect``) before the socket is closed anyway."""
_TENANT_CLAIM = "tenant-claim"  # a rate-limit reason beside the close codes
_WEBSOCKETS_LOG = logging.getLogger("cxguard.websockets")
"""The websocket library's logger: it writes two INFO lines per connection (open, closed),
which under a flood of hostile connections would drown the log; WARNING unless configured."""
_REFUSALS = frozenset(
    {CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_PAYLOAD, CloseCode.MESSAGE_TOO_BIG}
)


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
        self.calls_seen = 0
        """Calls this process has taken (each stream that started one)."""
        self.rejections = RejectionLog(log)
        self.console = ConsoleWeb(services.console, services.settings)

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
            health = {
                "active_calls": self.active_calls,
                "calls_seen": self.calls_seen,
                "pid": os.getpid(),  # which of `serve --workers N` answered
                **self.services.health(),
            }
            full = refusal(
                self.services.settings.admission, self.active_calls, self.services.asr.depth
            )
            body = json.dumps({"ready": full is None, "refusing": full, **health}) + "\n"
            status = http.HTTPStatus.OK if full is None else http.HTTPStatus.SERVICE_UNAVAILABLE
            return _plain(connection, status, body, "application/json")
        if is_console(path):
            return await self.console.process_request(connection, request)
        door = _DOORS.get(path)
        if door is None:
            return _plain(connection, http.HTTPStatus.NOT_FOUND, "no such route\n")
        arrived = time.monotonic()
        try:
            upgrade = UpgradeRequest.of(request.path, request.headers, connection.local_address)
            admission = await self.auth.admit(door, upgrade)
        except AuthenticationError as exc:
            metrics.AUTH_FAILURES.labels(protocol=door).inc()
            self.rejections.note(
                (_peer_host(connection), door, f"http-{exc.status}"),
                logging.WARNING,
                "refused /%s from %s: %s",
                door,
                _peer(connection),
                exc,
            )
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

    @property
    def active_calls(self) -> int:
        """Media streams open, and calls still being judged after theirs closed."""
        return len(self._handlers) + len(self._calls)

    # ---------------------------------------------------------------- one media stream

    async def handle(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.split("?", 1)[0] == LIVE_PATH:
            await self.console.live(ws)  # a page, not a call: drain() does not wait for it
            return
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        path = ws.request.path.split("?", 1)[0] if ws.request else ""
        protocol = path.lstrip("/")
        admission = self._admissions.pop(ws, Admission())
        stream = open_stream(protocol, self.services.settings, admission)
        call = _Call(self.services, _host(ws), protocol, self.rejections)
        refused: ProtocolError | None = None
        try:
            refused = await _serve(ws, stream, call.feed)
        finally:
            stream.receive_eof()
            call.feed(stream.events_received())
            error = stream.error or refused
            if call.session is not None:
                call.session.end("disconnected")
                self._track(call.session, rejected=error is not None)
            if error is not None:
                metrics.PROTOCOL_ERRORS.labels(protocol=protocol).inc()
                info = stream.call_info
                self.rejections.reject(protocol, _host(ws), info.call_id if info else None, error)
            self.rejections.tick()

    def _track(self, session: CallSession, *, rejected: bool) -> None:
        async def finish() -> None:
            summary = await session.wait_closed()
            # One line per call; a rejected stream that carried no speech has its one line
            # already (the rejection), so a flood of them stays one line each.
            level = logging.DEBUG if rejected and not summary.turns else logging.INFO
            log.log(
                level,
                "call %s (%s, tenant %s) evaluated: %d turns, %s",
                summary.call_id,
                session.info.source,
                session.info.tenant,
                summary.turns,
                summary.verdicts,
            )

        task = asyncio.get_running_loop().create_task(finish())
        self.calls_seen += 1
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
        self.rejections.flush()


class _Call:
    """The call a stream carries: created by its ``CallStarted``, fed every later event."""

    def __init__(
        self, services: Services, host: str, protocol: str, rejections: RejectionLog
    ) -> None:
        self._services = services
        self._host = host
        self._protocol = protocol
        self._rejections = rejections
        self.session: CallSession | None = None

    def feed(self, events: list[ProtocolEvent]) -> None:
        for event in events:
            if isinstance(event, CallStarted):
                self.session = CallSession(self._services, event)
                info = event.info
                log.debug("call %s started (%s, tenant %s)", info.call_id, info.source, info.tenant)
                claimed = info.parameters.get("tenant")
                if claimed not in (None, info.tenant, "default"):
                    self._rejections.note(
                        (self._host, self._protocol, _TENANT_CLAIM),
                        logging.WARNING,
                        "call %s claims tenant %.40r but signed as %r; using %r",
                        info.call_id,
                        claimed,
                        info.tenant,
                        info.tenant,
                    )
            elif self.session is not None:
                self.session.handle(event)


async def _serve(
    ws: ServerConnection, stream: MediaStream, feed: Callable[[list[ProtocolEvent]], None]
) -> ProtocolError | None:
    """Drive ``stream`` until it is over, then close the socket as it says.

    Returns the error when the websocket layer itself refused the peer's data (a frame over
    ``max_size``, invalid UTF-8), which the protocol core never saw."""
    deadline: float | None = None
    try:
        while True:
            if stream.close_expected():
                if not stream.awaits_peer():
                    break
                if deadline is None:
                    deadline = asyncio.get_running_loop().time() + CLOSE_GRACE_S
            try:
                async with asyncio.timeout_at(deadline):
                    message = await ws.recv()
            except TimeoutError:
                break
            if isinstance(message, str):
                stream.receive_text(message)
            else:
                stream.receive_bytes(message)
            feed(stream.events_received())
            for out in stream.data_to_send():
                await ws.send(out)
        close = stream.close
        if close is not None:
            await ws.close(close.code, close.reason)
    except ConnectionClosed as exc:
        return _refused_by_websockets(exc)
    return None


def _refused_by_websockets(exc: ConnectionClosed) -> ProtocolError | None:
    sent = exc.sent
    if sent is None or exc.rcvd_then_sent or sent.code not in _REFUSALS:
        return None
    return ProtocolError(f"websocket: {sent.reason or 'frame refused'}", sent.code)


def _host(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else "unknown"


_DOORS = {
    "/twilio": "twilio",
    "/audiohook": "audiohook",
    "/stream": "stream",
    "/metrics": "metrics",
}


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"


def _peer_host(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) else "?"


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
    services: Services, host: str, port: int, *, reuse_port: bool = False
) -> AsyncIterator[tuple[Sidecar, Server]]:
    """``reuse_port``: share the port with sibling processes (SO_REUSEPORT; the kernel
    spreads new connections over them)."""
    sidecar = Sidecar(services)
    settings = services.settings
    if _WEBSOCKETS_LOG.level == logging.NOTSET:
        _WEBSOCKETS_LOG.setLevel(logging.WARNING)
    async with serve(
        sidecar.handle,
        host,
        port,
        process_request=sidecar.process_request,
        max_size=settings.max_message_bytes,
        ping_interval=20,
        ping_timeout=20,
        logger=_WEBSOCKETS_LOG,
        reuse_port=reuse_port or None,
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
