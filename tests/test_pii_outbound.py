"""Everything that leaves a turn is redacted where it leaves: sink payloads (Redis, webhook,
console JSON), ledger event data (the caller's phone number too), and the verdict builder."""

from __future__ import annotations

import json
from pathlib import Path

from cxguard.evidence.ledger import EvidenceLedger
from cxguard.model import Alert, HandoffRequest, Verdict
from cxguard.sinks.serialization import to_json, to_json_dict

CARD = "4532 0151 1283 0366"


def _verdict(**kw: object) -> Verdict:
    base: dict[str, object] = {
        "call_id": "CA4532015112830366aa",
        "tenant": "acme",
        "turn_index": 3,
        "speaker": "agent",
        "start_ms": 0.0,
        "end_ms": 1.0,
        "text": f"so that's {CARD}?",
        "assertion_id": "pii.no_full_card_number",
        "outcome": "fail",
        "evidence": f'pattern 4 matched "{CARD}" at chars 10-29',
    }
    base.update(kw)
    return Verdict(**base)  # type: ignore[arg-type]


def test_sink_payloads_are_redacted_but_ids_are_kept() -> None:
    alert = Alert(_verdict(), "violation", f"pii failed on turn 3: card {CARD}", "a-1")
    body = to_json(alert)
    assert "0151" not in body.replace("CA4532015112830366aa", "") and "[CARD]" in body
    data = json.loads(body)
    assert data["verdict"]["call_id"] == "CA4532015112830366aa"  # ids are published as given
    assert data["verdict"]["text"] == "so that's [CARD]?"
    assert data["verdict"]["evidence"] == 'pattern 4 matched "[CARD]" at chars 10-29'
    assert data["message"] == "pii failed on turn 3: card [CARD]"
    request = HandoffRequest(
        "CA1", "acme", "twilio", "pii.x", 3, "SSN 123-45-6789 read out", "CA1:3", 0.0
    )
    assert to_json_dict(request)["reason"] == "SSN [SSN] read out"


def test_event_data_is_redacted_and_the_callers_number_masked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    with EvidenceLedger(url) as ledger:
        ledger.record_event(
            "C1",
            "acme",
            "call_started",
            0.0,
            {
                "participant.ani": "tel:+14155550123",
                "participant.dnis": "+18005550199",
                "note": f"card {CARD}",
                "nested": {"caller": "+1 (415) 555-0123", "ok": "fine"},
            },
        )
        (event,) = ledger.events("C1")
        assert ledger.verify("C1", allow_open=True).ok  # the chain; the call is still live
    data = event["data"]
    assert data["participant.ani"] == "[PHONE]"
    assert data["participant.dnis"] == "+18005550199"  # the number called is the business's
    assert data["note"] == "card [CARD]"
    assert data["nested"] == {"caller": "[PHONE]", "ok": "fine"}
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("ev.db*"))
    assert b"4155550123" not in blob and b"0151" not in blob
