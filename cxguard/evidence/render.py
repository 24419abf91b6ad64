"""The governance trail (:mod:`~cxguard.evidence.trail`) as Markdown, or as one self-contained
HTML page (inline CSS and SVG chart, no script, no external resource) that prints to PDF.

Both write the same section list (:mod:`~cxguard.evidence.sections`); every string from the
ledger is escaped (the HTML) and was redacted when written.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from cxguard.evidence.sections import iso, pct, sections

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(doc: dict[str, Any]) -> str:
    lines = [f"# {doc['title']}", ""]
    for _anchor, title, blocks in sections(doc):
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
        f"- {iso(d['day'])[:10]} `{d['assertion_id']}`: {pct(d['pass_rate'])}" for d in daily
    )


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:13px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#111;margin:24px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;border-bottom:2px solid #333;margin-top:28px}
h3{font-size:14px;margin:16px 0 6px}table{border-collapse:collapse;width:100%;margin:6px 0 12px}
th,td{border:1px solid #bbb;padding:3px 6px;vertical-align:top;text-align:left;font-size:11.5px}
th{background:#eee}td{overflow-wrap:break-word}td.id{overflow-wrap:anywhere}nav a{margin-right:10px}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px}@page{size:A4;margin:14mm}@media print{h2{break-after:avoid}
tr{break-inside:avoid}}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_html(doc: dict[str, Any]) -> str:
    parts_of = sections(doc)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(doc['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(doc['title'])}</h1>",
        "<nav>" + "".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t, _ in parts_of) + "</nav>",
    ]
    for anchor, title, blocks in parts_of:
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
    # Cells holding identifiers (call ids, assertion ids, hashes) may break them anywhere;
    # prose breaks only at spaces.
    token = any(len(word) > 16 for word in text.split())
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
            f'<text x="{x(t) - 28:.1f}" y="{height - 8}" font-size="10">{iso(t)[:10]}</text>'
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
