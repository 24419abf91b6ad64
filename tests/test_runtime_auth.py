"""The doors' rules, checked on :class:`Authenticator` with real signatures: duplicate
security headers, Twilio's signed URL, closed doors beyond loopback, bearer tokens, and the
nonce replay store shared through a real Redis."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_auth import (
    API_KEY,
    OTHER_KEY,
    OTHER_SECRET,
    OTHER_TOKEN,
    SECRET_B64,
    TOKEN,
    RedisProcess,
    audiohook_headers,
    redis_server,
)

from cxguard.errors import AuthenticationError, ConfigError
from cxguard.protocols.twilio_signature import compute_signature
from cxguard.runtime import metrics
from cxguard.runtime.auth import (
    SECURITY_HEADERS,
    Admission,
    Authenticator,
    UpgradeRequest,
    check_exposure,
    is_loopback,
)
from cxguard.runtime.replay import KEY_PREFIX
from cxguard.runtime.settings import Settings, TenantSettings

NORTHWIND = TenantSettings(
    "northwind",
    twilio_auth_token=TOKEN,
    audiohook_api_key=API_KEY,
    audiohook_client_secret=SECRET_B64,
    stream_token="northwind-stream-token",
)
GLOBEX = TenantSettings(
    "globex",
    twilio_auth_token=OTHER_TOKEN,
    audiohook_api_key=OTHER_KEY,
    audiohook_client_secret="Z2xvYmV4LXNlY3JldC1nbG9iZXgtc2VjcmV0LTAwMDA=",
)
HOST = "guard.example.com"
LOCAL = ("127.0.0.1", 8765)


def settings_with(**kwargs: object) -> Settings:
    base: dict[str, object] = dict(tenants=(NORTHWIND, GLOBEX))
    base.update(kwargs)
    return Settings(**base)  # type: ignore[arg-type]


def request(target: str, headers: dict[str, str] | list[tuple[str, str]]) -> UpgradeRequest:
    return UpgradeRequest.of(target, headers, LOCAL)


async def refused(auth: Authenticator, door: str, req: UpgradeRequest, status: int) -> str:
    with pytest.raises(AuthenticationError) as err:
        await auth.admit(door, req)
    assert err.value.status == status, err.value
    return str(err.value)


def test_the_globex_secret_is_what_the_tenant_says() -> None:
    assert base64.b64decode(GLOBEX.audiohook_client_secret or "") == OTHER_SECRET


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("name", sorted(SECURITY_HEADERS))
async def test_a_security_header_sent_twice_is_400_and_counted(name: str) -> None:
    auth = Authenticator(settings_with(public_url=f"wss://{HOST}"))
    pairs = [*list(audiohook_headers(HOST).items()), ("Host", HOST)]
    pairs += [("X-Twilio-Signature", compute_signature(TOKEN, f"wss://{HOST}/twilio"))]
    pairs += [("Authorization", "Bearer x")]
    twice = next(v for k, v in pairs if k.lower() == name)
    pairs.append((name.title(), twice))  # the same value again: still refused
    counter = metrics.DUPLICATE_HEADERS.labels(header=name)
    before = counter._value.get()
    for door in ("twilio", "audiohook", "metrics"):
        message = await refused(auth, door, request("/" + door, pairs), 400)
        assert name in message
    assert counter._value.get() == before + 3


async def test_repeated_ordinary_headers_are_fine() -> None:
    auth = Authenticator(settings_with(public_url=f"wss://{HOST}"))
    pairs = [*audiohook_headers(HOST).items(), ("Host", HOST), ("Accept", "a"), ("Accept", "b")]
    admission = await auth.admit("audiohook", request("/audiohook", pairs))
    assert admission.tenant == "northwind"


# --------------------------------------------------------------------------- Twilio


async def test_twilio_signs_public_url_whatever_the_host_header_says() -> None:
    auth = Authenticator(settings_with(public_url=f"wss://{HOST}/"))
    good = compute_signature(OTHER_TOKEN, f"wss://{HOST}/twilio")
    for host in (HOST, "evil.example", "127.0.0.1:8765"):
        req = request("/twilio", {"Host": host, "X-Twilio-Signature": good})
        assert await auth.admit("twilio", req) == Admission("globex")
    # The campaign's finding: a signature made for another host, sent with that Host.
    forged = compute_signature(TOKEN, "wss://evil.example/twilio")
    req = request("/twilio", {"Host": "evil.example", "X-Twilio-Signature": forged})
    await refused(auth, "twilio", req, 403)
    await refused(auth, "twilio", request("/twilio", {"Host": HOST}), 401)


async def test_without_public_url_the_socket_address_is_signed_never_the_host_header() -> None:
    auth = Authenticator(settings_with())
    good = compute_signature(TOKEN, "ws://127.0.0.1:8765/twilio")
    req = request("/twilio", {"Host": "anything", "X-Twilio-Signature": good})
    assert await auth.admit("twilio", req) == Admission("northwind")
    forged = compute_signature(TOKEN, "wss://evil.example/twilio")
    req = request("/twilio", {"Host": "evil.example", "X-Twilio-Signature": forged})
    await refused(auth, "twilio", req, 403)
    no_socket = UpgradeRequest.of("/twilio", {"X-Twilio-Signature": good})
    await refused(auth, "twilio", no_socket, 403)


# --------------------------------------------------------------------------- open and closed doors


def test_loopback() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3")] == [
        True
    ] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "guard.example")] == [
        False
    ] * 5


async def test_doors_without_credentials_are_open_on_loopback_only() -> None:
    plain = {"Audiohook-Organization-Id": "o", "Audiohook-Session-Id": "s"}
    loop = Authenticator(Settings())
    assert loop.open_doors == ["twilio", "audiohook", "stream", "metrics", "control"]
    assert await loop.admit("audiohook", request("/audiohook", plain)) == Admission(None, "o", "s")
    assert await loop.admit("metrics", request("/metrics", {})) == Admission()

    exposed = Authenticator(Settings(host="0.0.0.0", tenants=(TenantSettings("t", "tok"),)))
    assert exposed.open_doors == []
    await refused(exposed, "audiohook", request("/audiohook", plain), 403)
    await refused(exposed, "metrics", request("/metrics", {}), 403)

    insecure = Authenticator(Settings(host="0.0.0.0", insecure=True))
    assert insecure.open_doors == ["twilio", "audiohook", "stream", "metrics", "control"]

    strict = Authenticator(Settings(require_auth=True))
    assert strict.open_doors == ["metrics"]
    await refused(strict, "twilio", request("/twilio", {}), 403)


def test_a_public_bind_without_credentials_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        check_exposure(Settings(host="0.0.0.0"))
    with pytest.raises(ConfigError, match=r"refusing to listen on 10\.0\.0\.5"):
        check_exposure(Settings(host="10.0.0.5", metrics_token="m"))
    check_exposure(Settings(host="0.0.0.0", insecure=True))
    check_exposure(Settings())
    check_exposure(Settings(host="0.0.0.0", tenants=(NORTHWIND,)))


async def test_metrics_bearer_token() -> None:
    auth = Authenticator(Settings(host="0.0.0.0", tenants=(NORTHWIND,), metrics_token="m-token"))
    assert await auth.admit("metrics", request("/metrics", {"Authorization": "Bearer m-token"}))
    assert await auth.admit("metrics", request("/metrics", {"authorization": "bearer m-token"}))
    await refused(auth, "metrics", request("/metrics", {"Authorization": "Bearer m-tokeN"}), 403)
    await refused(auth, "metrics", request("/metrics", {"Authorization": "Basic m-token"}), 401)
    await refused(auth, "metrics", request("/metrics", {}), 401)


# --------------------------------------------------------------------------- AudioHook


async def test_audiohook_tenant_is_the_key_that_signed() -> None:
    auth = Authenticator(settings_with())
    headers = audiohook_headers(HOST, api_key=OTHER_KEY, client_secret=OTHER_SECRET)
    admission = await auth.admit("audiohook", request("/audiohook", {"Host": HOST, **headers}))
    assert admission.tenant == "globex"
    # globex's key with northwind's secret
    crossed = audiohook_headers(HOST, api_key=OTHER_KEY)
    await refused(auth, "audiohook", request("/audiohook", {"Host": HOST, **crossed}), 401)


async def test_in_process_nonces_do_not_hold_across_processes() -> None:
    """The control for the Redis test below: two sidecars with their own memory both accept
    the same signed upgrade (why ``redis_url`` matters with more than one)."""
    headers = {"Host": HOST, **audiohook_headers(HOST)}
    first, second = Authenticator(settings_with()), Authenticator(settings_with())
    assert (await first.admit("audiohook", request("/audiohook", headers))).tenant == "northwind"
    assert "already used" in await refused(first, "audiohook", request("/audiohook", headers), 401)
    assert (await second.admit("audiohook", request("/audiohook", headers))).tenant == "northwind"


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


async def test_redis_nonce_store_refuses_a_replay_on_another_sidecar(
    own_redis: RedisProcess,
) -> None:
    first = Authenticator(settings_with(redis_url=own_redis.url))
    second = Authenticator(settings_with(redis_url=own_redis.url))
    try:
        headers = {"Host": HOST, **audiohook_headers(HOST, expires_in_s=5)}
        now = time.time()
        assert (await first.admit("audiohook", request("/audiohook", headers))).tenant
        message = await refused(second, "audiohook", request("/audiohook", headers), 401)
        assert "already used" in message
        client = redis.Redis.from_url(own_redis.url)
        (key,) = client.keys(KEY_PREFIX + "*")
        # Kept exactly as long as the signature could still be accepted: expires + 3 s skew.
        ttl_ms = client.pttl(key)
        assert 0 < ttl_ms <= (int(now) + 5 + 3 - now) * 1000 + 1000
        client.close()
        # Concurrent claims of one fresh nonce: exactly one wins.
        fresh = {"Host": HOST, **audiohook_headers(HOST)}
        results = await asyncio.gather(
            *(a.admit("audiohook", request("/audiohook", fresh)) for a in (first, second) * 4),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Admission) for r in results) == 1
        assert all(isinstance(r, AuthenticationError | Admission) for r in results)
    finally:
        await first.close()
        await second.close()


async def test_redis_down_refuses_upgrades_with_503(own_redis: RedisProcess) -> None:
    auth = Authenticator(settings_with(redis_url=own_redis.url))
    try:
        own_redis.stop()
        headers = {"Host": HOST, **audiohook_headers(HOST)}
        message = await refused(auth, "audiohook", request("/audiohook", headers), 503)
        assert "127.0.0.1" not in message and "unavailable" in message
        # Forged requests are refused for what they are, before Redis is asked.
        forged = {"Host": HOST, **audiohook_headers(HOST, client_secret=b"x" * 32)}
        await refused(auth, "audiohook", request("/audiohook", forged), 401)
    finally:
        await auth.close()


# --------------------------------------------------------------------------- property


header_names = st.sampled_from(
    [*sorted(SECURITY_HEADERS), "Host", "X-API-KEY", "Signature-Input", "Accept", "x-ÿ"]
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80) | (
    st.sampled_from(list(audiohook_headers(HOST).values()))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    door=st.sampled_from(["twilio", "audiohook", "stream", "metrics"]),
    target=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    pairs=st.lists(st.tuples(header_names, header_values), max_size=10),
)
def test_any_request_is_admitted_or_refused_with_an_authentication_error(
    door: str, target: str, pairs: list[tuple[str, str]]
) -> None:
    auth = Authenticator(settings_with(public_url=f"wss://{HOST}", metrics_token="m"))

    async def attempt() -> None:
        try:
            await auth.admit(door, UpgradeRequest.of("/" + target, pairs, LOCAL))
        except AuthenticationError as exc:
            assert exc.status in (400, 401, 403)
        else:
            raise AssertionError("a random request was admitted")

    asyncio.run(attempt())


def test_serve_refuses_a_public_bind_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cxguard.cli import app

    for name in list(os.environ):
        if name.startswith("CXGUARD_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output and "--insecure" in result.output


async def test_stream_door_admits_bearer_or_basic_password_as_its_tenant() -> None:
    import base64

    auth = Authenticator(settings_with(public_url=f"wss://{HOST}"))
    bearer = {"Authorization": "Bearer northwind-stream-token"}
    assert await auth.admit("stream", request("/stream", bearer)) == Admission("northwind")
    basic = base64.b64encode(b"fork:northwind-stream-token").decode()
    got = await auth.admit("stream", request("/stream", {"Authorization": f"Basic {basic}"}))
    assert got == Admission("northwind")
    await refused(auth, "stream", request("/stream", {"Authorization": "Bearer nope"}), 403)
    await refused(auth, "stream", request("/stream", {"Authorization": "Basic %%%"}), 401)
    await refused(auth, "stream", request("/stream", {}), 401)
