"""The governance report's content, once: the sections of a governance trail document
(:mod:`~cxguard.evidence.trail`) as headings, paragraphs, tables and a chart, which
:mod:`~cxguard.evidence.render` writes as Markdown or HTML — so both always hold the same
facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

PII_NOTE = (
    "Every stored text (turns, verdicts, events, findings) is redacted before it is written "
    "(`cxguard.pii`): card numbers become [CARD], SSNs [SSN], CVVs [CVV], in digits, words "
    "and across segments; the hash chain covers the redacted text, so no clear value is ever "
    "retained. DTMF digits are never stored."
)
DRIFT_METHOD = (
    "Test: Fisher exact (two-sided) per (release, assertion, intent), Benjamini-Hochberg "
    "q-values over the run; a finding needs q ≤ 0.05 and a change of at least the assertion's "
    "drift threshold; Newcombe 95% intervals. A pack, model or agent-version change is a "
    "release change, not drift."
)


def iso(epoch: float | None, default: str = "—") -> str:
    if epoch is None:
        return default
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


Table = tuple[Sequence[str], list[Sequence[str]]]
Block = tuple[str, Any]  # ("p", text) | ("table", Table) | ("chart", daily rows) | ("h3", text)


def sections(doc: dict[str, Any]) -> list[tuple[str, str, list[Block]]]:
    """``(anchor, title, blocks)`` of the whole document, in order."""
    out: list[tuple[str, str, list[Block]]] = []
    period = f"{iso(doc['since'], 'the start')} to {iso(doc['until'], 'now')}"
    out.append(
        (
            "summary",
            "Scope",
            [
                ("p", f"Verdicts decided from {period}; generated {iso(doc['generated_at'])}."),
                ("p", f"Tenants: {', '.join(t['tenant'] for t in doc['tenants']) or 'none'}."),
            ],
        )
    )
    for t in doc["tenants"]:
        out += _tenant_sections(t)
    out.append(("retention", "Retention", [("p", doc["retention"])]))
    out.append(("pii", "Cardholder data (PCI DSS 3.3.1, 3.4.1)", [("p", PII_NOTE)]))
    rows = [(m["duty"], m["requirement"], ", ".join(m["sections"])) for m in doc["mapping"]]
    out.append(
        (
            "mapping",
            "Mapping to record-keeping duties",
            [("table", (("duty", "requirement", "sections of this report"), rows))],
        )
    )
    return out


def _framework_blocks(t: dict[str, Any]) -> list[Block]:
    fw = t["framework"]
    framework: list[Block] = [
        ("h3", "Releases in force"),
        (
            "table",
            (
                ("release", "policy", "agent version", "models", "verdicts", "first", "last"),
                [
                    (
                        r["release_id"],
                        f"{r['policy'].get('id') or '?'} {r['policy'].get('version') or ''}",
                        r["agent_version"] or "—",
                        ", ".join(f"{k}={v}" for k, v in sorted(r["model_ids"].items())) or "—",
                        str(r["verdicts"]),
                        iso(r["first_verdict"]),
                        iso(r["last_verdict"]),
                    )
                    for r in fw["releases"]
                ],
            ),
        ),
    ]
    for pack in fw["packs"]:
        framework.append(("h3", f"Policy {pack['id']} {pack['version']} ({pack['hash'][:19]}…)"))
        if pack.get("description"):
            framework.append(("p", pack["description"]))
        framework.append(("p", f"Intents: {', '.join(pack['intents']) or 'none'}."))
        framework.append(
            (
                "table",
                (
                    ("assertion", "description", "severity", "mode", "scope", "drift threshold"),
                    [
                        (
                            a["id"],
                            " ".join(a["description"].split()),
                            a["severity"],
                            a["mode"],
                            f"{a['speaker']} turns"
                            + (f", intent {'/'.join(a['intent'])}" if a["intent"] else ""),
                            f"{a['drift_threshold']:.0%}",
                        )
                        for a in pack["assertions"]
                    ],
                ),
            )
        )
    return framework


def _coverage_blocks(t: dict[str, Any]) -> list[Block]:
    cov = t["coverage"]
    coverage: list[Block] = [
        (
            "p",
            f"{cov['calls']} calls in the period, {cov['calls_judged']} with verdicts; "
            f"{cov['turns_judged']} speaker turns judged; {cov['verdicts']} verdicts, "
            f"{cov['undetermined']} undetermined (each alerted and recorded, never passed); "
            f"{cov['gaps']} recorded gaps; {len(cov['interrupted'])} interrupted calls.",
        ),
    ]
    if cov["calls_without_verdicts"]:
        coverage.append(
            ("p", "Calls without verdicts: " + ", ".join(cov["calls_without_verdicts"]))
        )
    if cov["undetermined_reasons"]:
        coverage.append(
            (
                "table",
                (
                    ("undetermined because", "verdicts"),
                    [(r["reason"], str(r["verdicts"])) for r in cov["undetermined_reasons"]],
                ),
            )
        )
    return coverage


def _rates_blocks(t: dict[str, Any]) -> tuple[list[Block], list[Block]]:
    rt = t["rates"]

    def counts_row(a: dict[str, Any], *lead: str) -> Sequence[str]:
        c = a["counts"]
        return (
            *lead,
            str(c["pass"]),
            str(c["fail"]),
            str(c["not_applicable"]),
            str(c["undetermined"]),
            pct(a["pass_rate"]),
        )

    head = ("pass", "fail", "n/a", "undetermined", "pass rate")
    live = [a for a in rt["assertions"] if a["mode"] != "shadow"]
    rates_: list[Block] = [
        ("table", (("assertion", *head), [counts_row(a, a["assertion_id"]) for a in live])),
        ("h3", "Per intent (the caller intent when each verdict was decided)"),
        (
            "table",
            (
                ("assertion", "intent", *head),
                [
                    counts_row(a, a["assertion_id"], a["intent"] or "(none)")
                    for a in rt["by_intent"]
                    if a["mode"] != "shadow"
                ],
            ),
        ),
        ("h3", "Pass rate per day"),
        (
            "chart",
            [d for d in rt["daily"] if d["assertion_id"] in {a["assertion_id"] for a in live}],
        ),
    ]
    disclosure = [a for a in live if a["assertion_id"].startswith("disclosure.")]
    disclosure_blocks: list[Block] = (
        [
            ("p", "Assertions that the agent says it is an AI system (EU AI Act Art. 50(1)):"),
            (
                "table",
                (("assertion", *head), [counts_row(a, a["assertion_id"]) for a in disclosure]),
            ),
        ]
        if disclosure
        else [("p", "The packs in force have no disclosure.* assertion.")]
    )
    return rates_, disclosure_blocks


def _violations_blocks(t: dict[str, Any]) -> list[Block]:
    vio = t["violations"]
    violations: list[Block] = [
        (
            "p",
            f"{vio['total']} failed verdicts ({vio['shadow_fails']} of shadow assertions, "
            "listed under Shadow)."
            + (f" The first {vio['limit']} are listed." if vio["total"] > vio["limit"] else ""),
        ),
        (
            "table",
            (
                (
                    "call, turn, decided",
                    "assertion (severity)",
                    "intent",
                    "agent said (redacted)",
                    "evidence",
                    "notes / acknowledgements",
                ),
                [
                    (
                        f"{v['call_id']} turn {v['turn']} {iso(v['decided_at'])}",
                        f"{v['assertion']} ({v['severity']})",
                        v["intent"] or "—",
                        v["text"],
                        v["evidence"],
                        "; ".join(f"{n['kind']} by {n['by']}: {n['text']}" for n in v["notes"])
                        or "none",
                    )
                    for v in vio["shown"]
                ],
            ),
        ),
    ]
    return violations


def _shadow_blocks(t: dict[str, Any]) -> list[Block]:
    shadow: list[Block] = (
        [
            (
                "table",
                (
                    (
                        "shadow assertion",
                        "judged",
                        "fail",
                        "undetermined",
                        "alerts live → if promoted",
                        "on alerted turns",
                        "new turns",
                        "new handoffs",
                    ),
                    [
                        (
                            s["assertion_id"],
                            str(s["judged"]),
                            str(s["fails"]),
                            str(s["undetermined"]),
                            f"{s['alerts_live']} → {s['alerts_if_promoted']}",
                            str(s["turns_alerted_anyway"]),
                            str(s["new_alert_turns"]),
                            str(s["new_handoff_calls"]),
                        )
                        for s in t["shadow"]
                    ],
                ),
            ),
        ]
        if t["shadow"]
        else [("p", "No shadow assertion judged in this period.")]
    )

    return shadow


def _drift_blocks(t: dict[str, Any]) -> list[Block]:
    def drift_row(f: dict[str, Any], notes: str) -> Sequence[str]:
        return (
            f["finding_id"],
            f["kind"],
            f["assertion_id"],
            f["intent"] or "(none)",
            f"{f['baseline_rate']:.1%} (n={f['baseline_n']}) → "
            f"{f['recent_rate']:.1%} (n={f['recent_n']})",
            f"{f['delta']:+.1%} [{f['ci_low']:+.1%}, {f['ci_high']:+.1%}]",
            f"{f['q_value']:.2g}",
            f"{f['baseline_release_id']} → {f['release_id']}",
            notes,
        )

    drift_head = (
        "finding",
        "kind",
        "assertion",
        "intent",
        "deviation rate",
        "Δ [95% CI]",
        "q",
        "release",
        "remediation",
    )
    dr = t["drift"]
    drift: list[Block] = [
        ("h3", "Recorded findings"),
        (
            "table",
            (
                drift_head,
                [
                    drift_row(
                        f,
                        "; ".join(f"{n['kind']} by {n['by']}: {n['text']}" for n in f["notes"])
                        or "none",
                    )
                    for f in dr["recorded"]
                ],
            ),
        ),
        ("h3", "Found now over the period (not recorded)"),
        ("table", (drift_head, [drift_row(f, "—") for f in dr["current"]])),
        (
            "p",
            DRIFT_METHOD,
        ),
    ]
    return drift


def _chain_blocks(t: dict[str, Any]) -> list[Block]:
    ch = t["chain"]
    status = "intact" if ch["ok"] else "BROKEN"
    chain: list[Block] = [
        (
            "p",
            f"Hash chain {status}: {ch['calls_checked']} call chains and the tenant chain, "
            f"{ch['rows_checked']} rows checked. "
            f"{ch['heads_with_mac']} of {ch['heads']} chain heads carry an HMAC; "
            + (
                "signatures checked against the key."
                if ch["key_checked"]
                else "signatures not checked (no key given)."
            )
            + (
                f" {ch['exported_heads_checked']} exported heads checked."
                if ch["exported_heads_checked"]
                else ""
            ),
        ),
    ]
    if ch["problems"]:
        chain.append(("table", (("problem",), [(p["message"],) for p in ch["problems"]])))
    return chain


def _retention_blocks(t: dict[str, Any]) -> list[Block]:
    ret = t["retention"]
    retention: list[Block] = [
        (
            "p",
            f"Retention in force: profile {ret['profile']} (as of the last purge, "
            f"{iso(ret['last_purge'])}: calls last written before {iso(ret['last_cutoff'])} "
            f"removed); {ret['purged_calls']} calls purged, each a verified tombstone."
            if ret["profile"]
            else "No purge has run for this tenant: every call it ever had is in the ledger.",
        )
    ]
    return retention


def _tenant_sections(t: dict[str, Any]) -> list[tuple[str, str, list[Block]]]:
    name = t["tenant"]
    rates_, disclosure_blocks = _rates_blocks(t)
    framework = _framework_blocks(t)
    coverage = _coverage_blocks(t)
    violations = _violations_blocks(t)
    shadow = _shadow_blocks(t)
    drift = _drift_blocks(t)
    chain = _chain_blocks(t)
    retention = _retention_blocks(t)
    return [
        (f"framework-{name}", f"Tenant {name}: evaluation framework", framework),
        (f"coverage-{name}", f"Tenant {name}: coverage", coverage),
        (f"rates-{name}", f"Tenant {name}: pass rates", rates_),
        (f"disclosure-{name}", f"Tenant {name}: AI disclosure", disclosure_blocks),
        (f"violations-{name}", f"Tenant {name}: violations", violations),
        (f"shadow-{name}", f"Tenant {name}: shadow assertions", shadow),
        (f"drift-{name}", f"Tenant {name}: drift and release changes", drift),
        (f"chain-{name}", f"Tenant {name}: chain and key verification", chain),
        (f"retention-{name}", f"Tenant {name}: retention", retention),
    ]
