"""One small evaluator per matcher kind, over one turn's text.

A matcher says whether a turn *has* something (a phrase, a label above its threshold, a card
number); what that means — pass, fail, trigger, state change — is decided by the caller.
Classifier scores are fetched once per turn, lazily, and a scorer failure makes the hit
``undetermined`` rather than a silent miss.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import assert_never

from cxguard import pii
from cxguard.errors import ClassifierError
from cxguard.model import Speaker
from cxguard.policy.scoring import TextScorer
from cxguard.policy.spec import (
    AnyMatcher,
    CheckMatcher,
    ClassifierMatcher,
    ContainsMatcher,
    MatcherSpec,
    RegexMatcher,
)

_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "´": "'", "“": '"', "”": '"'})


def normalize(text: str) -> str:
    """Straight quotes and single spaces, so patterns need not care how ASR typed them."""
    return " ".join(text.translate(_QUOTES).split())


@lru_cache(maxsize=4096)
def compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


@lru_cache(maxsize=4096)
def phrase_pattern(phrase: str, whole_words: bool) -> str:
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return rf"(?<!\w){body}(?!\w)" if whole_words else body


@dataclass(frozen=True)
class Hit:
    matched: bool
    evidence: str
    scores: Mapping[str, float] = field(default_factory=dict)
    undetermined: str | None = None
    """Why the matcher could not tell (a classifier failed); ``matched`` is then False."""


class TurnView:
    """The text of one turn as the matchers see it, with its classifier scores on demand."""

    def __init__(
        self,
        text: str,
        speaker: Speaker,
        scorer: TextScorer | None,
        thresholds: Mapping[str, float],
        *,
        timed: pii.TimedText | None = None,
        previous: Sequence[pii.TimedText] = (),
        pii_options: pii.PiiOptions = pii.DEFAULT_OPTIONS,
        customer_said: Sequence[str] = (),
    ) -> None:
        """``timed``/``previous``: this text on the stream timeline and the same speaker's
        recent digit-bearing texts, so ``check`` sees numbers read across segments/turns.
        ``customer_said``: the customer's recent turns (``unless_customer_said``)."""
        self.text = normalize(text)
        self.customer_said = tuple(normalize(t) for t in customer_said)
        self.speaker = speaker
        self.timed = timed
        self.previous = previous
        self.pii_options = pii_options
        self.thresholds = thresholds
        self._scorer = scorer
        self._scores: Mapping[str, float] | None = None
        self._error: str | None = None

    def scores(self) -> Mapping[str, float]:
        if self._scores is None and self._error is None:
            if self._scorer is None:
                self._error = "no classifier loaded"
            else:
                try:
                    self._scores = _pooled(self._scorer, self.text, self.speaker)
                except ClassifierError as exc:
                    self._error = f"classifier failed: {exc}"
        if self._scores is None:
            raise ClassifierError(self._error or "no scores")
        return self._scores

    def score_text(self, text: str) -> Mapping[str, float]:
        """Scores of other text by the same speaker (an excuse's remainder); not cached."""
        if self._scorer is None:
            raise ClassifierError("no classifier loaded")
        return _pooled(self._scorer, normalize(text), self.speaker)


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
WINDOW_WORDS = 40
"""The encoder reads about 64 word pieces; longer turns are scored in windows of whole
sentences (at most ~40 words each) and each label keeps its highest score, so a violation
late in a monologue is not cut off."""


def windows(text: str, max_words: int = WINDOW_WORDS) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while len(words) > max_words:  # a run-on sentence: plain word windows
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if current and len(current) + len(words) > max_words:
            out.append(" ".join(current))
            current = []
        current.extend(words)
    if current or not out:
        out.append(" ".join(current))
    return out


def _pooled(scorer: TextScorer, text: str, speaker: Speaker) -> Mapping[str, float]:
    parts = windows(text)
    if len(parts) == 1:
        return scorer.score(parts, speaker)[0]
    scored = scorer.score(parts, speaker)
    return {label: max(float(s[label]) for s in scored) for label in scored[0]}


def match(spec: MatcherSpec, view: TurnView) -> Hit:
    if isinstance(spec, RegexMatcher):
        asked = view.customer_said if spec.unless_customer_said else ()
        return _patterns(spec.patterns, spec.unless, spec.ignore_case, view.text, asked)
    if isinstance(spec, ContainsMatcher):
        patterns = tuple(phrase_pattern(p, spec.whole_words) for p in spec.phrases)
        unless = tuple(phrase_pattern(p, spec.whole_words) for p in spec.unless)
        return _patterns(patterns, unless, spec.ignore_case, view.text)
    if isinstance(spec, ClassifierMatcher):
        return _classifier(spec, view)
    if isinstance(spec, CheckMatcher):
        return _check(spec, view)
    if isinstance(spec, AnyMatcher):
        return _any(spec, view)
    assert_never(spec)


