"""Offline evaluation of JSONL transcripts with the live engine (``cxguard eval``).

Input, one JSON object per line (a blank line may be given as ``{}`` and is skipped)::

    {"parameters": {"authenticated": "false"}}          # optional, before any turn or event
    {"speaker": "agent", "text": "...", "start": 0.0, "end": 2.5}
    {"speaker": "customer", "undetermined": "asr_failed"}   # text unavailable
    {"event": "authenticated", "at": 12.0}              # or handoff, unauthenticated, intent
    {"event": "intent", "intent": "billing_question"}   # other keys are the event's data

Times are seconds; when missing, lines follow each other with a 0.5 s gap and last 0.35 s a
word, and events happen at the end of the previous line. ``expect`` (``{assertion: verdict}``)
and ``note`` are labels for :func:`score_expectations` and ignored by the engine.

Each line is one segment of speech, and turns are built as the live path builds them
(``policy.calls``, ``policy.turns``): consecutive lines of one speaker form one speaker turn
(text joined with spaces), unless the speaker was silent for ``end_silence_ms`` between them
or the turn reached ``max_turn_ms``; a short line of pure listening tokens ("Mm-hm.",
"Okay.") between two lines of the other speaker is a backchannel, not a turn (it gets no
output); events other than ``handoff`` apply when the turn being spoken ends; the agent turn
that uses up a temporal obligation fails unless a ``handoff`` event is stamped within
``handoff_grace_ms`` after it ends.

Output, one dict per (turn, assertion): ``line`` (0-based index of the turn's first input
line), ``lines`` (all its input lines), ``turn``, ``speaker``, ``assertion``, ``verdict``,
``evidence``, ``scores``, ``severity``, ``actions``, ``trigger_turn`` (for temporal
assertions, the turn that raised the obligation) and ``phase``: ``turn``, or for verdicts
decided after their turn ``event`` (a handoff), ``time`` (a handoff grace or deadline ran
out) or ``finish`` (the end of the call).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxguard.errors import PolicyError
from cxguard.model import OUTCOMES, SPEAKERS, ControlEvent, Speaker, TurnText
from cxguard.pii import redact
from cxguard.policy.calls import CallJudge, Decided, Failed, Judged, JudgeOutput
from cxguard.policy.engine import AssertionResult, PolicyEngine
from cxguard.policy.turns import HeardSegment, TurnOptions

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


def _segment(row: Mapping[str, Any], index: int, cursor: float, where: str) -> HeardSegment:
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
    return HeardSegment(index, speaker_, start, end, text, reason, confidence)


def _event(row: Mapping[str, Any], cursor: float, where: str) -> ControlEvent:
    name = row["event"]
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}: 'event' must be a name such as 'handoff'")
    data = {k: v for k, v in row.items() if k not in ("event", "at", "note")}
    if bad := sorted(k for k, v in data.items() if not isinstance(v, str)):
        raise PolicyError(f"{where}: event data must be strings ({', '.join(bad)})")
    at = _seconds(row, "at", where)
    return ControlEvent(name, cursor if at is None else at, data)


@dataclass(frozen=True)
class Tick:
    """The stream moved on to ``at_ms``; ``speaking``: who the VAD hears, since when."""

    at_ms: float
    speaking: Mapping[Speaker, float | None]


Step = HeardSegment | ControlEvent | Tick
"""What a call's judge takes in, in stream order (as the live session queues it)."""


