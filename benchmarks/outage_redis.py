"""Redis stopped, and frozen (SIGSTOP), for ``--outage`` s under ``--calls`` real-time calls.

The sidecar runs in-process against a private ``redis-server`` (its own port, fsync'd AOF)
and streams the bundled demo call over real websockets (real Whisper, real ledger). The
outage starts ``--at`` s into the calls. Every verdict the sidecar decided says which alerts
it owes (stable ids); afterwards the tenant's Redis stream says which arrived, how often, in
what order and how late. A naive baseline runs in the same process: each owed alert is also
sent once with a plain ``XADD`` (2 s timeout, no retry), as the sidecar did before the outbox.

    python benchmarks/outage_redis.py --calls 6 --outage 30 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from campaign import Seen, delivery, demo_call, stream_entries, summary  # isort: skip
from support_services import RedisServer  # isort: skip

import redis.asyncio as aioredis

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.verdicts import alert_for, alerts_for
from cxguard.sinks.messages import derive_alert_id


class NaivePublisher:
    """The pre-outbox path: one XADD per alert, 2 s timeout, logged and dropped on failure."""

    def __init__(self, url: str, key: str) -> None:
        self.key = key
        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed = 0

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        for alert in alerts_for(verdicts):
            self._spawn(alert.alert_id or derive_alert_id(alert))

    def on_early(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self._spawn(alert_for(v, early=True).alert_id or "")

    def _spawn(self, alert_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(alert_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, alert_id: str) -> None:
        try:
            await self.client.xadd(self.key, {"alert_id": alert_id})
        except (aioredis.RedisError, OSError):
            self.failed += 1


async def run_mode(mode: str, calls: int, outage_s: float, at_s: float) -> dict[str, Any]:
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="cxg-outage-redis-"))
    seen = Seen()
    with RedisServer() as redis:
        settings = Settings(
            port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}", redis_url=redis.url,
            default_tenant=tenant,
        )  # fmt: skip
        naive = NaivePublisher(redis.url, f"naive:{tenant}")
        services = await Services.start(settings)
        services.listeners += [seen, naive]
        services.early_listeners += [seen.on_early, naive.on_early]
        window: dict[str, float] = {}
        try:
            async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
                url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/twilio"
                streams = [
                    asyncio.create_task(demo_call(url, 0.3 * i, False)) for i in range(calls)
                ]
                await asyncio.sleep(at_s)
                window["start"] = time.time()
                redis.stop() if mode == "stop" else redis.freeze()
                await asyncio.sleep(outage_s)
                redis.start() if mode == "stop" else redis.thaw()
                window["end"] = time.time()
                await asyncio.gather(*streams)
                await side.drain()
        finally:
            await services.close()
            await asyncio.gather(*naive.tasks, return_exceptions=True)
            await naive.client.aclose()
        entries = await stream_entries(redis.url, f"cxguard:{tenant}:alerts")
        naive_entries = await stream_entries(redis.url, f"naive:{tenant}")
    owed = seen.owed()
    during = [v for v in owed.values() if window["start"] <= v.decided_at_wall <= window["end"]]
    naive_ids = {f["alert_id"] for _, f in naive_entries}
    return {
        "benchmark": "outage_redis",
        "mode": mode,
        "calls": calls,
        "outage_s": outage_s,
        "outage_at_s": at_s,
        "turns": len(seen.turns),
        "owed_during_outage": len(during),
        **delivery(owed, entries),
        "publish_stall_ms": summary(seen.publish_ms()),
        "naive_baseline": {
            "delivered": len(naive_ids & set(owed)),
            "lost": len(set(owed) - naive_ids),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--at", type=float, default=20.0, help="Seconds into the calls.")
    ap.add_argument("--mode", choices=["stop", "freeze", "both"], default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    modes = ["stop", "freeze"] if args.mode == "both" else [args.mode]
    for mode in modes:
        out = asyncio.run(run_mode(mode, args.calls, args.outage, args.at))
        print(json.dumps(out) if args.json else out, flush=True)


if __name__ == "__main__":
    main()