def _patterns(
    patterns: Sequence[str],
    unless: Sequence[str],
    ignore_case: bool,
    text: str,
    asked: Sequence[str] = (),
) -> Hit:
    excuses = [
        m for p in unless for m in compiled(p, ignore_case).finditer(text) if m.end() > m.start()
    ]
    excused: list[tuple[str, str]] = []
    for number, pattern in enumerate(patterns, 1):
        for m in compiled(pattern, ignore_case).finditer(text):
            if m.end() == m.start():
                continue
            excuse = next((e for e in excuses if e.start() < m.end() and m.start() < e.end()), None)
            if excuse is not None:
                excused.append((m.group(), excuse.group()))
                continue
            if (subject := _asked_about(m, asked, ignore_case)) is not None:
                excused.append((m.group(), f"the customer asked about {subject}"))
                continue
            return Hit(
                True, f'pattern {number} matched "{m.group()}" at chars {m.start()}-{m.end()}'
            )
    if excused:
        what, why = excused[0]
        return Hit(False, f'no match ("{what}" excused by "{why}")')
    return Hit(False, f"none of {len(patterns)} pattern(s) matched")


def _asked_about(m: re.Match[str], asked: Sequence[str], ignore_case: bool) -> str | None:
    """The match's subject, quoted, when one of the customer's recent turns names it."""
    subject = m.groupdict().get("subject") if asked else None
    if not subject or not subject.strip():
        return None
    named = compiled(rf"\b{re.escape(subject.strip())}\b", ignore_case)
    return f'"{subject.strip()}"' if any(named.search(t) for t in asked) else None


def _classifier(spec: ClassifierMatcher, view: TurnView) -> Hit:
    try:
        scores = view.scores()
    except ClassifierError as exc:
        return Hit(False, str(exc), undetermined=str(exc))
    if spec.label not in scores:
        why = f"classifier gave no score for {spec.label!r}"
        return Hit(False, why, undetermined=why)
    score = float(scores[spec.label])
    threshold = spec.threshold if spec.threshold is not None else view.thresholds[spec.label]
    hit = score >= threshold
    relation = ">=" if hit else "<"
    evidence = f"{spec.label}={score:.3f} {relation} {threshold:.2f}"
    if hit and spec.unless:
        return _scoped_excuse(spec, view, score, threshold, evidence)
    return Hit(hit, evidence, {spec.label: score})


def _scoped_excuse(
    spec: ClassifierMatcher, view: TurnView, score: float, threshold: float, evidence: str
) -> Hit:
    """An ``unless`` phrase excuses only what it covers: the turn is scored again with every
    excused span cut out, and the hit stands if what remains still reaches the threshold
    ("I don't want to leave, but shut it all down" still asks to close; "I don't want to
    close it" leaves nothing that does). A guard never vetoes a confident score elsewhere."""
    spans = sorted(
        (m.start(), m.end())
        for pattern in spec.unless
        for m in compiled(pattern, True).finditer(view.text)
        if m.end() > m.start()
    )
    if not spans:
        return Hit(True, evidence, {spec.label: score})
    kept, cursor = [], 0
    for start, end in spans:
        if start > cursor:
            kept.append(view.text[cursor:start])
        cursor = max(cursor, end)
    kept.append(view.text[cursor:])
    rest = " ".join(" ".join(kept).split())
    excused = ", ".join(f'"{view.text[a:b]}"' for a, b in spans)
    try:
        left = float(view.score_text(rest)[spec.label]) if rest.strip(" .,;:!?") else 0.0
    except (ClassifierError, KeyError) as exc:
        why = f"{evidence}; excuse re-scoring failed: {exc}"
        return Hit(False, why, {spec.label: score}, undetermined=why)
    scores = {spec.label: score}
    if left >= threshold:
        return Hit(True, f"{evidence}; without {excused}: {left:.3f} >= {threshold:.2f}", scores)
    return Hit(False, f"{evidence}, excused by {excused} (rest {left:.3f})", scores)


def _check(spec: CheckMatcher, view: TurnView) -> Hit:
    """The PII detectors, on this text and on numbers it completes (``view.previous``)."""
    timed = view.timed or pii.TimedText(view.text, 0.0, 0.0)
    previous = view.previous if view.timed is not None else ()
    found = pii.sequence_findings(previous, replace(timed, text=view.text), view.pii_options)
    for name in spec.checks:
        finding = next((f for f in found if f.kind == name), None)
        if finding is not None:
            return Hit(True, finding.evidence)
    return Hit(False, f"no {' or '.join(spec.checks)} found")


def _any(spec: AnyMatcher, view: TurnView) -> Hit:
    hits = [match(inner, view) for inner in spec.any]  # all of them: every score is recorded
    scores = {label: s for h in hits for label, s in h.scores.items()}
    winner = next((h for h in hits if h.matched), None)
    if winner is not None:
        return Hit(True, winner.evidence, scores)
    unsure = next((h for h in hits if h.undetermined), None)
    evidence = "; ".join(h.evidence for h in hits)
    return Hit(False, evidence, scores, unsure.undetermined if unsure else None)