def evaluate_transcript(
    lines: Iterable[Mapping[str, Any]],
    engine: PolicyEngine,
    parameters: Mapping[str, str] | None = None,
    options: TurnOptions | None = None,
    *,
    source: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Evaluate the transcript with a fresh conversation; see the module doc for the format.
    Bad lines raise :class:`PolicyError` naming the 1-based line number (as ``source:N``
    when ``source`` names the file); so does a failure of evaluation itself (the live path
    would record it and carry on)."""
    params = dict(parameters or {})
    parsed = _parse(lines, params, source)
    segments = [step for _, _, step in parsed if isinstance(step, HeardSegment)]
    steps: list[tuple[str, Step]] = []
    line_of: dict[int, int] = {}
    for number, where, step in parsed:
        if isinstance(step, HeardSegment):
            line_of[step.index] = number
            # Live, the VAD says who is speaking before their segment closes.
            steps.append((where, Tick(step.start_ms, _speaking(segments, step))))
        else:
            steps.append((where, Tick(step.at_ms, {})))
        steps.append((where, step))
    end = max((_at(step) for _, step in steps), default=0.0)
    yield from judge_steps(
        steps, engine, params, options, end_ms=end if parsed else None, line_of=line_of
    )


def _at(step: Step) -> float:
    return step.end_ms if isinstance(step, HeardSegment) else step.at_ms


def judge_steps(
    steps: Iterable[tuple[str, Step]],
    engine: PolicyEngine,
    parameters: Mapping[str, str] | None = None,
    options: TurnOptions | None = None,
    *,
    end_ms: float | None,
    line_of: Mapping[int, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Feed ``(where, step)`` to a fresh :class:`CallJudge` in order, then finish the call at
    ``end_ms`` (None: the call had nothing to finish). Rows as in the module doc; ``line_of``
    maps segment indices to input lines (without it, ``line``/``lines`` are segment
    indices)."""
    judge = CallJudge(engine, dict(parameters or {}), options)
    rows = _Rows(line_of)
    for where, step in steps:
        if isinstance(step, HeardSegment):
            outputs = judge.segment(step)
        elif isinstance(step, Tick):
            outputs = judge.tick(step.at_ms, step.speaking)
        else:
            try:
                outputs = judge.event(step)
            except PolicyError as exc:
                raise PolicyError(f"{where}: {exc}") from None
        yield from rows.of(outputs, where)
    if end_ms is not None:
        yield from rows.of(judge.finish(end_ms), "end of transcript")


def _parse(
    lines: Iterable[Mapping[str, Any]], params: dict[str, str], source: str | None = None
) -> list[tuple[int, str, HeardSegment | ControlEvent]]:
    """The transcript's segments and events, with their times; ``params`` gets its
    ``parameters`` line."""
    steps: list[tuple[int, str, HeardSegment | ControlEvent]] = []
    cursor, segments = 0.0, 0
    for number, row in enumerate(lines):
        where = f"{source}:{number + 1}" if source else f"transcript line {number + 1}"
        if not isinstance(row, Mapping):
            raise PolicyError(f"{where}: expected a JSON object")
        if not row:
            continue
        if "parameters" in row:
            given = row["parameters"]
            if steps or set(row) != {"parameters"}:
                raise PolicyError(f"{where}: 'parameters' must be alone, before any turn")
            if not isinstance(given, Mapping) or not all(
                isinstance(v, str) for v in given.values()
            ):
                raise PolicyError(f"{where}: 'parameters' maps names to strings")
            params.update(given)
        elif "speaker" in row:
            seg = _segment(row, segments, cursor, where)
            segments, cursor = segments + 1, max(cursor, seg.end_ms)
            steps.append((number, where, seg))
        elif "event" in row:
            event = _event(row, cursor, where)
            cursor = max(cursor, event.at_ms)
            steps.append((number, where, event))
        else:
            raise PolicyError(f"{where}: expected a turn ('speaker') or an 'event'")
    return steps


def _speaking(segments: Sequence[HeardSegment], now: HeardSegment) -> dict[Speaker, float | None]:
    """Who is speaking when ``now`` begins, as the live VAD would say: the speech of segments
    not yet taken in (``now`` and later lines) that has begun and not ended."""
    at = now.start_ms
    speaking: dict[Speaker, float | None] = {}
    for seg in segments[now.index :]:
        if seg.start_ms <= at < seg.end_ms or seg is now:
            since = speaking.get(seg.speaker)
            speaking[seg.speaker] = seg.start_ms if since is None else min(since, seg.start_ms)
    return speaking


class _Rows:
    """Output rows, each naming the input lines of the turn it is about."""

    def __init__(self, line_of: Mapping[int, int] | None = None) -> None:
        self.line_of = line_of
        """Segment index → input line (None: the segment index itself)."""
        self._turns: dict[int, TurnText] = {}

    def _line(self, segment: int) -> int:
        return segment if self.line_of is None else self.line_of[segment]

    def of(self, outputs: Iterable[JudgeOutput], where: str) -> Iterator[dict[str, Any]]:
        for o in outputs:
            if isinstance(o, Failed):
                raise PolicyError(f"{where}: policy evaluation failed: {o.error}")
            if isinstance(o, Judged):
                self._turns[o.turn.index] = o.turn
                yield from self._results(o.results, "turn")
            elif isinstance(o, Decided):
                yield from self._results(o.results, o.phase)

    def _results(self, results: Iterable[AssertionResult], phase: str) -> Iterator[dict[str, Any]]:
        for r in results:
            turn = self._turns[r.turn_index]
            lines = [self._line(s.index) for s in turn.segments]
            yield {
                "line": lines[0],
                "lines": lines,
                "turn": r.turn_index,
                "speaker": r.speaker,
                "start": round(turn.start_ms / 1000.0, 3),
                "end": round(turn.end_ms / 1000.0, 3),
                "text": redact(turn.text),
                "assertion": r.assertion_id,
                "verdict": r.outcome,
                "evidence": r.evidence,
                "scores": dict(r.scores),
                "severity": r.severity,
                "actions": list(r.actions),
                "trigger_turn": r.trigger_turn,
                "phase": phase,
                "intent": r.intent,
                "mode": r.mode,
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


def _turn_labels(lines: Sequence[Mapping[str, Any]], turn_lines: Sequence[int]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for n in turn_lines:
        labels.update(lines[n].get("expect", {}))
    return labels


def turns_of(
    lines: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]
) -> dict[int, list[int]]:
    """First input line → all input lines, for every turn the rows name, and each line no row
    covers as a turn of its own (so its labels still count)."""
    turns: dict[int, list[int]] = {}
    for row in rows:
        turns.setdefault(int(row["line"]), [int(n) for n in row["lines"]])
    covered = {n for ns in turns.values() for n in ns}
    for n, line in enumerate(lines):
        if n not in covered and line.get("expect"):
            turns[n] = [n]
    return dict(sorted(turns.items()))


def score_expectations(
    lines: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]
) -> dict[str, Confusion]:
    """Compare verdicts with the ``expect`` labels: a (turn, assertion) is expected to fail iff
    one of the turn's lines says so; an expected failure with no verdict counts as missed."""
    rows = list(rows)
    turns = turns_of(lines, rows)
    counts: dict[str, list[int]] = {}
    seen: set[tuple[int, str]] = set()
    for row in rows:
        first, assertion = int(row["line"]), str(row["assertion"])
        seen.add((first, assertion))
        expected = _turn_labels(lines, turns[first]).get(assertion) == "fail"
        got = row["verdict"] == "fail"
        c = counts.setdefault(assertion, [0, 0, 0, 0, 0])
        c[0 if expected and got else 1 if got else 2 if expected else 3] += 1
        c[4] += row["verdict"] == "undetermined"
    for first, members in turns.items():
        for assertion, verdict in _turn_labels(lines, members).items():
            if verdict == "fail" and (first, assertion) not in seen:
                counts.setdefault(assertion, [0, 0, 0, 0, 0])[2] += 1
    return {a: Confusion(*c) for a, c in sorted(counts.items())}
