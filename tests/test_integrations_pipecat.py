"""PolicyGuard in a real Pipecat pipeline (pipecat's own run_test harness: PipelineWorker +
WorkerRunner), judged by the bundled billing pack."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxguard.integrations.pipecat import (
    CxguardControlFrame,
    CxguardHandoffFrame,
    GuardMode,
    GuardOptions,
    GuardReport,
    PolicyGuard,
)
from cxguard.policy.classifier import OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import default_pack_path, load_pack

with warnings.catch_warnings():  # pipecat 1.14 imports audioop (deprecated since 3.11)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import (
        Frame,
        InterruptionFrame,
        LLMContextUserTurnFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TextFrame,
        TranscriptionFrame,
        TTSSpeakFrame,
    )
    from pipecat.tests.utils import SleepFrame, run_test

ENGINE = PolicyEngine(load_pack(default_pack_path()), OnnxTextScorer())
SAFE = "Sorry, I can't discuss that yet."
HUMAN = "One moment, I'm bringing in a colleague."
PAYMENT = "billing.no_payment_arrangements_unauthenticated"
CLOSURE = "billing.closure_escalation"


def response(*chunks: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(c) for c in chunks),
            LLMFullResponseEndFrame()]  # fmt: skip


def customer(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "caller", "2026-01-01T00:00:00Z")


def greeting() -> list[Frame]:
    return response("Hello, I'm Sam, ", "a virtual assistant for Northwind Energy billing. ",
                    "How can I help?")  # fmt: skip


def payment_plan() -> list[Frame]:
    return response("Yes, we can set up a payment plan. ",
                    "You can pay half now and the rest next month.")  # fmt: skip


def make_guard(mode: GuardMode, **options: Any) -> tuple[PolicyGuard, list[GuardReport]]:
    reports: list[GuardReport] = []
    opts = GuardOptions(mode=mode, replacement_text=SAFE, handoff_text=HUMAN, call_id="pc-1",
                        tenant="northwind",
                        parameters={"authenticated": "false"}, **options)  # fmt: skip
    return PolicyGuard(ENGINE, opts, on_report=reports.append), reports


def spoken(frames: Sequence[Frame]) -> list[str]:
    return [f.text for f in frames if isinstance(f, TextFrame | TTSSpeakFrame)
            and not isinstance(f, TranscriptionFrame)]  # fmt: skip


def outcomes(report: GuardReport) -> dict[str, str]:
    return {v.assertion_id: v.outcome for v in report.verdicts}


async def test_enforce_replaces_unauthenticated_payment_plan() -> None:
    guard, reports = make_guard("enforce")
    frames = [*greeting(), customer("Can I pay my bill in installments?"), *payment_plan()]
    down, _ = await run_test(guard, frames_to_send=frames)
    assert spoken(down) == [*spoken(greeting()), SAFE]
    assert sum(isinstance(f, TranscriptionFrame) for f in down) == 1
    # the replacement stays inside the response brackets, so aggregators see a normal reply
    assert [type(f) for f in down[-3:]] == [
        LLMFullResponseStartFrame,
        LLMTextFrame,
        LLMFullResponseEndFrame,
    ]
    assert not any(isinstance(f, CxguardHandoffFrame) for f in down)
    agent = [r for r in reports if r.turn is not None and r.turn.speaker == "agent"]
    assert [r.blocked for r in agent] == [False, True]
    assert agent[1].turn is not None and agent[1].turn.text == (
        "Yes, we can set up a payment plan. You can pay half now and the rest next month."
    )
    assert outcomes(agent[1])[PAYMENT] == "fail"
    verdict = next(v for v in agent[1].verdicts if v.assertion_id == PAYMENT)
    assert (verdict.call_id, verdict.tenant, verdict.policy_hash) == (
        "pc-1",
        "northwind",
        ENGINE.pack.hash,
    )
    assert "payment plan" in verdict.evidence


async def test_observe_passes_everything_and_reports_the_failure() -> None:
    guard, reports = make_guard("observe")
    frames = [*greeting(), customer("Can I pay my bill in installments?"), *payment_plan()]
    down, _ = await run_test(guard, frames_to_send=frames)
    assert [id(f) for f in down] == [id(f) for f in frames]
    agent = [r for r in reports if r.turn is not None and r.turn.speaker == "agent"]
    assert [outcomes(r)[PAYMENT] for r in agent] == ["pass", "fail"]
    assert not any(r.blocked for r in reports)


async def test_clean_conversation_passes_untouched() -> None:
    guard, reports = make_guard("enforce")
    frames = [*greeting(), customer("Why is my bill so high this month?"),
              *response("Your bill went up because of the cold weather ",
                        "and higher heating use in January.")]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    assert [id(f) for f in down] == [id(f) for f in frames]
    judged = [v.outcome for r in reports for v in r.verdicts]
    assert judged and set(judged) <= {"pass", "not_applicable"}
    assert [r.turn.speaker for r in reports if r.turn] == ["agent", "customer", "agent"]


async def test_closure_processed_by_the_agent_triggers_a_handoff_frame() -> None:
    guard, reports = make_guard("enforce")
    frames = [*greeting(), customer("No. Actually, I want to close my account."),
              *response("Sure, I can close your account ", "for you right now.")]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    [handoff] = [f for f in down if isinstance(f, CxguardHandoffFrame)]
    assert handoff.request.assertion_id == CLOSURE
    assert (handoff.request.call_id, handoff.request.tenant, handoff.request.source) == (
        "pc-1",
        "northwind",
        "pipecat",
    )
    assert handoff.request.turn_index == 2 and handoff.request.idempotency_key == "pc-1:2"
    assert handoff.verdict.outcome == "fail" and "handoff" in handoff.verdict.actions
    assert spoken(down)[-1] == HUMAN  # the closure itself was never said
    assert reports[-1].handoff == handoff.request and reports[-1].blocked


async def test_observe_mode_reports_the_handoff_without_adding_frames() -> None:
    guard, reports = make_guard("observe")
    frames = [*greeting(), customer("I want to cancel my account."),
              *response("Sure, I can close your account for you right now.")]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    assert [id(f) for f in down] == [id(f) for f in frames]
    [asked] = [r.handoff for r in reports if r.handoff is not None]
    assert asked.assertion_id == CLOSURE


async def test_user_turn_frames_and_authenticated_signal_let_the_plan_through() -> None:
    guard, reports = make_guard("enforce")
    frames = [*greeting(),
              LLMContextUserTurnFrame("Can I pay in installments?", "2026-01-01T00:00:00Z"),
              CxguardControlFrame("authenticated"), *payment_plan()]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    assert SAFE not in spoken(down)
    assert not any(isinstance(f, CxguardControlFrame) for f in down)  # consumed by the guard
    assert outcomes(reports[-1])[PAYMENT] == "not_applicable"
    assert [r.turn.speaker for r in reports if r.turn] == ["agent", "customer", "agent"]
    assert reports[1].turn is not None and reports[1].turn.text == "Can I pay in installments?"


async def test_tts_speak_frame_is_judged_and_replaced() -> None:
    guard, reports = make_guard("enforce")
    frames: list[Frame] = [*greeting(), TTSSpeakFrame("Your card number is 4111 1111 1111 1111.")]
    down, _ = await run_test(guard, frames_to_send=frames)
    assert isinstance(down[-1], TTSSpeakFrame) and down[-1].text == SAFE
    assert outcomes(reports[-1])["pii.no_full_card_number"] == "fail"


async def test_interrupted_response_is_dropped_before_tts() -> None:
    guard, reports = make_guard("enforce")
    partial = [LLMFullResponseStartFrame(), LLMTextFrame("Yes, we can set up a payment plan.")]
    frames = [*greeting(), customer("Can I pay later?"), *partial, SleepFrame(0.1),
              InterruptionFrame(), SleepFrame(0.1),
              *response("Sorry, go ahead.")]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    # none of the cut response reached TTS, and it was not judged: it was never said
    assert spoken(down) == [*spoken(greeting()), "Sorry, go ahead."]
    agent_texts = [r.turn.text for r in reports if r.turn and r.turn.speaker == "agent"]
    assert agent_texts[1:] == ["Sorry, go ahead."]
    assert not any(r.blocked for r in reports)


async def test_end_of_call_fails_an_open_obligation() -> None:
    guard, reports = make_guard("enforce")
    frames = [*greeting(), customer("Please cancel my service.")]
    await run_test(guard, frames_to_send=frames)
    final = reports[-1]
    assert final.turn is None
    assert [(v.assertion_id, v.outcome, v.turn_index) for v in final.verdicts] == [
        (CLOSURE, "fail", 1)
    ]
    assert final.verdicts[0].text == "Please cancel my service."


async def test_only_listed_assertions_block() -> None:
    guard, reports = make_guard("enforce", enforce_assertions=frozenset({CLOSURE}))
    frames = [*greeting(), customer("Can I pay my bill in installments?"), *payment_plan()]
    down, _ = await run_test(guard, frames_to_send=frames)
    assert SAFE not in spoken(down)
    assert outcomes(reports[-1])[PAYMENT] == "fail" and not reports[-1].blocked


async def test_observe_mode_judges_the_part_of_a_cut_response_that_went_out() -> None:
    guard, reports = make_guard("observe")
    partial = [LLMFullResponseStartFrame(), LLMTextFrame("Yes, we can set up a payment plan.")]
    frames = [*greeting(), customer("Can I pay later?"), *partial, SleepFrame(0.1),
              InterruptionFrame()]  # fmt: skip
    down, _ = await run_test(guard, frames_to_send=frames)
    assert "Yes, we can set up a payment plan." in spoken(down)
    last = reports[-1]
    assert last.turn is not None and last.turn.text == "Yes, we can set up a payment plan."
    assert outcomes(last)[PAYMENT] == "fail" and not last.blocked


def test_offline_example_runs_and_blocks() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "pipecat_guarded_agent.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert "BLOCKED billing.no_payment_arrangements_unauthenticated" in done.stdout
    assert "HANDOFF requested (billing.closure_escalation)" in done.stdout
    assert "bot:    Yes. You can pay two hundred dollars now" in done.stdout  # after verification
