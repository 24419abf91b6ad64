"""``cxguard eval``, ``drift``, ``policy compare|test``, ``train``: judging calls offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cxguard.cli.common import (
    EvidenceOpt,
    TenantOpt,
    app,
    epoch,
    fail,
    key_values,
    ledger_at,
    policy_app,
    tenants_of,
)
from cxguard.errors import CxguardError


@app.command("eval")
def eval_(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Transcripts (.jsonl), folders of them, stereo calls (.wav …)."),
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy pack (default: billing).")] = None,
    no_classifiers: Annotated[bool, typer.Option("--no-classifiers")] = False,
    config: Annotated[
        Path | None, typer.Option(help="Server settings file (its asr:, vad:, turns:).")
    ] = None,
    agent: Annotated[Path | None, typer.Option(help="A call's agent track.")] = None,
    customer: Annotated[Path | None, typer.Option(help="The same call's customer track.")] = None,
    agent_channel: Annotated[
        int, typer.Option(min=0, max=1, help="Stereo calls: the agent's channel (1 = right).")
    ] = 1,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="K=V call parameter (recordings).")
    ] = None,
    agent_version: Annotated[
        str | None, typer.Option("--agent-version", help="The agent release being gated.")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", help="fail, undetermined, mismatch (default fail,mismatch)."),
    ] = None,
) -> None:
    """Gate a release: judge test calls offline with the live engine (transcripts, and
    recordings transcribed with the live ASR, VAD and turn settings; no server). One JSON line
    per (speaker turn, assertion) on stdout, a summary naming the release on stderr. Exit 0:
    nothing unexpected; 1: violations or mismatches (``--fail-on``); 2: bad input."""
    from cxguard.policy.gate import DEFAULT_FAIL_ON, FAIL_ON_CHOICES, Status
    from cxguard.runtime.eval import EvalRequest, run_gate

    wanted: set[Status] = set()
    for item in fail_on or []:
        for name in filter(None, (n.strip() for n in item.split(","))):
            if name not in FAIL_ON_CHOICES:
                raise typer.BadParameter(f"--fail-on takes {', '.join(FAIL_ON_CHOICES)}: {name!r}")
            wanted.add(name)
    if (agent is None) != (customer is None):
        raise typer.BadParameter("--agent and --customer go together")
    params = key_values(param, "--param")
    request = EvalRequest(
        paths=tuple(paths or ()),
        pairs=((agent, customer),) if agent is not None and customer is not None else (),
        policy=policy,
        classifiers=not no_classifiers,
        config=config,
        agent_channel=agent_channel,
        parameters=params,
        agent_version=agent_version,
    )
    if not request.paths and not request.pairs:
        raise typer.BadParameter("give transcripts, folders, or --agent/--customer")
    gating = frozenset(wanted) or DEFAULT_FAIL_ON
    try:
        report = run_gate(request, lambda row: sys.stdout.write(json.dumps(row) + "\n"))
    except CxguardError as exc:
        raise fail(exc) from exc
    if junit is not None:
        from cxguard.policy.gate import junit_xml

        junit.write_text(junit_xml(report, gating), encoding="utf-8")
    typer.echo(json.dumps({"summary": report.summary(gating)}), err=True)
    raise typer.Exit(report.exit_code(gating))


@app.command()
def drift(
    evidence: EvidenceOpt = None,
    tenant: TenantOpt = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Baselines start here (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="The period ends here.")] = None,
    recent_hours: Annotated[
        float, typer.Option("--recent-hours", min=0.01, help="The recent window.")
    ] = 24.0,
    min_samples: Annotated[int, typer.Option("--min-samples", min=1)] = 30,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0, help="FDR.")] = 0.05,
    record: Annotated[
        bool, typer.Option("--record", help="Append new findings to the ledger (once each).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Deviation-rate drift per (tenant, assertion, intent), within a release (recent window
    vs the release's baseline) and across release changes (new vs old release): Fisher exact
    test, Benjamini-Hochberg FDR, per-assertion thresholds from the pack. Reads only, unless
    ``--record``. See docs/governance.md."""
    from cxguard.evidence.drift import DAY, DriftOptions, detect_drift, record_findings

    options = DriftOptions(
        recent_s=recent_hours * 3600.0, baseline_s=7 * DAY, min_samples=min_samples, alpha=alpha
    )
    start, end = epoch(since, "--since"), epoch(until, "--until")
    with ledger_at(evidence, write=record) as ledger:
        found = [
            f
            for t in tenants_of(ledger, tenant)
            for f in detect_drift(ledger, t, options=options, now=end, since=start)
        ]
        new = record_findings(ledger, found) if record else [False] * len(found)
    for finding, fresh in zip(found, new, strict=True):
        if as_json:
            row = {**finding.to_dict(), **({"recorded": fresh} if record else {})}
            sys.stdout.write(json.dumps(row) + "\n")
            continue
        typer.echo(
            f"{finding.finding_id} {finding.kind:<14} {finding.tenant} {finding.assertion_id} "
            f"intent={finding.intent or '(none)'} {finding.direction}: "
            f"{finding.baseline_rate:.1%} (n={finding.baseline_n}) -> {finding.recent_rate:.1%} "
            f"(n={finding.recent_n}), delta {finding.delta:+.1%} "
            f"[{finding.ci_low:+.1%}, {finding.ci_high:+.1%}], p={finding.p_value:.2g} "
            f"q={finding.q_value:.2g} release {finding.baseline_release_id} -> "
            f"{finding.release_id}" + (" (recorded)" if fresh else "")
        )
    if not found and not as_json:
        typer.echo("no drift")


