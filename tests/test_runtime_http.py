"""The sidecar's plain-HTTP endpoints: /healthz, /readyz, /metrics, and unknown routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import Sidecar, running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call


async def _get(host: str, port: int, path: str) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, int]]:
    settings = Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}")
    services = await Services.start(settings)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            yield side, next(iter(server.sockets)).getsockname()[1]
    finally:
        await services.close()


async def test_health_and_readiness(sidecar: tuple[Sidecar, int]) -> None:
    side, port = sidecar
    status, _, body = await _get("127.0.0.1", port, "/healthz")
    assert (status, body) == (200, "ok\n")
    status, headers, body = await _get("127.0.0.1", port, "/readyz")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["ready"] is True
    side.ready = False
    status, _, _ = await _get("127.0.0.1", port, "/readyz")
    assert status == 503


async def test_unknown_route_is_404(sidecar: tuple[Sidecar, int]) -> None:
    _, port = sidecar
    status, _, _ = await _get("127.0.0.1", port, "/nope")
    assert status == 404


def _metric(text: str, name: str, labels: str = "", default: float | None = None) -> float:
    prefix = f"{name}{{{labels}}}" if labels else name
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix + " ")
    ]
    if not values and default is not None:
        return default
    assert values, f"{prefix} not exported"
    return values[0]


async def test_metrics_count_a_call(sidecar: tuple[Sidecar, int]) -> None:
    side, port = sidecar
    _, _, before = await _get("127.0.0.1", port, "/metrics")
    agent, customer = demo_audio()
    await simulate_call(
        f"ws://127.0.0.1:{port}/twilio", agent, customer, SimulationOptions(fast=True)
    )
    await side.drain()
    status, headers, after = await _get("127.0.0.1", port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    calls = 'source="twilio"'
    assert (
        _metric(after, "cxguard_calls_total", calls)
        - _metric(before, "cxguard_calls_total", calls, 0)
    ) == 1
    assert _metric(after, "cxguard_active_calls", calls) == 0
    turns = _metric(after, "cxguard_turns_total", 'speaker="agent"') - _metric(
        before, "cxguard_turns_total", 'speaker="agent"', 0
    )
    assert turns >= 9
    assert _metric(after, "cxguard_verdicts_total", 'outcome="fail"') >= 5
    assert _metric(after, "cxguard_stage_latency_seconds_count", 'stage="end_to_verdict"') >= 9
    assert "cxguard_asr_queue_depth" in after
