"""The evaluation framework of a pack, as a regulator reads it: which intents the pack tells
apart and which assertions it checks, with their descriptions, severities, modes and drift
thresholds. Recorded once per (tenant, release) in the ledger and printed by the governance
report, so the framework in force over any period can be shown."""

from __future__ import annotations

from typing import Any

from cxguard.policy.pack import PolicyPack
from cxguard.policy.spec import TemporalAssertion

DEFAULT_DRIFT_THRESHOLD = 0.05
"""Change of an assertion's deviation rate that triggers a review, unless the pack says."""


def describe_pack(pack: PolicyPack) -> dict[str, Any]:
    intents = [rule.intent for rule in pack.state.intents]
    if pack.state.initial_intent and pack.state.initial_intent not in intents:
        intents.insert(0, pack.state.initial_intent)
    return {
        "id": pack.id,
        "version": pack.version,
        "hash": pack.hash,
        "description": pack.description,
        "intents": list(dict.fromkeys(intents)),
        "assertions": [
            {
                "id": a.id,
                "kind": a.kind,
                "description": a.description,
                "severity": a.severity,
                "mode": a.mode,
                "speaker": a.when.speaker,
                "intent": list(a.when.intent) if a.when.intent is not None else None,
                "intent_not": list(a.when.intent_not),
                "on_fail": list(a.on_fail),
                "temporal": isinstance(a, TemporalAssertion),
                "drift_threshold": a.drift_threshold
                if a.drift_threshold is not None
                else DEFAULT_DRIFT_THRESHOLD,
            }
            for a in pack.assertions
        ],
    }


def drift_thresholds(pack: PolicyPack) -> dict[str, float]:
    return {
        a.id: a.drift_threshold if a.drift_threshold is not None else DEFAULT_DRIFT_THRESHOLD
        for a in pack.assertions
    }
