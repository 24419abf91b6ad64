"""Policy packs (YAML), conversation state and the pure, deterministic policy engine.

Modules: ``spec`` (schema), ``pack`` (loading, file:line errors, hashing), ``matchers`` (one
evaluator per matcher kind; ``check`` runs the detectors of :mod:`cxguard.pii`),
``state``/``temporal`` (conversation state and obligations), ``engine``/``conversation``
(:class:`PolicyEngine`, :class:`Conversation`), ``preview`` (mid-turn judging), ``turns``
(speaker turns from segments), ``calls`` (a call judged from its segments), ``offline`` (JSONL
transcripts), ``scoring`` (the classifier seam).
"""

from cxguard.policy.engine import AssertionResult, Conversation, PolicyEngine
from cxguard.policy.offline import evaluate_transcript, load_transcript, score_expectations
from cxguard.policy.pack import PolicyPack, default_pack_path, load_pack, parse_pack
from cxguard.policy.state import ConversationState, Obligation

__all__ = [
    "AssertionResult",
    "Conversation",
    "ConversationState",
    "Obligation",
    "PolicyEngine",
    "PolicyPack",
    "default_pack_path",
    "evaluate_transcript",
    "load_pack",
    "load_transcript",
    "parse_pack",
    "score_expectations",
]
