"""Speaker turns end to end: real sidecar, real websocket client, real Whisper, real ledger.

A greeting split by a pause is one agent turn and discloses; a customer's "Okay." under the
agent's explanation is recorded, not judged, and does not split the agent's turn; the live
path and ``cxguard eval`` give the same verdicts for the same words; and faults injected into
a call (a classifier that raises, a listener that raises, a ledger write that fails) are
recorded and alerted while the call's remaining turns are still judged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import CallInfo, Speaker, TurnText, Verdict
from cxguard.policy.calls import CallJudge
from cxguard.policy.conversation import AssertionResult, Conversation
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.offline import evaluate_transcript
from cxguard.policy.scoring import TextScorer
from cxguard.runtime.demo import demo_audio
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Recorder, Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SimulationOptions, simulate_call

DATA = Path(__file__).parent / "data"
REDIS_URL = "redis://127.0.0.1:6379/0"
PARAMETERS = {"authenticated": "false"}


async def _call(
    settings: Settings, agent: Path, customer: Path, prepare: Any = None
) -> tuple[str, Recorder, Services]:
    services = await Services.start(settings)
    recorder = Recorder()
    services.listeners.append(recorder)
    if prepare is not None:
        prepare(services)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            result = await simulate_call(
                f"ws://127.0.0.1:{port}/twilio",
                agent,
                customer,
                SimulationOptions(fast=True, parameters=dict(PARAMETERS)),
            )
            await side.drain()
    finally:
        await services.close()
    return result.call_sid, recorder, services


def _events(url: str, call_id: str) -> list[dict[str, Any]]:
    ledger = EvidenceLedger(url)
    try:
        return list(ledger.events(call_id))
    finally:
        ledger.close()


async def test_a_paused_greeting_and_a_backchannel_keep_the_agents_turns_whole(
    tmp_path: Path,
) -> None:
    settings = Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}")
    call_id, recorder, _ = await _call(
        settings, DATA / "turns" / "agent.wav", DATA / "turns" / "customer.wav"
    )
    script = json.loads((DATA / "turns" / "turns.json").read_text())["turns"]
    agent_turns = [t for t in recorder.turns if t.speaker == "agent"]
    assert len(agent_turns) == 3 and len(recorder.turns) == 5
    greeting = agent_turns[0]
    assert len(greeting.segments) == 2  # "Hello." ... 0.8 s ... "I'm the automated ..."
    assert "automated" in greeting.text.lower()
    outcome = {
        (v.turn_index, v.assertion_id): v.outcome for v in recorder.verdicts if v.turn_index == 0
    }
    assert outcome[(0, "disclosure.ai_identifies")] == "pass"
    assert not [v for v in recorder.verdicts if v.outcome in ("fail", "undetermined")]

    # The customer's "Okay." under the agent's explanation: evidence, not a turn.
    explanation = agent_turns[1]
    okay = next(t for t in script if t["text"] == "Okay.")
    assert explanation.start_ms < okay["start_ms"] < explanation.end_ms
    heard = [e for e in _events(settings.evidence_url, call_id) if e["kind"] == "turn.backchannel"]
    assert len(heard) == 1
    data = heard[0]["data"]
    assert data["turn"] == explanation.index and data["speaker"] == "customer"
    assert abs(data["start_ms"] - okay["start_ms"]) < 300
    assert data["segment"] not in {s.index for t in recorder.turns for s in t.segments}
    assert all(v.segments for v in recorder.verdicts)


def _as_transcript(turns: Sequence[TurnText]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [{"parameters": PARAMETERS}]
    for t in turns:
        line: dict[str, Any] = {
            "speaker": t.speaker,
            "text": t.text,
            "start": t.start_ms / 1000,
            "end": t.end_ms / 1000,
        }
        if t.undetermined_reason is not None:
            line["undetermined"] = t.undetermined_reason
        lines.append(line)
    return lines


async def test_live_turns_through_eval_get_the_live_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listeners see the redacted text; the engine judged the clear words. Keep what the live
    # engine was given (a spy, the real evaluation still runs) to replay the same words.
    judged: list[TurnText] = []
    evaluate = Conversation.evaluate

    def spy(self: Conversation, turn: TurnText) -> list[AssertionResult]:
        judged.append(turn)
        return evaluate(self, turn)

    monkeypatch.setattr(Conversation, "evaluate", spy)
    settings = Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}")
    agent, customer = demo_audio()
    _, recorder, services = await _call(settings, agent, customer)
    live = sorted((v.turn_index, v.assertion_id, v.outcome) for v in recorder.verdicts)
    assert len(recorder.turns) >= 18 and {o for _, _, o in live} >= {"pass", "fail"}
    clear = {t.index: t for t in judged}
    assert sorted(clear) == [t.index for t in recorder.turns]
    assert any("[" in t.text for t in recorder.turns)  # the card turn reached listeners masked
    monkeypatch.undo()

    lines = _as_transcript([clear[t.index] for t in recorder.turns])
    rows = list(evaluate_transcript(lines, services.engine, options=settings.turns.options()))
    offline = sorted((r["turn"], r["assertion"], r["verdict"]) for r in rows)
    assert offline == live
    # Each live turn is one eval turn: same index, and the line it came from.
    assert {(r["turn"], tuple(r["lines"])) for r in rows} <= {
        (t.index, (n + 1,)) for n, t in enumerate(recorder.turns)
    }


class FlakyScorer:
    """The real classifier, except that scoring a text with ``trigger`` in it raises a plain
    RuntimeError (not a ClassifierError): a bug in third-party code."""

    def __init__(self, scorer: TextScorer, trigger: str) -> None:
        self._scorer = scorer
        self._trigger = trigger

    @property
    def model_ids(self) -> Mapping[str, str]:
        return self._scorer.model_ids

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return self._scorer.labels(speaker)

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        if any(self._trigger in t.lower() for t in texts):
            raise RuntimeError("index 64 is out of bounds for axis 1 with size 64")
        return self._scorer.score(texts, speaker)


async def test_faults_are_recorded_and_alerted_and_judging_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = f"flt{uuid.uuid4().hex[:8]}"
    settings = Settings(
        port=0,
        evidence_url=f"sqlite:///{tmp_path / 'ev.db'}",
        redis_url=REDIS_URL,
        default_tenant=tenant,
    )

    def inject(services: Services) -> None:
        engine = services.engine
        assert engine.scorer is not None
        # The customer's closure request ("I want to close my account.") breaks the scorer.
        flaky = FlakyScorer(engine.scorer, "close my")
        services.engine = PolicyEngine(engine.pack, flaky)  # type: ignore[arg-type]
        calls = {"listener": 0, "write": 0}

        def bad_listener(info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
            calls["listener"] += 1
            if calls["listener"] == 1:
                raise KeyError("display column")

        services.listeners.append(bad_listener)
        write = services.evidence.write

        async def failing_write(*args: Any) -> Any:
            calls["write"] += 1
            if calls["write"] == 2:
                raise OSError(28, "No space left on device")
            return await write(*args)

        services.evidence.write = failing_write  # type: ignore[method-assign]

    caplog.set_level(logging.INFO)
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        call_id, recorder, _ = await _call(
            settings, DATA / "closure" / "agent.wav", DATA / "closure" / "customer.wav", inject
        )
        entries = await client.xrange(f"cxguard:{tenant}:alerts")
    finally:
        keys = [k async for k in client.scan_iter(f"cxguard:{tenant}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    events = _events(settings.evidence_url, call_id)
    errors = [e["data"] for e in events if e["kind"] == "pipeline.error"]
    assert {e["stage"] for e in errors} == {"policy evaluate", "listener", "evidence write"}
    assert any(e["error"].startswith("RuntimeError: index 64") for e in errors)
    assert any(e["error"].startswith("OSError: [Errno 28]") for e in errors)
    # Delivery receipts (alert.delivered) may follow it; call_ended ends the call's own record.
    assert [e["kind"] for e in events if not e["kind"].startswith("alert.")][-1] == "call_ended"

    # Every turn was judged: the broken one undetermined, the others as usual.
    assert len(recorder.turns) == 4
    by_turn: dict[int, set[str]] = {}
    for v in recorder.verdicts:
        by_turn.setdefault(v.turn_index, set()).add(v.outcome)
    customer = next(t for t in recorder.turns if "close" in t.text.lower())
    assert by_turn[customer.index] == {"undetermined"}
    # The agent's reply after the broken turn is judged on every assertion as usual.
    reply = next(t for t in recorder.turns if t.speaker == "agent" and t.index > customer.index)
    assert by_turn[reply.index] and "undetermined" not in by_turn[reply.index]
    last_agent = [t for t in recorder.turns if t.speaker == "agent"][-1]
    assert last_agent.index in by_turn

    alerts = [json.loads(f["data"]) for _, f in entries]
    kinds = [a["kind"] for a in alerts]
    assert kinds.count("error") == len(errors)
    undetermined = [a for a in alerts if a["kind"] == "undetermined"]
    assert len(undetermined) == 1 and len(undetermined[0]["assertions"]) >= 1
    # One line each, no tracebacks.
    assert not [r for r in caplog.records if r.name.startswith("cxguard") and r.exc_info]


async def test_a_failure_while_finishing_still_ends_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last item of a call failing must not leave its pipeline waiting for more."""

    def broken_finish(self: CallJudge, at_ms: float) -> list[Any]:
        raise RuntimeError("finish broke")

    monkeypatch.setattr(CallJudge, "finish", broken_finish)
    settings = Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}")
    call_id, recorder, _ = await asyncio.wait_for(
        _call(settings, DATA / "closure" / "agent.wav", DATA / "closure" / "customer.wav"),
        timeout=120,
    )
    events = _events(settings.evidence_url, call_id)
    errors = [e["data"] for e in events if e["kind"] == "pipeline.error"]
    assert [e["stage"] for e in errors] == ["finish"]
    assert "call_ended" in [e["kind"] for e in events]
    assert recorder.turns  # the turns before the end were judged as usual
