"""ConsoleAlertSink (logging) and the JSON form that every sink publishes."""

from __future__ import annotations

import json
import logging

import pytest

from cxguard.model import Alert, HandoffRequest, Verdict
from cxguard.sinks import (
    ConsoleAlertSink,
    alert_message,
    build_sink,
    handoff_message,
    to_json,
    to_json_dict,
)

VERDICT = Verdict(
    call_id="CA9",
    tenant="acme",
    turn_index=3,
    speaker="agent",
    start_ms=1500.0,
    end_ms=4000.0,
    text="Let me transfer you.",
    assertion_id="no_unauthenticated_balance",
    outcome="undetermined",
    evidence="asr overloaded",
    actions=("alert",),
    scores={"p": float("nan"), "q": 0.5},
    model_ids={"asr": "tiny.en"},
    latency_ms={"asr": 700.0},
)
HANDOFF = HandoffRequest(
    call_id="CA9",
    tenant="acme",
    source="audiohook",
    assertion_id="escalate",
    turn_index=3,
    reason="asked for a human",
    idempotency_key="CA9:escalate:3",
    requested_at_wall=1.5,
)


def test_to_json_dict_of_each_type() -> None:
    alert = Alert(VERDICT, "undetermined", "could not check turn 3")
    body = to_json_dict(alert)
    assert body["type"] == "alert" and body["schema"] == 1
    assert body["kind"] == "undetermined" and body["message"] == "could not check turn 3"
    v = body["verdict"]
    assert v["actions"] == ["alert"] and v["scores"] == {"p": None, "q": 0.5}
    assert v["model_ids"] == {"asr": "tiny.en"} and v["start_ms"] == 1500.0
    assert json.loads(to_json(alert)) == body
    assert to_json_dict(VERDICT)["type"] == "verdict"
    assert to_json_dict(HANDOFF) == {
        "type": "handoff",
        "schema": 1,
        "call_id": "CA9",
        "tenant": "acme",
        "source": "audiohook",
        "assertion_id": "escalate",
        "turn_index": 3,
        "reason": "asked for a human",
        "idempotency_key": "CA9:escalate:3",
        "requested_at_wall": 1.5,
        "account_sid": "",
    }
    with pytest.raises(TypeError):
        to_json_dict("not a verdict")  # type: ignore[arg-type]


async def test_console_sink_logs(caplog: pytest.LogCaptureFixture) -> None:
    sink = ConsoleAlertSink(as_json=True)
    with caplog.at_level(logging.INFO, logger="cxguard.alerts"):
        sink.publish(Alert(VERDICT, "violation", "agent disclosed a balance"))
        sink.publish_handoff(HANDOFF)
    await sink.close()
    first, second = caplog.records
    assert first.levelno == logging.WARNING and first.name == "cxguard.alerts"
    text = first.getMessage()
    assert "call=CA9 turn=3 assertion=no_unauthenticated_balance" in text
    assert "agent disclosed a balance" in text and '"type":"alert"' in text
    assert second.levelno == logging.ERROR and "handoff [acme] call=CA9" in second.getMessage()


def test_console_sink_on_a_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.sinks.console")
    with caplog.at_level(logging.INFO, logger=log.name):
        ConsoleAlertSink(log).publish(Alert(VERDICT, "handoff", "handing off"))
    (record,) = caplog.records
    assert record.name == log.name and record.levelno == logging.ERROR
    assert '"type"' not in record.getMessage()


async def test_console_sink_delivers_outbox_messages(caplog: pytest.LogCaptureFixture) -> None:
    """As an outbox sink it logs what the outbox replays, from the stored JSON alone."""
    sink = build_sink("console", "log", {"logger": "tests.sinks.outbox"})
    assert sink.name == "log"
    alert = alert_message(Alert(VERDICT, "violation", "agent disclosed a balance"))
    with caplog.at_level(logging.INFO, logger="tests.sinks.outbox"):
        await sink.deliver(alert)
        await sink.deliver(handoff_message(HANDOFF))
    first, second = caplog.records
    assert "violation [acme] call=CA9 turn=3 assertion=no_unauthenticated_balance" in (
        first.getMessage()
    )
    assert second.levelno == logging.ERROR and "assertion=escalate" in second.getMessage()
    with pytest.raises(Exception, match="unknown options"):
        build_sink("console", "log", {"colour": True})
    with pytest.raises(Exception, match="unknown sink type"):
        build_sink("pager", "p", {})
