"""The policy engine: pure and deterministic (no I/O, no clocks; time is the stream timeline
carried by turns and events).

One :class:`PolicyEngine` per pack and process; one :class:`Conversation` per call::

    engine = PolicyEngine(load_pack(default_pack_path()))
    call = engine.start({"authenticated": "false"}, handoff_grace_ms=2000)
    call.observe(ControlEvent("authenticated", at_ms=5_000))   # trusted platform signals
    early = call.preview(text_so_far)                          # a turn still being spoken
    results = call.evaluate(turn_text)                         # speaker turns in index order
    results += call.advance(at_ms=12_000)                      # stream time moved on
    results += call.finish(at_ms=90_000)                       # obligations still open fail

Turns are *speaker turns* (``policy.turns`` builds them from VAD segments; ``policy.calls``
drives a conversation from segments). An agent turn gets one :class:`AssertionResult` per
agent assertion — for a temporal assertion whose window it uses up, after the handoff grace,
from ``advance``/``observe``/``finish`` (``policy.temporal``). A customer turn normally gets
none (it feeds state and triggers), except for assertions that judge customer turns
(``when.speaker: customer``), a trigger already met by a handoff, and — when its text is
unavailable — an ``undetermined`` result for each assertion it could have affected: temporal
assertions it might have triggered (no obligation already open, ``when`` holds) and assertions
whose ``when`` reads state that customer turns set (caller intent, open obligations). State is
left as it was: a missed intent keeps the old one; a missed "close my account" raises nothing,
and its undetermined verdict is the record of that. An unreadable agent turn gets
``undetermined`` for every assertion whose ``when`` holds (``not_applicable`` where the state
alone rules it out) and cannot confirm identity (so checks stay stricter). Verdicts decided
after their turn (``advance``, ``observe``, ``finish``) name the turn they land on: the agent
turn that used up the window, else the trigger turn; ``trigger_turn`` names the obligation.

``preview`` judges an agent turn that is still being spoken (the text of its segments so far,
with the index the whole turn will get) and returns only the ``fail`` results that the whole
turn is bound to get too: those of *previewable* assertions (prohibitions, temporal ``forbid``
and deadlines; the rule and its limits are in ``policy.preview``), judged on the text up to
its last sentence end, with ``when`` read as for the whole turn. It is pure: ``evaluate`` of
the whole turn, and everything after it, are the same whether or not previews came before.
Both run one function that computes (next state, results) without storing anything;
``evaluate`` stores the state, ``preview`` drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from cxguard import pii
from cxguard.errors import PolicyError
from cxguard.model import TurnText
from cxguard.policy.conversation import AssertionResult, Conversation, check_event
from cxguard.policy.pack import PolicyPack
from cxguard.policy.preview import is_previewable
from cxguard.policy.scoring import MemoScorer, TextScorer
from cxguard.policy.spec import AssertionSpec, TemporalAssertion

__all__ = ["AssertionResult", "Conversation", "PolicyEngine", "check_event"]


class PolicyEngine:
    """A loaded pack plus its classifier; shared by every call (it holds no call state)."""

    def __init__(
        self,
        pack: PolicyPack,
        scorer: TextScorer | None = None,
        *,
        missing_scorer: Literal["error", "undetermined"] = "error",
        pii_options: pii.PiiOptions = pii.DEFAULT_OPTIONS,
    ) -> None:
        """``missing_scorer="undetermined"`` runs a pack with classifier assertions without a
        scorer (``--no-classifiers``): those matchers then give ``undetermined``.
        ``pii_options``: the ``check`` detectors and their sequence window."""
        needed = pack.labels
        if needed and scorer is None and missing_scorer == "error":
            labels = sorted(label for group in needed.values() for label in group)
            raise PolicyError(
                f"{pack.source}: pack {pack.id!r} needs a classifier for labels "
                f"{', '.join(labels)} and none was given"
            )
        if scorer is not None:
            for speaker, labels_needed in sorted(needed.items()):
                known = set(scorer.labels(speaker))
                if unknown := sorted(labels_needed - known):
                    raise PolicyError(
                        f"{pack.source}: labels {', '.join(unknown)} of pack {pack.id!r} are "
                        f"unknown to the classifier for {speaker} turns (it has: "
                        f"{', '.join(sorted(known)) or 'none'})"
                    )
        self.pack = pack
        self.scorer = scorer
        self.pii_options = pii_options
        self.scoring = MemoScorer(scorer) if scorer is not None else None
        """What turns are scored with (a turn's text recurs: previews, then the whole)."""
        self.sensitive = {a.id: why for a in pack.assertions if (why := _customer_reads(pack, a))}
        self.preview_specs = tuple(a for a in pack.assertions if is_previewable(a, pack.state))
        """The assertions :meth:`Conversation.preview` judges (rule: ``policy.preview``)."""

    @property
    def previewable(self) -> frozenset[str]:
        """Ids of the assertions a preview of an unfinished agent turn can fail."""
        return frozenset(a.id for a in self.preview_specs)

    @property
    def model_ids(self) -> Mapping[str, str]:
        return dict(self.scorer.model_ids) if self.scorer is not None else {}

    def start(
        self, parameters: Mapping[str, str] | None = None, *, handoff_grace_ms: float = 0.0
    ) -> Conversation:
        """``handoff_grace_ms``: how long after the agent turn that uses up a temporal
        obligation a platform handoff still meets it (0: that turn's verdict is decided at
        once). See ``policy.temporal``."""
        return Conversation(self, parameters or {}, handoff_grace_ms)

    def unjudged(self, turn: TurnText, reason: str) -> list[AssertionResult]:
        """``undetermined`` for every assertion that could have judged ``turn``, without a
        conversation: for a call whose conversation state could not be kept."""
        results = []
        for spec in self.pack.assertions:
            judges = spec.when.speaker == turn.speaker or (
                turn.speaker == "customer" and spec.id in self.sensitive
            )
            if judges:
                actions = spec.on_undetermined
                results.append(
                    AssertionResult(
                        spec.id,
                        "undetermined",
                        reason,
                        spec.severity,
                        actions,
                        {},
                        turn.index,
                        turn.speaker,
                    )
                )
        return results


def _customer_reads(pack: PolicyPack, spec: AssertionSpec) -> str | None:
    """What of this assertion an unreadable customer turn could change (None: nothing)."""
    if isinstance(spec, TemporalAssertion):
        return "trigger"
    when = spec.when
    if pack.state.intents and (when.intent is not None or when.intent_not):
        return "intent"
    if when.pending is not None or when.pending_any is not None:
        return "pending"
    return None
