"""Several sidecars, one Redis: a console shows the tenant's alerts and handoffs whichever
process judged the call (real Redis on 127.0.0.1:6379, a tenant of its own), backfilled on
load and live afterwards, deduplicated by alert id; another tenant's never."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cxguard.model import Alert, HandoffRequest, Verdict
from cxguard.runtime.console.follow import RedisFollower
from cxguard.runtime.console.hub import ConsoleHub
from cxguard.sinks import RedisAlertSink, alert_message, handoff_key, handoff_message

REDIS_URL = "redis://127.0.0.1:6379/0"


def _alert(tenant: str, call: str, turn: int) -> Alert:
    v = Verdict(call, tenant, turn, "agent", 0.0, 1.0, "sure", "commitments.no_promises",
                "fail", "pattern matched", decided_at_wall=time.time())  # fmt: skip
    return Alert(v, "violation", "failed")


@pytest.fixture
async def tenants() -> AsyncIterator[tuple[str, str]]:
    pair = (f"cons{uuid.uuid4().hex[:10]}", f"cons{uuid.uuid4().hex[:10]}")
    yield pair
    client = aioredis.from_url(REDIS_URL)
    for tenant in pair:
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
    await client.aclose()


async def _until(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_alerts_of_other_sidecars_are_backfilled_then_followed(
    tenants: tuple[str, str],
) -> None:
    mine, other = tenants
    elsewhere = RedisAlertSink(REDIS_URL, timeout_s=2.0, retries=0)  # another process's sink
    before = alert_message(_alert(mine, "CA-other-1", 2))
    await elsewhere.deliver(before)
    hub = ConsoleHub()
    hub.follow(RedisFollower(hub, REDIS_URL))
    try:
        page = hub.subscribe(mine)
        snap = await hub.snapshot(mine)
        assert [a["alert_id"] for a in snap["alerts"]] == [before.message_id]
        live = alert_message(_alert(mine, "CA-other-2", 5))
        key = handoff_key(mine, "CA-other-2")
        req = HandoffRequest("CA-other-2", mine, "twilio", "billing.closure_escalation", 5,
                             "asked to close", key, time.time())  # fmt: skip
        await elsewhere.deliver(alert_message(_alert(other, "CA-other-3", 1)))
        await elsewhere.deliver(live)
        await elsewhere.deliver(before)  # delivered again: the stream dedupes, and so would we
        await elsewhere.deliver(handoff_message(req, "critical"))
        seen: list[dict[str, object]] = []

        def got_both() -> bool:
            while not page.queue.empty():
                seen.append(page.queue.get_nowait())  # type: ignore[arg-type]
            return {u["type"] for u in seen} >= {"alert", "handoff"}

        await _until(got_both)
        alerts = [u["alert"]["alert_id"] for u in seen if u["type"] == "alert"]  # type: ignore[index]
        # (the backfill is pushed to the open page too: pages drop what they have by id)
        assert alerts[-1] == live.message_id and set(alerts) == {before.message_id, live.message_id}
        (handoff,) = [u["handoff"] for u in seen if u["type"] == "handoff"]
        assert handoff["call_id"] == "CA-other-2"  # type: ignore[index]
        assert hub.view(other).alerts == {}  # no page of that tenant: not even read
        # Our own alerts come back from Redis too: shown once.
        assert hub.view(mine).on_alert(live.data()) is None
    finally:
        await hub.close()
        await elsewhere.close()
