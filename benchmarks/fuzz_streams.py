"""Hostile input campaign: ≥ 100 000 hostile messages to ``/twilio``, ``/audiohook`` and
``/stream`` over real websockets while a real call is judged, against ``cxguard serve``.

What is sent (``cxguard.simulate.hostile``): connections that open validly, abuse the
stream survivably (malformed ``cxguard.*`` control marks, DTMF, client ``error`` messages with
odd text, pings, a second ``open``) and then mostly end with one fatal message — malformed
JSON, wrong JSON types, frames over the 64 KiB limit, payloads over the media limit, bad
base64, lone surrogates, duplicate / backwards ``sequenceNumber`` and ``seq``, repeated
chunks, timestamps going back, binary where text is expected, unknown events and message
types, odd stereo frames, audio while paused, bad durations, mismatched ids. Beside them: raw
hostile HTTP upgrades (duplicate security headers, bad keys, TLS bytes, huge headers).

Meanwhile the bundled demo call is played through ``/twilio`` — in real time by default —
and its verdicts are compared with the same call played before the attack (the baseline in
the same run). Printed (and written with ``--out``), one JSON object:

- ``messages_sent``, ``connections``, ``close_codes``, ``http_statuses``, ``http_500s``;
- ``tracebacks_in_log``, ``log_lines``, ``log_bytes``, ``rejected_lines``, ``suppressed_lines``;
- ``server_crashed`` (exited, or ``/healthz`` unanswered after the attack);
- ``real_call``: ``call_started``/``call_ended`` recorded, ``turns``, ``verdict_rows``,
  ``verdicts_all_arrived`` (every (turn, assertion) of the baseline has a row),
  ``outcomes_equal_baseline``, ``undetermined``.

    python benchmarks/fuzz_streams.py --messages 100000 --out benchmarks/results/protocols-fuzz.json
    python benchmarks/fuzz_streams.py --messages 100000 --signed     # credentials configured
    python benchmarks/fuzz_streams.py --messages 3000 --fast-call      # the project test's size
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus  # noqa: E402

from cxguard.evidence.ledger import EvidenceLedger  # noqa: E402
from cxguard.protocols.audiohook_auth import sign_request  # noqa: E402
from cxguard.protocols.twilio_signature import compute_signature  # noqa: E402
from cxguard.runtime.demo import demo_audio  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402
from cxguard.simulate.hostile import (  # noqa: E402
    Connection,
    audiohook_connection,
    stream_connection,
    twilio_connection,
)

TOKEN = "fuzz-twilio-auth-token"
API_KEY = "fuzz-audiohook-key"
SECRET = b"fuzz-audiohook-client-secret-32b"

HOSTILE_UPGRADES = (
    "GET /twilio HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "X-Twilio-Signature: a\r\nX-Twilio-Signature: b\r\n\r\n",
    "GET /twilio HTTP/1.1\r\nHost: h\r\nHost: i\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /audiohook HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /audiohook HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Signature-Input: sig1=(\r\nSignature: sig1=::\r\nX-API-KEY: \xff\r\n\r\n",
    "GET /twilio HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /nope HTTP/1.1\r\nHost: h\r\n\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 40,
    "GET /twilio HTTP/1.1\r\nHost: h\r\nX-Big: " + "a" * 20_000 + "\r\n\r\n",
    "POST /audiohook HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
)


@dataclass
class Tally:
    messages: int = 0
    connections: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    http_statuses: Counter[str] = field(default_factory=Counter)
    fatal_kinds: Counter[str] = field(default_factory=Counter)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            status: int = response.status
            return status
    except OSError:
        return 0


def _wait_ready(port: int, server: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode} before it was ready")
        if _get(port, "/readyz") == 200:
            return
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def _headers(url: str, conn: Connection, signed: bool) -> dict[str, str]:
    """Signed upgrades (``--signed``), as each platform signs them."""
    if not signed:
        return {}
    if conn.protocol == "twilio":
        return {"X-Twilio-Signature": compute_signature(TOKEN, url, {})}
    if conn.protocol == "stream":
        return {"Authorization": f"Bearer {TOKEN}"}
    return sign_request(
        path="/audiohook",
        authority=url.split("/")[2],
        api_key=API_KEY,
        client_secret=SECRET,
        organization_id=conn.organization_id,
        session_id=conn.session_id,
        correlation_id=conn.session_id,
    )


async def _hostile_connection(base: str, rng: random.Random, tally: Tally, signed: bool) -> None:
    make = rng.choice([twilio_connection, audiohook_connection, stream_connection])
    conn = make(rng)
    tally.connections += 1
    tally.fatal_kinds[f"{conn.protocol}:{conn.fatal or 'survivable'}"] += 1
    url = f"{base}/{conn.protocol}"
    headers = _headers(url, conn, signed)
    try:
        async with connect(
            url, additional_headers=headers, max_size=None, open_timeout=10, close_timeout=3
        ) as ws:
            drain = asyncio.create_task(_drain(ws))
            try:
                for frame in conn.frames:
                    await ws.send(frame)
                    tally.messages += 1
            except ConnectionClosed:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 3)
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            await ws.close()
            tally.close_codes[str(ws.close_code)] += 1
    except InvalidStatus as exc:
        tally.http_statuses[str(exc.response.status_code)] += 1
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        tally.close_codes[f"connect failed: {type(exc).__name__}"] += 1


async def _drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _hostile_upgrade(port: int, rng: random.Random, tally: Tally) -> None:
    request = rng.choice(HOSTILE_UPGRADES)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.encode("latin-1"))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        parts = line.split()
        tally.http_statuses[parts[1].decode() if len(parts) > 1 else "no answer"] += 1
    except (OSError, TimeoutError):
        tally.http_statuses["reset"] += 1
    tally.connections += 1


async def _attack(
    args: argparse.Namespace, port: int, rng: random.Random, tally: Tally, done: asyncio.Event
) -> None:
    base = f"ws://127.0.0.1:{port}"
    while tally.messages < args.messages or not done.is_set():
        if rng.random() < 0.03:
            await _hostile_upgrade(port, rng, tally)
        else:
            await _hostile_connection(base, rng, tally, args.signed)


async def _campaign(args: argparse.Namespace, port: int) -> tuple[Tally, str, str, float]:
    base = f"ws://127.0.0.1:{port}"
    agent, customer = demo_audio()
    params = {"tenant": "fuzz-real", "authenticated": "false"}
    token = TOKEN if args.signed else None
    baseline = await simulate_call(
        f"{base}/twilio",
        agent,
        customer,
        SimulationOptions(fast=True, parameters=params, auth_token=token),
    )
    await _wait_ended(args.evidence, baseline.call_sid, 180)
    tally = Tally()
    call_done = asyncio.Event()
    rng = random.Random(args.seed)

    async def real_call() -> str:
        try:
            options = SimulationOptions(fast=args.fast_call, parameters=params, auth_token=token)
            result = await simulate_call(f"{base}/twilio", agent, customer, options)
            return result.call_sid
        finally:
            call_done.set()

    began = time.monotonic()
    attackers = [
        asyncio.create_task(_attack(args, port, random.Random(rng.random()), tally, call_done))
        for _ in range(args.concurrency)
    ]
    real = await real_call()
    await asyncio.gather(*attackers)
    return tally, baseline.call_sid, real, time.monotonic() - began


async def _wait_ended(evidence: str, call_id: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ledger = EvidenceLedger(evidence)
        try:
            if ledger.events(call_id=call_id, kind="call_ended"):
                return True
        finally:
            ledger.close()
        await asyncio.sleep(1)
    return False


def _call_report(evidence: str, baseline: str, real: str) -> dict[str, Any]:
    """Did every verdict of the real call arrive? Judged on agent turns: each must carry a
    row for every assertion that each baseline agent turn carries (outcomes may differ where
    the recogniser heard a word differently under load; those are counted, not hidden)."""
    ledger = EvidenceLedger(evidence)
    try:
        rows = {call: list(ledger.export(call_id=call)) for call in (baseline, real)}
        turns = {call: ledger.turns(call) for call in (baseline, real)}
        kinds = [e["kind"] for e in ledger.events(call_id=real)]
    finally:
        ledger.close()

    def agent_turns(call: str) -> list[int]:
        return [t["turn"] for t in turns[call] if t["speaker"] == "agent"]

    def judged(call: str) -> dict[tuple[int, str], str]:
        return {(r["turn"], r["assertion"]): r["verdict"] for r in rows[call]}

    base, got = judged(baseline), judged(real)
    per_turn = set.intersection(
        *({a for (t, a) in base if t == turn} for turn in agent_turns(baseline))
    )
    missing = [
        f"{turn}:{assertion}"
        for turn in agent_turns(real)
        for assertion in sorted(per_turn)
        if (turn, assertion) not in got
    ]
    return {
        "call_id": real,
        "call_started": "call_started" in kinds,
        "call_ended": "call_ended" in kinds,
        "turns": len(turns[real]),
        "baseline_turns": len(turns[baseline]),
        "agent_turns": len(agent_turns(real)),
        "baseline_agent_turns": len(agent_turns(baseline)),
        "per_turn_assertions": len(per_turn),
        "verdict_rows": len(rows[real]),
        "baseline_verdict_rows": len(rows[baseline]),
        "missing_agent_verdicts": missing,
        "verdicts_all_arrived": "call_ended" in kinds
        and not missing
        and len(agent_turns(real)) == len(agent_turns(baseline)),
        "outcomes_differing_from_baseline": sum(got.get(k) != v for k, v in base.items()),
        "undetermined": sum(v == "undetermined" for v in got.values()),
        "baseline_undetermined": sum(v == "undetermined" for v in base.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fast-call", action="store_true", help="Play the real call fast.")
    parser.add_argument(
        "--signed", action="store_true", help="Configure credentials; sign every upgrade."
    )
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxg-fuzz-"))
    args.evidence = f"sqlite:///{tmp / 'evidence.db'}"
    port = _free_port()
    log_path = tmp / "server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    evidence = ["--evidence", args.evidence]
    if args.signed:
        config = tmp / "server.yaml"
        tenant = {
            "name": "fuzz-real",
            "twilio_auth_token": TOKEN,
            "audiohook_api_key": API_KEY,
            "audiohook_client_secret": base64.b64encode(SECRET).decode(),
            "stream_token": TOKEN,
        }
        # Twilio signs the URL it dialled: the server checks against public_url + path.
        settings = {"tenants": [tenant], "public_url": f"ws://127.0.0.1:{port}"}
        config.write_text(json.dumps(settings), encoding="utf-8")
        evidence += ["--config", str(config)]
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "cxguard.cli", "serve", "--port", str(port), *evidence],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        try:
            _wait_ready(port, server)
            tally, baseline, real, seconds = asyncio.run(_campaign(args, port))
            asyncio.run(_wait_ended(args.evidence, real, 180))
            crashed = server.poll() is not None or _get(port, "/healthz") != 200
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
    log = log_path.read_text(encoding="utf-8", errors="replace")
    report = {
        "benchmark": "fuzz_streams",
        "messages_sent": tally.messages,
        "connections": tally.connections,
        "seconds": round(seconds, 1),
        "messages_per_s": round(tally.messages / seconds),
        "real_call_pace": "fast" if args.fast_call else "real time",
        "signed_upgrades": args.signed,
        "close_codes": dict(sorted(tally.close_codes.items())),
        "http_statuses": dict(sorted(tally.http_statuses.items())),
        "http_500s": tally.http_statuses.get("500", 0),
        "tracebacks_in_log": log.count("Traceback (most recent call last)"),
        "log_lines": log.count("\n"),
        "log_bytes": len(log.encode()),
        "rejected_lines": log.count(" rejected "),
        "suppressed_lines": log.count("suppressed "),
        "server_crashed": crashed,
        "server_exit_code": server.returncode,
        "kinds": dict(sorted(tally.fatal_kinds.items())),
        "real_call": _call_report(args.evidence, baseline, real),
        "log": str(log_path),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
