"""`cxguard eval` as a pre-launch gate: exit codes, labels, JUnit, and recordings judged offline
exactly as the live sidecar judges them (real Whisper, real websocket, real ledger)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import wave
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
import yaml

from cxguard.audio.files import read_audio
from cxguard.evidence import EvidenceLedger
from cxguard.evidence.engine import LedgerOptions
from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.policy.pack import default_pack_path
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.eval import EvalRequest, run_gate
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

CLI = [sys.executable, "-m", "cxguard.cli"]
CLEAN = [
    {"speaker": "agent", "text": "Hi, I'm an automated assistant for Northwind billing."},
    {"speaker": "customer", "text": "What is my balance?"},
    {"speaker": "agent", "text": "I can tell you once you are verified."},
]
PLAN = "Sure, we can set up a payment plan with three installments."
PAYMENT = "billing.no_payment_arrangements_unauthenticated"
PARAMS = {"tenant": "northwind", "authenticated": "false"}


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _eval(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "eval", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    last = [line for line in result.stderr.splitlines() if line.startswith('{"summary"')]
    assert last, result.stderr
    summary: dict[str, Any] = json.loads(last[-1])["summary"]
    return summary


def _violating(tmp_path: Path, expect: dict[str, str] | None = None) -> Path:
    bad = {"speaker": "agent", "text": PLAN, **({"expect": expect} if expect else {})}
    return _write(tmp_path / "violating.jsonl", [*CLEAN[:2], bad])


def test_clean_transcript_passes_and_a_violation_fails_the_gate(tmp_path: Path) -> None:
    clean = _eval(_write(tmp_path / "clean.jsonl", CLEAN), "--junit", tmp_path / "clean.xml")
    assert clean.returncode == 0, clean.stderr
    summary = _summary(clean)
    assert summary["fail"] == 0 and summary["exit"] == 0
    assert summary["release"].startswith("rel-")
    assert summary["release_parts"]["policy_hash"].startswith("sha256:")
    rows = [json.loads(line) for line in clean.stdout.splitlines()]
    assert {r["release"] for r in rows} == {summary["release"]}

    bad = _eval(_violating(tmp_path), "--junit", tmp_path / "bad.xml")
    assert bad.returncode == 1, bad.stderr
    assert _summary(bad)["fail"] == 1

    suites = ET.parse(tmp_path / "bad.xml").getroot()
    assert suites.tag == "testsuites" and suites.get("failures") == "1"
    props = {p.get("name"): p.get("value") for p in suites.iter("property")}
    assert props["release"] == summary["release"]
    failures = [tc for tc in suites.iter("testcase") if tc.find("failure") is not None]
    assert [tc.get("name") for tc in failures] == [f"turn 2 {PAYMENT}"]
    assert ET.parse(tmp_path / "clean.xml").getroot().get("failures") == "0"


def test_labels_turn_an_expected_violation_into_a_pass_and_a_miss_into_a_mismatch(
    tmp_path: Path,
) -> None:
    expected = _eval(_violating(tmp_path, {PAYMENT: "fail"}))
    assert expected.returncode == 0, expected.stderr
    missed = _write(
        tmp_path / "missed.jsonl", [*CLEAN[:2], {**CLEAN[2], "expect": {PAYMENT: "fail"}}]
    )
    result = _eval(missed)
    assert result.returncode == 1
    assert _summary(result)["mismatch"] == 1
    # Only violations gate: the mismatch is reported but passes.
    assert _eval(missed, "--fail-on", "fail").returncode == 0


def test_folders_undetermined_and_bad_input(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    (calls / "nested").mkdir(parents=True)
    _write(calls / "a.jsonl", CLEAN)
    unread = {"speaker": "agent", "undetermined": "asr_failed"}
    _write(calls / "nested" / "b.jsonl", [*CLEAN, unread])
    result = _eval(calls)
    assert result.returncode == 0, result.stderr  # undetermined is reported, not gating
    summary = _summary(result)
    assert summary["sources"] == 2 and summary["undetermined"] > 0
    assert _eval(calls, "--fail-on", "undetermined").returncode == 1

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"speaker": "agent", "text": "hello"}\n{"speaker": 3}\n')
    bad = _eval(calls, broken)
    assert bad.returncode == 2
    assert f"{broken}:2" in bad.stderr and not bad.stdout
    assert _eval(tmp_path / "nowhere.jsonl").returncode == 2
    assert _eval(calls, "--fail-on", "sometimes").returncode == 2


class _Recorder:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        self.verdicts.extend(verdicts)


def _key(turn: Any, assertion: Any, outcome: Any) -> tuple[int, str, str]:
    return int(turn), str(assertion), str(outcome)


SHADOW = "shadow.no_account_talk"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _shadow_pack(tmp_path: Path) -> Path:
    """The billing pack plus a shadow assertion that fails (and would hand off) whenever the
    agent says "account" or "payment": judged and recorded on every agent turn, never raised."""
    pack = yaml.safe_load(default_pack_path().read_text(encoding="utf-8"))
    pack["assertions"].append(
        {
            "id": SHADOW,
            "kind": "regex",
            "description": "Trial: the agent avoids the words account and payment.",
            "severity": "critical",
            "mode": "shadow",
            "negate": True,
            "patterns": [r"\b(account|payment)\b"],
            "on_fail": ["alert", "handoff"],
            "drift_threshold": 0.2,
        }
    )
    path = tmp_path / "shadow.yaml"
    path.write_text(yaml.safe_dump(pack, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
async def test_a_two_track_call_gets_the_same_verdicts_offline_as_through_serve(
    tmp_path: Path,
) -> None:
    """Also: every stored verdict names the release the gate named, the release and its
    framework are recorded once, and a shadow assertion is recorded but never alerted."""
    agent, customer = demo_audio()
    pack = _shadow_pack(tmp_path)
    params = {**PARAMS, "agent_version": "v1"}
    rows: list[dict[str, Any]] = []
    request = EvalRequest(pairs=((agent, customer),), parameters=params, policy=pack)
    report = run_gate(request, rows.append)
    offline = {_key(r["turn"], r["assertion"], r["verdict"]) for r in rows}
    assert report.release.model_ids["asr"] and report.release.agent_version == "v1"
    assert {c.status for c in report.cases} >= {"ok", "fail", "shadow"}
    shadow_fails = {k for k in offline if k[1] == SHADOW and k[2] == "fail"}
    assert shadow_fails

    tenant = f"gate{uuid.uuid4().hex[:8]}"
    db = tmp_path / "ev.db"
    settings = Settings(
        port=0, evidence_url=f"sqlite:///{db}", redis_url=REDIS_URL, policy=str(pack)
    )
    services = await Services.start(settings)
    recorder = _Recorder()
    services.listeners.append(recorder)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            options = SimulationOptions(fast=True, parameters={**params, "tenant": tenant})
            played = await simulate_call(f"ws://127.0.0.1:{port}/twilio", agent, customer, options)
            assert played.close_code == 1000
            await side.drain()
    finally:
        await services.close()
        alerts = await client.xrange(f"cxguard:{tenant}:alerts")
        handoffs = await client.xrange(f"cxguard:{tenant}:handoffs")
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    live = {_key(v.turn_index, v.assertion_id, v.outcome) for v in recorder.verdicts}
    assert offline == live
    assert any(outcome == "fail" for _, a, outcome in live if a != SHADOW)

    alerted = {json.loads(f["data"])["verdict"]["assertion_id"] for _, f in alerts}
    assert alerted and SHADOW not in alerted
    assert len(handoffs) == 1  # the closure's, not the shadow assertion's
    with EvidenceLedger(f"sqlite:///{db}", LedgerOptions(read_only=True)) as led:
        stored = list(led.export(tenant=tenant))
        releases = led.findings(tenant, "release")
        assert led.verify(tenant=tenant).ok
    assert {r["release_id"] for r in stored} == {report.release.id}
    assert {r["agent_version"] for r in stored} == {"v1"}
    assert {(r["turn"], r["verdict"]) for r in stored if r["mode"] == "shadow"} >= {
        (t, o) for t, _, o in shadow_fails
    }
    assert {r["assertion"] for r in stored if r["mode"] == "shadow"} == {SHADOW}
    assert len(releases) == 1
    framework = releases[0]["data"]["policy"]
    modes = {a["id"]: a["mode"] for a in framework["assertions"]}
    assert modes[SHADOW] == "shadow" and modes["disclosure.ai_identifies"] == "live"

    # The same call as one stereo file (customer left, agent right) through the CLI.
    stereo = tmp_path / "call.wav"
    a, c = read_audio(agent, 8000), read_audio(customer, 8000)
    n = max(len(a), len(c))
    both = np.stack([np.pad(c, (0, n - len(c))), np.pad(a, (0, n - len(a)))], axis=1)
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(both.astype("<i2").tobytes())
    args = [f"--param={k}={v}" for k, v in PARAMS.items()]
    result = _eval(
        stereo, *args, "--policy", pack, "--agent-version", "v1", "--junit", tmp_path / "s.xml"
    )
    assert result.returncode == 1, result.stderr  # the demo call has violations
    summary = _summary(result)
    assert summary["release"] == report.release.id
    assert summary["shadow"] == len(shadow_fails)
    cli_rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {_key(r["turn"], r["assertion"], r["verdict"]) for r in cli_rows} == live
    assert int(ET.parse(tmp_path / "s.xml").getroot().get("failures") or 0) > 0
