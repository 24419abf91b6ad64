"""Speaker turns against reference turns, beside segments judged as turns (the baseline), on
real and synthetic two-speaker calls streamed through the real sidecar (Twilio, fast).

* ``pyannote``: the pyannote two-speaker telephone sample (shared/audio, 30 s, one mono
  track) split into two tracks with its RTTM (each speaker's track carries the audio of that
  speaker's RTTM segments, +50 ms; overlap is on both). Reference turns: the RTTM segments
  merged while the speaker stays the same, a segment lying inside the other speaker's
  segment counted as a backchannel (the RTTM has one, 0.44 s at 18.15 s).
* ``greeting-<ms>``: tests/data/turns/dialogue.json rebuilt with the pause after "Hello."
  set to 600..900 ms (scripts/make_turns_call.py): 5 reference turns, one backchannel
  ("Okay." under the agent's explanation); disclosure must pass on the first agent turn.

Per call and mode: turns judged, reference turns matched (same speaker, the judged turn
covers ≥ 50 % of the reference turn and no other reference turn of that speaker), boundary
precision/recall, backchannels reported, verdicts on agent turn 1 (disclosure), fails and
undetermined verdicts. ``speaker_turns`` uses the default ``turns:`` settings;
``segment_turns`` sets ``turns.end_silence_ms: 0`` (every segment its own turn).

    python benchmarks/turns_floor.py --json --out benchmarks/results/turns-floor.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxguard.audio.files import read_audio, write_wav_ulaw  # noqa: E402
from cxguard.evidence.ledger import EvidenceLedger  # noqa: E402
from cxguard.model import CallInfo, TurnText, Verdict  # noqa: E402
from cxguard.runtime.server import running_sidecar  # noqa: E402
from cxguard.runtime.services import Services  # noqa: E402
from cxguard.runtime.settings import Settings, TurnSettings  # noqa: E402
from cxguard.runtime.simulate import SimulationOptions, simulate_call  # noqa: E402

SHARED = next(
    (
        p
        for p in (ROOT / "shared", ROOT.parent / "shared", ROOT.parent.parent / "shared")
        if p.is_dir()
    ),
    ROOT.parent / "shared",
)
"""The team's shared data (``../shared`` next to the checkout, or above a worktree)."""
PYANNOTE = SHARED / "audio" / "pyannote_sample_telephone_16k.wav"
RTTM = SHARED / "audio" / "pyannote_sample.rttm"
DIALOGUE = ROOT / "tests" / "data" / "turns" / "dialogue.json"
RATE = 8000


def _reference(segments: list[tuple[str, float, float]]) -> tuple[list[dict[str, Any]], int]:
    """Merge same-speaker runs; a segment inside the other speaker's segment is a
    backchannel (not a turn). Returns (turns, backchannels)."""
    segments = sorted(segments, key=lambda s: s[1])
    inside = {
        i
        for i, (spk, a, b) in enumerate(segments)
        if any(o != spk and oa <= a and b <= ob for o, oa, ob in segments)
    }
    turns: list[dict[str, Any]] = []
    for i, (spk, a, b) in enumerate(segments):
        if i in inside:
            continue
        if turns and turns[-1]["speaker"] == spk:
            turns[-1]["end_ms"] = max(turns[-1]["end_ms"], b)
        else:
            turns.append({"speaker": spk, "start_ms": a, "end_ms": b})
    return turns, len(inside)


def pyannote_call(out: Path) -> tuple[Path, Path, list[dict[str, Any]], int]:
    pcm = read_audio(PYANNOTE, RATE)
    rows = [line.split() for line in RTTM.read_text().splitlines() if line.strip()]
    names = sorted({r[7] for r in rows})
    role = {names[0]: "agent", names[1]: "customer"}
    segments = [(role[r[7]], 1000 * float(r[3]), 1000 * (float(r[3]) + float(r[4]))) for r in rows]
    tracks = {s: np.zeros_like(pcm) for s in ("agent", "customer")}
    pad = 50 * RATE // 1000
    for spk, a, b in segments:
        lo, hi = max(0, int(a * RATE / 1000) - pad), int(b * RATE / 1000) + pad
        tracks[spk][lo:hi] = pcm[lo:hi]
    out.mkdir(parents=True, exist_ok=True)
    write_wav_ulaw(out / "agent.wav", tracks["agent"], RATE)
    write_wav_ulaw(out / "customer.wav", tracks["customer"], RATE)
    turns, backchannels = _reference(segments)
    return out / "agent.wav", out / "customer.wav", turns, backchannels


def greeting_call(pause_ms: int, out: Path) -> tuple[Path, Path, list[dict[str, Any]], int]:
    spec = importlib.util.spec_from_file_location(
        "make_turns_call", ROOT / "scripts" / "make_turns_call.py"
    )
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    meta = maker.write(DIALOGUE, out, pause_ms)
    lines = [(t["speaker"], t["start_ms"], t["end_ms"]) for t in meta["turns"]]
    turns, backchannels = _reference(lines)
    return out / "agent.wav", out / "customer.wav", turns, backchannels


