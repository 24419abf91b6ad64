"""Helpers for authentication tests: raw HTTP upgrades (duplicate headers need them), a
throwaway Redis server, and credentials."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from support_http import free_port

from cxguard.protocols.audiohook_auth import sign_request

SECRET = b"0123456789abcdef0123456789abcdef"
SECRET_B64 = base64.b64encode(SECRET).decode()
API_KEY = "northwind-audiohook-key"
TOKEN = "twilio-auth-token-northwind"
OTHER_SECRET = b"globex-secret-globex-secret-0000"
OTHER_KEY = "globex-audiohook-key"
OTHER_TOKEN = "twilio-auth-token-globex"


@dataclass(frozen=True)
class Reply:
    status: int
    seconds: float
    body: str


def audiohook_headers(authority: str, path: str = "/audiohook", **overrides: Any) -> dict[str, str]:
    args: dict[str, Any] = dict(
        path=path,
        authority=authority,
        api_key=API_KEY,
        client_secret=SECRET,
        organization_id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
    )
    args.update(overrides)
    return sign_request(**args)


def upgrade_bytes(path: str, headers: Sequence[tuple[str, str]], host: str | None) -> bytes:
    """A websocket upgrade request; ``headers`` may repeat names (real clients cannot)."""
    key = base64.b64encode(os.urandom(16)).decode()
    fields = [("Host", host)] if host is not None else []
    fields += [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
        *headers,
    ]
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return (head + "\r\n").encode("latin-1")


async def send_raw(port: int, request: bytes, timeout_s: float = 30.0) -> Reply:
    """Send ``request``; the status of the reply and how long it took to come."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
            seconds = time.monotonic() - started
            status = int(head.split(b" ", 2)[1])
            body = b""
            if status != 101:
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    body = await reader.read(4096)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Reply(status, seconds, body.decode("latin-1"))


@dataclass
class RedisProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisProcess]:
    """A Redis of our own on a free port (never the shared one)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="cxguard-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield RedisProcess(url, proc)
    finally:
        RedisProcess(url, proc).stop()
        shutil.rmtree(workdir, ignore_errors=True)
