"""The console of one sidecar shows the alerts of every sidecar sharing its Redis.

With several sidecar processes behind a load balancer, each judges its own calls, and each
publishes their alerts and handoffs on the tenant's Redis streams
(:mod:`cxguard.sinks.redis_alerts`). This follower reads those streams for the tenants that
have a page open (``XREAD BLOCK``), and backfills the latest entries when a page loads, so a
supervisor sees the tenant's alerts whichever process judged the call. Its own alerts come
back too and are dropped by alert id. Calls and transcripts of other processes are not on
Redis and are not shown. Redis being down only pauses this (logged once); the page goes on
with what this process knows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions as rexc

log = logging.getLogger(__name__)

BACKFILL = 200
BLOCK_MS = 1000


class Feed(Protocol):
    """What the follower feeds (the :class:`~cxguard.runtime.console.hub.ConsoleHub`)."""

    def tenants_with_pages(self) -> Sequence[str]: ...

    def alert_from_stream(self, tenant: str, data: dict[str, Any]) -> None: ...

    def handoff_from_stream(self, tenant: str, data: dict[str, Any]) -> None: ...


class RedisFollower:
    def __init__(self, feed: Feed, url: str, key_prefix: str = "cxguard") -> None:
        self._feed = feed
        self._client = aioredis.from_url(url, decode_responses=True, socket_timeout=5.0)
        self._prefix = key_prefix
        self._last: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._down = False

    def _keys(self, tenant: str) -> tuple[str, str]:
        return f"{self._prefix}:{tenant}:alerts", f"{self._prefix}:{tenant}:handoffs"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console:redis")

    def _entry(self, key: str, fields: dict[str, str]) -> None:
        tenant, stream = key[len(self._prefix) + 1 :].rsplit(":", 1)
        try:
            data = json.loads(fields.get("data", ""))
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if stream == "alerts":
            self._feed.alert_from_stream(tenant, data)
        else:
            self._feed.handoff_from_stream(tenant, data)

    async def backfill(self, tenant: str) -> None:
        """The tenant's latest alerts and handoffs, oldest first; live reading goes on from
        there."""
        try:
            for key in self._keys(tenant):
                entries: Any = await self._client.xrevrange(key, count=BACKFILL)
                self._last[key] = entries[0][0] if entries else "0-0"
                for _, fields in reversed(entries):
                    self._entry(key, fields)
        except (rexc.RedisError, OSError) as exc:
            log.warning("console: Redis history of tenant %s unreadable: %s", tenant, exc)

    async def _run(self) -> None:
        while True:
            tenants = self._feed.tenants_with_pages()
            for t in tenants:
                if self._keys(t)[0] not in self._last:
                    await self.backfill(t)
            streams = {k: self._last.get(k, "$") for t in tenants for k in self._keys(t)}
            if not streams:
                await asyncio.sleep(BLOCK_MS / 1000)
                continue
            try:
                found: Any = await self._client.xread(
                    streams,  # type: ignore[arg-type]
                    block=BLOCK_MS,
                    count=500,
                )
            except (rexc.RedisError, OSError) as exc:
                if not self._down:
                    log.warning("console: Redis alert streams unreadable (%s); retrying", exc)
                    self._down = True
                await asyncio.sleep(1.0)
                continue
            if self._down:
                log.warning("console: Redis alert streams readable again")
                self._down = False
            for key, entries in found or []:
                for entry_id, fields in entries:
                    self._last[key] = entry_id
                    self._entry(key, fields)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()
