"""Policy tests carried by a pack: counted per assertion, misses named."""

from __future__ import annotations

import pytest

from cxguard.errors import PolicyError
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.pack import parse_pack
from cxguard.policy.selftest import run_policy_tests

PACK = """
id: tiny
version: "1"
assertions:
  - id: no.guarantees
    kind: regex
    negate: true
    patterns: ['\\bguarantee']
tests:
  - name: caught
    turns:
      - {speaker: agent, text: "I guarantee it.", expect: {no.guarantees: fail}}
      - {speaker: customer, text: "Thanks."}
      - {speaker: agent, text: "Happy to help."}
  - name: missed and false alarm
    turns:
      - {speaker: agent, text: "I promise it.", expect: {no.guarantees: fail}}
      - {speaker: customer, text: "Really?"}
      - {speaker: agent, text: "No guarantees, sorry."}
  - name: one turn of two lines, labelled on its second
    turns:
      - {speaker: agent, text: "Hello."}
      - {speaker: agent, text: "I guarantee a refund.", expect: {no.guarantees: fail}}
"""


def test_counts_and_mismatches() -> None:
    pack = parse_pack(PACK, "tiny.yaml")
    report = run_policy_tests(pack, PolicyEngine(pack))
    assert report.cases == 3
    c = report.confusion["no.guarantees"]
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert not report.ok
    assert {(m.case, m.line, m.expected, m.got, m.text) for m in report.mismatches} == {
        ("missed and false alarm", 0, "fail", "pass", "I promise it."),
        ("missed and false alarm", 2, "not fail", "fail", "No guarantees, sorry."),
    }


def test_a_pack_without_tests_is_an_error() -> None:
    pack = parse_pack(PACK.split("tests:")[0], "bare.yaml")
    with pytest.raises(PolicyError, match="no tests"):
        run_policy_tests(pack, PolicyEngine(pack))


def test_bad_test_line_names_the_case() -> None:
    pack = parse_pack(
        PACK.replace('speaker: agent, text: "Happy', 'speaker: robot, text: "Happy'), "bad.yaml"
    )
    with pytest.raises(PolicyError, match="caught"):
        run_policy_tests(pack, PolicyEngine(pack))
