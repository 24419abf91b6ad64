"""The governance trail of a tenant over a period, as one JSON-ready document.

What a regulator asks for, gathered from the ledger alone (reading writes nothing):

``framework``  the releases in force (pack, models, agent version) and each pack's intents and
               assertions with descriptions, severities, modes and drift thresholds (recorded
               with the release when its first verdict was written);
``coverage``   calls and speaker turns judged, verdicts, undetermined ones with their reasons,
               gaps and interrupted calls: evidence that every interaction was evaluated;
``rates``      per assertion and per (assertion, intent): counts and rates; per day: pass
               rates (the chart);
``violations`` every ``fail`` of a live assertion with its notes and acknowledgements;
``shadow``     shadow assertions apart, with what promoting them would have changed;
``drift``      recorded drift and release-change findings with their notes, and what a drift
               run over the period finds now (not recorded);
``chain``      hash-chain and signed-head verification of the tenant's chains;
``retention``  what the ledger keeps;
``mapping``    which section answers which duty (EU AI Act, NIST AI RMF, PCI DSS).

:mod:`~cxguard.evidence.render` turns it into Markdown or self-contained HTML.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cxguard.evidence import rates
from cxguard.evidence.compare import compare_shadow
from cxguard.evidence.drift import DriftOptions, detect_drift, recorded_findings
from cxguard.evidence.heads import HeadKey, SignedHead
from cxguard.evidence.ledger import EvidenceLedger
from cxguard.evidence.rows import CONSOLE_ACTION_KINDS, NOTE_KINDS
from cxguard.model import OUTCOMES

RETENTION = (
    "Calls are kept for their tenant's retention profile (6m by default; 12m, 6y) and removed "
    "only by `cxguard evidence purge`, which keeps each purged call's signed head as a "
    "tombstone and records the purge on the tenant's chain; findings (releases, drift, notes) "
    "are never purged. PCI DSS 10.5.1 asks for 12 months of audit history, 3 immediately "
    "available: use 12m or 6y for cardholder-data environments."
)

MAPPING: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "EU AI Act Art. 12",
        "Record-keeping: automatic logging of events over the system's lifetime, to trace its "
        "functioning and monitor it after deployment.",
        ("coverage", "violations", "chain", "framework"),
    ),
    (
        "EU AI Act Art. 50(1)",
        "Transparency: people are informed that they are interacting with an AI system.",
        ("disclosure",),
    ),
    (
        "NIST AI RMF MEASURE 2.4",
        "The functionality and behavior of the AI system and its components are monitored "
        "when in production.",
        ("rates", "drift", "shadow"),
    ),
    (
        "NIST AI RMF MANAGE 4.1",
        "Post-deployment monitoring plans, incl. mechanisms for capturing and evaluating input, "
        "appeal and override, incident response, recovery and change management.",
        ("framework", "violations", "drift"),
    ),
    (
        "PCI DSS 3.3.1",
        "Sensitive authentication data (CVV, full track, PIN) is not retained after authorization.",
        ("pii",),
    ),
    ("PCI DSS 3.4.1", "PAN is masked when displayed.", ("pii",)),
    (
        "PCI DSS 10.5.1",
        "Audit log history is retained for at least 12 months, 3 months immediately available.",
        ("retention", "chain"),
    ),
)


def _notes(
    ledger: EvidenceLedger, tenant: str
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Notes and acks by call id, and by finding id."""
    by_call: dict[str, list[Any]] = defaultdict(list)
    for kind in NOTE_KINDS:
        for e in ledger.events(tenant=tenant, kind=kind):
            by_call[e["call_id"]].append({"kind": kind, **e["data"], "at": e["recorded_at"]})
    for kind in CONSOLE_ACTION_KINDS:  # a supervisor's response from /console
        for e in ledger.events(tenant=tenant, kind=kind):
            d = e["data"]
            action = kind.removeprefix("console.")
            said = d.get("note") or (
                f"assigned to {d['assignee']}" if d.get("assignee") else f"{action}d"
            )
            by_call[e["call_id"]].append(
                {
                    "kind": "ack" if action == "acknowledge" else action,
                    "text": said,
                    "by": d.get("by", ""),
                    "turn": d.get("turn"),
                    "assertion": d.get("assertion"),
                    "alert_id": d.get("alert_id"),
                    "at": e["recorded_at"],
                }
            )
    by_finding: dict[str, list[Any]] = defaultdict(list)
    for kind in NOTE_KINDS:
        for f in ledger.findings(tenant, kind):
            data = f["data"]
            by_finding[str(data.get("finding_id"))].append(
                {"kind": kind, **data, "at": f["recorded_at"]}
            )
    return by_call, by_finding


def _framework(
    ledger: EvidenceLedger, tenant: str, since: float | None, until: float | None
) -> dict[str, Any]:
    recorded = {
        str(f["data"].get("release_id")): f["data"] for f in ledger.findings(tenant, "release")
    }
    releases, packs = [], {}
    for span in ledger.release_spans(tenant):
        if (until is not None and span.first >= until) or (since is not None and span.last < since):
            continue
        data = recorded.get(span.release, {})
        policy = data.get("policy") or {}
        releases.append(
            {
                "release_id": span.release,
                "first_verdict": span.first,
                "last_verdict": span.last,
                "verdicts": span.verdicts,
                "agent_version": data.get("agent_version", span.agent_version),
                "model_ids": data.get("model_ids", {}),
                "policy": {k: policy.get(k) for k in ("id", "version", "hash")},
                "recorded": bool(data),
            }
        )
        if policy.get("hash"):
            packs[policy["hash"]] = policy
    return {"releases": releases, "packs": list(packs.values())}


