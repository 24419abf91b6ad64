"""Offline evaluation of JSONL transcripts with the live engine (``cxguard eval``).

Input, one JSON object per line (a blank line may be given as ``{}`` and is skipped)::

    {"parameters": {"authenticated": "false"}}          # optional, before any turn or event
    {"speaker": "agent", "text": "...", "start": 0.0, "end": 2.5}
    {"speaker": "customer", "undetermined": "asr_failed"}   # text unavailable
    {"event": "authenticated", "at": 12.0}              # or handoff, unauthenticated, intent
    {"event": "intent", "intent": "billing_question"}   # other keys are the event's data

Times are seconds; when missing, turns follow each other with a 0.5 s gap and last 0.35 s a
word, and events happen at the end of the previous turn. ``expect`` (``{assertion: verdict}``)
and ``note`` are labels for :func:`score_expectations` and ignored by the engine.

Output, one dict per result: ``line`` (0-based index of the input line it is about), ``turn``,
``speaker``, ``assertion``, ``verdict``, ``evidence``, ``scores``, ``severity``, ``actions``
and ``phase`` (``turn``; ``event`` or ``finish`` for obligations decided by a handoff or the
end of the call, attributed to the line of the turn that raised them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxguard.errors import PolicyError
from cxguard.model import OUTCOMES, SPEAKERS, ControlEvent, Speaker, TurnText
from cxguard.policy.engine import AssertionResult, PolicyEngine

GAP_MS = 500.0
MS_PER_WORD = 350.0
_TURN_KEYS = frozenset(
    {"speaker", "text", "start", "end", "undetermined", "confidence", "expect", "note"}
)


def load_transcript(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL transcript; blank lines become ``{}``. Errors name ``path:line``."""
    import json

    rows: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read transcript: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise PolicyError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def _seconds(row: Mapping[str, Any], key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(f"{where}: {key!r} must be a non-negative number of seconds")
    return 1000.0 * float(value)


def _turn(row: Mapping[str, Any], index: int, cursor: float, where: str) -> TurnText:
    if unknown := sorted(set(row) - _TURN_KEYS):
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}")
    speaker = row["speaker"]
    if speaker not in SPEAKERS:
        raise PolicyError(f"{where}: speaker must be 'agent' or 'customer', not {speaker!r}")
    reason, text = row.get("undetermined"), row.get("text", "")
    if reason is not None and (not isinstance(reason, str) or not reason):
        raise PolicyError(f"{where}: 'undetermined' must be a non-empty reason")
    if not isinstance(text, str) or (reason is None and "text" not in row):
        raise PolicyError(f"{where}: a turn needs 'text' (or 'undetermined')")
    expect = row.get("expect", {})
    if not isinstance(expect, Mapping) or any(v not in OUTCOMES for v in expect.values()):
        raise PolicyError(f"{where}: 'expect' maps assertion ids to {', '.join(OUTCOMES)}")
    start = _seconds(row, "start", where)
    end = _seconds(row, "end", where)
    start = cursor + (GAP_MS if index else 0.0) if start is None else start
    end = start + MS_PER_WORD * max(1, len(text.split())) if end is None else end
    if end < start:
        raise PolicyError(f"{where}: 'end' is before 'start'")
    confidence = row.get("confidence")
    if confidence is not None and not isinstance(confidence, int | float):
        raise PolicyError(f"{where}: 'confidence' must be a number")
    speaker_: Speaker = speaker
    return TurnText(index, speaker_, text, start, end, reason, confidence)


def _event(row: Mapping[str, Any], cursor: float, where: str) -> ControlEvent:
    name = row["event"]
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}: 'event' must be a name such as 'handoff'")
    data = {k: v for k, v in row.items() if k not in ("event", "at", "note")}
    if bad := sorted(k for k, v in data.items() if not isinstance(v, str)):
        raise PolicyError(f"{where}: event data must be strings ({', '.join(bad)})")
    at = _seconds(row, "at", where)
    return ControlEvent(name, cursor if at is None else at, data)


def evaluate_transcript(
    lines: Iterable[Mapping[str, Any]],
    engine: PolicyEngine,
    parameters: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Evaluate the transcript with a fresh conversation; see the module doc for the format.
    Bad lines raise :class:`PolicyError` naming the 1-based line number."""
    params = dict(parameters or {})
    conversation = None
    turn_lines: dict[int, int] = {}
    cursor, next_turn = 0.0, 0
    for number, row in enumerate(lines):
        where = f"transcript line {number + 1}"
        if not isinstance(row, Mapping):
            raise PolicyError(f"{where}: expected a JSON object")
        if not row:
            continue
        if "parameters" in row:
            given = row["parameters"]
            if conversation is not None or set(row) != {"parameters"}:
                raise PolicyError(f"{where}: 'parameters' must be alone, before any turn")
            if not isinstance(given, Mapping) or not all(
                isinstance(v, str) for v in given.values()
            ):
                raise PolicyError(f"{where}: 'parameters' maps names to strings")
            params.update(given)
            continue
        if conversation is None:
            conversation = engine.start(params)
        if "speaker" in row:
            turn = _turn(row, next_turn, cursor, where)
            turn_lines[turn.index] = number
            next_turn, cursor = next_turn + 1, max(cursor, turn.end_ms)
            yield from _rows(conversation.evaluate(turn), turn_lines, "turn")
        elif "event" in row:
            event = _event(row, cursor, where)
            cursor = max(cursor, event.at_ms)
            try:
                results = conversation.observe(event)
            except PolicyError as exc:
                raise PolicyError(f"{where}: {exc}") from None
            yield from _rows(results, turn_lines, "event")
        else:
            raise PolicyError(f"{where}: expected a turn ('speaker') or an 'event'")
    if conversation is not None:
        yield from _rows(conversation.finish(cursor), turn_lines, "finish")


def _rows(
    results: list[AssertionResult], turn_lines: Mapping[int, int], phase: str
) -> Iterator[dict[str, Any]]:
    for r in results:
        yield {
            "line": turn_lines[r.turn_index],
            "turn": r.turn_index,
            "speaker": r.speaker,
            "assertion": r.assertion_id,
            "verdict": r.outcome,
            "evidence": r.evidence,
            "scores": dict(r.scores),
            "severity": r.severity,
            "actions": list(r.actions),
            "phase": phase,
        }


@dataclass(frozen=True)
class Confusion:
    """Counts for one assertion, ``fail`` being the positive class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    undetermined: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score_expectations(
    lines: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]
) -> dict[str, Confusion]:
    """Compare verdicts with the ``expect`` labels: a (line, assertion) is expected to fail
    iff its line says so; an expected failure with no verdict at all counts as missed."""
    counts: dict[str, list[int]] = {}
    seen: set[tuple[int, str]] = set()
    for row in rows:
        line, assertion = int(row["line"]), str(row["assertion"])
        seen.add((line, assertion))
        expected = lines[line].get("expect", {}).get(assertion) == "fail"
        got = row["verdict"] == "fail"
        c = counts.setdefault(assertion, [0, 0, 0, 0, 0])
        c[0 if expected and got else 1 if got else 2 if expected else 3] += 1
        c[4] += row["verdict"] == "undetermined"
    for line, row_ in enumerate(lines):
        for assertion, verdict in row_.get("expect", {}).items():
            if verdict == "fail" and (line, assertion) not in seen:
                counts.setdefault(assertion, [0, 0, 0, 0, 0])[2] += 1
    return {a: Confusion(*c) for a, c in sorted(counts.items())}
