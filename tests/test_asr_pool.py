"""Pooled ASR over the real shared Redis (unique stream keys) with real faster-whisper workers
(``cxguard asr-worker`` subprocesses): a call through the sidecar with ``asr.pool: redis``
gets the verdicts the in-process queue gives; a worker SIGKILLed with segments in hand has
them claimed by another, and every turn is judged exactly once; with no worker at all the
segments end ``undetermined`` at the pool's deadline, not in silence."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cxguard.errors import AsrOverloaded
from cxguard.model import Segment
from cxguard.runtime.asr_pool import RedisAsrPool
from cxguard.runtime.asr_pool_worker import PoolWorker, reply_ttl_ms
from cxguard.runtime.asr_wire import WorkItem, work_streams
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Recorder, Services
from cxguard.runtime.settings import AsrSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

DATA = Path(__file__).parent / "data" / "turns"
REDIS_URL = "redis://127.0.0.1:6379/0"
PARAMETERS = {"authenticated": "false"}
Outcomes = list[tuple[int, str, str]]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"cxgtest:asr:{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)
    client.close()


def _asr(prefix: str, **kw: float) -> AsrSettings:
    return AsrSettings(
        device="cpu",
        stream=prefix,
        max_wait_ms=kw.get("max_wait_ms", 120_000.0),
        pool_timeout_ms=kw.get("pool_timeout_ms", 120_000.0),
        claim_idle_ms=kw.get("claim_idle_ms", 1_000.0),
    )


def _worker(tmp: Path, prefix: str, name: str, batch: int = 4) -> subprocess.Popen[bytes]:
    config = tmp / f"{name}.yaml"
    config.write_text(f'asr:\n  device: cpu\n  stream: "{prefix}"\n  claim_idle_ms: 1000\n')
    cmd = [sys.executable, "-m", "cxguard.cli", "asr-worker", "--redis-url", REDIS_URL]
    cmd += ["--config", str(config), "--name", name, "--batch-size", str(batch)]
    with (tmp / f"{name}.log").open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stderr=err, env={**os.environ, "PYTHONPATH": os.getcwd()})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _call(settings: Settings) -> tuple[Recorder, Services]:
    services = await Services.start(settings)
    recorder = Recorder()
    services.listeners.append(recorder)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                DATA / "agent.wav",
                DATA / "customer.wav",
                SimulationOptions(fast=True, parameters=dict(PARAMETERS)),
            )
            await side.drain()
    finally:
        await services.close()
    return recorder, services


def _outcomes(recorder: Recorder) -> Outcomes:
    return sorted((v.turn_index, v.assertion_id, v.outcome) for v in recorder.verdicts)


@pytest.fixture(scope="module")
def local_outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    tmp = tmp_path_factory.mktemp("local")
    settings = Settings(
        port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}", asr=AsrSettings(device="cpu")
    )
    recorder, _ = asyncio.run(_call(settings))
    outcomes = _outcomes(recorder)
    assert len(recorder.turns) == 5 and outcomes
    return outcomes


def _pooled(tmp: Path, prefix: str) -> Settings:
    asr = dataclasses.replace(_asr(prefix), pool="redis")
    return Settings(port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}", redis_url=REDIS_URL, asr=asr)


async def test_a_pooled_call_gets_the_local_verdicts(
    tmp_path: Path, prefix: str, local_outcomes: Outcomes
) -> None:
    worker = _worker(tmp_path, prefix, "w1")
    try:
        recorder, services = await _call(_pooled(tmp_path, prefix))
    finally:
        _stop(worker)
    assert worker.returncode == 0  # SIGTERM: the worker finished its batch and left
    assert _outcomes(recorder) == local_outcomes
    pool = services.asr
    assert isinstance(pool, RedisAsrPool)
    assert pool.depth == 0 and pool.settled > 0 and pool.duplicates == 0
    assert all(v.segments for v in recorder.verdicts)
    # What KEDA scales the workers on: consumer-group lag (read, acknowledged, deleted: 0).
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for stream in work_streams(prefix):
            (group,) = client.xinfo_groups(stream)
            assert (group["lag"], group["pending"], client.xlen(stream)) == (0, 0, 0)
    finally:
        client.close()


def _pending(client: redis.Redis, prefix: str, consumer: str) -> int:
    total = 0
    for stream in work_streams(prefix):
        try:
            rows = client.xpending_range(
                stream, "asr-workers", "-", "+", 100, consumername=consumer
            )
        except redis.ResponseError:  # the group is not there yet
            continue
        total += len(rows)
    return total


async def test_a_killed_workers_segments_are_claimed_and_judged_once(
    tmp_path: Path, prefix: str, local_outcomes: Outcomes
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    first = _worker(tmp_path, prefix, "doomed")
    second: subprocess.Popen[bytes] | None = None
    killed_with = 0

    async def kill_when_busy() -> None:
        nonlocal killed_with, second
        while (killed_with := _pending(client, prefix, "doomed")) == 0:
            assert first.poll() is None, (tmp_path / "doomed.log").read_text()
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # mid-batch: no reply, no ack for what it holds
        first.wait()
        second = _worker(tmp_path, prefix, "heir")

    try:
        killer = asyncio.get_running_loop().create_task(kill_when_busy())
        recorder, services = await _call(_pooled(tmp_path, prefix))
        await killer
    finally:
        for proc in (first, second):
            if proc is not None:
                _stop(proc)
        client.close()
    assert first.returncode == -signal.SIGKILL and killed_with > 0
    assert "claimed" in (tmp_path / "heir.log").read_text()
    outcomes = _outcomes(recorder)
    assert outcomes == local_outcomes
    assert len(set(outcomes)) == len(outcomes)  # no (turn, assertion) judged twice
    pool = services.asr
    assert isinstance(pool, RedisAsrPool) and pool.depth == 0


async def test_without_a_worker_segments_end_undetermined_at_the_deadline(prefix: str) -> None:
    pool = RedisAsrPool(REDIS_URL, _asr(prefix, pool_timeout_ms=300.0))
    try:
        seg = Segment("agent", b"\0\0" * 16000, 16000, 0.0, 1000.0)
        started = time.monotonic()
        with pytest.raises(AsrOverloaded, match="no transcript from the ASR pool"):
            await asyncio.wait_for(pool.submit(seg), 10)
        assert 0.25 < time.monotonic() - started < 5
        assert pool.depth == 0
    finally:
        await pool.close()
    # The segment is still on the work stream: a worker that comes later answers a sidecar
    # that has moved on, and the deadline in the entry makes it refuse without decoding.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.xlen(work_streams(prefix)[0]) == 1
    finally:
        client.close()


async def test_a_redis_outage_mid_batch_loses_no_segment(tmp_path: Path) -> None:
    """Redis (a private instance, fsync'd) stops while a worker holds segments: its replies
    cannot be written, it keeps retrying, and after the restart it claims its own pending
    entries again; the sidecar's reader reconnects; every segment gets one transcript."""
    from tests.support_services import RedisServer
    from tests.test_runtime_asr_worker import _agent_segments

    segments = list(_agent_segments().values())[:4]
    prefix = "cxgtest:outage"
    with RedisServer() as private:
        pool = RedisAsrPool(private.url, _asr(prefix))
        config = tmp_path / "w.yaml"
        config.write_text(f'asr:\n  device: cpu\n  stream: "{prefix}"\n  claim_idle_ms: 1000\n')
        cmd = [sys.executable, "-m", "cxguard.cli", "asr-worker", "--redis-url", private.url]
        with (tmp_path / "w.log").open("wb") as err:
            worker = subprocess.Popen(
                [*cmd, "--config", str(config), "--name", "wz"],
                stderr=err,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
        client = redis.Redis.from_url(private.url, socket_timeout=5)
        try:
            futures = [pool.submit(s) for s in segments]
            started = time.monotonic()
            while _pending(client, prefix, "wz") == 0:
                assert time.monotonic() - started < 90, (tmp_path / "w.log").read_text()
                assert worker.poll() is None, (tmp_path / "w.log").read_text()
                await asyncio.sleep(0.01)
            private.stop()  # the worker is mid-batch: its replies cannot be written
            await asyncio.sleep(2.0)
            private.start()
            results = await asyncio.wait_for(asyncio.gather(*futures), 60)
        finally:
            client.close()
            _stop(worker)
            await asyncio.wait_for(pool.close(), 30)
    assert len(results) == 4 and all(r.text for r in results)
    assert pool.settled == len(segments) and pool.depth == 0
    log = (tmp_path / "w.log").read_text()
    assert "Redis unavailable" in log and "claimed" in log


def test_a_dead_sidecars_reply_stream_expires(prefix: str) -> None:
    # A segment whose sidecar is gone (nobody reads its reply stream), past its deadline: the
    # worker answers it unread, and the reply stream is set to expire instead of staying forever.
    client = redis.Redis.from_url(REDIS_URL)
    settings = _asr(prefix, pool_timeout_ms=5_000.0)
    reply = f"{prefix}:reply:gone"
    seg = Segment("agent", b"\x00\x00" * 800, 8000, 0.0, 100.0)
    now = time.time()
    item = WorkItem("gone:0", reply, "call-1", "default", seg, now - 10, now - 5)

    def never(*_: object, **__: object) -> list[Any]:
        raise AssertionError("a segment past its deadline is not transcribed")

    worker = PoolWorker(client, settings, never, name="w-ttl")
    client.xadd(work_streams(prefix)[0], item.encode())  # type: ignore[arg-type]
    running = threading.Thread(target=worker.run)
    running.start()
    until = time.time() + 10
    while worker.done == 0 and time.time() < until:
        time.sleep(0.05)
    worker.stop.set()
    running.join(10)
    try:
        assert worker.done == 1
        assert client.xlen(reply) == 1
        ttl = int(client.pttl(reply))
        assert 0 < ttl <= reply_ttl_ms(settings) == 10_000
    finally:
        client.close()
