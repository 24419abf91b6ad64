"""Policy tests: the labelled examples a pack carries, run through the live engine.

A pack's ``tests:`` are small conversations whose lines say which assertions must fail
(``expect``, on any line of the speaker turn it is about); everything else must not.
:func:`run_policy_tests` evaluates each with a fresh conversation and counts, per assertion,
fails caught (tp), false alarms (fp), misses (fn) and correct non-fails (tn) — the numbers
``cxguard policy test`` prints as precision/recall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cxguard.errors import PolicyError
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.offline import (
    Confusion,
    evaluate_transcript,
    score_expectations,
    turns_of,
)
from cxguard.policy.pack import PolicyPack


@dataclass(frozen=True)
class Mismatch:
    case: str
    line: int
    """The first line of the turn."""
    assertion: str
    expected: str
    got: str
    text: str


@dataclass
class PolicyTestReport:
    cases: int = 0
    confusion: dict[str, Confusion] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.cases > 0 and not self.mismatches


def run_policy_tests(pack: PolicyPack, engine: PolicyEngine) -> PolicyTestReport:
    if not pack.spec.tests:
        raise PolicyError(f"{pack.source}: pack {pack.id!r} has no tests")
    report = PolicyTestReport()
    totals: dict[str, list[int]] = {}
    for case in pack.spec.tests:
        lines = list(case.turns)
        try:
            rows = list(evaluate_transcript(lines, engine, case.parameters))
        except PolicyError as exc:
            raise PolicyError(f"{pack.source}: test {case.name!r}: {exc}") from exc
        report.cases += 1
        for assertion, c in score_expectations(lines, rows).items():
            t = totals.setdefault(assertion, [0, 0, 0, 0, 0])
            for i, n in enumerate((c.tp, c.fp, c.fn, c.tn, c.undetermined)):
                t[i] += n
        got = {(int(r["line"]), str(r["assertion"])): str(r["verdict"]) for r in rows}
        for first, members in turns_of(lines, rows).items():
            expected: dict[str, str] = {}
            for n in members:
                expected.update(lines[n].get("expect", {}))
            text = " ".join(str(lines[n].get("text", "")) for n in members)
            verdicts = {a: v for (line, a), v in got.items() if line == first}
            for assertion in sorted(set(verdicts) | set(expected)):
                want_fail = expected.get(assertion) == "fail"
                verdict = verdicts.get(assertion)
                if verdict is None and not want_fail:
                    continue
                if verdict is None or want_fail != (verdict == "fail"):
                    report.mismatches.append(
                        Mismatch(
                            case.name,
                            first,
                            assertion,
                            "fail" if want_fail else "not fail",
                            verdict or "no verdict",
                            text,
                        )
                    )
    report.confusion = {a: Confusion(*c) for a, c in sorted(totals.items())}
    return report
