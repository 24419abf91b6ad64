"""Verdict → visible on the supervisor console, N concurrent calls (default 8).

A real ``cxguard serve`` (its own process: real faster-whisper, classifiers, ledger, outbox)
judges N copies of the bundled demo call streamed at once over Twilio Media Streams
(``--fast`` plays them as fast as possible, else real time, staggered). Three watchers of the
same tenant measure, for every alert, the time from the verdict being decided
(``decided_at``, server clock) to:

* ``websocket``: the update arriving on a ``/console/live`` client (what the page receives);
* ``chromium``: the alert drawn in a headless chromium page of ``/console`` (``--no-browser``
  to skip);
* ``polling_1s`` (the naive baseline, same run): a dashboard that reloads
  ``/console/api/snapshot`` every second, as refresh-based wallboards do.

Prints one JSON object. Usage: ``python benchmarks/console_latency.py [--calls 8] [--fast]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from support_http import free_port  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from cxguard.runtime.demo import demo_audio  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

TOKEN = "bench-console-token-0123456789"


def _stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 1),
        "p95": pct(0.95),
        "max": round(ordered[-1], 1),
    }


def _serve(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    config = tmp / "server.yaml"
    config.write_text(
        f"port: {port}\nevidence_url: sqlite:///{tmp / 'ev.db'}\ndefault_tenant: bench\n"
        "tenants:\n  - name: bench\n    console_token_env: BENCH_CONSOLE_TOKEN\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CONSOLE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "serve.log").open("ab"),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("cxguard serve never became ready")


async def _websocket_watcher(port: int, seen: dict[str, float], stop: asyncio.Event) -> None:
    url = f"ws://127.0.0.1:{port}/console/live?token={TOKEN}"
    async with connect(url, max_size=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            update = json.loads(raw)
            if update.get("type") == "alert":
                seen.setdefault(update["alert"]["alert_id"], now)


async def _polling_watcher(
    port: int, seen: dict[str, float], stop: asyncio.Event, every_s: float = 1.0
) -> None:
    url = f"http://127.0.0.1:{port}/console/api/snapshot?token={TOKEN}"
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            reply = await client.get(url)
            now = time.time()
            for alert in reply.json()["alerts"]:
                seen.setdefault(alert["alert_id"], now)
            await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


async def run(calls: int, fast: bool, stagger: float, browser: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cxg-console-bench-"))
    port = free_port()
    server = _serve(tmp, port)
    chromium = page = None
    try:
        if browser:
            from support_browser import Chromium

            chromium = Chromium(tmp / "profile")
            page = chromium.open(f"http://127.0.0.1:{port}/console?token={TOKEN}")
            page.wait("document.getElementById('link').textContent === 'live'")
        stop = asyncio.Event()
        by_ws: dict[str, float] = {}
        by_poll: dict[str, float] = {}
        watchers = [
            asyncio.create_task(_websocket_watcher(port, by_ws, stop)),
            asyncio.create_task(_polling_watcher(port, by_poll, stop)),
        ]
        agent, customer = demo_audio()
        url = f"ws://127.0.0.1:{port}/twilio"

        async def one(n: int) -> None:
            await asyncio.sleep(n * stagger)
            await simulate_call(url, agent, customer, SimulationOptions(fast=fast))

        started = time.monotonic()
        await asyncio.gather(*(one(n) for n in range(calls)))
        # Until every call is judged and its alerts are out.
        snapshot_url = f"http://127.0.0.1:{port}/console/api/snapshot?token={TOKEN}"
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                snap = (await client.get(snapshot_url)).json()
                if len(snap["calls"]) == calls and not any(c["live"] for c in snap["calls"]):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.5)  # last outbox deliveries and one more poll
            snap = (await client.get(snapshot_url)).json()
        stop.set()
        await asyncio.gather(*watchers, return_exceptions=True)
        wall = time.monotonic() - started
        drawn: dict[str, float] = {}
        if page is not None:
            drawn = {k: v / 1000 for k, v in page.eval("window.cxguardShown").items()}
        decided = {a["alert_id"]: float(a["decided_at"]) for a in snap["alerts"]}

        series = {"websocket": by_ws, "polling_1s_baseline": by_poll}
        if page is not None:
            series["chromium"] = drawn

        def lags(seen: dict[str, float]) -> list[float]:
            return [1000 * (seen[a] - t) for a, t in decided.items() if a in seen]

        return {
            "calls": calls,
            "playback": "fast" if fast else "real time",
            "alerts": len(decided),
            "wall_s": round(wall, 1),
            "verdict_to_visible_ms": {name: _stats(lags(seen)) for name, seen in series.items()},
            "not_seen": {name: len(set(decided) - set(seen)) for name, seen in series.items()},
        }
    finally:
        if chromium is not None:
            chromium.close()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--fast", action="store_true", help="stream as fast as possible")
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between call starts")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.fast, args.stagger, not args.no_browser))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
