"""SIGTERM mid-call on a real ``cxguard serve`` process: it stops admitting (``/readyz`` 503,
new upgrades 503), judges every turn of the open calls, stores the evidence, then ends each
stream the protocol's way — AudioHook ``disconnect`` (the client answers ``close`` and gets
``closed``), Twilio a 1001 close — and exits 0. The ledger shows the calls ended
``shutdown`` (never ``connection_lost``) with every turn judged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support_http import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.simulate import load_tracks, play
from cxguard.simulate.audiohook import AudioHookClient
from cxguard.simulate.twilio import TwilioClient

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a server process loads the Whisper model


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    config = tmp / "server.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            host: 127.0.0.1
            port: {port}
            evidence_url: sqlite:///{tmp / "evidence.db"}
            drain_timeout_s: 60
            """
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config), "-v"],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port, log


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if readyz(port)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready: {log.read_text(errors='replace')[-2000:]}")


async def test_sigterm_mid_call_drains_every_stream(tmp_path: Path) -> None:
    proc, port, log = start_server(tmp_path)
    try:
        await asyncio.to_thread(wait_ready, proc, port, log)
        agent, customer = demo_audio()
        agent_ulaw, customer_ulaw = load_tracks(agent, customer)
        genesys = AudioHookClient()
        stubborn = AudioHookClient(answer_server=False)  # never answers the disconnect
        twilio = TwilioClient()
        seen: dict[str, object] = {}

        async def sigterm() -> None:
            proc.send_signal(signal.SIGTERM)
            # While the calls are judged: not ready, and no new stream is admitted.
            async with asyncio.timeout(5):
                while (probe := await asyncio.to_thread(readyz, port))[0] != 503:
                    await asyncio.sleep(0.02)
            seen["readyz"] = probe
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port}/twilio"):
                    pass
            seen["upgrade"] = refused.value.response.status_code

        base = f"ws://127.0.0.1:{port}"
        # 4x real time; SIGTERM while the agent is saying turn 4 (25.2-31.1 s).
        plays = await asyncio.gather(
            play(
                f"{base}/audiohook",
                genesys,
                customer_ulaw,
                agent_ulaw,
                speed=4.0,
                cues=[(27_000, sigterm)],
            ),
            play(f"{base}/audiohook", stubborn, customer_ulaw, agent_ulaw, speed=4.0),
            play(f"{base}/twilio", twilio, customer_ulaw, agent_ulaw, speed=4.0),
        )
        code = await asyncio.to_thread(proc.wait, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert seen["readyz"] == (503, "draining\n")
    assert seen["upgrade"] == 503

    genesys_play, stubborn_play, twilio_play = plays
    for client, played in ((genesys, genesys_play), (stubborn, stubborn_play)):
        kinds = [m["type"] for m in client.messages_received]
        assert kinds[0] == "opened" and "disconnect" in kinds
        disconnect = next(m for m in client.messages_received if m["type"] == "disconnect")
        assert disconnect["parameters"] == {"reason": "completed", "info": "server shutting down"}
        assert played.frames * 20 < 60_000  # cut mid-call
    assert genesys_play.problems == () and genesys_play.close_code == 1000
    assert [m["type"] for m in genesys.messages_received][-1] == "closed"
    assert genesys.finished()
    # Never answered: closed by the server after its grace, still with the protocol's code.
    assert stubborn_play.close_code == 1000 and not stubborn.finished()
    assert twilio_play.close_code == 1001 and twilio_play.problems == ()

    ledger = EvidenceLedger(f"sqlite:///{tmp_path / 'evidence.db'}")
    try:
        for call_id in (genesys.call_id, stubborn.call_id, twilio.call_id):
            ended = ledger.events(call_id=call_id, kind="call_ended")
            assert [e["data"]["reason"] for e in ended] == ["shutdown"], call_id
            assert not [e for e in ledger.events(call_id=call_id) if "connection_lost" in str(e)]
            turns = ledger.turns(call_id=call_id)
            assert len(turns) >= 4
            assert ended[0]["data"]["turns_closed"] == len({t["turn"] for t in turns})
            judged = {row["turn"] for row in ledger.export(call_id=call_id)}
            agent_turns = {t["turn"] for t in turns if t["speaker"] == "agent"}
            assert agent_turns <= judged, (agent_turns, judged)
            # The turn being spoken at SIGTERM was judged too (as far as it was heard).
            assert max(t["end"] for t in turns) > 25.2
            report = ledger.verify(call_id=call_id)
            assert report.ok and not report.open_calls, report.as_dict()
    finally:
        ledger.close()