@policy_app.command("compare")
def policy_compare(
    evidence: EvidenceOpt = None,
    tenant: TenantOpt = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601.")] = None,
    assertion: Annotated[str | None, typer.Option("--assertion")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """What promoting each shadow assertion would have changed over a period: alerts the
    tenant got and would have got, failures on turns already alerted, new handoffs. Reads
    only."""
    from cxguard.evidence.compare import compare_shadow

    start, end = epoch(since, "--since"), epoch(until, "--until")
    with ledger_at(evidence) as ledger:
        rows = [
            (t, impact)
            for t in tenants_of(ledger, tenant)
            for impact in compare_shadow(ledger, t, start, end, assertion)
        ]
    for t, i in rows:
        if as_json:
            sys.stdout.write(json.dumps({"tenant": t, **i.to_dict()}) + "\n")
        else:
            typer.echo(
                f"{t} {i.assertion_id} (shadow): {i.judged} judged, {i.fails} fail, "
                f"{i.undetermined} undetermined; alerts {i.alerts_live} -> "
                f"{i.alerts_if_promoted} ({i.added_alerts:+d}), {i.turns_alerted_anyway} on "
                f"turns already alerted, {i.new_alert_turns} new turns, {i.calls_affected} calls, "
                f"{i.new_handoff_calls} new handoffs"
            )
    if not rows and not as_json:
        typer.echo("no shadow assertions in this period")


@policy_app.command("test")
def policy_test(
    path: Annotated[Path | None, typer.Argument(help="Policy pack (default: billing).")] = None,
    no_classifiers: Annotated[bool, typer.Option("--no-classifiers")] = False,
) -> None:
    """Run a pack's labelled examples; print per-assertion precision/recall; exit 1 on a miss."""
    from rich.console import Console
    from rich.table import Table

    from cxguard.policy.selftest import run_policy_tests
    from cxguard.runtime.services import load_engine
    from cxguard.runtime.settings import Settings

    try:
        engine, pack = load_engine(
            Settings(policy=str(path) if path else None, classifiers=not no_classifiers)
        )
        report = run_policy_tests(pack, engine)
    except CxguardError as exc:
        raise fail(exc) from exc
    console = Console()
    table = Table(title=f"{pack.id} {pack.version}: {report.cases} policy tests")
    for col in ("assertion", "tp", "fp", "fn", "tn", "undetermined", "precision", "recall"):
        table.add_column(col, justify="left" if col == "assertion" else "right")
    for assertion, c in report.confusion.items():
        table.add_row(
            assertion,
            str(c.tp),
            str(c.fp),
            str(c.fn),
            str(c.tn),
            str(c.undetermined),
            f"{c.precision:.2f}",
            f"{c.recall:.2f}",
        )
    console.print(table)
    for m in report.mismatches:
        console.print(
            f"[red]MISS[/] {m.case!r} line {m.line} {m.assertion}: expected "
            f"{m.expected}, got {m.got}: {m.text}"
        )
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Where the models go.")] = Path("models"),
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Rebuild every classifier from data/ (needs the ``train`` extra: torch, onnx, sklearn)."""
    try:
        from cxguard.train.cli import train_all
    except ImportError as exc:
        typer.echo(f"error: training needs `pip install -e .[train]` ({exc})", err=True)
        raise typer.Exit(2) from exc
    train_all(out, seed=seed)
