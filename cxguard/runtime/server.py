"""The websocket sidecar: ``/twilio``, ``/audiohook``, ``/stream`` (a generic media websocket),
``/console`` (the supervisors' page, :mod:`cxguard.runtime.console.web`), ``/metrics``,
``/healthz``, ``/readyz``, and the control API (``POST /calls/{id}/events``,
:mod:`cxguard.runtime.control`).

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
from collections.abc import AsyncIterator, Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cxguard.errors import AuthenticationError, ControlRequestError, ProtocolError
from cxguard.model import CallStarted, ProtocolEvent
from cxguard.protocols.base import CloseCode, MediaStream
from cxguard.runtime import metrics
from cxguard.runtime.admission import refusal
from cxguard.runtime.audiohook_events import AudioHookEvents
from cxguard.runtime.auth import FAILURE_DELAY_S, Admission, Authenticator, UpgradeRequest
from cxguard.runtime.console.web import LIVE_PATH, ConsoleWeb, is_console
from cxguard.runtime.control import LiveCalls, post_events
from cxguard.runtime.drain import retire
from cxguard.runtime.http_body import BodyConnection
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
        self.calls = LiveCalls()
        """Calls whose streams are open here (the control API's view)."""
        self.draining = False
        self._streams: dict[
            ServerConnection, tuple[MediaStream, _Call, asyncio.Task[object] | None]
        ] = {}
        if services.settings.audiohook.send_events:
            services.listeners.append(AudioHookEvents(self.stream_of))

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
                why = "draining\n" if self.draining else "starting\n"
                return _plain(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, why)
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
        door = "control" if path.startswith("/calls/") else _DOORS.get(path)
        if door is None:
            return _plain(connection, http.HTTPStatus.NOT_FOUND, "no such route\n")
        if door != "control" and getattr(request, "method", "GET") != "GET":
            response = _plain(connection, http.HTTPStatus.METHOD_NOT_ALLOWED, "use GET\n")
            response.headers["Allow"] = "GET"
            return response
        if self.draining and door in _MEDIA:
            # Shutting down: the platform should take the call to another sidecar.
            return _plain(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
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
        if door == "control":
            return self._control(connection, request, admission)
        if door == "metrics":
            return _plain(
                connection,
                http.HTTPStatus.OK,
                metrics.render().decode(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        self._admissions[connection] = admission
        return None

    def _control(
        self, connection: ServerConnection, request: Request, admission: Admission
    ) -> Response:
        body = connection.body if isinstance(connection, BodyConnection) else b""
        try:
            path = request.path.split("?", 1)[0]
            method = getattr(request, "method", "GET")
            answer = post_events(self.calls, admission.tenant, method, path, body)
        except ControlRequestError as exc:
            status = http.HTTPStatus(exc.status)
            response = _json(connection, status, {"error": str(exc)})
            if status == http.HTTPStatus.METHOD_NOT_ALLOWED:
                response.headers["Allow"] = "POST"
            return response
        return _json(connection, http.HTTPStatus.ACCEPTED, answer)

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
        call = _Call(self.services, _host(ws), protocol, self.rejections, self.calls)
        refused: ProtocolError | None = None
        self._streams[ws] = (stream, call, me)
        try:
            refused = await _serve(ws, stream, call.feed)
        finally:
            self._streams.pop(ws, None)
            stream.receive_eof()
            await call.feed(stream.events_received())
            error = stream.error or refused
            if call.session is not None:
                self.calls.remove(call.session)
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

    def stream_of(
        self, tenant: str, call_id: str
    ) -> tuple[ServerConnection, MediaStream, float] | None:
        """The open stream of a call: its connection, core and session clock offset."""
        for ws, (stream, call, _) in self._streams.items():
            session = call.session
            if session is not None and (session.info.tenant, session.info.call_id) == (
                tenant,
                call_id,
            ):
                return ws, stream, session.stream_offset_ms
        return None

    async def shutdown(self, timeout_s: float) -> None:
        """Stop admitting, then finish every open stream's call and end the stream the
        protocol's way (:mod:`cxguard.runtime.drain`), within ``timeout_s``."""
        self.ready = False
        self.draining = True
        streams = list(self._streams.items())
        if not streams:
            return
        log.info("draining %d open streams (at most %.0f s)", len(streams), timeout_s)
        jobs = [
            retire(ws, stream, call.session, self.services, handler=task, grace_s=CLOSE_GRACE_S)
            for ws, (stream, call, task) in streams
        ]
        try:
            async with asyncio.timeout(timeout_s):
                results = await asyncio.gather(*jobs, return_exceptions=True)
        except TimeoutError:
            log.warning(
                "drain timed out after %.0f s: %d streams close unfinished",
                timeout_s,
                len(self._streams),
            )
            return
        for result in results:
            if isinstance(result, Exception):
                log.error("draining a stream failed: %s", result, exc_info=result)

    async def drain(self, stored_within_s: float = 5.0) -> None:
        """Wait for open streams to end and every call still being evaluated, then (up to
        ``stored_within_s``) for the spool to reach the ledger: what a drained sidecar has
        judged can be read back. Writes the ledger cannot take yet stay in the spool."""
        while self._calls or self._handlers:
            current = asyncio.current_task()
            pending = [t for t in (*self._calls, *self._handlers) if t is not current]
            if not pending:
                break
            await asyncio.gather(*pending, return_exceptions=True)
        await self.services.evidence.wait_stored(stored_within_s)
        self.rejections.flush()


class _Call:
    """The call a stream carries: created by its ``CallStarted``, fed every later event."""

    def __init__(
        self,
        services: Services,
        host: str,
        protocol: str,
        rejections: RejectionLog,
        live: LiveCalls,
    ) -> None:
        self._services = services
        self._host = host
        self._protocol = protocol
        self._rejections = rejections
        self._live = live
        self.session: CallSession | None = None

    async def feed(self, events: list[ProtocolEvent]) -> None:
        for event in events:
            if isinstance(event, CallStarted):
                # A call another sidecar carried before (a reconnect after a drain) goes on
                # with its numbering, history and clock from the shared ledger.
                await self._services.evidence.learn(event.info)
                self.session = CallSession(self._services, event)
                self._live.add(self.session)
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
    ws: ServerConnection,
    stream: MediaStream,
    feed: Callable[[list[ProtocolEvent]], Awaitable[None]],
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
            await feed(stream.events_received())
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


_MEDIA = frozenset({"twilio", "audiohook", "stream"})
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
    del response.headers["Content-Type"]  # Headers append: respond() set text/plain already
    response.headers["Content-Type"] = content_type
    return response


def _json(connection: ServerConnection, status: http.HTTPStatus, body: object) -> Response:
    return _plain(connection, status, json.dumps(body) + "\n", "application/json")


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
        create_connection=BodyConnection,
        reuse_port=reuse_port or None,
    ) as server:
        sidecar.ready = True
        try:
            yield sidecar, server
        finally:
            await sidecar.shutdown(settings.drain_timeout_s)
            server.close()
            await server.wait_closed()
            await sidecar.drain()
            await sidecar.auth.close()
