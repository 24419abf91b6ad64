"""Policy pack loading: schema errors name file:line; hashing; the bundled billing pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxguard.errors import PolicyError
from cxguard.policy.pack import default_pack_path, load_pack, parse_pack
from cxguard.policy.spec import CheckAssertion, RegexAssertion, TemporalAssertion

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'id: p\nversion: "1"\n'

BILLING_IDS = {
    "billing.intent_scope",
    "billing.no_payment_arrangements_unauthenticated",
    "billing.closure_escalation",
    "pii.no_full_card_number",
    "commitments.no_unauthorized_promises",
    "disclosure.ai_identifies",
}


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_pack(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "assertions:\n  - id: x\n    kind: regx\n    patterns: [a]\n",
            ":5: assertion 'x': unknown kind 'regx' (expected 'regex', 'contains', "
            "'classifier', 'check', 'any', 'temporal')",
        ),
        ("assertions:\n  - id: x\n    patterns: [a]\n", ":4: assertion 'x': missing 'kind'"),
        (
            "assertions:\n  - id: x\n    kind: regex\n    patterns:\n      - ok\n      - 'b(('\n",
            ":8: assertion 'x': patterns[1]: invalid regex 'b(('",
        ),
        (
            "assertions:\n  - id: x\n    kind: regex\n    patterns: [a]\n    negat: true\n",
            ":7: assertion 'x': unknown field 'negat'",
        ),
        (
            "assertions:\n  - {id: ok, kind: check, checks: ssn}\n  - id: x\n    kind: regex\n",
            ":5: assertion 'x': missing field 'patterns'",
        ),
        (
            "assertions:\n  - id: x\n    kind: check\n    checks: [card_number]\n"
            "    severity: huge\n",
            ":7: assertion 'x': severity: Input should be 'info', 'minor', 'major' or 'critical'",
        ),
        (
            "assertions:\n  - id: t\n    kind: temporal\n    trigger: {kind: regex, patterns: [a]}"
            "\n    require:\n      kind: any\n      any:\n        - {kind: contains, phrase: b}\n",
            ":10: assertion 't': require.any[0]: unknown field 'phrase'",
        ),
        (
            "assertions:\n  - id: t\n    kind: temporal\n    trigger: {kind: regex, patterns: [a]}"
            "\n    require: {kind: regex, patterns: [b]}\n",
            ":4: assertion 't': a temporal assertion needs within_turns or within_seconds",
        ),
        ("assertions: []\n", ":3: assertions: needs at least one item"),
        ("assertions:\n  - {id: a, kind: check, checks: ssn}\nid: q\n", ":5: duplicate key 'id'"),
        ("assertions:\n  - {id: a, kind: check, checks: [ssn\n", ":5: YAML syntax error"),
        (
            "assertions:\n  - {id: a, kind: check, checks: ssn}\n"
            "  - {id: a, kind: check, checks: card_number}\n",
            ":5: duplicate assertion id 'a' (first on line 4)",
        ),
        (
            "assertions:\n  - id: c\n    kind: classifier\n    label: agent.upsell\n",
            ":6: classifier label 'agent.upsell' has no threshold",
        ),
        (
            "assertions:\n  - id: c\n    kind: check\n    checks: ssn\n    when:\n"
            "      pending: c\n",
            ":8: assertion 'c': when.pending names 'c', which is not a temporal assertion",
        ),
        (
            "state:\n  authenticate_on_agent_confirmation: true\n"
            "assertions:\n  - {id: a, kind: check, checks: ssn}\n",
            ":3: state: authenticate_on_agent_confirmation needs agent_confirmation",
        ),
    ],
)
def test_schema_errors_name_file_and_line(tmp_path: Path, body: str, expected: str) -> None:
    message = _error(tmp_path, HEAD + body)
    assert f"{tmp_path / 'bad.yaml'}{expected}" in message


def test_every_problem_is_reported_in_document_order(tmp_path: Path) -> None:
    body = (
        "assertions:\n  - id: a\n    kind: regex\n    patterns: ['(']\n  - id: b\n    kind: nope\n"
    )
    lines = _error(tmp_path, HEAD + body).splitlines()
    assert [line.split(":")[1] for line in lines] == ["6", "8"]


def test_not_a_mapping_and_unreadable(tmp_path: Path) -> None:
    assert _error(tmp_path, "- a\n- b\n").endswith("bad.yaml:1: a policy pack is a YAML mapping")
    with pytest.raises(PolicyError, match="cannot read policy pack"):
        load_pack(tmp_path / "missing.yaml")


def test_hash_ignores_formatting_but_not_meaning() -> None:
    a = parse_pack(HEAD + "assertions:\n  - {id: a, kind: check, checks: ssn}\n")
    b = parse_pack(
        "# a comment\nversion: '1'\nid: p\nassertions:\n  - id: a\n    kind: check\n"
        "    checks: [ssn]\n    negate: false\n"
    )
    c = parse_pack(HEAD + "assertions:\n  - {id: a, kind: check, checks: ssn, negate: true}\n")
    assert a.hash == b.hash != c.hash
    assert a.hash.startswith("sha256:") and len(a.hash) == 7 + 64


def test_yaml_anchors_share_a_matcher_and_numbers_become_versions() -> None:
    pack = parse_pack(
        "id: p\nversion: 1.2\nstate:\n  intents:\n    - intent: closure\n      match: &m\n"
        "        kind: contains\n        phrases: close my account\n"
        "assertions:\n  - id: t\n    kind: temporal\n    trigger: *m\n"
        "    require: {kind: contains, phrases: transfer}\n    within_seconds: 5\n"
    )
    assert pack.version == "1.2"
    temporal = pack.assertions[0]
    assert isinstance(temporal, TemporalAssertion)
    assert temporal.trigger == pack.state.intents[0].match
    assert not pack.needs_scorer


def test_classifier_labels_are_collected_per_speaker() -> None:
    pack = parse_pack(
        HEAD + "classifier:\n  thresholds: {agent.upsell: 0.6, customer.closure: 0.5}\n"
        "assertions:\n  - {id: u, kind: classifier, label: agent.upsell, negate: true}\n"
        "  - id: t\n    kind: temporal\n    within_turns: 1\n"
        "    trigger: {kind: classifier, label: customer.closure}\n"
        "    require: {kind: classifier, label: agent.transfer, threshold: 0.7}\n"
    )
    assert pack.needs_scorer
    assert pack.labels == {
        "agent": frozenset({"agent.upsell", "agent.transfer"}),
        "customer": frozenset({"customer.closure"}),
    }


def test_default_billing_pack_is_semantic() -> None:
    pack = load_pack(default_pack_path())
    assert pack.id == "billing"
    assert {a.id for a in pack.assertions} == BILLING_IDS
    assert pack.needs_scorer
    assert "customer.closure" in pack.labels["customer"]
    assert "agent.payment_arrangement" in pack.labels["agent"]
    assert isinstance({a.id: a for a in pack.assertions}["pii.no_full_card_number"], CheckAssertion)


def test_deterministic_billing_pack() -> None:
    pack = load_pack(default_pack_path().with_name("billing-rules.yaml"))
    assert pack.id == "billing"
    assert {a.id for a in pack.assertions} == BILLING_IDS
    assert not pack.needs_scorer
    by_id = {a.id: a for a in pack.assertions}
    closure = by_id["billing.closure_escalation"]
    assert isinstance(closure, TemporalAssertion)
    assert closure.on_fail == ("alert", "handoff") and closure.within_turns == 1
    assert isinstance(by_id["pii.no_full_card_number"], CheckAssertion)
    assert isinstance(by_id["disclosure.ai_identifies"], RegexAssertion)
    assert pack.state.authenticate_on_agent_confirmation


def test_configs_copies_are_identical_to_the_packaged_packs() -> None:
    for name in ("billing.yaml", "billing-rules.yaml"):
        packaged = default_pack_path().with_name(name).read_bytes()
        assert (ROOT / "configs" / "policies" / name).read_bytes() == packaged
    assert default_pack_path().is_relative_to(ROOT / "cxguard" / "data")
