"""Decode agreement: the last word on a segment every decode found only *unsure*.

Short telephone turns ("Ok.", "done", "Your transfer is successful.") are often decoded right
but with an average log-probability under ``reject_logprob`` by every strategy, so the turn
became ``undetermined`` and its verdicts alerted although the words were plain (issue 9:
undetermined agent turns on replayed calls). Two decodes that search differently (greedy,
beam, a turn-sized or the full window, the larger model) returning the same words is evidence
the low score alone is not: the text is accepted, and its ``decode`` names the agreeing
strategies (``agreed:turn-b5+full-b5``) so the evidence says how it was obtained.

Agreement never overrides a guard that says the text is *wrong* rather than unsure: a decode
that looped on digits or dropped part of a number (``truncated``) vetoes it, so a card number
is never accepted from fewer digits than were spoken; the agreeing texts themselves must have
failed only the log-probability guard, and each must score at least ``floor``.

When they do not agree, the segment is still refused, but what the decodes heard is kept as
its *readings* (:func:`readings`): the policy engine may find that no reading of a customer
turn changes anything it judges, so the turn need not leave those verdicts ``undetermined``.
The same vetoes hold: a loop on digits or a dropped digit leaves no readings. (The policy
room adds one: readings in which a number was heard are not used, ``policy.turns``.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cxguard.asr.guards import AsrRejected
from cxguard.asr.wer import normalize
from cxguard.model import Transcript

PREFIX = "agreed:"


def agreed(rejections: Sequence[AsrRejected], floor: float) -> Transcript | None:
    """The text at least two of ``rejections`` (one per decode, in the order tried) agree on
    after normalisation, or ``None``."""
    if any(r.digit_loop or r.reason == "truncated" for r in rejections):
        return None
    groups: dict[str, list[AsrRejected]] = {}
    for r in rejections:
        if r.reason != "low_logprob" or r.avg_logprob is None or r.avg_logprob < floor:
            continue
        key = normalize(r.text)
        if key:
            groups.setdefault(key, []).append(r)
    # Several agreeing groups cannot happen with three decodes; with more, the larger wins and
    # a tie goes to the group decoded first (the cheaper, already-trusted strategies).
    best = max(groups.values(), key=len, default=[])
    if len(best) < 2:
        return None
    top = max(best, key=lambda r: r.avg_logprob if r.avg_logprob is not None else -math.inf)
    return Transcript(
        top.text,
        top.model_id,
        top.avg_logprob,
        top.no_speech_prob,
        sum(r.asr_ms for r in rejections),
        PREFIX + "+".join(r.decode for r in best),
    )


def readings(rejections: Sequence[AsrRejected]) -> tuple[str, ...]:
    """The distinct texts (first spelling of each normalised text, in decode order) that the
    decodes of a refused segment produced; ``()`` when fewer than two decodes gave words, or
    when one looped on digits or dropped part of a number (a number the readings lack may
    have been said)."""
    if any(r.digit_loop or r.reason == "truncated" for r in rejections):
        return ()
    worded = [r.text.strip() for r in rejections if normalize(r.text)]
    if len(worded) < 2:
        return ()
    first: dict[str, str] = {}
    for text in worded:
        first.setdefault(normalize(text), text)
    return tuple(first.values())
