"""RedisAlertSink against the real Redis on 127.0.0.1:6379 (one fresh tenant per test)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from cxguard.errors import SinkError, SinkUnavailable
from cxguard.model import Alert, HandoffRequest, Verdict
from cxguard.sinks import RedisAlertSink, to_json_dict

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    r: aioredis.Redis = aioredis.Redis.from_url(URL, decode_responses=True)
    yield r
    await r.aclose()


@pytest.fixture
async def tenant(client: aioredis.Redis) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [k async for k in client.scan_iter(match=f"cxguard:{name}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def sink() -> AsyncIterator[RedisAlertSink]:
    s = RedisAlertSink(URL)
    yield s
    await s.close()


def alert(tenant: str, n: int = 0, kind: Any = "violation") -> Alert:
    v = Verdict(
        call_id=f"CA{n}",
        tenant=tenant,
        turn_index=n,
        speaker="agent",
        start_ms=1000.0,
        end_ms=2500.0,
        text="I can't help with that, [CARD] noted",
        assertion_id="no_pan_echo",
        outcome="fail",
        evidence="pattern matched",
        actions=("alert", "handoff"),
        scores={"p": 0.93},
        model_ids={"asr": "tiny.en"},
        latency_ms={"asr": 400.0},
        decided_at_wall=1_700_000_000.5,
    )
    return Alert(verdict=v, kind=kind, message="agent echoed a card number")


def handoff(tenant: str, key: str) -> HandoffRequest:
    return HandoffRequest(
        call_id="CA1",
        tenant=tenant,
        source="twilio",
        assertion_id="escalate_on_request",
        turn_index=4,
        reason="customer asked for a human twice",
        idempotency_key=key,
        requested_at_wall=1_700_000_001.0,
    )


async def test_publish_appends_to_stream_and_publishes(
    sink: RedisAlertSink, client: aioredis.Redis, tenant: str
) -> None:
    key = f"cxguard:{tenant}:alerts"
    assert sink.alerts_key(tenant) == key
    pubsub = client.pubsub()
    await pubsub.subscribe(key)
    assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"  # type: ignore[index]

    a = alert(tenant)
    await sink.publish(a)

    ((_entry_id, fields),) = await client.xrange(key)
    assert fields["kind"] == "violation" and fields["call_id"] == "CA0"
    assert fields["assertion_id"] == "no_pan_echo"
    body = json.loads(fields["data"])
    assert body == to_json_dict(a)
    assert body["type"] == "alert" and body["verdict"]["actions"] == ["alert", "handoff"]

    message = None
    for _ in range(20):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            break
    assert message is not None and message["channel"] == key
    assert message["data"] == fields["data"]
    await pubsub.aclose()


async def test_blocking_xread_and_consumer_group(
    sink: RedisAlertSink, client: aioredis.Redis, tenant: str
) -> None:
    key = sink.alerts_key(tenant)
    await client.xgroup_create(key, "supervisors", id="$", mkstream=True)
    # From "0-0", not "$": whether XREAD blocks first or the alerts land first, it sees them.
    reader = asyncio.create_task(client.xread({key: "0-0"}, block=5000, count=10))
    await asyncio.sleep(0)
    for n in range(3):
        await sink.publish(alert(tenant, n))
    ((stream, entries),) = await reader
    assert stream == key and len(entries) >= 1

    got = await client.xreadgroup("supervisors", "desk-1", {key: ">"}, count=10)
    ((_, group_entries),) = got
    assert [json.loads(f["data"])["verdict"]["call_id"] for _, f in group_entries] == [
        "CA0",
        "CA1",
        "CA2",
    ]
    assert await client.xack(key, "supervisors", *[i for i, _ in group_entries]) == 3


async def test_stream_is_trimmed_approximately(client: aioredis.Redis, tenant: str) -> None:
    async with RedisAlertSink(URL, stream_maxlen=10) as small:
        for n in range(300):
            await small.publish(alert(tenant, n))
    length = await client.xlen(f"cxguard:{tenant}:alerts")
    assert 10 <= length < 300


async def test_tenants_are_isolated_and_validated(
    sink: RedisAlertSink, client: aioredis.Redis, tenant: str
) -> None:
    other = f"{tenant}.other"
    try:
        await sink.publish(alert(tenant, 1))
        await sink.publish(alert(other, 2))
        mine = await client.xrange(sink.alerts_key(tenant))
        theirs = await client.xrange(sink.alerts_key(other))
        assert [f["call_id"] for _, f in mine] == ["CA1"]
        assert [f["call_id"] for _, f in theirs] == ["CA2"]
    finally:
        await client.delete(sink.alerts_key(other))
    for bad in ["", "a:b", "a*", "x" * 65, "acme corp", "tenant\n"]:
        with pytest.raises(SinkError, match="invalid tenant"):
            await sink.publish(alert(bad))
    assert await client.keys("cxguard:a:*") == []


async def test_handoff_once_per_idempotency_key(
    sink: RedisAlertSink, client: aioredis.Redis, tenant: str
) -> None:
    key = f"cxguard:{tenant}:handoffs"
    pubsub = client.pubsub()
    await pubsub.subscribe(key)
    await pubsub.get_message(timeout=2)

    await sink.publish_handoff(handoff(tenant, "CA1:escalate:4"))
    await sink.publish_handoff(handoff(tenant, "CA1:escalate:4"))  # a retry: no second entry
    await sink.publish_handoff(handoff(tenant, "CA1:escalate:7"))

    entries = await client.xrange(key)
    assert len(entries) == 2
    body = json.loads(entries[0][1]["data"])
    assert body["type"] == "handoff" and body["idempotency_key"] == "CA1:escalate:4"
    assert entries[0][1]["kind"] == "handoff"
    ttl = await client.ttl(sink.handoff_marker_key(tenant, "CA1:escalate:4"))
    assert 0 < ttl <= 24 * 3600

    received = []
    for _ in range(20):
        m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if m is not None:
            received.append(json.loads(m["data"])["idempotency_key"])
        if len(received) == 2:
            break
    assert received == ["CA1:escalate:4", "CA1:escalate:7"]
    await pubsub.aclose()


async def test_unreachable_redis_is_sink_unavailable(tenant: str) -> None:
    dead = RedisAlertSink("redis://127.0.0.1:1/0", timeout_s=0.5, retries=0)
    with pytest.raises(SinkUnavailable):
        await dead.publish(alert(tenant))
    with pytest.raises(SinkUnavailable):
        await dead.publish_handoff(handoff(tenant, "k"))
    with pytest.raises(SinkUnavailable):
        await dead.ping()
    await dead.close()


async def test_other_redis_errors_are_sink_errors(
    sink: RedisAlertSink, client: aioredis.Redis, tenant: str
) -> None:
    await client.set(sink.alerts_key(tenant), "not a stream")
    with pytest.raises(SinkError) as info:
        await sink.publish(alert(tenant))
    assert not isinstance(info.value, SinkUnavailable)
    await sink.ping()  # the connection itself is fine


def test_bad_configuration() -> None:
    with pytest.raises(SinkError, match="URL"):
        RedisAlertSink("http://127.0.0.1:6379")
    with pytest.raises(SinkError):
        RedisAlertSink(URL, stream_maxlen=0)
    with pytest.raises(SinkError, match="prefix"):
        RedisAlertSink(URL, key_prefix="a:b")
