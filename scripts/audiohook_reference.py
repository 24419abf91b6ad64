"""Run Genesys's AudioHook reference client against a real ``cxguard serve`` and report.

    .venv/bin/python scripts/audiohook_reference.py --client-dir /tmp/ahref/client \\
        --sessions 1 [--seconds 90] [--sigterm-at 20]

The client is not vendored (``purecloudlabs/audiohook-reference-implementation``, its
``client/`` and ``app/audiohook/``). Prepare it once, outside the repository::

    git archive HEAD client app/audiohook | tar -x -C /tmp/ahref
    cd /tmp/ahref/client
    # its lockfile points at a private registry: the same versions from the public one
    sed -i 's#https://nexus.use1.infra-pure.cloud/repository/npm-cache/#'\\
'https://registry.npmjs.org/#g' package-lock.json
    npm ci && ln -sfn client/node_modules ../node_modules   # app/audiohook resolves uuid there

The script writes the bundled call as a stereo 8 kHz WAV (external = customer, internal =
agent), starts ``cxguard serve`` with an AudioHook tenant on a free port, runs the client
(``ts-node``, under ``script`` for the TTY it insists on) with ``--session-count N`` and
``--max-stream-duration S``; with ``--sigterm-at T`` it sends SIGTERM to the server T seconds
after the client started. It prints JSON: the client's sessions closed cleanly, its error
and warning lines, the ``disconnect`` messages it received, the ``event`` messages it
logged (``--send-events``), the server's exit code, and from the ledger per call: end
reason, turns, agent turns without verdicts, and whether the chains verify.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cxguard.audio.files import read_audio
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.runtime.demo import demo_audio

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "referenceclientkey"
SECRET = base64.b64encode(b"reference-client-secret-0123456789").decode()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stereo_wav(path: Path) -> float:
    agent, customer = demo_audio()
    a, c = read_audio(agent, 8000), read_audio(customer, 8000)
    n = max(len(a), len(c))
    frames = np.stack([np.pad(c, (0, n - len(c))), np.pad(a, (0, n - len(a)))], axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames.astype("<i2").tobytes())
    return n / 8000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(work: Path, port: int, send_events: bool) -> subprocess.Popen[bytes]:
    config = work / "server.yaml"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nevidence_url: sqlite:///{work / 'evidence.db'}\n"
        "asr:\n  queue_size: 512\n  max_wait_ms: 600000\n"
        f"audiohook:\n  send_events: {'true' if send_events else 'false'}\n"
        f"tenants:\n  - name: northwind\n    audiohook_api_key: {API_KEY}\n"
        f"    audiohook_client_secret: {SECRET}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    log = (work / "server.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cxguard.cli", "serve", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(port: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError("server not ready")


def run_client(args: argparse.Namespace, port: int, wav: Path, work: Path) -> str:
    command = (
        f"npx ts-node --transpile-only src/index.ts ws://127.0.0.1:{port}/audiohook "
        f"--wavfile {wav} --api-key {API_KEY} --client-secret {SECRET} "
        f"--session-count {args.sessions} --max-stream-duration {args.seconds} "
        f"--connection-rate {args.rate}"
    )
    log = work / "client.log"
    subprocess.run(
        ["script", "-qfec", command, str(log)],
        cwd=args.client_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=args.seconds + 300,
        check=False,
    )
    return _ANSI.sub("", log.read_text(errors="replace"))


def client_summary(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if re.match(r"\[\d\d:\d\d:\d\d\.\d+\] ", line)]
    levels = Counter(line.split("] ", 1)[1].split(":", 1)[0] for line in lines)
    trouble = [line for line in lines if re.search(r"\] (ERROR|WARN|FATAL):", line)]
    return {
        "sessions_disconnected": sum("closed and disconnected" in line for line in lines),
        "closes_1000": sum("Websocket close - Code: 1000" in line for line in lines),
        "disconnects_received": [
            line.split("reason: ", 1)[1] for line in lines if "onDisconnectMessage" in line
        ][:3],
        "disconnect_count": sum("onDisconnectMessage" in line for line in lines),
        "event_messages": sum("Event message" in line for line in lines),
        "unexpected": sum("unexpected" in line.lower() for line in lines),
        "levels": dict(levels),
        "error_or_warning_lines": trouble[:10],
    }


def ledger_summary(url: str) -> dict[str, Any]:
    ledger = EvidenceLedger(url)
    try:
        calls: list[dict[str, Any]] = []
        for call in ledger.calls():
            cid = call["call_id"]
            ends = [e["data"].get("reason") for e in ledger.events(call_id=cid, kind="call_ended")]
            turns = ledger.turns(call_id=cid)
            judged = {r["turn"] for r in ledger.export(call_id=cid)}
            agents = {t["turn"] for t in turns if t["speaker"] == "agent"}
            calls.append({"ended": ends, "turns": len(turns), "unjudged": len(agents - judged)})
        report = ledger.verify()
    finally:
        ledger.close()
    return {
        "calls": len(calls),
        "end_reasons": dict(Counter(r for c in calls for r in (c["ended"] or ["(none)"]))),
        "turns": sum(c["turns"] for c in calls),
        "agent_turns_without_verdicts": sum(c["unjudged"] for c in calls),
        "verify_ok": report.ok,
        "problems": [p.kind for p in report.problems][:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--client-dir", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--rate", type=float, default=50.0, help="sessions started per second")
    parser.add_argument("--sigterm-at", type=float, default=None)
    parser.add_argument("--send-events", action="store_true", help="audiohook.send_events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxg-ahref-") as tmp:
        work = Path(tmp)
        wav = work / "call.wav"
        stereo_wav(wav)
        port = free_port()
        server = start_server(work, port, args.send_events)
        try:
            wait_ready(port)
            if args.sigterm_at is not None:
                threading.Timer(args.sigterm_at, server.send_signal, (signal.SIGTERM,)).start()
            began = time.monotonic()
            text = run_client(args, port, wav, work)
            client_s = time.monotonic() - began
            if args.sigterm_at is None:
                server.send_signal(signal.SIGTERM)
            code = server.wait(300)
        finally:
            if server.poll() is None:
                server.kill()
        server_log = (work / "server.log").read_text(errors="replace")
        result = {
            "sessions": args.sessions,
            "seconds_per_session": args.seconds,
            "sigterm_at_s": args.sigterm_at,
            "client_wall_s": round(client_s, 1),
            "client": client_summary(text),
            "server_exit_code": code,
            "server_tracebacks": server_log.count("Traceback"),
            "server_protocol_rejections": server_log.count("rejected audiohook"),
            "ledger": ledger_summary(f"sqlite:///{work / 'evidence.db'}"),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
