"""End-of-speech → verdict latency under N concurrent real-time calls, beside a naive baseline.

Starts ``cxguard serve`` as a subprocess (or targets ``--url`` + ``--evidence``), streams N
copies of the bundled two-track call as Twilio Media Streams at real-time pace over real
websockets (starts staggered over ``--stagger`` seconds), then reads every verdict back from
the evidence ledger. Latency of a turn = the wall-clock time its last verdict was decided
minus the wall-clock time the client finished sending its last voiced frame.

The naive baseline is measured in the same run, after the server has stopped (2 cores cannot
host both at once honestly): faster-whisper as its README shows it — ``WhisperModel(path)``,
``transcribe(audio, beam_size=5, vad_filter=True)``, one call per turn, 30 s window — over the
same turns. Its per-turn service times are measured; its latency at N calls is those service
times put through the same arrival schedule on one model (FIFO), as a naive server would run.

``p50_ms``/``p95_ms``/``p99_ms`` are end of turn (the VAD closed its last segment) → all
verdicts decided, as the server measured them; ``speech_end_*`` add the endpointing wait (last
voiced frame → verdict, client clock); ``floor_wait_*`` is the part spent waiting for the
speaker turn to end (the floor changing or ``turns.end_silence_ms`` of silence) after the last
segment was transcribed; ``processing_*`` are the rest (per turn, ``end_to_verdict -
floor_wait`` = ASR queue + ASR of its last segment + policy): what cxguard adds after the
later of the segment closing and the floor changing; ``baseline_*`` are the naive server's
turn closed → transcribed.

``--turns-baseline`` also runs the same load with segments judged as turns
(``turns.end_silence_ms: 0``, cxguard before speaker turns), reported as ``segment_turns``.

    python benchmarks/latency.py --calls 1 4 8 16 --json
    python benchmarks/latency.py --find-capacity --budget-ms 1000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxguard.evidence.ledger import EvidenceLedger  # noqa: E402
from cxguard.runtime.demo import demo_audio  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

DEMO = ROOT / "cxguard" / "data" / "demo"
HANGOVER_MS = 400.0


@dataclass
class CallRun:
    call_sid: str
    started_wall: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not become ready")


async def _one_call(url: str, at: float, duration_s: float | None) -> CallRun:
    await asyncio.sleep(max(0.0, at - time.time()))
    agent, customer = demo_audio()
    if duration_s:
        agent, customer = _truncated(agent, customer, duration_s)
    started = time.time()
    result = await simulate_call(
        url, agent, customer, SimulationOptions(parameters={"authenticated": "false"})
    )
    return CallRun(result.call_sid, started)


_TRUNC: dict[float, tuple[Path, Path]] = {}


def _truncated(agent: Path, customer: Path, seconds: float) -> tuple[Path, Path]:
    if seconds not in _TRUNC:
        from cxguard.audio.files import read_audio, write_wav_pcm16

        out = Path(tempfile.mkdtemp(prefix="cxg-bench-"))
        paths = []
        for src in (agent, customer):
            pcm = read_audio(src, 8000)[: int(seconds * 8000)]
            dst = out / src.name
            write_wav_pcm16(dst, pcm, 8000)
            paths.append(dst)
        _TRUNC[seconds] = (paths[0], paths[1])
    return _TRUNC[seconds]


def _play_slice(url: str, starts: list[float], duration: float | None) -> list[CallRun]:
    async def main() -> list[CallRun]:
        return await asyncio.gather(*(_one_call(url, at, duration) for at in starts))

    return asyncio.run(main())


def _play_calls(url: str, starts: list[float], duration: float | None, procs: int) -> list[CallRun]:
    """One event loop streams all calls, or ``procs`` processes share them (a single Python
    client saturates a core near 100 real-time calls, which would measure the client)."""
    if procs <= 1:
        return _play_slice(url, starts, duration)
    from concurrent.futures import ProcessPoolExecutor

    slices = [starts[i::procs] for i in range(procs)]
    with ProcessPoolExecutor(max_workers=procs) as pool:
        parts = pool.map(_play_slice, [url] * procs, slices, [duration] * procs)
        return [run for part in parts for run in part]


def _norm(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def _wer(pairs: list[tuple[str, str]]) -> float:
    errors = words = 0
    for ref, hyp in pairs:
        r, h = _norm(ref), _norm(hyp)
        d = np.arange(len(h) + 1)
        for i in range(1, len(r) + 1):
            prev, d[0] = d.copy(), i
            for j in range(1, len(h) + 1):
                d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
        errors += int(d[len(h)])
        words += len(r)
    return errors / max(1, words)


def _reference_for(start_ms: float, end_ms: float, speaker: str) -> str:
    script = json.loads((DEMO / "turns.json").read_text())["turns"]
    best = max(
        (t for t in script if t["speaker"] == speaker),
        key=lambda t: min(end_ms, t["end_ms"]) - max(start_ms, t["start_ms"]),
    )
    return str(best["text"])


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_load(
    calls: int,
    stagger: float,
    duration: float | None,
    url: str | None,
    evidence: str | None,
    config: str | None = None,
    client_procs: int = 1,
    server_log: str | None = None,
) -> dict[str, Any]:
    server = None
    tmp = Path(tempfile.mkdtemp(prefix="cxg-lat-"))
    if url is None:
        port = _free_port()
        evidence = f"sqlite:///{tmp / 'evidence.db'}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cxguard.cli",
                "serve",
                "--port",
                str(port),
                "--evidence",
                evidence,
                *(["--config", config] if config else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(server_log, "ab") if server_log else subprocess.DEVNULL,  # noqa: SIM115
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        _wait_ready(port)
        url = f"ws://127.0.0.1:{port}/twilio"
    assert evidence is not None
    try:
        rng = random.Random(7)
        t0 = time.time() + 1.0 + 0.2 * client_procs  # room for the client processes to start
        starts = [t0] + [t0 + rng.uniform(0, stagger) for _ in range(calls - 1)]
        runs = _play_calls(url, starts, duration, client_procs)
        time.sleep(3.0)  # the last turns finish evaluation after the stream closes
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    ledger = EvidenceLedger(evidence)
    latencies: list[float] = []
    closed: list[float] = []
    floor_waits: list[float] = []
    processing: list[float] = []
    undetermined_turns = dropped = 0
    pairs: list[tuple[str, str]] = []
    turns_seen = 0
    try:
        for run in runs:
            rows = list(ledger.export(call_id=run.call_sid))
            by_turn: dict[int, list[dict[str, Any]]] = {}
            for r in rows:
                by_turn.setdefault(r["turn"], []).append(r)
            for turn in ledger.turns(run.call_sid):
                turns_seen += 1
                start, end = 1000 * float(turn["start"]), 1000 * float(turn["end"])
                pairs.append((_reference_for(start, end, turn["speaker"]), turn["text"] or ""))
            for vs in by_turn.values():
                lat = [v["latency_ms"] for v in vs if v.get("latency_ms")]
                if not lat:
                    continue
                speech_end_wall = run.started_wall + vs[0]["end"]
                decided = max(_wall(v["decided_at"]) for v in vs)
                latencies.append(1000 * (decided - speech_end_wall))
                closed.append(max(x.get("end_to_verdict", 0.0) for x in lat))
                floor_waits.append(max(x.get("floor_wait", 0.0) for x in lat))
                processing.append(
                    max(x.get("end_to_verdict", 0.0) - x.get("floor_wait", 0.0) for x in lat)
                )
                if any(v["verdict"] == "undetermined" for v in vs):
                    undetermined_turns += 1
                    if any(
                        "ASR" in (v["evidence"] or "")
                        and ("queue" in v["evidence"] or "waited" in v["evidence"])
                        for v in vs
                    ):
                        dropped += 1
    finally:
        ledger.close()
    return {
        "calls": calls,
        "turns": turns_seen,
        "verdict_turns": len(latencies),
        "p50_ms": _pct(closed, 50),
        "p95_ms": _pct(closed, 95),
        "p99_ms": _pct(closed, 99),
        "speech_end_p50_ms": _pct(latencies, 50),
        "speech_end_p95_ms": _pct(latencies, 95),
        "speech_end_p99_ms": _pct(latencies, 99),
        "floor_wait_p50_ms": _pct(floor_waits, 50),
        "floor_wait_p95_ms": _pct(floor_waits, 95),
        "processing_p50_ms": _pct(processing, 50),
        "processing_p95_ms": _pct(processing, 95),
        "processing_p99_ms": _pct(processing, 99),
        "dropped_turns": dropped,
        "undetermined_turns": undetermined_turns,
        "wer": round(_wer(pairs), 4),
        "_arrivals": [(r.started_wall, r.call_sid) for r in runs],
    }


def _wall(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(str(value)).timestamp()


def naive_service_times(
    duration: float | None, model_name: str = "tiny.en"
) -> tuple[list[tuple[float, float]], float]:
    """(end_ms of the turn, seconds to transcribe it) for every turn, and the naive WER."""
    from faster_whisper import WhisperModel

    from cxguard.asr.models import resolve_model_path
    from cxguard.audio.codec import ulaw_decode, ulaw_encode
    from cxguard.audio.files import read_audio
    from cxguard.audio.vad import VadSegmenter

    model = WhisperModel(str(resolve_model_path(model_name)))
    out: list[tuple[float, float]] = []
    pairs: list[tuple[str, str]] = []
    agent, customer = demo_audio()
    for speaker, path in (("agent", agent), ("customer", customer)):
        pcm = read_audio(path, 8000)
        if duration:
            pcm = pcm[: int(duration * 8000)]
        pcm = ulaw_decode(ulaw_encode(pcm))  # what the wire carries
        seg = VadSegmenter(speaker)  # type: ignore[arg-type]
        turns = seg.feed(pcm, 0.0) + seg.flush()
        for turn in turns:
            audio = np.frombuffer(turn.pcm16, dtype=np.int16).astype(np.float32) / 32768.0
            t0 = time.perf_counter()
            segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True)
            text = " ".join(s.text for s in segments)
            out.append((turn.end_ms, time.perf_counter() - t0))
            pairs.append((_reference_for(turn.start_ms, turn.end_ms, speaker), text))
    return out, _wer(pairs)


def naive_latency(service: list[tuple[float, float]], arrivals: list[float]) -> list[float]:
    """FIFO on one model: each call's turns arrive when the VAD closes them (call start + turn
    end + the same 400 ms hangover), so the figure compares with ours turn-closed → verdict."""
    jobs = sorted(
        (a + (end_ms + HANGOVER_MS) / 1000.0, s) for a in arrivals for end_ms, s in service
    )
    free_at = 0.0
    lat = []
    for arrive, s in jobs:
        start = max(arrive, free_at)
        free_at = start + s
        lat.append(1000 * (free_at - arrive))
    return lat


def _segment_turns_config(config: str | None) -> str:
    """The server settings of ``config`` with every segment judged as a turn of its own."""
    import yaml

    data = yaml.safe_load(Path(config).read_text()) if config else {}
    data = dict(data or {})
    data["turns"] = {**(data.get("turns") or {}), "end_silence_ms": 0}
    path = Path(tempfile.mkdtemp(prefix="cxg-seg-")) / "segment-turns.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _configured_model(config: str | None) -> str:
    """The Whisper model the server under test runs, so the baseline runs the same one."""
    if config is None:
        return "tiny.en"
    import yaml

    data = yaml.safe_load(Path(config).read_text()) or {}
    return str((data.get("asr") or {}).get("model", "tiny.en"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[1])
    ap.add_argument("--stagger", type=float, default=5.0, help="spread call starts (s)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of the call to play")
    ap.add_argument("--url", default=None)
    ap.add_argument("--evidence", default=None)
    ap.add_argument("--find-capacity", action="store_true")
    ap.add_argument("--budget-ms", type=float, default=1000.0)
    ap.add_argument("--config", default=None, help="settings file for the server it starts")
    ap.add_argument("--ladder", type=int, nargs="+", default=None, help="N to try (capacity)")
    ap.add_argument("--client-procs", type=int, default=1, help="processes playing the calls")
    ap.add_argument("--server-log", default=None, help="append the server's stderr to this file")
    ap.add_argument(
        "--turns-baseline", action="store_true", help="also judge segments as turns (baseline)"
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the results (JSON lines)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model_name = _configured_model(args.config)

    service, naive_wer = None, None
    results = []
    ladder = args.calls
    if args.find_capacity:
        ladder = args.ladder or [1, 2, 4, 8, 12, 16, 24, 32, 48]
    capacity = 0
    for n in ladder:
        res = run_load(
            n,
            args.stagger,
            args.duration,
            args.url,
            args.evidence,
            args.config,
            args.client_procs,
            args.server_log,
        )
        arrivals = [a for a, _ in res.pop("_arrivals")]
        if service is None:
            service, naive_wer = naive_service_times(args.duration, model_name)
        base = naive_latency(service, [a - arrivals[0] for a in arrivals])
        res.update(
            baseline_p50_ms=_pct(base, 50),
            baseline_p95_ms=_pct(base, 95),
            baseline_p99_ms=_pct(base, 99),
            baseline_wer=round(naive_wer or 0, 4),
            baseline_service_p50_ms=_pct([1000 * s for _, s in service], 50),
        )
        res["model"] = model_name
        if args.turns_baseline:
            seg = run_load(
                n,
                args.stagger,
                args.duration,
                args.url,
                args.evidence,
                _segment_turns_config(args.config),
                args.client_procs,
                args.server_log,
            )
            seg.pop("_arrivals")
            res["segment_turns"] = seg
        results.append(res)
        print(json.dumps(res) if args.json else res, flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(res) + "\n")
        held = (res["p95_ms"] or 1e9) <= args.budget_ms and res["dropped_turns"] == 0
        if args.find_capacity:
            if not held:
                break
            capacity = n
    if args.find_capacity:
        summary = {"capacity_calls": capacity, "budget_ms": args.budget_ms}
        print(json.dumps(summary) if args.json else summary)


if __name__ == "__main__":
    main()