def _rates(
    ledger: EvidenceLedger, tenant: str, since: float | None, until: float | None
) -> dict[str, Any]:
    per: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    per_intent: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(OUTCOMES, 0)
    )
    modes: dict[str, str] = {}
    for c in ledger.rate_counts(tenant, since, until):
        per[c.assertion_id][c.outcome] += c.n
        per_intent[(c.assertion_id, c.intent, c.mode)][c.outcome] += c.n
        modes[c.assertion_id] = c.mode

    def rate(counts: dict[str, int]) -> float | None:
        applicable = counts["pass"] + counts["fail"] + counts["undetermined"]
        return counts["pass"] / applicable if applicable else None

    days: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for day, assertion, _mode, outcome, n in ledger.query(rates.daily, tenant, since, until):
        days[(assertion, day)][outcome] += n
    return {
        "assertions": [
            {"assertion_id": a, "mode": modes[a], "counts": c, "pass_rate": rate(c)}
            for a, c in sorted(per.items())
        ],
        "by_intent": [
            {"assertion_id": a, "intent": i, "mode": m, "counts": c, "pass_rate": rate(c)}
            for (a, i, m), c in sorted(per_intent.items())
        ],
        "daily": [
            {"assertion_id": a, "day": d * 86400.0, "pass_rate": rate(c), "counts": c}
            for (a, d), c in sorted(days.items())
        ],
    }


def tenant_trail(
    ledger: EvidenceLedger,
    tenant: str,
    *,
    since: float | None = None,
    until: float | None = None,
    key: HeadKey | None = None,
    heads: Sequence[SignedHead] = (),
    allow_open: bool = False,
    violations_limit: int = 2000,
    drift_options: DriftOptions | None = None,
) -> dict[str, Any]:
    by_call, by_finding = _notes(ledger, tenant)
    window = (tenant, since, until)
    judged = ledger.query(rates.judged_turns, *window)
    judged_ids = ledger.query(rates.judged_calls, *window)
    fails = ledger.query(rates.count_where, *window, "fail")
    shown = ledger.query(rates.violations, *window, violations_limit)
    for v in shown:
        v["notes"] = [
            n
            for n in by_call.get(v["call_id"], [])
            if n.get("turn") in (None, v["turn"]) and n.get("assertion") in (None, v["assertion"])
        ]
    calls = [
        c
        for c in ledger.calls(tenant)
        if (since is None or c["updated_at"] >= since)
        and (until is None or c["created_at"] < until)
    ]
    rates_ = _rates(ledger, tenant, since, until)
    chain = ledger.verify(tenant=tenant, key=key, heads=heads, allow_open=allow_open)
    recorded = []
    for f in recorded_findings(ledger, tenant):
        # A finding belongs to the period its windows cover (its notes, whenever written,
        # come with it: remediation usually follows the period).
        about = f["data"]
        if until is not None and float(about.get("recent_start", 0.0)) >= until:
            continue
        if since is not None and float(about.get("recent_end", since)) < since:
            continue
        notes = by_finding.get(str(f["data"].get("finding_id")), [])
        recorded.append({**f["data"], "recorded_at": f["recorded_at"], "notes": notes})
    current = detect_drift(ledger, tenant, options=drift_options, now=until, since=since)
    heads_now = ledger.heads(tenant)
    purges = ledger.findings(tenant, "purge")
    return {
        "tenant": tenant,
        "framework": _framework(ledger, tenant, since, until),
        "coverage": {
            "calls": len(calls),
            "calls_judged": judged["calls"],
            "turns_judged": judged["turns"],
            "verdicts": sum(sum(a["counts"].values()) for a in rates_["assertions"]),
            "undetermined": sum(a["counts"]["undetermined"] for a in rates_["assertions"]),
            "undetermined_reasons": [
                {"reason": r, "verdicts": n}
                for r, n in ledger.query(rates.undetermined_reasons, *window)
            ],
            "calls_without_verdicts": sorted(
                c["call_id"] for c in calls if c["call_id"] not in judged_ids
            ),
            "interrupted": [c["call_id"] for c in calls if c["state"] == "interrupted"],
            "gaps": chain.gaps,
        },
        "rates": rates_,
        "violations": {
            "total": fails,
            "shown": [v for v in shown if v["mode"] != "shadow"],
            "shadow_fails": sum(v["mode"] == "shadow" for v in shown),
            "limit": violations_limit,
        },
        "shadow": [i.to_dict() for i in compare_shadow(ledger, tenant, since, until)],
        "drift": {"recorded": recorded, "current": [f.to_dict() for f in current]},
        "retention": {
            "profile": purges[-1]["data"].get("profile") if purges else None,
            "purged_calls": len(purges),
            "last_purge": purges[-1]["recorded_at"] if purges else None,
            "last_cutoff": purges[-1]["data"].get("cutoff") if purges else None,
        },
        "chain": {
            **chain.as_dict(),
            "heads": len(heads_now),
            "heads_with_mac": sum(1 for h in heads_now if h.head_mac),
            "key_checked": key is not None,
            "exported_heads_checked": len(heads),
        },
    }


def governance_trail(
    ledger: EvidenceLedger,
    tenant: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The document for ``tenant`` (or every tenant of the ledger)."""
    tenants = [tenant] if tenant else sorted({c["tenant"] for c in ledger.calls()})
    return {
        "title": "cxguard governance report",
        "generated_at": time.time(),
        "since": since,
        "until": until,
        "retention": RETENTION,
        "mapping": [
            {"duty": duty, "requirement": text, "sections": list(sections)}
            for duty, text, sections in MAPPING
        ],
        "tenants": [tenant_trail(ledger, t, since=since, until=until, **options) for t in tenants],
    }
