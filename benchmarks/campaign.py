"""Shared parts of the fault-campaign benchmarks (``outage_redis.py``, ``outage_postgres.py``,
``crash_kill9.py``): what the sidecar owes, real calls of the bundled demo audio, and reading
back what Redis and the ledger hold."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import redis.asyncio as aioredis  # noqa: E402

from cxguard.model import Alert, CallInfo, TurnText, Verdict  # noqa: E402
from cxguard.runtime.demo import demo_audio  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402
from cxguard.runtime.verdicts import alert_for, alerts_for  # noqa: E402
from cxguard.sinks.messages import derive_alert_id  # noqa: E402


def _id(alert: Alert) -> str:
    return alert.alert_id or derive_alert_id(alert)


class Seen:
    """Every verdict the sidecar decided (final and mid-turn) with its publish stall."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self.early: list[Verdict] = []
        self.turns: list[TurnText] = []

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        self.verdicts.extend(verdicts)
        if text is not None:
            self.turns.append(text)

    def on_early(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        self.early.extend(verdicts)

    def owed(self) -> dict[str, Verdict]:
        """``{alert id: verdict}`` of every alert the verdicts call for, by the runtime's own
        alerting rules: a failure once (mid-turn if caught there), one alert per turn for
        all its undetermined assertions."""
        out = {_id(alert_for(v, early=True)): v for v in self.early}
        caught: dict[tuple[str, int], set[str]] = {}
        for v in self.early:
            caught.setdefault((v.call_id, v.turn_index), set()).add(v.assertion_id)
        turns: dict[tuple[str, int], list[Verdict]] = {}
        for v in self.verdicts:
            turns.setdefault((v.call_id, v.turn_index), []).append(v)
        for key, vs in turns.items():
            for alert in alerts_for(vs, caught.get(key, set())):
                out[_id(alert)] = alert.verdict
        return out

    def publish_ms(self) -> list[float]:
        """How long each turn's pipeline waited to publish its alerts (the stall)."""
        return [v.latency_ms["publish"] for v in self.verdicts if "publish" in v.latency_ms]


async def demo_call(url: str, delay_s: float, fast: bool, call_sid: str | None = None) -> str:
    await asyncio.sleep(delay_s)
    agent, customer = demo_audio()
    options = SimulationOptions(fast=fast, call_sid=call_sid, parameters={"authenticated": "false"})
    result = await simulate_call(url, agent, customer, options)
    return result.call_sid


async def stream_entries(url: str, key: str) -> list[tuple[float, dict[str, str]]]:
    """``(entry time in epoch s, fields)`` of a Redis stream."""
    client = aioredis.from_url(url, decode_responses=True)
    try:
        entries = await client.xrange(key)
    finally:
        await client.aclose()
    return [(int(i.split("-")[0]) / 1000.0, f) for i, f in entries]


async def drop_keys(url: str, pattern: str) -> None:
    client = aioredis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(pattern)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def delivery(
    owed: dict[str, Verdict], entries: Sequence[tuple[float, dict[str, str]]]
) -> dict[str, Any]:
    """Owed / delivered / lost / duplicated alerts, order per call, and delivery delays."""
    counts: dict[str, int] = {}
    for _, f in entries:
        counts[f.get("alert_id", "")] = counts.get(f.get("alert_id", ""), 0) + 1
    delivered = set(counts) & set(owed)
    in_order = True
    for call in {f["call_id"] for _, f in entries}:
        turns = [
            json.loads(f["data"])["verdict"]["turn_index"]
            for _, f in entries
            if f["call_id"] == call
        ]
        in_order &= turns == sorted(turns)
    delays = sorted(
        at - owed[f["alert_id"]].decided_at_wall for at, f in entries if f.get("alert_id") in owed
    )
    return {
        "owed": len(owed),
        "delivered": len(delivered),
        "lost": len(set(owed) - delivered),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "unexpected": len(set(counts) - set(owed)),
        "order_kept_per_call": in_order,
        "delay_s": summary(delays),
    }


def summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }
