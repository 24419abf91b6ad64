"""The server drives every protocol core one way, over real websockets and a real ledger.

A stream that breaks its protocol is closed with the protocol's own error, logged once
without a traceback, and rate-limited under a flood; a hostile string never makes a call's
``call_started`` vanish or leaves it unended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime import server as server_module
from cxguard.runtime.server import Sidecar, running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.simulate.audiohook import AudioHookClient
from cxguard.simulate.twilio import TwilioClient

SILENCE = b"\xff" * 160


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, str]]:
    settings = Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}")
    services = await Services.start(settings)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            yield side, f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
    finally:
        await services.close()


def rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("rejected ")]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.stack_info] == []
    assert "Traceback" not in caplog.text


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    await asyncio.wait_for(ws.wait_closed(), 5)
    return ws.close_code, ws.close_reason or ""


async def send_all(ws: ClientConnection, client: TwilioClient | AudioHookClient) -> None:
    for frame in client.data_to_send():
        await ws.send(frame)


async def test_each_bad_stream_is_closed_with_its_code_and_logged_once(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, base = sidecar
    caplog.set_level(logging.INFO)
    cases = [
        ("not json", 1007),
        ('{"event": "hangup"}', 1003),
        (b"\x00\x01", 1003),
        (json.dumps({"event": "mark", "streamSid": "x", "pad": "\ud800"}), 1007),
    ]
    for frame, code in cases:
        async with connect(f"{base}/twilio") as ws:
            client = TwilioClient()
            client.start()
            await send_all(ws, client)
            await ws.send(frame)
            assert (await closed(ws))[0] == code
    await side.drain()
    lines = rejections(caplog)
    assert len(lines) == len(cases)
    assert all(r.levelno == logging.WARNING for r in lines)
    assert {r.getMessage().split(": ")[1] for r in lines} == {"close 1007", "close 1003"}
    assert_no_traceback(caplog)


async def test_audiohook_violation_disconnects_then_closes_with_the_error_code(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, base = sidecar
    async with connect(f"{base}/audiohook") as ws:
        client = AudioHookClient(custom_config={"queue": "billing"})
        client.open()
        await send_all(ws, client)
        client.receive_text(str(await ws.recv()))  # opened
        client.send_audio(SILENCE, SILENCE)
        client.error(500, "upstream said \ud800")  # a lone surrogate, as a JSON escape
        await send_all(ws, client)
        with contextlib.suppress(ConnectionClosedError):  # closed with 1007, not 1000
            async for message in ws:
                client.receive_text(str(message))  # disconnect: the client answers with close
                await send_all(ws, client)
        assert (ws.close_code, client.problems) == (1007, [])
    await side.drain()
    types = [m["type"] for m in client.messages_received]
    assert types == ["opened", "disconnect", "closed"]
    assert client.messages_received[1]["parameters"]["reason"] == "error"
    assert await side.services.evidence.wait_stored(10)  # the spool may still hold it
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        kinds = [e["kind"] for e in ledger.events(call_id=client.conversation_id)]
        ended = ledger.events(call_id=client.conversation_id, kind="call_ended")
    finally:
        ledger.close()
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert ended[0]["data"]["reason"] == "protocol_error"
    (line,) = rejections(caplog)
    assert "lone surrogate" in line.getMessage() and client.conversation_id in line.getMessage()
    assert_no_traceback(caplog)


async def test_a_client_that_never_answers_the_disconnect_is_closed_after_the_grace(
    sidecar: tuple[Sidecar, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "CLOSE_GRACE_S", 0.3)
    _, base = sidecar
    async with connect(f"{base}/audiohook") as ws:
        client = AudioHookClient(answer_server=False)
        client.open()
        await send_all(ws, client)
        await ws.send(b"\xff" * 3)  # odd stereo frame
        loop = asyncio.get_running_loop()
        began = loop.time()
        types = []
        with contextlib.suppress(ConnectionClosedError):
            async for message in ws:
                types.append(json.loads(str(message))["type"])
        assert types == ["opened", "disconnect"] and ws.close_code == 1007
        assert loop.time() - began < 1.5  # the grace, not the 2 s default


async def test_a_flood_of_bad_streams_is_rate_limited_with_a_count(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, base = sidecar
    for _ in range(25):
        async with connect(f"{base}/twilio") as ws:
            await ws.send("{")
            await closed(ws)
    await side.drain()
    lines = rejections(caplog)
    assert len(lines) == 3
    (summary,) = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
    assert summary.startswith("suppressed 22 more rejected-stream lines")
    assert "127.0.0.1 twilio 1007 x22" in summary
    assert_no_traceback(caplog)


async def test_frames_the_websocket_layer_refuses_are_rejections_too(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, base = sidecar
    async with connect(f"{base}/twilio", max_size=None) as ws:
        await ws.send("x" * (side.services.settings.max_message_bytes + 1))
        assert (await closed(ws))[0] == 1009
    await side.drain()
    (line,) = rejections(caplog)
    assert "close 1009" in line.getMessage()
    assert_no_traceback(caplog)


async def test_a_stream_that_stops_is_closed_normally_and_logs_no_rejection(
    sidecar: tuple[Sidecar, str], caplog: pytest.LogCaptureFixture
) -> None:
    side, base = sidecar
    async with connect(f"{base}/twilio") as ws:
        client = TwilioClient(custom_parameters={"cxguard": "x"})
        client.start()
        client.send_audio(SILENCE, SILENCE)
        client.send_mark("cxguard.intent")  # malformed: recorded, the stream goes on
        client.send_audio(SILENCE, SILENCE)
        client.finish()
        await send_all(ws, client)
        assert await closed(ws) == (1000, "stop")
    await side.drain()
    assert rejections(caplog) == []
    assert await side.services.evidence.wait_stored(10)  # the spool may still hold it
    ledger = EvidenceLedger(side.services.settings.evidence_url)
    try:
        invalid = ledger.events(call_id=client.call_sid, kind="control.invalid_control")
    finally:
        ledger.close()
    assert [e["data"] for e in invalid] == [{"reason": "intent needs a value"}]
    assert_no_traceback(caplog)
