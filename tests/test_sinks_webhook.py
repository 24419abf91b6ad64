"""WebhookHandoff against a real local HTTP server that records what it receives."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from support_http import RecordingServer, Reply, free_port

from cxguard.errors import ConfigError, SinkError, SinkUnavailable
from cxguard.model import HandoffRequest
from cxguard.sinks.webhook import WebhookHandoff, sign, verify_signature

SECRET = b"s3cret-shared-with-the-receiver"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RecordingServer]:
    replies = getattr(request, "param", [Reply()])
    srv = RecordingServer(replies)
    yield srv
    srv.close()


def _request(key: str = "CA0123:7") -> HandoffRequest:
    return HandoffRequest(
        call_id="CA0123",
        tenant="acme",
        source="twilio",
        assertion_id="closure_escalation",
        turn_index=7,
        reason="closure requested; agent did not escalate",
        idempotency_key=key,
        requested_at_wall=1_700_000_000.5,
        account_sid="AC42",
    )


async def test_post_carries_json_body_key_and_verifiable_signature(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, SECRET, backoff_s=0.01)
    try:
        await hook.send(_request())
    finally:
        await hook.close()
    [got] = server.received
    assert got.method == "POST" and got.path == "/hooks/handoff"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == "CA0123:7"
    ts, signature = got.headers["x-cxguard-timestamp"], got.headers["x-cxguard-signature"]
    assert abs(int(ts) - time.time()) < 60
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature(SECRET, ts, got.body, signature)
    payload = json.loads(got.body)
    assert payload["type"] == "handoff"
    assert {
        k: payload[k]
        for k in (
            "call_id",
            "tenant",
            "source",
            "assertion_id",
            "turn_index",
            "reason",
            "idempotency_key",
            "requested_at_wall",
            "account_sid",
        )
    } == {
        "call_id": "CA0123",
        "tenant": "acme",
        "source": "twilio",
        "assertion_id": "closure_escalation",
        "turn_index": 7,
        "reason": "closure requested; agent did not escalate",
        "idempotency_key": "CA0123:7",
        "requested_at_wall": 1_700_000_000.5,
        "account_sid": "AC42",
    }


def test_signature_rejects_tampering_wrong_secret_and_stale_timestamps() -> None:
    body, ts = b'{"a":1}', "1700000000"
    good = sign(SECRET, ts, body)
    assert verify_signature(SECRET, ts, body, good, now=1_700_000_010)
    assert not verify_signature(SECRET, ts, b'{"a":2}', good, now=1_700_000_010)
    assert not verify_signature(b"other", ts, body, good, now=1_700_000_010)
    assert not verify_signature(SECRET, "1700000001", body, good, now=1_700_000_010)
    assert not verify_signature(SECRET, ts, body, good, now=1_700_000_000 + 301)
    assert not verify_signature(SECRET, "not-a-number", body, good)


async def test_without_secret_no_signature_header(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, None)
    try:
        await hook.send(_request())
    finally:
        await hook.close()
    [got] = server.received
    assert "x-cxguard-signature" not in got.headers
    assert got.headers["idempotency-key"] == "CA0123:7"


@pytest.mark.parametrize("server", [[Reply(503), Reply(502), Reply(200)]], indirect=True)
async def test_5xx_is_retried_with_the_same_idempotency_key(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, SECRET, retries=3, backoff_s=0.01)
    try:
        await hook.send(_request("CA0123:9"))
    finally:
        await hook.close()
    assert len(server.received) == 3
    assert {r.headers["idempotency-key"] for r in server.received} == {"CA0123:9"}
    assert len({r.body for r in server.received}) == 1
    for r in server.received:  # every attempt is signed for its own timestamp
        assert verify_signature(
            SECRET, r.headers["x-cxguard-timestamp"], r.body, r.headers["x-cxguard-signature"]
        )
    # one pooled client: the retries reuse the kept-alive connection
    assert len({r.client_port for r in server.received}) == 1


@pytest.mark.parametrize("server", [[Reply(503)]], indirect=True)
async def test_gives_up_after_retries_with_sink_unavailable(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, SECRET, retries=2, backoff_s=0.01)
    try:
        with pytest.raises(SinkUnavailable, match="gave up after 3 attempts: HTTP 503"):
            await hook.send(_request())
    finally:
        await hook.close()
    assert len(server.received) == 3


@pytest.mark.parametrize("server", [[Reply(400, body=b"bad tenant")]], indirect=True)
async def test_4xx_is_not_retried(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, SECRET, retries=3, backoff_s=0.01)
    try:
        with pytest.raises(SinkError, match="HTTP 400: bad tenant") as info:
            await hook.send(_request())
    finally:
        await hook.close()
    assert not isinstance(info.value, SinkUnavailable)
    assert len(server.received) == 1


@pytest.mark.parametrize(
    "server", [[Reply(429, {"Retry-After": "0"}), Reply(204, body=b"")]], indirect=True
)
async def test_429_with_short_retry_after_is_retried(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, None, retries=1, backoff_s=5.0)
    try:
        await hook.send(_request())  # Retry-After 0 overrides the 5 s backoff
    finally:
        await hook.close()
    assert len(server.received) == 2


@pytest.mark.parametrize("server", [[Reply(503, {"Retry-After": "120"})]], indirect=True)
async def test_long_retry_after_ends_the_retries(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, None, retries=3, backoff_s=0.01)
    try:
        with pytest.raises(SinkUnavailable, match="Retry-After 120 s is too long"):
            await hook.send(_request())
    finally:
        await hook.close()
    assert len(server.received) == 1


@pytest.mark.parametrize("server", [[Reply(200, delay_s=1.0), Reply(200)]], indirect=True)
async def test_timeout_is_retried(server: RecordingServer) -> None:
    hook = WebhookHandoff(server.url, SECRET, timeout_s=0.2, retries=2, backoff_s=0.01)
    try:
        await hook.send(_request())
    finally:
        await hook.close()
    assert len(server.received) == 2
    assert (
        server.received[0].headers["idempotency-key"]
        == server.received[1].headers["idempotency-key"]
    )


async def test_connection_refused_is_sink_unavailable() -> None:
    hook = WebhookHandoff(f"http://127.0.0.1:{free_port()}/x", SECRET, retries=1, backoff_s=0.01)
    try:
        with pytest.raises(SinkUnavailable, match="gave up after 2 attempts: unreachable"):
            await hook.send(_request())
    finally:
        await hook.close()


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://", "http://[::1"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        WebhookHandoff(url, None)
