"""Alert webhooks (Standard Webhooks) and Slack-format alerts through the real outbox, against a
local HTTP server that records requests: signatures verify, a receiver that was down gets
every alert once by id and in order, one call cannot flood the channel, bodies carry no PII."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support_http import Received, RecordingServer, Reply, free_port

from cxguard.model import Alert, Verdict
from cxguard.runtime.notify import build_routes
from cxguard.runtime.settings import Settings, SinkSettings
from cxguard.runtime.settings_loader import load
from cxguard.sinks import Outbox, OutboxMessage, OutboxOptions, OutboxStore, alert_message
from cxguard.sinks.alert_hooks import AlertWebhook, SlackAlertWebhook, signature, verify

FAST = OutboxOptions(retry_initial_s=0.05, retry_max_s=0.2, attempt_timeout_s=1.0)
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()
CARD = "4111 1111 1111 1111"


def alert(call: str, turn: int, *, tenant: str = "acme", severity: str = "critical",
          assertion: str = "no_card_readback", text: str = "sure") -> Alert:  # fmt: skip
    v = Verdict(call, tenant, turn, "agent", turn * 1000.0, turn * 1000.0 + 500, text,
                assertion, "fail", f"matched in {text!r}", severity=severity,
                actions=("alert",))  # fmt: skip
    return Alert(v, "violation", f"{assertion} failed on turn {turn}: {text}")


class States:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, dict[str, Any]]] = []

    def __call__(self, msg: OutboxMessage, sink: str, state: str, data: Mapping[str, Any]) -> None:
        self.seen.append((msg.message_id, sink, state, dict(data)))


async def until(predicate: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def ids(received: list[Received]) -> list[str]:
    return [r.headers["webhook-id"] for r in received]


def outbox_for(tmp_path: Path, settings: Settings, states: States | None = None) -> Outbox:
    routes = [r for r in build_routes(settings) if r.sink.name != "console"]
    return Outbox(OutboxStore(tmp_path / "o.db"), routes, FAST, on_state=states)


def hook_settings(url: str, **fields: Any) -> Settings:
    return Settings(sinks=(SinkSettings(type="alert-webhook", url=url, secret=SECRET, **fields),))


async def test_signed_webhook_verifies_and_a_tampered_body_does_not(tmp_path: Path) -> None:
    recorder = RecordingServer([Reply(204)])
    outbox = outbox_for(tmp_path, hook_settings(recorder.url))
    outbox.start()
    a = alert("CA1", 2)
    try:
        await outbox.put([alert_message(a)])
        await until(lambda: len(recorder.received) == 1)
    finally:
        await outbox.close()
        recorder.close()
    got = recorder.received[0]
    assert got.headers["webhook-id"] == alert_message(a).message_id
    assert got.headers["webhook-signature"].startswith("v1,")
    assert verify(SECRET, got.headers, got.body)
    assert not verify(SECRET, got.headers, got.body.replace(b"CA1", b"CA2"))
    assert not verify(SECRET, got.headers, got.body, now=time.time() + 3600)  # a replay, later
    other = "whsec_" + base64.b64encode(b"another key of 16+ bytes").decode()
    assert not verify(other, got.headers, got.body)
    body = json.loads(got.body)
    assert body["type"] == "cxguard.alert" and body["data"]["verdict"]["call_id"] == "CA1"
    # The documented recipe, by hand: HMAC of "<id>.<timestamp>.<body>" with the whsec key.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    ts = got.headers["webhook-timestamp"]
    assert (
        signature(key, got.headers["webhook-id"], ts, got.body) == got.headers["webhook-signature"]
    )


async def test_receiver_down_then_up_gets_every_alert_once_in_order(tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet: connection refused, as a receiver that is down
    url = f"http://127.0.0.1:{port}/hooks/alerts"
    states = States()
    outbox = outbox_for(tmp_path, hook_settings(url), states)
    outbox.start()
    alerts = [alert("CA1", 1), alert("CA2", 1), alert("CA1", 3), alert("CA1", 5)]
    sent = [alert_message(a) for a in alerts]
    recorder: RecordingServer | None = None
    try:
        await outbox.put(sent)
        await until(lambda: any(s[2] == "retrying" for s in states.seen))
        await asyncio.sleep(0.3)  # a few more refused attempts
        recorder = RecordingServer([Reply(200)], port=port)
        await until(lambda: sum(s[2] == "delivered" for s in states.seen) == len(sent))
        await outbox.put(sent[:2])  # the same alerts again (a replay after a restart)
        await asyncio.sleep(0.3)
    finally:
        await outbox.close()
        if recorder is not None:
            recorder.close()
    assert ids(recorder.received) == [m.message_id for m in sent]
    assert all(verify(SECRET, r.headers, r.body) for r in recorder.received)


async def test_one_call_cannot_flood_the_channel_and_nothing_is_dropped(tmp_path: Path) -> None:
    recorder = RecordingServer([Reply(200)])
    states = States()
    settings = hook_settings(recorder.url, options={"max_per_call": 2, "window_s": 0.6})
    outbox = outbox_for(tmp_path, settings, states)
    outbox.start()
    noisy = [alert_message(alert("CA1", t, assertion=f"a{t % 2}")) for t in range(6)]
    quiet = alert_message(alert("CA9", 1))
    try:
        await outbox.put([*noisy, quiet])
        await until(lambda: len(recorder.received) == 4)
    finally:
        await outbox.close()
        recorder.close()
    bodies = [json.loads(r.body) for r in recorder.received]
    singles = [r.headers["webhook-id"] for r, b in zip(recorder.received, bodies, strict=True)
               if b["type"] == "cxguard.alert"]  # fmt: skip
    assert singles == [noisy[0].message_id, noisy[1].message_id, quiet.message_id]
    (digest,) = [b["data"] for b in bodies if b["type"] == "cxguard.alert_digest"]
    assert digest["call_id"] == "CA1"
    assert digest["alert_ids"] == [m.message_id for m in noisy[2:]]
    assert digest["assertions"] == {"a0": 2, "a1": 2}
    folded = [s[0] for s in states.seen if s[2] == "delivered" and s[3].get("folded")]
    assert folded == [m.message_id for m in noisy[2:]]  # recorded as folded, not lost
    assert verify(SECRET, recorder.received[-1].headers, recorder.received[-1].body)


async def test_slack_payload_is_redacted_and_filtered_by_tenant_and_severity(
    tmp_path: Path,
) -> None:
    recorder = RecordingServer([Reply(200, body=b"ok")])
    settings = Settings(
        sinks=(
            SinkSettings(type="slack", url=recorder.url, tenants=("acme",), min_severity="major"),
        )
    )
    outbox = outbox_for(tmp_path, settings)
    outbox.start()
    leaky = alert("CA1", 4, text=f"your card {CARD}, ssn 123-45-6789 <b>&")
    try:
        await outbox.put(
            [
                alert_message(alert("CA1", 1, severity="minor")),  # below min_severity
                alert_message(alert("CA1", 2, tenant="globex")),  # another tenant
                alert_message(leaky),
            ]
        )
        await until(lambda: len(recorder.received) >= 1)
        await asyncio.sleep(0.3)
    finally:
        await outbox.close()
        recorder.close()
    assert len(recorder.received) == 1
    raw = recorder.received[0].body.decode()
    assert "4111" not in raw and "1111 1111" not in raw and "6789" not in raw
    body = json.loads(raw)
    assert (
        set(body) == {"text", "blocks"} and "no_card_readback" in body["blocks"][0]["text"]["text"]
    )
    assert "&lt;b&gt;&amp;" in raw  # Slack's escapes
    assert "webhook-signature" not in recorder.received[0].headers


def test_sinks_come_from_the_one_settings_file_with_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "hook_secret").write_text(SECRET + "\n")
    config = tmp_path / "server.yaml"
    config.write_text(
        "sinks:\n"
        "  - type: alert-webhook\n"
        "    name: acme-hook\n"
        "    tenants: [acme]\n"
        "    url_env: ACME_HOOK_URL\n"
        f"    secret_file: {tmp_path / 'hook_secret'}\n"
        "    min_severity: critical\n"
        "    options: {max_per_call: 3, window_s: 30}\n"
        "  - type: slack\n"
        "    url: https://hooks.slack.invalid/services/T/B/X\n"
    )
    settings = load(config, None, {"ACME_HOOK_URL": "https://hooks.acme.invalid/cxguard"})
    routes = {r.sink.name: r for r in build_routes(settings)}
    hook = routes["acme-hook"].sink
    assert isinstance(hook, AlertWebhook) and routes["acme-hook"].severities == {"critical"}
    assert hook.limit.max_per_call == 3 and routes["acme-hook"].tenants == {"acme"}
    assert isinstance(routes["slack"].sink, SlackAlertWebhook)


def test_a_secret_that_is_not_whsec_base64_is_refused() -> None:
    from cxguard.errors import ConfigError

    with pytest.raises(ConfigError, match="whsec_"):
        build_routes(hook_settings("https://x.invalid/h").__class__(
            sinks=(SinkSettings(type="alert-webhook", url="https://x.invalid/h", secret="nope!"),)
        ))  # fmt: skip


def test_min_severity_is_a_floor_for_any_sink_type() -> None:
    from cxguard.errors import ConfigError

    redis = SinkSettings(type="redis", min_severity="major", options={"url": "redis://x:1/0"})
    (route,) = [r for r in build_routes(Settings(sinks=(redis,))) if r.sink.name == "redis"]
    assert route.severities == {"major", "critical"}
    with pytest.raises(ConfigError, match="min_severity 'severe'"):
        build_routes(Settings(sinks=(SinkSettings(type="slack", url="https://x.invalid/h",
                                                  min_severity="severe"),)))  # fmt: skip
