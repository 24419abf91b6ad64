"""Replay rendered two-track calls through a real sidecar and count what it raised.

    PYTHONPATH=. .venv/bin/python benchmarks/replay_calls.py --json CALL_DIR... [--out FILE]
        [--details] [--fallbacks turn-b5,full-b5] [--agree-logprob -1.5|none]

Each ``CALL_DIR`` holds ``agent.wav``, ``customer.wav`` and ``call.json`` as written by
``scripts/replay/render.py`` (a directory of such directories is expanded). One sidecar is
started as ``cxguard serve`` starts it (``Services.start`` + ``running_sidecar``: the real
Whisper model, policy pack, SQLite ledger, Redis alerts at ``--redis-url``) and every call is
streamed to it over a real websocket as a Twilio ``both_tracks`` Media Stream (fast: frames
are not paced, their timestamps are). Printed per call and in total:

* agent turns, and agent turns with an ``undetermined`` verdict (ASR refused or overloaded);
* alerts read back from the tenant's Redis stream, by kind and by (kind, assertion);
* verdict fails per assertion;
* word error of the agent turns against the script (``call.json``), split into words, digits
  and amounts, and how many agent turns that state an amount got it wrong;
* which ASR decode produced the agent turns' text (when the transcriber names it).

A clean call (no scripted violation) should raise no alert except ``disclosure.ai_identifies``
on a human agent; undetermined agent turns should be rare (issue 9: ≤ 1 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from cxguard.asr.wer import WerCounts, score, token_class, tokens
from cxguard.model import TurnText, Verdict
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Recorder, Services
from cxguard.runtime.settings import AsrSettings, Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call


def call_dirs(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        if (p / "call.json").is_file():
            out.append(p)
        else:
            out += sorted(d for d in p.iterdir() if (d / "call.json").is_file())
    return out


def _script_for(turn: TurnText, pieces: list[dict[str, Any]]) -> str:
    """The scripted words of the agent's lines that overlap the turn in time."""
    spoken = [
        p
        for p in pieces
        if p["speaker"] == turn.speaker
        and p["kind"] == "line"
        and min(p["end_ms"], turn.end_ms) - max(p["start_ms"], turn.start_ms) > 0
    ]
    return " ".join(p.get("script") or p["text"] for p in spoken)


def _worth_showing(v: Verdict) -> bool:
    """Verdicts that alerted, and what customer turns decided without their text."""
    if v.assertion_id == "disclosure.ai_identifies":
        return False
    return v.outcome in ("fail", "undetermined") or (
        v.speaker == "customer" and v.outcome == "not_applicable"
    )


def _verdict_detail(v: Verdict, texts: dict[int, str]) -> dict[str, Any]:
    trigger = texts.get(v.trigger_turn) if v.trigger_turn is not None else None
    return {
        "turn": v.turn_index,
        "speaker": v.speaker,
        "assertion": v.assertion_id,
        "outcome": v.outcome,
        "trigger_turn": v.trigger_turn,
        "trigger_text": trigger,
        "text": v.text,
        "evidence": v.evidence[:300],
        "decode": v.model_ids.get("asr_decode"),
    }


