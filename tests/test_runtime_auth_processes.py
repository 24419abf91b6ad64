"""Two real ``cxguard serve`` processes sharing one Redis: a signed AudioHook upgrade accepted
by one is refused when replayed on the other. Credentials come from secret files named in the
YAML config, as in production."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_auth import (
    API_KEY,
    SECRET_B64,
    TOKEN,
    RedisProcess,
    audiohook_headers,
    redis_server,
    send_raw,
    upgrade_bytes,
)
from support_http import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # two processes load the Whisper model


def start_server(tmp: Path, name: str, redis_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    secrets = tmp / "secrets"
    secrets.mkdir(exist_ok=True)
    for secret, value in (("token", TOKEN), ("key", API_KEY), ("secret", SECRET_B64)):
        (secrets / secret).write_text(value + "\n", encoding="utf-8")
    config = tmp / f"{name}.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            host: 127.0.0.1
            port: {port}
            public_url: ws://127.0.0.1:{port}
            evidence_url: sqlite:///{name}-evidence.db
            redis_url: {redis_url}
            tenants:
              - name: northwind
                twilio_auth_token_file: secrets/token
                audiohook_api_key_file: secrets/key
                audiohook_client_secret_file: secrets/secret
            """
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config)],
            cwd="/",  # the config's relative paths must not depend on the working directory
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[int, int, RedisProcess]]:
    with redis_server() as redis:
        first, port1 = start_server(tmp_path, "one", redis.url)
        second, port2 = start_server(tmp_path, "two", redis.url)
        try:
            wait_ready(first, port1, tmp_path / "one.log")
            wait_ready(second, port2, tmp_path / "two.log")
            yield port1, port2, redis
        finally:
            for proc in (first, second):
                proc.send_signal(signal.SIGTERM)
            for proc in (first, second):
                assert proc.wait(60) == 0
    assert (tmp_path / "one-evidence.db").is_file() and (tmp_path / "two-evidence.db").is_file()


async def test_a_signed_upgrade_replayed_on_a_second_process_is_refused(
    two_servers: tuple[int, int, RedisProcess],
) -> None:
    port1, port2, _ = two_servers
    # One Host for both: a load balancer's name, as Genesys would sign it.
    host = "audiohook.example.com"
    for n in range(5):
        headers = list(audiohook_headers(host).items())
        accepted = await send_raw(
            port1 if n % 2 else port2, upgrade_bytes("/audiohook", headers, host)
        )
        assert accepted.status == 101
        replays = await asyncio.gather(
            *(send_raw(port, upgrade_bytes("/audiohook", headers, host)) for port in (port1, port2))
        )
        assert [r.status for r in replays] == [401, 401]


async def test_redis_outage_refuses_audiohook_upgrades_with_503(
    two_servers: tuple[int, int, RedisProcess],
) -> None:
    port1, _, redis = two_servers
    redis.stop()
    host = "audiohook.example.com"
    reply = await send_raw(
        port1, upgrade_bytes("/audiohook", list(audiohook_headers(host).items()), host)
    )
    assert reply.status == 503
    health = await send_raw(port1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.status == 200
