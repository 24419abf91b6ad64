"""Sidecar processes × pooled ASR workers over a real Redis on loopback, beside the single
in-process sidecar (the baseline, in the same run).

Per configuration: W ``cxguard asr-worker`` processes and S ``cxguard serve`` processes
(``asr.pool: redis``, each its own ledger and state dir) on fresh stream keys; N copies of the
bundled two-track call stream as Twilio Media Streams at real-time pace, spread round-robin
over the sidecars; then every verdict is read back from the ledgers.

``p50_ms``/``p95_ms`` = the VAD closed the turn → every verdict of the turn decided (server
clock, as in ``latency.py``; most of it is the wait for the speaker turn to end);
``transcript_*`` = the turn's last segment closed → its transcript in hand (what pooling
changes: the Redis round trip and the workers' queue). ``dropped_turns``: turns
``undetermined`` because ASR refused them (queue full / waited too long). ``lost_turns``: turns
whose transcript never came (the pool's deadline: ``undetermined``, "no transcript from the ASR
pool"). ``judged_twice``: (turn, assertion) pairs with more than one verdict.
``left_on_streams``: work entries unread or unacknowledged at the end; ``claimed_segments``:
what workers took over from a dead one (``XAUTOCLAIM``); ``sidecar_cpu_s``/``worker_cpu_s``:
CPU the processes used, model loads included; ``call_cpu_s``/``call_cpu_ms_per_turn``: CPU of
every process from the calls' start to the end, start-up excluded (a replacement worker's
model load is included): the cost of the split at equal load, against the in-process row
(``--sidecars 1 2 4 --workers 1`` with the same ``--calls``). ``--kill-worker-at
SECONDS`` SIGKILLs the first worker at the first moment after SECONDS (from the calls' start)
that it holds segments (with more than one worker the others claim what it held; with one, a
replacement is started, as a Deployment would).

    python benchmarks/scale.py --json --calls 2 --duration 20 --sidecars 1 2 --workers 1 2
    python benchmarks/scale.py --json --calls 2 --sidecars 1 --workers 2 --kill-worker-at 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import _free_port, _pct, _play_calls, _wait_ready  # noqa: E402

from cxguard.evidence.ledger import EvidenceLedger  # noqa: E402
from cxguard.runtime.asr_wire import work_streams  # noqa: E402

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def _config(tmp: Path, prefix: str, pooled: bool, claim_idle_ms: float) -> Path:
    lines = ["asr:", "  device: cpu"]
    if pooled:
        lines += ["  pool: redis", f'  stream: "{prefix}"', f"  claim_idle_ms: {claim_idle_ms}"]
    path = tmp / f"{'pool' if pooled else 'local'}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _worker(config: Path, redis_url: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "cxguard.cli", "asr-worker", "--config", str(config)]
    cmd += ["--redis-url", redis_url, "--name", name]
    with log.open("ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)


def _sidecar(
    config: Path, redis_url: str, evidence: str, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config)]
    cmd += ["--port", str(port), "--evidence", evidence, "--redis-url", redis_url]
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    return proc, port


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _claimed(logs: list[Path]) -> int:
    total = 0
    for log in logs:
        for m in re.finditer(r"claimed (\d+) abandoned", log.read_text(errors="replace")):
            total += int(m.group(1))
    return total


def _held(client: redis.Redis, prefix: str, consumer: str) -> int:
    """Segments ``consumer`` has read and not acknowledged."""
    held = 0
    for stream in work_streams(prefix):
        with contextlib.suppress(redis.ResponseError):  # no group yet
            held += len(client.xpending_range(stream, "asr-workers", "-", "+", 100, consumer))
    return held


def _left(client: redis.Redis, prefix: str) -> int:
    left = 0
    for stream in work_streams(prefix):
        if client.exists(stream):
            left += int(client.xlen(stream))
    return left


def run(
    sidecars: int,
    workers: int,
    calls: int,
    duration: float,
    redis_url: str,
    kill_at: float | None,
    claim_idle_ms: float,
) -> dict[str, Any]:
    """One configuration; ``workers == 0`` is the in-process baseline (no Redis)."""
    tmp = Path(tempfile.mkdtemp(prefix="cxg-scale-"))
    prefix = f"cxgbench:scale:{uuid.uuid4().hex[:8]}"
    pooled = workers > 0
    config = _config(tmp, prefix, pooled, claim_idle_ms)
    client = redis.Redis.from_url(redis_url)
    procs: list[subprocess.Popen[bytes]] = []
    pool = [_worker(config, redis_url, f"w{i}", tmp / f"w{i}.log") for i in range(workers)]
    procs += pool
    ledgers = [f"sqlite:///{tmp / f'ev{i}.db'}" for i in range(sidecars)]
    sides = [_sidecar(config, redis_url, ev, tmp / f"s{i}.log") for i, ev in enumerate(ledgers)]
    procs += [p for p, _ in sides]
    killed: list[str] = []
    try:
        for _, port in sides:
            _wait_ready(port, 120)
        time.sleep(3.0 if pooled else 0.0)  # let the workers load their models
        # CPU already spent (model loads, warm-up): subtracted, so the rows compare the
        # cost of the calls themselves at equal load.
        loaded = {p.pid: _cpu_s(p.pid) for p in procs}
        rng = random.Random(7)
        t0 = time.time() + 1.0
        starts = [t0] + [t0 + rng.uniform(0, 3.0) for _ in range(calls - 1)]
        if kill_at is not None and pool:

            def kill() -> None:
                time.sleep(max(0.0, t0 + kill_at - time.time()))
                # ...at the first moment it holds segments (mid-batch), so the fault is real.
                held, until = 0, time.time() + 30
                while (held := _held(client, prefix, "w0")) == 0 and time.time() < until:
                    time.sleep(0.005)
                pool[0].send_signal(signal.SIGKILL)
                killed.append(f"w0 holding {held}")
                if len(pool) == 1:  # a Deployment would start a replacement
                    procs.append(_worker(config, redis_url, "w0b", tmp / "w0b.log"))

            threading.Thread(target=kill, daemon=True).start()
        # Each sidecar gets its share of the calls, all streaming at once.
        runs = []
        threads = []
        results: dict[int, list[Any]] = {}
        for i, (_, port) in enumerate(sides):
            mine = starts[i::sidecars]

            def play(i: int = i, port: int = port, mine: list[float] = mine) -> None:
                results[i] = _play_calls(f"ws://127.0.0.1:{port}/twilio", mine, duration, 1)

            threads.append(threading.Thread(target=play))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(3.0 + (claim_idle_ms / 1000 if killed else 0.0))
        deadline = time.time() + 60
        while pooled and _left(client, prefix) and time.time() < deadline:
            time.sleep(0.5)
        for i in range(sidecars):
            runs += [(i, r) for r in results.get(i, [])]
        left = _left(client, prefix) if pooled else 0
        side_cpu = sum(_cpu_s(p.pid) for p, _ in sides if p.poll() is None)
        side_procs = [p for p, _ in sides]
        asr_cpu = sum(_cpu_s(p.pid) for p in procs if p not in side_procs and p.poll() is None)
        call_cpu = sum(_cpu_s(p.pid) - loaded.get(p.pid, 0.0) for p in procs if p.poll() is None)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
    row = _tally(sidecars, workers, calls, runs, ledgers, left, killed)
    row["claimed_segments"] = _claimed(sorted(tmp.glob("w*.log")))
    # CPU of the processes still alive at the end (a killed worker's share is not counted).
    row["sidecar_cpu_s"] = round(side_cpu, 1)
    row["worker_cpu_s"] = round(asr_cpu, 1)
    row["call_cpu_s"] = round(call_cpu, 2)
    turns = row.get("turns") or 0
    row["call_cpu_ms_per_turn"] = round(1000 * call_cpu / turns, 1) if turns else None
    return row


def _tally(
    sidecars: int,
    workers: int,
    calls: int,
    runs: list[tuple[int, Any]],
    ledgers: list[str],
    left: int,
    killed: list[str],
) -> dict[str, Any]:
    closed: list[float] = []
    heard: list[float] = []
    turns = dropped = lost = twice = 0
    opened = [EvidenceLedger(url) for url in ledgers]
    try:
        for i, run in runs:
            ledger = opened[i]
            by_turn: dict[int, list[dict[str, Any]]] = {}
            for r in ledger.export(call_id=run.call_sid):
                by_turn.setdefault(r["turn"], []).append(r)
            recorded = {t["turn"]: t for t in ledger.turns(run.call_sid)}
            turns += len(recorded)
            for t in recorded.values():
                why = t["undetermined_reason"] or ""
                if "ASR pool" in why:  # the transcript never came
                    lost += 1
                elif "ASR" in why and ("queue" in why or "waited" in why or "full" in why):
                    dropped += 1
            for vs in by_turn.values():
                keys = [(v["assertion"], v["trigger_turn"]) for v in vs]
                twice += len(keys) - len(set(keys))
                lat = [v["latency_ms"] for v in vs if v.get("latency_ms")]
                if lat:
                    closed.append(max(x.get("end_to_verdict", 0.0) for x in lat))
                    heard.append(max(x.get("asr_wait", 0.0) for x in lat))
    finally:
        for ledger in opened:
            ledger.close()
    return {
        "sidecars": sidecars,
        "asr_workers": workers,
        "pool": "redis" if workers else "local",
        "calls": calls,
        "turns": turns,
        "p50_ms": _pct(closed, 50),
        "p95_ms": _pct(closed, 95),
        "transcript_p50_ms": _pct(heard, 50),
        "transcript_p95_ms": _pct(heard, 95),
        "dropped_turns": dropped,
        "lost_turns": lost,
        "judged_twice": twice,
        "left_on_streams": left,
        "killed_workers": killed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sidecars", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each call played")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--kill-worker-at", type=float, default=None)
    ap.add_argument("--claim-idle-ms", type=float, default=3000.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process sidecar")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    configs = [] if args.no_baseline else [(1, 0)]
    configs += [(s, w) for s in args.sidecars for w in args.workers]
    rows = []
    for s, w in configs:
        kill = args.kill_worker_at if w else None
        row = run(s, w, args.calls, args.duration, args.redis_url, kill, args.claim_idle_ms)
        rows.append(row)
        print(json.dumps(row) if args.json else row, flush=True)


if __name__ == "__main__":
    main()
