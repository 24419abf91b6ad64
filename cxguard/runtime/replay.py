"""Replay stores for signature nonces: in-process, or shared by every sidecar through Redis.

A signed AudioHook upgrade carries a nonce that must never be accepted twice. One process can
remember its nonces in memory; several sidecars behind one load balancer must share them, or
an upgrade recorded on one is accepted again by the next. With ``redis_url`` set, every nonce
is claimed with ``SET key 1 NX PX ttl`` (atomic: of two processes claiming the same nonce,
exactly one wins) and expires when the signature would be refused as too old anyway.

When Redis cannot answer, upgrades are refused with HTTP 503 (fail closed): accepting them
would let a replay through on another process. Genesys retries a refused connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import TYPE_CHECKING, Protocol

from cxguard.errors import AuthenticationError
from cxguard.protocols.audiohook_auth import TtlNonceStore

if TYPE_CHECKING:
    import redis.asyncio as aioredis

KEY_PREFIX = "cxguard:nonce:audiohook:"


class ReplayStore(Protocol):
    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        """Claim ``nonce`` for ``ttl_s`` seconds; False if it was claimed before."""
        ...

    async def close(self) -> None: ...


class LocalReplayStore:
    """One process's memory (the embedded default, no Redis)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._store = TtlNonceStore(max_entries)

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        return self._store.remember(nonce, time.time(), ttl_s)

    async def close(self) -> None:
        return None


class RedisReplayStore:
    """Nonces shared by every process that uses the same Redis."""

    def __init__(self, url: str, *, timeout_s: float = 1.0, prefix: str = KEY_PREFIX) -> None:
        # Imported here: the embedded default (no Redis) never loads the client.
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._timeout_s = timeout_s
        self._prefix = prefix

    def key(self, nonce: str) -> str:
        # Hashed: the nonce is peer-chosen text, the key stays short and printable.
        digest = hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()
        return self._prefix + digest

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                claimed = await self._redis.set(
                    self.key(nonce), b"1", nx=True, px=max(1000, math.ceil(ttl_s * 1000))
                )
        except self._errors as exc:
            # The URL may carry a password: name the failure, not the address.
            raise AuthenticationError(
                f"nonce replay store (Redis) unavailable: {type(exc).__name__}", status=503
            ) from None
        return bool(claimed)

    async def close(self) -> None:
        await self._redis.aclose()


def replay_store(redis_url: str | None) -> ReplayStore:
    return RedisReplayStore(redis_url) if redis_url else LocalReplayStore()
