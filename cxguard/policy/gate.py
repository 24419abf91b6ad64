"""The pre-launch gate: verdicts of whole test calls against what they were expected to be.

Every (turn, assertion) verdict of every call becomes a :class:`GateCase` with a status:

- ``ok``: as expected (an ``expect`` label met, or no label and not a ``fail`` or
  ``undetermined`` verdict);
- ``mismatch``: a turn's lines label the assertion with a verdict it did not get (including a
  labelled verdict that was never decided);
- ``fail``: a violation nobody expected;
- ``undetermined``: a turn that could not be judged, unexpected;
- ``shadow``: a ``fail`` or ``undetermined`` of a shadow assertion (``mode: shadow``), reported
  apart and never gating (it is being tried out, not enforced), unless labelled.

Labels are per line (``"expect": {"assertion": "fail"}``) and apply to the speaker turn the
line is part of, as in :func:`~cxguard.policy.offline.score_expectations`. The gate fails on the
statuses named in ``fail_on`` (by default ``fail`` and ``mismatch``); ``undetermined`` is
reported, and fails the gate only when asked, because it says the test audio was unreadable,
not that the agent misbehaved.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cxguard.model import Release
from cxguard.policy.offline import turns_of

Status = Literal["ok", "fail", "undetermined", "mismatch", "shadow"]
FAIL_ON_CHOICES: tuple[Status, ...] = ("fail", "undetermined", "mismatch")
DEFAULT_FAIL_ON: frozenset[Status] = frozenset({"fail", "mismatch"})


@dataclass(frozen=True)
class GateCase:
    source: str
    """The transcript file or recording."""
    line: int | None
    """1-based input line of the turn's first line (None for a recording)."""
    turn: int | None
    assertion: str
    verdict: str | None
    """None: a labelled verdict that was never decided."""
    expected: str | None
    status: Status
    evidence: str = ""
    text: str = ""

    @property
    def name(self) -> str:
        where = f"turn {self.turn}" if self.turn is not None else f"line {self.line}"
        return f"{where} {self.assertion}"


@dataclass
class GateReport:
    release: Release
    policy: str
    """``id version`` of the pack."""
    cases: list[GateCase] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(c.status for c in self.cases)

    def failing(self, fail_on: Iterable[Status]) -> list[GateCase]:
        wanted = set(fail_on)
        return [c for c in self.cases if c.status in wanted]

    def exit_code(self, fail_on: Iterable[Status] = DEFAULT_FAIL_ON) -> int:
        return 1 if self.failing(fail_on) else 0

    def summary(self, fail_on: Iterable[Status] = DEFAULT_FAIL_ON) -> dict[str, Any]:
        counts = self.counts()
        return {
            "release": self.release.id,
            "release_parts": self.release.to_dict(),
            "policy": self.policy,
            "sources": len(self.sources),
            "verdicts": len(self.cases),
            **{status: counts.get(status, 0) for status in ("ok", *FAIL_ON_CHOICES, "shadow")},
            "fail_on": sorted(set(fail_on)),
            "exit": self.exit_code(fail_on),
        }


def _status(verdict: str | None, expected: str | None, mode: object = "live") -> Status:
    if expected is not None:
        return "ok" if verdict == expected else "mismatch"
    if verdict in ("fail", "undetermined") and mode == "shadow":
        return "shadow"
    if verdict in ("fail", "undetermined"):
        return "fail" if verdict == "fail" else "undetermined"
    return "ok"


def transcript_cases(
    source: str, lines: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> list[GateCase]:
    """Cases of one transcript: ``lines`` as read, ``rows`` from
    :func:`~cxguard.policy.offline.evaluate_transcript`."""
    turns = turns_of(lines, rows)
    cases: list[GateCase] = []
    seen: set[tuple[int, str]] = set()

    def labels(first: int) -> dict[str, str]:
        out: dict[str, str] = {}
        for n in turns.get(first, [first]):
            out.update(lines[n].get("expect", {}))
        return out

    for row in rows:
        first, assertion = int(row["line"]), str(row["assertion"])
        seen.add((first, assertion))
        expected = labels(first).get(assertion)
        verdict = str(row["verdict"])
        cases.append(
            GateCase(
                source,
                first + 1,
                int(row["turn"]),
                assertion,
                verdict,
                expected,
                _status(verdict, expected, row.get("mode")),
                str(row.get("evidence", "")),
                str(row.get("text", "")),
            )
        )
    for first in turns:
        for assertion, expected in labels(first).items():
            if (first, assertion) not in seen:
                cases.append(
                    GateCase(source, first + 1, None, assertion, None, expected, "mismatch")
                )
    return cases


def recording_cases(source: str, rows: Sequence[Mapping[str, Any]]) -> list[GateCase]:
    """Cases of a recorded call: no labels, so only unexpected verdicts can fail it."""
    return [
        GateCase(
            source,
            None,
            int(row["turn"]),
            str(row["assertion"]),
            str(row["verdict"]),
            None,
            _status(str(row["verdict"]), None, row.get("mode")),
            str(row.get("evidence", "")),
            str(row.get("text", "")),
        )
        for row in rows
    ]


def junit_xml(report: GateReport, fail_on: Iterable[Status] = DEFAULT_FAIL_ON) -> str:
    """JUnit XML: one ``testsuite`` per call, one ``testcase`` per (turn, assertion); a case
    whose status is in ``fail_on`` is a ``failure``, one with another non-ok status is
    ``skipped`` with the reason (reported, not gating)."""
    gating = set(fail_on)
    root = ET.Element("testsuites", name=f"cxguard eval {report.release.id}")
    by_source: dict[str, list[GateCase]] = {s: [] for s in report.sources}
    for case in report.cases:
        by_source.setdefault(case.source, []).append(case)
    total_fail = 0
    for source, cases in by_source.items():
        failures = sum(c.status in gating for c in cases)
        skipped = sum(c.status != "ok" and c.status not in gating for c in cases)
        total_fail += failures
        suite = ET.SubElement(
            root,
            "testsuite",
            name=source,
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("release", report.release.id),
            ("policy", report.policy),
            ("policy_hash", report.release.policy_hash),
            ("agent_version", report.release.agent_version),
            *((f"model.{k}", v) for k, v in sorted(report.release.model_ids.items())),
        ):
            ET.SubElement(props, "property", name=key, value=value)
        for case in cases:
            tc = ET.SubElement(suite, "testcase", classname=source, name=case.name)
            message = (
                f"{case.assertion}: expected {case.expected or 'no fail'}, "
                f"got {case.verdict or 'no verdict'}"
            )
            body = "\n".join(x for x in (case.text, case.evidence) if x)
            if case.status in gating:
                failure = ET.SubElement(tc, "failure", message=message, type=case.status)
                failure.text = body
            elif case.status != "ok":
                ET.SubElement(tc, "skipped", message=f"{case.status}: {message}")
    root.set("tests", str(len(report.cases)))
    root.set("failures", str(total_fail))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
