"""``/console`` on the sidecar's own port: the page, its assets, a JSON snapshot, and the live
websocket.

Routes (every one but the static assets needs a tenant's console token, as ``?token=`` or
``Authorization: Bearer``; none or a wrong one is 401 after the usual delay)::

    GET /console                   the page (HTML; its assets are under /console/static/)
    GET /console/api/snapshot      the tenant's view as JSON (what the page loads first)
    GET /console/live              websocket: {"type": "snapshot"} first, then updates;
                                   the page sends {"op": "act", "alert_id", "action", ...}

Live updates go over a websocket rather than server-sent events: the sidecar's HTTP layer
(``websockets``) answers plain requests with one complete response, and a websocket also
carries the supervisors' acknowledgements back. The token travels in the query string
because browsers cannot set headers on a websocket; the page drops it from the address bar
and every response says ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http
import json
import logging
import time
import weakref
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cxguard.errors import CxguardError
from cxguard.runtime.auth import FAILURE_DELAY_S
from cxguard.runtime.console.hub import ACTIONS, ConsoleHub, Subscriber
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)

LIVE_PATH = "/console/live"
_STATIC = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_SECURITY = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def is_console(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _asset(name: str) -> bytes:
    return (resources.files("cxguard.runtime.console") / "static" / name).read_bytes()


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body))})
    for key, value in _SECURITY.items():
        headers[key] = value
    return Response(status.value, status.phrase, headers, body)


class ConsoleWeb:
    def __init__(self, hub: ConsoleHub, settings: Settings) -> None:
        self.hub = hub
        self._tokens = [
            (_digest(t.console_token), t.name) for t in settings.tenants if t.console_token
        ]
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def has_tokens(self) -> bool:
        return bool(self._tokens)

    def tenant_of(self, target: str, authorization: str | None) -> str | None:
        """The tenant whose token the request carries; every token is compared (timing)."""
        token = parse_qs(urlsplit(target).query).get("token", [""])[0]
        scheme, _, bearer = (authorization or "").partition(" ")
        if not token and scheme.lower() == "bearer":
            token = bearer.strip()
        if not token:
            return None
        presented = _digest(token)
        found = [
            tenant for digest, tenant in self._tokens if hmac.compare_digest(digest, presented)
        ]
        return found[0] if found else None

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.split("?", 1)[0]
        name = path.removeprefix("/console/static/")
        if name != path:
            if name not in _STATIC:
                return _response(http.HTTPStatus.NOT_FOUND, b"no such asset\n", "text/plain")
            return _response(http.HTTPStatus.OK, _asset(name), _STATIC[name])
        arrived = time.monotonic()
        tenant = self.tenant_of(request.path, request.headers.get("Authorization"))
        if tenant is None:
            log.warning("refused %s: no valid console token", path)
            await asyncio.sleep(max(0.0, arrived + FAILURE_DELAY_S - time.monotonic()))
            return _response(http.HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", "text/plain")
        if path in ("/console", "/console/"):
            return _response(http.HTTPStatus.OK, _asset("index.html"), "text/html; charset=utf-8")
        if path == "/console/api/snapshot":
            body = json.dumps(await self.hub.snapshot(tenant), default=str).encode()
            return _response(http.HTTPStatus.OK, body, "application/json")
        if path == LIVE_PATH:
            self._admitted[connection] = tenant
            return None  # the websocket upgrade goes on
        return _response(http.HTTPStatus.NOT_FOUND, b"no such route\n", "text/plain")

    async def live(self, ws: ServerConnection) -> None:
        tenant = self._admitted.pop(ws, None)
        if tenant is None:  # cannot happen: process_request admitted it
            await ws.close(1008, "not admitted")
            return
        sub = self.hub.subscribe(tenant)  # before the snapshot: nothing falls in between
        try:
            snapshot = await self.hub.snapshot(tenant)
            await ws.send(json.dumps({"type": "snapshot", **snapshot}, default=str))
            sender = asyncio.get_running_loop().create_task(self._send(ws, sub))
            try:
                await self._receive(ws, tenant)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        except ConnectionClosed:
            pass
        finally:
            self.hub.unsubscribe(sub)

    async def _send(self, ws: ServerConnection, sub: Subscriber) -> None:
        while True:
            update = await sub.queue.get()
            if update is None:  # fell behind: the page reloads the snapshot
                await ws.close(1013, "too slow, reload")
                return
            await ws.send(json.dumps(update, default=str))

    async def _receive(self, ws: ServerConnection, tenant: str) -> None:
        async for raw in ws:
            reply: dict[str, Any]
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict) or msg.get("op") != "act":
                    raise ValueError("expected {op: act}")
                action = str(msg.get("action", ""))
                if action not in ACTIONS:
                    raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
                record = await self.hub.act(
                    tenant,
                    str(msg.get("alert_id", "")),
                    action,
                    by=str(msg.get("by", "")),
                    note=str(msg.get("note", "")),
                    assignee=str(msg.get("assignee", "")),
                )
                reply = {"type": "acted", "request": msg.get("request"), "action": record}
            except (ValueError, CxguardError) as exc:
                reply = {"type": "error", "request": None, "error": str(exc)[:200]}
            await ws.send(json.dumps(reply, default=str))
