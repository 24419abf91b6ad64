"""Forged upgrades against a real sidecar: every one refused (4xx, never 500, never 101),
each refusal answered no sooner than 0.5 s after it arrived, without holding the event loop;
genuine upgrades of the same kinds accepted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support_auth import (
    API_KEY,
    OTHER_KEY,
    OTHER_TOKEN,
    SECRET_B64,
    TOKEN,
    Reply,
    audiohook_headers,
    send_raw,
    upgrade_bytes,
)
from support_http import free_port

from cxguard.protocols.twilio_signature import compute_signature
from cxguard.runtime.auth import FAILURE_DELAY_S
from cxguard.runtime.server import Sidecar, running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings, TenantSettings

METRICS_TOKEN = "metrics-bearer-token"
Case = tuple[str, str, list[tuple[str, str]], str | None]


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, int]]:
    port = free_port()
    tenants = (
        TenantSettings(
            "northwind",
            twilio_auth_token=TOKEN,
            audiohook_api_key=API_KEY,
            audiohook_client_secret=SECRET_B64,
        ),
        TenantSettings(
            "globex",
            twilio_auth_token=OTHER_TOKEN,
            audiohook_api_key=OTHER_KEY,
            audiohook_client_secret="Z2xvYmV4LXNlY3JldC1nbG9iZXgtc2VjcmV0LTAwMDA=",
        ),
    )
    settings = Settings(
        port=port,
        public_url=f"ws://127.0.0.1:{port}",
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        tenants=tenants,
        metrics_token=METRICS_TOKEN,
    )
    services = await Services.start(settings)
    try:
        async with running_sidecar(services, "127.0.0.1", port) as (side, _):
            yield side, port
    finally:
        await services.close()


def forged_cases(port: int, used: dict[str, str]) -> list[Case]:
    host = f"127.0.0.1:{port}"
    url = f"ws://{host}/twilio"

    def ah(**kw: object) -> list[tuple[str, str]]:
        authority = str(kw.pop("authority", host))
        return list(audiohook_headers(authority, **kw).items())

    def with_header(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
        return [(k, value if k.lower() == name.lower() else v) for k, v in pairs]

    good_ah = ah()
    good_sig = compute_signature(TOKEN, url)
    now = int(time.time())
    cases: list[Case] = [
        ("ah unsigned", "/audiohook", good_ah[:4], host),
        ("ah wrong secret", "/audiohook", ah(client_secret=b"w" * 32), host),
        ("ah unknown key", "/audiohook", ah(api_key="nobody"), host),
        ("ah expired", "/audiohook", ah(created=now - 60), host),
        ("ah future", "/audiohook", ah(created=now + 60), host),
        ("ah short nonce", "/audiohook", ah(nonce="short"), host),
        (
            "ah org tampered",
            "/audiohook",
            with_header(good_ah, "Audiohook-Organization-Id", "x"),
            host,
        ),
        ("ah path tampered", "/audiohook", ah(path="/audiohook?tenant=globex"), host),
        ("ah other authority", "/audiohook", ah(authority="evil.example"), host),
        ("ah key swapped", "/audiohook", with_header(ah(), "X-API-KEY", OTHER_KEY), host),
        ("ah crossed tenant", "/audiohook", ah(api_key=OTHER_KEY), host),
        (
            "ah no x-api-key cover",
            "/audiohook",
            ah(components=("@request-target", "@authority")),
            host,
        ),
        (
            "ah malformed input",
            "/audiohook",
            with_header(ah(), "Signature-Input", "sig1=((("),
            host,
        ),
        ("ah no host", "/audiohook", ah(), None),
        ("ah replay", "/audiohook", list(used.items()), host),
        ("ah dup signature", "/audiohook", [*ah(), ("Signature", "sig1=:AAAA:")], host),
        ("ah dup key", "/audiohook", [*good_ah, ("X-API-KEY", API_KEY)], host),
        ("ah dup host", "/audiohook", [*ah(), ("Host", "evil.example")], host),
        ("ah dup org", "/audiohook", [*ah(), ("Audiohook-Organization-Id", "x")], host),
        ("ah dup input", "/audiohook", [*ah(), ("Signature-Input", "sig2=();created=1")], host),
        (
            "ah latin-1 junk",
            "/audiohook",
            with_header(ah(), "Signature", "sig1=:\u00ff\u00fe:"),
            host,
        ),
        ("tw unsigned", "/twilio", [], host),
        ("tw bad", "/twilio", [("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")], host),
        (
            "tw other host",
            "/twilio",
            [("X-Twilio-Signature", compute_signature(TOKEN, "ws://evil.example/twilio"))],
            "evil.example",
        ),
        ("tw query tampered", "/twilio?tenant=globex", [("X-Twilio-Signature", good_sig)], host),
        ("tw wrong token", "/twilio", [("X-Twilio-Signature", compute_signature("x", url))], host),
        (
            "tw path swapped",
            "/twilio",
            [("X-Twilio-Signature", compute_signature(TOKEN, f"ws://{host}/audiohook"))],
            host,
        ),
        ("tw dup signature", "/twilio", [("X-Twilio-Signature", good_sig)] * 2, host),
        ("tw dup host", "/twilio", [("X-Twilio-Signature", good_sig), ("Host", host)], host),
        ("metrics no token", "/metrics", [], host),
        ("metrics wrong token", "/metrics", [("Authorization", "Bearer nope")], host),
        (
            "metrics dup token",
            "/metrics",
            [("Authorization", f"Bearer {METRICS_TOKEN}")] * 2,
            host,
        ),
    ]
    return cases


async def test_every_forged_upgrade_is_refused_slowly_and_never_with_a_500(
    sidecar: tuple[Sidecar, int], caplog: pytest.LogCaptureFixture
) -> None:
    side, port = sidecar
    host = f"127.0.0.1:{port}"
    genuine = audiohook_headers(host)
    first = await send_raw(port, upgrade_bytes("/audiohook", list(genuine.items()), host))
    assert first.status == 101  # the replay case below reuses these headers

    cases = forged_cases(port, genuine)
    caplog.set_level(logging.INFO)
    sent = time.monotonic()
    forged = [asyncio.create_task(send_raw(port, upgrade_bytes(p, h, hh))) for _, p, h, hh in cases]
    await asyncio.sleep(0.05)
    health = await send_raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    health_done = time.monotonic()
    replies: list[Reply] = await asyncio.gather(*forged)

    statuses = {name: reply.status for (name, *_), reply in zip(cases, replies, strict=True)}
    assert {n: s for n, s in statuses.items() if s not in (400, 401, 403)} == {}
    assert statuses["ah dup host"] == statuses["tw dup signature"] == 400
    assert all(r.body in ("Bad Request\n", "Unauthorized\n", "Forbidden\n") for r in replies)
    # Refusals wait out the fixed delay, all at once: the loop stays free meanwhile.
    assert min(r.seconds for r in replies) >= FAILURE_DELAY_S - 0.01
    assert health.status == 200 and health_done < sent + min(r.seconds for r in replies)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # One line per refusal, rate-limited per (peer, door, status): the rest are counted in
    # a "suppressed" summary when the window rolls or the server drains.
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused /")]
    assert 0 < len(refusals) <= len(cases)
    side.rejections.flush()
    suppressed = [r for r in caplog.records if r.getMessage().startswith("suppressed ")]
    counted = sum(int(r.getMessage().split()[1]) for r in suppressed)
    assert len(refusals) + counted == len(cases)

    # The genuine requests of each door are still admitted.
    twilio = [("X-Twilio-Signature", compute_signature(OTHER_TOKEN, f"ws://{host}/twilio"))]
    assert (await send_raw(port, upgrade_bytes("/twilio", twilio, "evil.example"))).status == 101
    fresh = list(audiohook_headers(host).items())
    assert (await send_raw(port, upgrade_bytes("/audiohook", fresh, host))).status == 101
    bearer = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n\r\n"
    scraped = await send_raw(port, bearer.encode())
    assert scraped.status == 200 and scraped.seconds < FAILURE_DELAY_S


async def test_metrics_counts_duplicates(sidecar: tuple[Sidecar, int]) -> None:
    _, port = sidecar
    host = f"127.0.0.1:{port}"
    reply = await send_raw(port, upgrade_bytes("/twilio", [("Host", "b")], host))
    assert reply.status == 400
    request = (
        f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n"
        "Connection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    body = (await reader.read()).decode()
    writer.close()
    line = next(
        ln for ln in body.splitlines() if ln.startswith("cxguard_duplicate_security_headers_total{")
    )
    assert 'header="host"' in body and float(line.rsplit(" ", 1)[1]) >= 1
