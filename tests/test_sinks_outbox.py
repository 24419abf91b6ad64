"""The durable outbox against a private redis-server we stop and freeze, and a local HTTP
receiver that is down: every message delivered once, in order, after the outage; states
reported; a restart replays what was left."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support_http import RecordingServer, Reply
from support_services import RedisServer

from cxguard.errors import SinkError
from cxguard.model import Alert, HandoffRequest, Verdict
from cxguard.sinks import (
    Outbox,
    OutboxMessage,
    OutboxOptions,
    OutboxStore,
    RedisAlertSink,
    Route,
    alert_message,
    derive_alert_id,
    handoff_key,
    handoff_message,
)
from cxguard.sinks.webhook import WebhookHandoff

FAST = OutboxOptions(retry_initial_s=0.05, retry_max_s=0.2, attempt_timeout_s=0.5)


def alert(call: str, turn: int, tenant: str = "acme", assertion: str = "a") -> Alert:
    v = Verdict(call, tenant, turn, "agent", turn * 1000.0, turn * 1000.0 + 500, "[CARD] read",
                assertion, "fail", "matched", actions=("alert",))  # fmt: skip
    return Alert(v, "violation", f"{assertion} failed on turn {turn}")


class States:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, msg: OutboxMessage, sink: str, state: str, data: Mapping[str, Any]) -> None:
        self.seen.append((msg.message_id, sink, state))


async def _entries(url: str, tenant: str = "acme") -> list[dict[str, str]]:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        return [f for _, f in await client.xrange(f"cxguard:{tenant}:alerts")]
    finally:
        await client.aclose()


async def _until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_alert_ids_are_about_the_finding_not_its_wording() -> None:
    a = alert("CA1", 3)
    reworded = Alert(a.verdict, a.kind, "other words [evidence pending]")
    assert derive_alert_id(a) == derive_alert_id(reworded)
    assert derive_alert_id(a) != derive_alert_id(alert("CA1", 3, tenant="other"))
    assert derive_alert_id(a) != derive_alert_id(alert("CA1", 4))
    assert handoff_key("acme", "CA1") != handoff_key("globex", "CA1")


@pytest.mark.parametrize("fault", ["stop", "freeze"])
async def test_redis_outage_loses_nothing_duplicates_nothing_keeps_order(
    tmp_path: Path, fault: str
) -> None:
    with RedisServer() as redis:
        states = States()
        sink = RedisAlertSink(redis.url, timeout_s=0.3, retries=0)
        outbox = Outbox(OutboxStore(tmp_path / "outbox.db"), [Route(sink)], FAST, states)
        outbox.start()
        try:
            for turn in range(3):
                await outbox.put([alert_message(alert(f"CA{turn % 3}", turn))])
            await _until(lambda: _count(redis.url, 3))
            redis.stop() if fault == "stop" else redis.freeze()
            started = time.monotonic()
            for turn in range(3, 30):
                await outbox.put([alert_message(alert(f"CA{turn % 3}", turn))])
            assert time.monotonic() - started < 1.0  # putting never waits on Redis
            await asyncio.sleep(1.5)
            redis.start() if fault == "stop" else redis.thaw()
            await _until(lambda: _count(redis.url, 30))
            await asyncio.sleep(0.5)
        finally:
            await outbox.close()
        entries = await _entries(redis.url)
    ids = [e["alert_id"] for e in entries]
    assert len(ids) == len(set(ids)) == 30
    for call in ("CA0", "CA1", "CA2"):
        turns = [
            json.loads(e["data"])["verdict"]["turn_index"] for e in entries if e["call_id"] == call
        ]
        assert turns == sorted(turns)
    retrying = [s for s in states.seen if s[2] == "retrying"]
    assert retrying and len([s for s in states.seen if s[2] == "delivered"]) == 30


async def _count(url: str, n: int) -> bool:
    try:
        return len(await _entries(url)) >= n
    except (OSError, ConnectionError, aioredis.ConnectionError):
        return False


async def test_a_restart_replays_what_was_left_and_sinks_drop_repeats(tmp_path: Path) -> None:
    with RedisServer() as redis:
        down = RedisAlertSink("redis://127.0.0.1:1/0", timeout_s=0.2, retries=0)
        first = Outbox(OutboxStore(tmp_path / "outbox.db"), [Route(down)], FAST)
        first.start()
        messages = [alert_message(alert("CA1", t)) for t in range(5)]
        assert await first.put(messages) == 5
        assert await first.put(messages[:2]) == 0  # the same ids are stored once
        await first.close(flush_s=0.3)
        # Already on the stream once (delivered, say, just before a crash).
        up = RedisAlertSink(redis.url, timeout_s=1.0, retries=0)
        up.name = "redis"
        await up.deliver(messages[0])
        second = Outbox(OutboxStore(tmp_path / "outbox.db"), [Route(up)], FAST)
        second.start()
        try:
            await _until(lambda: _count(redis.url, 5))
            await asyncio.sleep(0.3)
            assert (await second.counts())["redis"] == {"delivered": 5}
        finally:
            await second.close()
        entries = await _entries(redis.url)
    assert [json.loads(e["data"])["verdict"]["turn_index"] for e in entries] == [0, 1, 2, 3, 4]


class Refusing:
    name = "refusing"

    def accepts(self, message: OutboxMessage) -> bool:
        return True

    async def deliver(self, message: OutboxMessage) -> None:
        if message.call_id == "bad":
            raise SinkError("HTTP 400: no")

    async def close(self) -> None:
        return None


async def test_a_refused_message_fails_for_good_and_the_rest_go_on(tmp_path: Path) -> None:
    states = States()
    outbox = Outbox(OutboxStore(tmp_path / "o.db"), [Route(Refusing())], FAST, states)
    outbox.start()
    try:
        await outbox.put([alert_message(alert("bad", 0)), alert_message(alert("good", 1))])
        await _until(lambda: _done(outbox, "refusing", 2))
    finally:
        await outbox.close()
    assert [s[2] for s in states.seen] == ["retrying", "failed", "delivered"]


async def _done(outbox: Outbox, sink: str, n: int) -> bool:
    counts = (await outbox.counts()).get(sink, {})
    return counts.get("delivered", 0) + counts.get("failed", 0) >= n


async def test_routes_filter_by_kind_tenant_and_severity(tmp_path: Path) -> None:
    sink = Refusing()
    route = Route(sink, kinds=frozenset({"alert"}), tenants=frozenset({"acme"}),
                  severities=frozenset({"critical"}))  # fmt: skip
    outbox = Outbox(OutboxStore(tmp_path / "o.db"), [route], FAST)
    crit = alert("good", 0)
    crit = replace(crit, verdict=replace(crit.verdict, severity="critical"))
    assert await outbox.put([alert_message(crit)]) == 1
    assert await outbox.put([alert_message(alert("good", 1))]) == 0  # "major"
    other = replace(crit, verdict=replace(crit.verdict, tenant="globex"))
    assert await outbox.put([alert_message(other)]) == 0
    await outbox.close(flush_s=0)


async def test_webhook_handoff_is_replayed_after_the_receiver_was_down(tmp_path: Path) -> None:
    recorder = RecordingServer([Reply(503), Reply(503), Reply(200)])
    hook = WebhookHandoff(recorder.url, b"secret", timeout_s=1.0, retries=0)
    outbox = Outbox(
        OutboxStore(tmp_path / "o.db"), [Route(hook, kinds=frozenset({"handoff"}))], FAST
    )
    outbox.start()
    req = HandoffRequest("CA1", "acme", "twilio", "esc", 3, "asked for a human",
                         handoff_key("acme", "CA1"), 1.0)  # fmt: skip
    try:
        await outbox.put([handoff_message(req), alert_message(alert("CA1", 3))])
        await _until(lambda: _done(outbox, "webhook", 1))
    finally:
        await outbox.close()
        recorder.close()
    assert len(recorder.received) == 3  # two refusals by a receiver that was down, then taken
    keys = {r.headers["idempotency-key"] for r in recorder.received}
    assert keys == {req.idempotency_key}