def _matches(judged: list[TurnText], reference: list[dict[str, Any]]) -> int:
    def covers(t: TurnText, r: dict[str, Any]) -> float:
        length = r["end_ms"] - r["start_ms"]
        return max(0.0, min(t.end_ms, r["end_ms"]) - max(t.start_ms, r["start_ms"])) / length

    matched = 0
    for r in reference:
        own = [t for t in judged if t.speaker == r["speaker"] and covers(t, r) >= 0.5]
        if len(own) == 1:
            others = [
                o
                for o in reference
                if o is not r and o["speaker"] == r["speaker"] and covers(own[0], o) > 0.2
            ]
            matched += not others
    return matched


async def run_mode(
    mode: str, calls: list[tuple[str, Path, Path, list[dict[str, Any]], int]]
) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="cxg-floor-"))
    turns = TurnSettings(end_silence_ms=0.0) if mode == "segment_turns" else TurnSettings()
    settings = replace(Settings(port=0, evidence_url=f"sqlite:///{tmp / 'ev.db'}"), turns=turns)
    services = await Services.start(settings)
    seen: dict[str, tuple[list[TurnText], list[Verdict]]] = {}

    def listener(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        got = seen.setdefault(info.call_id, ([], []))
        if text is not None:
            got[0].append(text)
        got[1].extend(verdicts)

    services.listeners.append(listener)
    results = []
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            for name, agent, customer, reference, ref_bc in calls:
                result = await simulate_call(
                    f"ws://127.0.0.1:{port}/twilio",
                    agent,
                    customer,
                    SimulationOptions(fast=True, parameters={"authenticated": "false"}),
                )
                await side.drain()
                judged, verdicts = seen.get(result.call_sid, ([], []))
                ledger = EvidenceLedger(settings.evidence_url)
                try:
                    events = ledger.events(result.call_sid)
                finally:
                    ledger.close()
                heard = [e for e in events if e["kind"] == "turn.backchannel"]
                first_agent = next((t.index for t in judged if t.speaker == "agent"), None)
                disclosure = next(
                    (
                        v.outcome
                        for v in verdicts
                        if v.turn_index == first_agent
                        and v.assertion_id == "disclosure.ai_identifies"
                    ),
                    None,
                )
                matched = _matches(judged, reference)
                results.append(
                    {
                        "call": name,
                        "mode": mode,
                        "reference_turns": len(reference),
                        "reference_backchannels": ref_bc,
                        "turns": len(judged),
                        "segments": sum(len(t.segments) for t in judged) + len(heard),
                        "matched_turns": matched,
                        "turn_recall": round(matched / len(reference), 3),
                        "turn_precision": round(matched / len(judged), 3) if judged else None,
                        "backchannels_reported": [
                            {"text": e["data"]["text"], "start_ms": e["data"]["start_ms"]}
                            for e in heard
                        ],
                        "first_agent_turn_disclosure": disclosure,
                        "fails": sorted(
                            {
                                f"{v.turn_index}:{v.assertion_id}"
                                for v in verdicts
                                if v.outcome == "fail"
                            }
                        ),
                        "undetermined": sum(v.outcome == "undetermined" for v in verdicts),
                        "judged": [
                            [t.speaker, round(t.start_ms), round(t.end_ms), t.text[:60]]
                            for t in judged
                        ],
                    }
                )
    finally:
        await services.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pauses", type=int, nargs="+", default=[600, 700, 800, 900])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxg-floor-calls-"))
    calls = [("pyannote", *pyannote_call(work / "pyannote"))]
    calls += [(f"greeting-{p}", *greeting_call(p, work / f"greeting-{p}")) for p in args.pauses]
    results = []
    for mode in ("speaker_turns", "segment_turns"):
        for res in asyncio.run(run_mode(mode, calls)):
            results.append(res)
            shown = {k: v for k, v in res.items() if k != "judged"}
            print(json.dumps(shown) if args.json else shown, flush=True)
    summary: dict[str, Any] = {}
    for mode in ("speaker_turns", "segment_turns"):
        rows = [r for r in results if r["mode"] == mode]
        summary[mode] = {
            "turn_recall": round(
                sum(r["matched_turns"] for r in rows) / sum(r["reference_turns"] for r in rows), 3
            ),
            "turn_precision": round(
                sum(r["matched_turns"] for r in rows) / max(1, sum(r["turns"] for r in rows)), 3
            ),
            "greetings_disclosed": sum(
                r["first_agent_turn_disclosure"] == "pass"
                for r in rows
                if r["call"].startswith("greeting")
            ),
            "greetings": sum(r["call"].startswith("greeting") for r in rows),
            "backchannels_reported": sum(len(r["backchannels_reported"]) for r in rows),
            "reference_backchannels": sum(r["reference_backchannels"] for r in rows),
        }
    print(json.dumps({"summary": summary}) if args.json else summary)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "calls": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
