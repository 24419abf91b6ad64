"""Which assertions a turn still being spoken can already fail, and on which of its text.

An agent turn is transcribed segment by segment; ``Conversation.preview`` judges the text so
far so that a violation said early is alerted before the turn ends. A preview may only report
what the whole turn will also fail, so it is limited in two ways.

**Statically, per assertion** (:func:`preview_exclusion`): an assertion is *previewable* when
a ``fail`` on a prefix of an agent turn implies a ``fail`` on the whole turn:

* a text assertion (``regex``, ``contains``, ``check``, ``classifier``, ``any``) with
  ``negate: true`` — a prohibition: what was said stays said. Without ``negate`` it requires
  something, which the rest of the turn may still say (``disclosure.ai_identifies``);
* a ``temporal`` assertion with ``forbid`` or ``within_seconds``: the only failures an agent
  turn gives it are a forbidden action, or a turn that began after the deadline of an open
  obligation (its start time is known from the first segment). An unmet ``require`` fails only
  the agent turn that uses up the window, once that turn has ended (after the handoff grace):
  until then more words may meet it, so a preview never reports it;
* not when ``when.authenticated: false`` and the pack trusts the agent's confirmation of
  identity (``state.authenticate_on_agent_confirmation``): the rest of the turn may say "I've
  verified your identity", which makes the assertion not applicable to the whole turn;
* not for assertions that judge customer turns: customer turns are not previewed (their own
  text sets the caller intent and opens obligations, which those assertions' ``when`` reads).

**Dynamically, per text** (:func:`settled_text`): the preview judges the text up to its last
sentence end (``.``, ``?``, ``!``), because the words after it may be the first half of a
sentence whose end changes its verdict: "I'll waive the fee" is a promise, "I'll waive the fee
if your account is eligible" is excused by the pack's ``unless``; "four one one one …" may go
on with more digits. ASR ends each transcribed segment with punctuation, so this rarely delays
an alert by more than one segment. It relies on ``unless`` excuses not reaching across a
sentence end, as every one in the default pack does (their gaps are ``[^.?!]``-bounded).

One limit remains, by design: a classifier scores the whole text it is given, so a prefix that
scored above a prohibition's threshold may score below it once more text dilutes it. Such a
preview ``fail`` is evidence that the words were said; the verdict of record is the final
``evaluate``.
"""

from __future__ import annotations

import re

from cxguard.policy.spec import AssertionSpec, StateSpec, TemporalAssertion

# A sentence end: terminal punctuation (and closing quotes/brackets) before a space or the end.
_SENTENCE_END = re.compile(r"[.?!]+[\"')\]]*(?=\s|$)")


def preview_exclusion(spec: AssertionSpec, state: StateSpec) -> str | None:
    """None when ``spec`` is previewable (see the module doc), else why it is not."""
    if isinstance(spec, TemporalAssertion):
        if spec.forbid is None and spec.within_seconds is None:
            return "without forbid or within_seconds it fails only when its window closes"
    elif spec.when.speaker != "agent":
        return "it judges customer turns, which are not previewed"
    elif not spec.negate:
        return "it requires a match, which the rest of the turn may still bring"
    if spec.when.authenticated is False and state.authenticate_on_agent_confirmation:
        return "the rest of the turn may confirm identity, which makes it not applicable"
    return None


def is_previewable(spec: AssertionSpec, state: StateSpec) -> bool:
    return preview_exclusion(spec, state) is None


def settled_text(text: str) -> str:
    """``text`` up to and including its last sentence end ("" when no sentence has ended)."""
    end = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
    return text[:end]
