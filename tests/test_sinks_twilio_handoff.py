"""TwilioCallRedirect against a local server standing in for api.twilio.com (unreachable here).

The stand-in records the requests; the assertions are on what Twilio's "update a call"
endpoint expects: the path, HTTP basic auth, and the form-encoded ``Twiml`` field.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from support_http import RecordingServer, Reply, free_port

from cxguard.errors import ConfigError, SinkError, SinkUnavailable
from cxguard.model import HandoffRequest
from cxguard.sinks.twilio_handoff import DEFAULT_TWIML, TwilioCallRedirect

ACCOUNT = "AC" + "0" * 31 + "1"
SUBACCOUNT = "AC" + "a" * 32
CALL = "CA" + "f" * 31 + "7"
TOKEN = "auth-token-xyz"
TWIML = "<Response><Say>One moment.</Say><Enqueue>billing-humans</Enqueue></Response>"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RecordingServer]:
    srv = RecordingServer(getattr(request, "param", [Reply(200, body=b'{"status":"queued"}')]))
    yield srv
    srv.close()


def _base(server: RecordingServer) -> str:
    return server.url.split("/hooks")[0]


def _request(**changes: Any) -> HandoffRequest:
    req = HandoffRequest(
        call_id=CALL,
        tenant="acme",
        source="twilio",
        assertion_id="closure",
        turn_index=3,
        reason="closure requested",
        idempotency_key=f"{CALL}:3",
        requested_at_wall=1_700_000_000.0,
        account_sid=ACCOUNT,
    )
    return replace(req, **changes)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_redirect_posts_twiml_form_with_basic_auth(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, TWIML, api_base=_base(server))
    try:
        await target.send(_request())
    finally:
        await target.close()
    [got] = server.received
    assert got.method == "POST"
    assert got.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert got.headers["authorization"] == _basic(ACCOUNT, TOKEN)
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(got.body.decode("ascii"), strict_parsing=True) == {"Twiml": [TWIML]}


async def test_call_of_a_subaccount_uses_its_path_and_the_configured_credentials(
    server: RecordingServer,
) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server))
    try:
        await target.send(_request(account_sid=SUBACCOUNT))
    finally:
        await target.close()
    [got] = server.received
    assert got.path == f"/2010-04-01/Accounts/{SUBACCOUNT}/Calls/{CALL}.json"
    assert got.headers["authorization"] == _basic(ACCOUNT, TOKEN)
    assert parse_qs(got.body.decode("ascii")) == {"Twiml": [DEFAULT_TWIML]}


async def test_without_configured_account_the_request_names_it(server: RecordingServer) -> None:
    target = TwilioCallRedirect(None, TOKEN, api_base=_base(server))
    try:
        await target.send(_request(account_sid=SUBACCOUNT))
        with pytest.raises(SinkError, match="no valid Twilio account sid"):
            await target.send(_request(account_sid=""))
    finally:
        await target.close()
    [got] = server.received
    assert got.headers["authorization"] == _basic(SUBACCOUNT, TOKEN)


async def test_other_sources_and_tenants_are_left_alone(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server), tenant="acme")
    try:
        genesys = _request(source="audiohook", call_id="d1b7c3e0-call")
        other_tenant = _request(tenant="globex")
        assert not target.accepts(genesys) and not target.accepts(other_tenant)
        assert target.accepts(_request())
        await target.send(genesys)
        await target.send(other_tenant)
    finally:
        await target.close()
    assert server.received == []


@pytest.mark.parametrize("server", [[Reply(503), Reply(429), Reply(200)]], indirect=True)
async def test_5xx_and_429_are_retried(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server), retries=3, backoff_s=0.01)
    try:
        await target.send(_request())
    finally:
        await target.close()
    assert len(server.received) == 3
    assert len({(r.path, r.body, r.headers["authorization"]) for r in server.received}) == 1


@pytest.mark.parametrize("server", [[Reply(500)]], indirect=True)
async def test_gives_up_after_retries(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server), retries=1, backoff_s=0.01)
    try:
        with pytest.raises(SinkUnavailable, match="gave up after 2 attempts"):
            await target.send(_request())
    finally:
        await target.close()
    assert len(server.received) == 2


_NOT_IN_PROGRESS = b'{"code": 21220, "message": "Call is not in-progress. Cannot redirect."}'


@pytest.mark.parametrize("server", [[Reply(400, body=_NOT_IN_PROGRESS)]], indirect=True)
async def test_call_that_ended_is_an_error_without_retry(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server), backoff_s=0.01)
    try:
        with pytest.raises(SinkError, match="21220") as info:
            await target.send(_request())
    finally:
        await target.close()
    assert not isinstance(info.value, SinkUnavailable)
    assert len(server.received) == 1


async def test_malformed_call_sid_never_reaches_the_api(server: RecordingServer) -> None:
    target = TwilioCallRedirect(ACCOUNT, TOKEN, api_base=_base(server))
    try:
        with pytest.raises(SinkError, match="not a Twilio CallSid"):
            await target.send(_request(call_id="CA123/../../Accounts"))
    finally:
        await target.close()
    assert server.received == []


async def test_unreachable_api_is_sink_unavailable() -> None:
    target = TwilioCallRedirect(
        ACCOUNT, TOKEN, api_base=f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01
    )
    try:
        with pytest.raises(SinkUnavailable, match="unreachable"):
            await target.send(_request())
    finally:
        await target.close()


@pytest.mark.parametrize(
    ("sid", "token", "twiml", "message"),
    [
        ("AC123", TOKEN, DEFAULT_TWIML, "not a Twilio SID"),
        (ACCOUNT, "", DEFAULT_TWIML, "auth token is empty"),
        (ACCOUNT, TOKEN, "<Response><Enqueue>x</Response>", "not well-formed"),
        (ACCOUNT, TOKEN, "<Enqueue>x</Enqueue>", "must be a <Response>"),
    ],
)
def test_bad_configuration_is_a_config_error(
    sid: str, token: str, twiml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        TwilioCallRedirect(sid, token, twiml)
