"""``cxguard serve --workers 2``: two sidecar processes on one port (SO_REUSEPORT) both take
calls, share one ledger and one pooled ASR worker (real Redis, real faster-whisper), and stop
on SIGTERM with every call judged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import redis

from cxguard.audio.files import read_audio, write_wav_pcm16
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.simulate import SimulationOptions, simulate_call
from tests.support_services import free_port

DATA = Path(__file__).parent / "data" / "turns"
REDIS_URL = "redis://127.0.0.1:6379/0"
CALLS = 10
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stderr=err, env=ENV)


def _readyz(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return dict(json.loads(reply.read()))
    except OSError:
        return None


def _short_call(tmp: Path) -> tuple[Path, Path]:
    paths = []
    for name in ("agent", "customer"):
        dst = tmp / f"{name}.wav"
        write_wav_pcm16(dst, read_audio(DATA / f"{name}.wav", 8000)[: 12 * 8000], 8000)
        paths.append(dst)
    return paths[0], paths[1]


async def test_two_processes_on_one_port_both_serve_calls(tmp_path: Path) -> None:
    prefix = f"cxgtest:procs:{uuid.uuid4().hex[:8]}"
    port = free_port()
    config = tmp_path / "server.yaml"
    config.write_text(f'asr:\n  device: cpu\n  pool: redis\n  stream: "{prefix}"\n')
    evidence = f"sqlite:///{tmp_path / 'ev.db'}"
    base = [sys.executable, "-m", "cxguard.cli"]
    worker = _start(
        [*base, "asr-worker", "--config", str(config), "--redis-url", REDIS_URL],
        tmp_path / "worker.log",
    )
    serve = [*base, "serve", "--config", str(config), "--port", str(port), "--workers", "2"]
    serve += ["--evidence", evidence, "--redis-url", REDIS_URL]
    sidecars = _start(serve, tmp_path / "serve.log")
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 90
        while len(pids) < 2:  # both children up (each connection goes to one of them)
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            assert sidecars.poll() is None, (tmp_path / "serve.log").read_text()
            ready = await asyncio.to_thread(_readyz, port)
            if ready:
                pids[int(str(ready["pid"]))] = 0
            await asyncio.sleep(0.2)
        agent, customer = _short_call(tmp_path)
        options = SimulationOptions(fast=True, parameters={"authenticated": "false"})
        url = f"ws://127.0.0.1:{port}/twilio"
        results = await asyncio.gather(
            *(simulate_call(url, agent, customer, options) for _ in range(CALLS))
        )
        for _ in range(60):  # every process reports how many calls it took
            ready = await asyncio.to_thread(_readyz, port)
            assert ready is not None
            pids[int(str(ready["pid"]))] = int(str(ready["calls_seen"]))
    finally:
        sidecars.send_signal(signal.SIGTERM)
        code = sidecars.wait(120)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert len(pids) == 2 and sum(pids.values()) == CALLS
    assert all(n > 0 for n in pids.values()), pids  # both processes served calls
    ledger = EvidenceLedger(evidence)
    try:
        for result in results:
            kinds = {e["kind"] for e in ledger.events(result.call_sid)}
            assert {"call_started", "call_ended"} <= kinds
            turns = ledger.turns(result.call_sid)
            assert turns and any(t["text"] for t in turns)  # transcribed by the pooled worker
    finally:
        ledger.close()
