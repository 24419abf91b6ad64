"""The control API (``POST /calls/{call_id}/events``) on a real sidecar: the body format, the
tenant door, the answers to bad requests (no traceback, no leak), and the facts recorded as
evidence in stream order. The mid-call effect on verdicts is in test_e2e_control.py."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support_services import ledger_settings, serving
from websockets.asyncio.client import connect

from cxguard.errors import ControlRequestError
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.protocols.control_api import Fact, call_id_of, parse_facts, parse_request
from cxguard.protocols.twilio_signature import compute_signature
from cxguard.runtime.server import Sidecar
from cxguard.runtime.settings import TenantSettings
from cxguard.simulate.twilio import TwilioClient

NORTHWIND = "control-token-northwind-0123456789"
CONTOSO = "control-token-contoso-0123456789"
TWILIO = {"northwind": "twilio-token-northwind", "contoso": "twilio-token-contoso"}


# ---------------------------------------------------------------- the body, sans I/O


def test_facts_apply_in_a_fixed_order() -> None:
    body = b'{"handoff": true, "agent_version": " bot 2.4 ", "authenticated": true}'
    assert parse_facts(body) == [
        Fact("authenticated"),
        Fact("agent_version", "bot 2.4"),
        Fact("handoff"),
    ]
    assert parse_facts(b'{"authenticated": false}') == [Fact("unauthenticated")]
    assert parse_facts(b'{"intent": "account_closure"}') == [Fact("intent", "account_closure")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"not json", 400),
        (b"\xff\xfe", 400),
        (b"[]", 400),
        (b"{}", 400),
        (b'{"authenticated": "yes"}', 400),
        (b'{"authenticated": 1}', 400),
        (b'{"handoff": false}', 400),
        (b'{"intent": ""}', 400),
        (b'{"intent": 7}', 400),
        (b'{"intent": "' + b"x" * 201 + b'"}', 400),
        (b'{"intent": "\\ud800"}', 400),
        (b'{"authenticated": true, "sudo": true}', 400),
        (b'{"intent": "' + b"x" * 9000 + b'"}', 413),
    ],
)
def test_bad_bodies_are_refused_whole(body: bytes, status: int) -> None:
    with pytest.raises(ControlRequestError) as err:
        parse_facts(body)
    assert err.value.status == status


def test_call_ids_come_percent_decoded_from_the_path() -> None:
    assert call_id_of("/calls/CA123/events") == "CA123"
    assert call_id_of("/calls/a%20b/events") == "a b"
    assert call_id_of("/calls/CA123") is None
    assert call_id_of("/calls//events") is None
    for bad in ("/calls/%ff/events", "/calls/%0a/events", "/calls/" + "x" * 129 + "/events"):
        with pytest.raises(ControlRequestError):
            call_id_of(bad)


# ---------------------------------------------------------------- on a real sidecar


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str]]:
    tenants = (
        TenantSettings("northwind", twilio_auth_token=TWILIO["northwind"], control_token=NORTHWIND),
        TenantSettings("contoso", twilio_auth_token=TWILIO["contoso"], control_token=CONTOSO),
    )
    async with serving(ledger_settings(tmp_path, tenants=tenants)) as (side, host):
        yield side, host


class OpenCall:
    """A Twilio stream that started (a live call) and sends audio on demand."""

    def __init__(self, host: str, tenant: str) -> None:
        self.url = f"ws://{host}/twilio"
        self.client = TwilioClient()
        self.tenant = tenant

    async def __aenter__(self) -> OpenCall:
        signature = compute_signature(TWILIO[self.tenant], self.url, {})
        self._cm = connect(self.url, additional_headers={"X-Twilio-Signature": signature})
        self.ws = await self._cm.__aenter__()
        self.client.start()
        await self.flush()
        return self

    async def flush(self) -> None:
        for frame in self.client.data_to_send():
            await self.ws.send(frame)

    async def silence(self, ms: int) -> None:
        for _ in range(ms // 20):
            self.client.send_audio(b"\xff" * 160, b"\xff" * 160)
            await self.flush()

    async def __aexit__(self, *exc: object) -> None:
        self.client.finish()
        await self.flush()
        await self._cm.__aexit__(None, None, None)


async def post(
    host: str, call_id: str, body: object, token: str | None = NORTHWIND, method: str = "POST"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        return await http.request(
            method, f"/calls/{call_id}/events", content=content, headers=headers
        )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def live(side: Sidecar, call_id: str) -> None:
    async with asyncio.timeout(5):
        while not any(s.info.call_id == call_id for s in side.calls):
            await asyncio.sleep(0.01)


async def test_a_fact_is_recorded_at_the_calls_position(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, host = sidecar
    caplog.set_level(logging.INFO)
    async with OpenCall(host, "northwind") as call:
        await call.silence(1000)
        await live(side, call.client.call_id)
        await asyncio.sleep(0.2)  # the server has read what was sent
        card = "my card is 4532 0151 1283 0366"
        reply = await post(
            host,
            call.client.call_id,
            {"authenticated": True, "intent": card, "agent_version": "v2"},
        )
        assert reply.status_code == 202, reply.text
        answer = reply.json()
        assert answer["applied"] == ["authenticated", "intent", "agent_version"]
        assert answer["tenant"] == "northwind"
        assert 960 <= answer["at_ms"] <= 1000
        await call.silence(500)
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        events = ledger.events(call_id=call.client.call_id)
    finally:
        ledger.close()
    controls = [e for e in events if e["kind"].startswith("control.")]
    assert [e["kind"] for e in controls] == [
        "control.authenticated",
        "control.intent",
        "control.agent_version",
    ]
    assert {e["at_ms"] for e in controls} == {answer["at_ms"]}
    assert controls[0]["data"] == {"source": "control_api"}
    assert controls[2]["data"] == {"agent_version": "v2", "source": "control_api"}
    stored = json.dumps(controls[1]["data"])
    assert "4532" not in stored and "0366" not in stored
    assert "4532" not in caplog.text
    assert events[-1]["kind"] == "call_ended", [(e["kind"], e["seq"], e["at_ms"]) for e in events]


async def test_refusals_say_little_and_never_crash(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, host = sidecar
    async with OpenCall(host, "northwind") as call:
        await live(side, call.client.call_id)
        call_id = call.client.call_id
        unknown = await post(host, "CA-no-such-call", {"authenticated": True})
        other_tenant = await post(host, call_id, {"authenticated": True}, token=CONTOSO)
        assert unknown.status_code == other_tenant.status_code == 404
        assert unknown.json() == other_tenant.json() == {"error": "no such live call"}
        assert (await post(host, call_id, b"{not json")).status_code == 400
        assert (await post(host, call_id, {"authenticated": "yes"})).status_code == 400
        assert (await post(host, call_id, {"x": 1})).status_code == 400
        assert (await post(host, call_id, {"authenticated": True}, token=None)).status_code == 401
        assert (await post(host, call_id, {"authenticated": True}, token="nope")).status_code == 403
        wrong_method = await post(host, call_id, b"", method="GET")
        assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            assert (await http.post("/twilio", content=b"{}")).status_code == 405
            chunked = await http.post(
                f"/calls/{call_id}/events",
                content=_chunks(b'{"authenticated": true}'),
                headers={"Authorization": f"Bearer {NORTHWIND}"},
            )
            assert chunked.status_code == 411  # Content-Length is required
        # The call goes on: a good request after all that is applied.
        good = await post(host, call_id, {"handoff": True})
        assert good.status_code == 202 and good.json()["applied"] == ["handoff"]
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_body_split_across_packets_is_read_whole(sidecar: tuple[Sidecar, str]) -> None:
    side, host = sidecar
    async with OpenCall(host, "contoso") as call:
        await live(side, call.client.call_id)
        body = b'{"intent": "account_closure"}'
        head = (
            f"POST /calls/{call.client.call_id}/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {CONTOSO}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        name, port = host.split(":")
        reader, writer = await asyncio.open_connection(name, int(port))
        for piece in (head[:7], head[7:], body[:5], body[5:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        answer = await reader.read()
        writer.close()
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 202 Accepted", answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["applied"] == ["intent"]


async def test_an_ended_call_takes_no_more_facts(sidecar: tuple[Sidecar, str]) -> None:
    side, host = sidecar
    async with OpenCall(host, "northwind") as call:
        await live(side, call.client.call_id)
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    assert (await post(host, call.client.call_id, {"authenticated": True})).status_code == 404


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"Content-Length: ten\r\n", b"400"),
        (b"Content-Length: 2\r\nContent-Length: 2\r\n", b"411"),
        (b"Transfer-Encoding: chunked\r\n", b"411"),
        (b"Content-Length: 999999\r\n", b"413"),
    ],
)
async def test_request_framing_is_refused_before_any_credential_check(
    sidecar: tuple[Sidecar, str], head: bytes, status: bytes
) -> None:
    _, host = sidecar
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    writer.write(b"POST /calls/x/events HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n{}")
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.split(b" ")[1] == status


def _hostile_request(rng: random.Random, call_id: str) -> tuple[bytes, bool]:
    """A POST head and body built to hit the edges of the body reader."""
    body = rng.choice(
        [b'{"authenticated": true}', b"{", b"", b"\xff" * 10, b"x" * rng.randint(0, 20000)]
    )
    path = rng.choice([f"/calls/{call_id}/events", "/calls/%ff/events", "/calls//events", "/x"])
    headers = ["Host: h", f"Authorization: Bearer {rng.choice([NORTHWIND, 'x', ''])}"]
    length = rng.choice([len(body), len(body) + 5, max(0, len(body) - 3), -1, 99999999999])
    if length >= 0:
        headers.append(f"Content-Length: {length}")
    if rng.random() < 0.2:
        headers.append("Content-Length: 1")
    if rng.random() < 0.1:
        headers.append("Transfer-Encoding: chunked")
    if rng.random() < 0.1:
        headers.append("X-Junk: " + "y" * rng.randint(1, 9000))
    rng.shuffle(headers)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode() + body, length > len(body)


async def test_hostile_post_requests_never_break_the_server(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, host = sidecar
    name, port = host.split(":")
    rng = random.Random(14)
    statuses: Counter[bytes] = Counter()
    async with OpenCall(host, "northwind") as call:
        await live(side, call.client.call_id)
        for _ in range(120):
            data, short = _hostile_request(rng, call.client.call_id)
            reader, writer = await asyncio.open_connection(name, int(port))
            cut = rng.randint(0, len(data))
            writer.write(data[:cut])
            await writer.drain()
            writer.write(data[cut:])
            if short or rng.random() < 0.5:
                writer.write_eof()  # a half-close (or the peer giving up on its body)
            try:
                async with asyncio.timeout(15):
                    answer = await reader.read()
            except (TimeoutError, ConnectionError):
                answer = b""
            writer.close()
            statuses[answer.split(b" ")[1] if answer.startswith(b"HTTP/1.1 ") else b"-"] += 1
        # The call and the server are fine after all that.
        good = await post(host, call.client.call_id, {"intent": "billing"})
        assert good.status_code == 202
    await side.drain()
    assert await side.services.evidence.wait_stored(10)  # the ledger has it all
    assert b"500" not in statuses, statuses
    allowed = {b"202", b"400", b"401", b"403", b"404", b"411", b"413", b"431", b"-"}
    assert set(statuses) <= allowed, statuses
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_answers_carry_one_content_type_and_close_at_once(
    sidecar: tuple[Sidecar, str],
) -> None:
    _, host = sidecar
    name, port = host.split(":")
    for request in (
        b"POST /calls/x/events HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection(name, int(port))
        writer.write(request)
        writer.write_eof()  # a half-close right after the request: still answered
        async with asyncio.timeout(5):
            answer = await reader.read()  # the server closes promptly after answering
        writer.close()
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert head.count(b"content-type:") == 1, answer


BAD_IDS = [b'{"id": 7, "handoff": true}', b'{"id": "", "handoff": true}',
           b'{"id": "a\\nb", "handoff": true}', b'{"id": "only-an-id"}']  # fmt: skip


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_request_ids_are_refused(bad: bytes) -> None:
    with pytest.raises(ControlRequestError):
        parse_request(bad)


async def test_a_retried_request_is_applied_once(sidecar: tuple[Sidecar, str]) -> None:
    side, host = sidecar
    async with OpenCall(host, "northwind") as call:
        await call.silence(200)
        await live(side, call.client.call_id)
        body = {"id": "req-1", "intent": "account_closure"}
        first = await post(host, call.client.call_id, body)
        again = await post(host, call.client.call_id, body)
        other = await post(host, call.client.call_id, {"id": "req-2", "intent": "billing"})
    await side.drain()
    assert await side.services.evidence.wait_stored(10)
    assert first.status_code == again.status_code == other.status_code == 202
    assert "duplicate" not in first.json() and again.json()["duplicate"] is True
    assert again.json()["at_ms"] == first.json()["at_ms"]
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        intents = ledger.events(call_id=call.client.call_id, kind="control.intent")
    finally:
        ledger.close()
    assert [e["data"]["intent"] for e in intents] == ["account_closure", "billing"]