def summarise(
    manifest: dict[str, Any], rec: Recorder, alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    agent = [t for t in rec.turns if t.speaker == "agent"]
    # A turn is undetermined when a verdict on it is; one whose text was refused but whose
    # unsure readings all got the same verdicts (cxguard.asr.agreement.readings) is not.
    undetermined_turns = {
        v.turn_index for v in rec.verdicts if v.outcome == "undetermined" and v.speaker == "agent"
    }
    unread = [t for t in agent if t.undetermined_reason]
    judged = {v.turn_index for v in rec.verdicts if v.speaker == "agent"}
    undetermined_turns |= {t.index for t in unread if t.index not in judged}
    fails = Counter(v.assertion_id for v in rec.verdicts if v.outcome == "fail")
    kinds = Counter(a["kind"] for a in alerts)
    by_assertion = Counter(
        f"{a['kind']}:{name}"
        for a in alerts
        for name in (a.get("assertions") or [a["verdict"]["assertion_id"]])
    )
    decodes = Counter(
        v.model_ids.get("asr_decode", "?") for v in rec.verdicts if v.speaker == "agent"
    )
    wer = WerCounts()
    amount_turns = amount_wrong = 0
    details = []
    for t in agent:
        ref = _script_for(t, manifest["pieces"])
        if not ref:
            continue
        counts = score(ref, t.text)
        wer.add(counts)
        stated = any(token_class(tok) == "amount" for tok in tokens(ref))
        if stated:
            amount_turns += 1
            amount_wrong += counts.edits["amount"] > 0
        details.append({"turn": t.index, "script": ref, "heard": t.text,
                        "undetermined": t.undetermined_reason, "edits": counts.edits,
                        "amount_stated": stated})  # fmt: skip
    texts = {t.index: t.text for t in rec.turns}
    not_passed = [_verdict_detail(v, texts) for v in rec.verdicts if _worth_showing(v)]
    customer = [{"turn": t.index, "script": _script_for(t, manifest["pieces"]), "heard": t.text,
                 "undetermined": t.undetermined_reason}
                for t in rec.turns if t.speaker == "customer"]  # fmt: skip
    return {
        "call": f"{manifest['source']}-{manifest['call_id']}",
        "agent_turns": len(agent),
        "undetermined_agent_turns": len(undetermined_turns),
        "unread_agent_turns": len(unread),
        "alerts": dict(kinds),
        "alerts_by_assertion": dict(sorted(by_assertion.items())),
        "fails": dict(sorted(fails.items())),
        "wer_agent": {"all": wer.rate(), "word": wer.rate("word"), "digit": wer.rate("digit"),
                      "amount": wer.rate("amount")},
        "amount_turns_wrong": f"{amount_wrong}/{amount_turns}",
        "asr_decodes_of_agent_verdicts": dict(decodes),
        "turns": details,
        "customer_turns": customer,
        "not_passed": not_passed,
        "_wer": wer,
        "_amounts": (amount_wrong, amount_turns),
    }  # fmt: skip


async def replay(
    dirs: list[Path], redis_url: str, evidence_dir: Path, asr: AsrSettings
) -> dict[str, Any]:
    tenant = f"replay{uuid.uuid4().hex[:8]}"
    settings = Settings(
        asr=asr,
        port=0,
        evidence_url=f"sqlite:///{evidence_dir / 'replay.db'}",
        redis_url=redis_url,
        default_tenant=tenant,
    )
    services = await Services.start(settings)
    client = aioredis.from_url(redis_url, decode_responses=True)
    calls = []
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/twilio"
            last_id = "0-0"
            for d in dirs:
                manifest = json.loads((d / "call.json").read_text())
                rec = Recorder()
                services.listeners.append(rec)
                result = await simulate_call(
                    url, d / "agent.wav", d / "customer.wav",
                    SimulationOptions(fast=True, parameters={"tenant": tenant}),
                )  # fmt: skip
                await side.drain()
                services.listeners.remove(rec)
                await asyncio.sleep(0.2)  # let the alert outbox flush to Redis
                entries = await client.xrange(f"cxguard:{tenant}:alerts", min=f"({last_id}")
                if entries:
                    last_id = entries[-1][0]
                alerts = [json.loads(f["data"]) for _, f in entries]
                summary = summarise(manifest, rec, alerts)
                summary["close_code"] = result.close_code
                calls.append(summary)
                print(f"{summary['call']} done", file=sys.stderr, flush=True)
    finally:
        await services.close()
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return {"model_ids": dict(services.model_ids), "calls": calls}


def totals(calls: list[dict[str, Any]]) -> dict[str, Any]:
    wer = WerCounts()
    wrong = stated = 0
    out: dict[str, Any] = {
        "calls": len(calls),
        "agent_turns": 0,
        "undetermined_agent_turns": 0,
        "unread_agent_turns": 0,
    }
    kinds: Counter[str] = Counter()
    by_assertion: Counter[str] = Counter()
    fails: Counter[str] = Counter()
    decodes: Counter[str] = Counter()
    calls_alerting = calls_alerting_beyond_disclosure = 0
    for c in calls:
        out["agent_turns"] += c["agent_turns"]
        out["undetermined_agent_turns"] += c["undetermined_agent_turns"]
        out["unread_agent_turns"] += c["unread_agent_turns"]
        kinds.update(c["alerts"])
        by_assertion.update(c["alerts_by_assertion"])
        fails.update(c["fails"])
        decodes.update(c["asr_decodes_of_agent_verdicts"])
        wer.add(c.pop("_wer"))
        w, s = c.pop("_amounts")
        wrong, stated = wrong + w, stated + s
        calls_alerting += bool(c["alerts"])
        others = [
            k for k in c["alerts_by_assertion"] if not k.endswith(":disclosure.ai_identifies")
        ]
        calls_alerting_beyond_disclosure += bool(others)
    turns = out["agent_turns"] or 1
    out.update(
        undetermined_rate=round(out["undetermined_agent_turns"] / turns, 4),
        calls_with_alerts=calls_alerting,
        calls_with_alerts_beyond_ai_disclosure=calls_alerting_beyond_disclosure,
        alerts=dict(kinds),
        alerts_by_assertion=dict(sorted(by_assertion.items())),
        fails=dict(sorted(fails.items())),
        wer_agent={"all": wer.rate(), "word": wer.rate("word"), "digit": wer.rate("digit"),
                   "amount": wer.rate("amount")},
        amount_turns_wrong=f"{wrong}/{stated}",
        asr_decodes_of_agent_verdicts=dict(decodes.most_common()),
    )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calls", nargs="+", type=Path, help="rendered call directories (or parents)")
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--fallbacks",
        type=lambda v: tuple(x for x in v.split(",") if x),
        help="asr.fallbacks for this run, comma-separated (default: the settings' default)",
    )
    ap.add_argument(
        "--agree-logprob",
        type=lambda v: None if v.lower() in ("none", "null") else float(v),
        default=AsrSettings.agree_logprob,
        help="asr.agree_logprob for this run ('none': refuse what every decode found unsure)",
    )
    ap.add_argument("--beam-size", type=int, default=None, help="asr.beam_size for this run")
    ap.add_argument("--details", action="store_true", help="each call's turns: script vs heard")
    args = ap.parse_args(argv)
    dirs = call_dirs(args.calls)
    with tempfile.TemporaryDirectory(prefix="cxg-replay-") as tmp:
        asr = AsrSettings() if args.fallbacks is None else AsrSettings(fallbacks=args.fallbacks)
        asr = replace(asr, agree_logprob=args.agree_logprob)
        if args.beam_size is not None:
            asr = replace(asr, beam_size=args.beam_size)
        result = asyncio.run(replay(dirs, args.redis_url, Path(tmp), asr))
    report = {
        "total": totals(result["calls"]),
        "model_ids": result["model_ids"],
        "calls": result["calls"]
        if args.details
        else [
            {k: v for k, v in c.items() if k not in ("turns", "customer_turns", "not_passed")}
            for c in result["calls"]
        ],
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
