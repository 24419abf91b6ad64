"""The governance trail (:mod:`~cxguard.evidence.trail`) as Markdown, or as one self-contained
HTML page (inline CSS and SVG chart, no script, no external resource) that prints to PDF.

Both are built from the same section list, so the Markdown and the HTML always hold the same
facts; every string from the ledger is escaped (the HTML) and was redacted when written.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
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
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _iso(epoch: float | None, default: str = "—") -> str:
    if epoch is None:
        return default
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


Table = tuple[Sequence[str], list[Sequence[str]]]
Block = tuple[str, Any]  # ("p", text) | ("table", Table) | ("chart", daily rows) | ("h3", text)


def _sections(doc: dict[str, Any]) -> list[tuple[str, str, list[Block]]]:
    """``(anchor, title, blocks)`` of the whole document, in order."""
    out: list[tuple[str, str, list[Block]]] = []
    period = f"{_iso(doc['since'], 'the start')} to {_iso(doc['until'], 'now')}"
    out.append(
        (
            "summary",
            "Scope",
            [
                ("p", f"Verdicts decided from {period}; generated {_iso(doc['generated_at'])}."),
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


def _tenant_sections(t: dict[str, Any]) -> list[tuple[str, str, list[Block]]]:
    name = t["tenant"]
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
                        _iso(r["first_verdict"]),
                        _iso(r["last_verdict"]),
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
    rt = t["rates"]

    def counts_row(a: dict[str, Any], *lead: str) -> Sequence[str]:
        c = a["counts"]
        return (
            *lead,
            str(c["pass"]),
            str(c["fail"]),
            str(c["not_applicable"]),
            str(c["undetermined"]),
            _pct(a["pass_rate"]),
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
                    "decided",
                    "call",
                    "turn",
                    "assertion",
                    "severity",
                    "intent",
                    "text",
                    "evidence",
                    "notes / acknowledgements",
                ),
                [
                    (
                        _iso(v["decided_at"]),
                        v["call_id"],
                        str(v["turn"]),
                        v["assertion"],
                        v["severity"],
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
    ret = t["retention"]
    retention: list[Block] = [
        (
            "p",
            f"Retention in force: profile {ret['profile']} (as of the last purge, "
            f"{_iso(ret['last_purge'])}: calls last written before {_iso(ret['last_cutoff'])} "
            f"removed); {ret['purged_calls']} calls purged, each a verified tombstone."
            if ret["profile"]
            else "No purge has run for this tenant: every call it ever had is in the ledger.",
        )
    ]
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


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(doc: dict[str, Any]) -> str:
    lines = [f"# {doc['title']}", ""]
    for _anchor, title, blocks in _sections(doc):
        lines += [f"## {title}", ""]
        for kind, value in blocks:
            if kind == "p":
                lines += [value, ""]
            elif kind == "h3":
                lines += [f"### {value}", ""]
            elif kind == "table":
                head, rows = value
                if not rows:
                    lines += ["None.", ""]
                    continue
                lines.append("| " + " | ".join(head) + " |")
                lines.append("|" + "---|" * len(head))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "chart":
                lines += [_md_daily(value), ""]
    return "\n".join(lines).rstrip() + "\n"


def _md_daily(daily: list[dict[str, Any]]) -> str:
    if not daily:
        return "No verdicts."
    return "\n".join(
        f"- {_iso(d['day'])[:10]} `{d['assertion_id']}`: {_pct(d['pass_rate'])}" for d in daily
    )


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:13px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#111;margin:24px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;border-bottom:2px solid #333;margin-top:28px}
h3{font-size:14px;margin:16px 0 6px}table{border-collapse:collapse;width:100%;margin:6px 0 12px}
th,td{border:1px solid #bbb;padding:3px 6px;vertical-align:top;text-align:left;font-size:11.5px}
th{background:#eee}td{overflow-wrap:break-word}td.id{word-break:break-all}nav a{margin-right:10px}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px}@page{size:A4;margin:14mm}@media print{h2{break-after:avoid}
tr{break-inside:avoid}}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_html(doc: dict[str, Any]) -> str:
    sections = _sections(doc)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(doc['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(doc['title'])}</h1>",
        "<nav>" + "".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t, _ in sections) + "</nav>",
    ]
    for anchor, title, blocks in sections:
        parts.append(f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>')
        for kind, value in blocks:
            if kind == "p":
                parts.append(f"<p>{_esc(value)}</p>")
            elif kind == "h3":
                parts.append(f"<h3>{_esc(value)}</h3>")
            elif kind == "table":
                parts.append(_html_table(*value))
            elif kind == "chart":
                parts.append(svg_chart(value))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    if not body:
        return "<p>None.</p>"
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{_esc(h)}</th>" for h in head)
        + f"</tr></thead><tbody>{body}</tbody></table>"
    )


def _cell(text: str) -> str:
    # Identifiers (call ids, assertion ids, hashes) may break anywhere; prose only at spaces.
    token = len(text) > 16 and " " not in text
    return f'<td class="id">{_esc(text)}</td>' if token else f"<td>{_esc(text)}</td>"


def svg_chart(daily: list[dict[str, Any]], width: int = 680, height: int = 220) -> str:
    """Pass rate per day and assertion as inline SVG (one polyline each, a legend)."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for d in daily:
        if d["pass_rate"] is not None:
            series[d["assertion_id"]].append((d["day"], d["pass_rate"]))
    if not series:
        return "<p>No verdicts to chart.</p>"
    days = sorted({x for pts in series.values() for x, _ in pts})
    left, right, top, bottom = 44, 10, 10, 28
    span = (days[-1] - days[0]) or 1.0

    def x(t: float) -> float:
        return left + (width - left - right) * ((t - days[0]) / span if len(days) > 1 else 0.5)

    def y(r: float) -> float:
        return top + (height - top - bottom) * (1 - r)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="pass rate per day">'
    ]
    for r in (0.0, 0.5, 1.0):
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(r):.1f}" y2="{y(r):.1f}" '
            'stroke="#ccc"/>'
        )
        out.append(f'<text x="4" y="{y(r) + 4:.1f}" font-size="10">{r:.0%}</text>')
    for t in (days[0], days[-1]):
        out.append(
            f'<text x="{x(t) - 28:.1f}" y="{height - 8}" font-size="10">{_iso(t)[:10]}</text>'
        )
    legend = []
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = _COLOURS[i % len(_COLOURS)]
        coords = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in pts)
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>'
        )
        for t, r in pts:
            out.append(f'<circle cx="{x(t):.1f}" cy="{y(r):.1f}" r="2.2" fill="{colour}"/>')
        legend.append(f'<span><i style="background:{colour}"></i>{_esc(name)}</span>')
    out.append("</svg>")
    return "".join(out) + f'<div class="legend">{"".join(legend)}</div>'
