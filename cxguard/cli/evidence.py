"""``cxguard evidence …``: read, check, annotate and purge the evidence ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cxguard.cli.common import (
    ConfigOpt,
    EvidenceOpt,
    TenantOpt,
    epoch,
    evidence_app,
    fail,
    ledger_at,
    tenants_of,
)
from cxguard.errors import CxguardError

if TYPE_CHECKING:
    from cxguard.evidence.heads import HeadKey
    from cxguard.evidence.ledger import EvidenceLedger


KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="CXGUARD_EVIDENCE_KEY", help="Evidence HMAC key (prefer --key-file)."
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option("--key-file", envvar="CXGUARD_EVIDENCE_KEY_FILE", dir_okay=False),
]
HeadsOpt = Annotated[
    Path | None,
    typer.Option("--heads", exists=True, dir_okay=False, help="Heads kept from `heads`."),
]


def _key(key: str | None, key_file: Path | None) -> HeadKey | None:
    from cxguard.evidence.heads import HeadKey

    try:
        if key_file is not None:
            return HeadKey(key_file.read_bytes().rstrip(b"\r\n"))
        return HeadKey(key.encode("utf-8")) if key else None
    except OSError as exc:
        raise fail(CxguardError(f"cannot read the key file: {exc}")) from exc
    except CxguardError as exc:
        raise fail(exc) from exc


@evidence_app.command("export")
def evidence_export(
    evidence: EvidenceOpt = None,
    call: Annotated[str | None, typer.Option("--call")] = None,
    tenant: TenantOpt = None,
    turns: Annotated[bool, typer.Option("--turns", help="Turn rows instead of verdicts.")] = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events", help="Call events instead (lifecycle, deliveries, console.* actions)."
        ),
    ] = False,
    kind: Annotated[
        str | None, typer.Option("--kind", help="With --events: only this kind.")
    ] = None,
) -> None:
    """Print the ledger as JSON lines: one per turn and assertion (``turn`` is the
    speaker-turn index; ``trigger_turn`` and ``segments`` say what was judged), or with
    ``--turns`` one per speaker turn with its VAD segments, or with ``--events`` one per call
    event (e.g. ``console.acknowledge``: who acknowledged which alert, when)."""
    with ledger_at(evidence) as ledger:
        if events:
            rows = iter(ledger.events(call, tenant, kind))
        elif turns:
            rows = iter(ledger.turns(call, tenant))
        else:
            rows = ledger.export(call_id=call, tenant=tenant)
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")


@evidence_app.command("verify")
def evidence_verify(
    evidence: EvidenceOpt = None,
    call: Annotated[str | None, typer.Option("--call")] = None,
    tenant: TenantOpt = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    heads: HeadsOpt = None,
    spool: Annotated[
        Path | None, typer.Option("--spool", help="The sidecar's spool.db (default: found).")
    ] = None,
    allow_open: Annotated[
        bool, typer.Option("--allow-open", help="Calls still live are not a problem.")
    ] = False,
) -> None:
    """Check the ledger; exit 1 if a row was changed, removed or reordered, a signed head does
    not match (``--key``), a turn is missing with no recorded gap, a call never ended, or
    writes are still spooled. Names interrupted calls. Reads only."""
    from cxguard.evidence.heads import parse_heads

    head_key = _key(key, key_file)
    kept = []
    if heads is not None:
        try:
            kept = parse_heads(heads.read_text(encoding="utf-8"), str(heads))
        except CxguardError as exc:
            raise fail(exc) from exc
    with ledger_at(evidence) as ledger:
        pending = _spooled(ledger, spool)
        report = ledger.verify(
            call_id=call,
            tenant=tenant,
            key=head_key,
            heads=kept,
            pending=pending,
            allow_open=allow_open,
        )
    typer.echo(json.dumps(report.as_dict(), default=str))
    raise typer.Exit(0 if report.ok else 1)


def _spooled(ledger: EvidenceLedger, path: Path | None) -> dict[tuple[str, str], int]:
    """Writes still in the spool (read-only; none when there is no spool file)."""
    from cxguard.evidence.engine import sqlite_path
    from cxguard.evidence.spool import Spool

    if path is None:
        db = sqlite_path(ledger.url)
        path = (db.with_name(db.name + ".state") if db else Path("cxguard-state")) / "spool.db"
        if not path.is_file():
            return {}
    spool = Spool(path, read_only=True)
    try:
        return spool.pending_counts()
    finally:
        spool.close()


@evidence_app.command("heads")
def evidence_heads(
    evidence: EvidenceOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Print every chain head with its HMAC as JSON lines: keep them outside the database
    (another host, a WORM bucket) and check the ledger against them with ``verify --heads``."""
    with ledger_at(evidence) as ledger:
        for head in ledger.heads(tenant):
            sys.stdout.write(head.to_json() + "\n")


@evidence_app.command("migrate")
def evidence_migrate(evidence: EvidenceOpt = None) -> None:
    """Bring an older ledger to this version's schema (additive: columns are added, nothing
    is rewritten, every chain still verifies). Prints the schema version."""
    from cxguard.evidence.schema import SCHEMA_VERSION

    with ledger_at(evidence, write=True):
        pass  # opening a ledger for writing migrates its schema; nothing else to do
    typer.echo(json.dumps({"schema_version": SCHEMA_VERSION}))


@evidence_app.command("note")
def evidence_note(
    text: Annotated[str, typer.Option("--text", help="What was done (remediation).")],
    by: Annotated[str, typer.Option("--by", help="Who did it.")],
    evidence: EvidenceOpt = None,
    tenant: TenantOpt = None,
    call: Annotated[str | None, typer.Option("--call", help="A call id.")] = None,
    finding: Annotated[str | None, typer.Option("--finding", help="A drift finding id.")] = None,
    turn: Annotated[int | None, typer.Option("--turn", help="The call's turn it is about.")] = None,
    assertion: Annotated[str | None, typer.Option("--assertion")] = None,
) -> None:
    """Record a remediation note on a call or a drift finding: a chained ledger row, shown by
    ``evidence report``. The tenant defaults to the settings' default tenant."""
    from cxguard.runtime.settings import Settings

    about: dict[str, object] = {}
    if turn is not None:
        about["turn"] = turn
    if assertion:
        about["assertion"] = assertion
    who = tenant or Settings().default_tenant
    with ledger_at(evidence, write=True) as ledger:
        ledger.annotate(who, "note", text, by, call_id=call, finding_id=finding, about=about)
    typer.echo(json.dumps({"tenant": who, "call": call, "finding": finding, "recorded": True}))


@evidence_app.command("purge")
def evidence_purge(
    evidence: EvidenceOpt = None,
    config: ConfigOpt = None,
    tenant: TenantOpt = None,
    retention: Annotated[
        str | None, typer.Option("--retention", help="6m, 12m or 6y (default: the settings').")
    ] = None,
    now: Annotated[str | None, typer.Option("--now", help="Purge as of (ISO 8601).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, remove nothing.")] = False,
) -> None:
    """Remove ended calls past their tenant's retention (``ledger.retention``, a tenant's
    ``retention``, or ``--retention``), keeping every chain verifiable: each purged call keeps
    its signed head as a tombstone, recorded by a ``purge`` finding on the tenant's chain.
    Prints one JSON line per tenant."""
    from cxguard.runtime.settings import load_settings

    try:
        settings = load_settings(config)
        by_name = {t.name: t for t in settings.tenants}
        default = settings.ledger.retention
        if retention is not None:
            from cxguard.evidence.retention import retention_s

            retention_s(retention)
    except CxguardError as exc:
        raise fail(exc) from exc
    at = epoch(now, "--now")
    with ledger_at(evidence or settings.evidence_url, write=not dry_run) as ledger:
        for t in tenants_of(ledger, tenant):
            known = by_name.get(t)
            profile = retention or (known.retention_profile(default) if known else default)
            summary = ledger.purge(t, profile, at, dry_run=dry_run)
            sys.stdout.write(json.dumps(summary.to_dict()) + "\n")


@evidence_app.command("report")
def evidence_report(
    evidence: EvidenceOpt = None,
    tenant: TenantOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html, pdf or json.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (pdf: required).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601.")] = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    heads: HeadsOpt = None,
    allow_open: Annotated[
        bool, typer.Option("--allow-open", help="Calls still live are not a chain problem.")
    ] = False,
    browser: Annotated[str | None, typer.Option("--browser", help="pdf: Chromium.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    record: Annotated[
        bool, typer.Option("--record", help="Also store new drift findings (writes).")
    ] = False,
) -> None:
    """The governance report: framework (releases, packs, intents, assertions), coverage,
    pass rates (per assertion, per intent, per day), violations with notes and acks, shadow
    assertions, drift with remediation, chain and key verification, retention, and the
    mapping to EU AI Act Art. 12/50, NIST AI RMF MEASURE 2.4/MANAGE 4.1, PCI DSS
    3.3.1/3.4.1/10.5.1. Reads only, unless ``--record``."""
    from cxguard.evidence.drift import detect_drift, record_findings
    from cxguard.evidence.heads import parse_heads
    from cxguard.evidence.render import to_html, to_markdown
    from cxguard.evidence.trail import governance_trail

    fmt = "json" if as_json else fmt
    if fmt not in ("md", "html", "pdf", "json"):
        raise typer.BadParameter(f"--format is md, html, pdf or json, not {fmt!r}")
    if fmt == "pdf" and out is None:
        raise typer.BadParameter("--format pdf needs --out FILE")
    head_key = _key(key, key_file)
    kept = []
    try:
        if heads is not None:
            kept = parse_heads(heads.read_text(encoding="utf-8"), str(heads))
    except CxguardError as exc:
        raise fail(exc) from exc
    start, end = epoch(since, "--since"), epoch(until, "--until")
    with ledger_at(evidence, write=record) as ledger:
        if record:
            for t in tenants_of(ledger, tenant):
                record_findings(ledger, detect_drift(ledger, t, now=end, since=start))
        doc = governance_trail(
            ledger, tenant, since=start, until=end, key=head_key, heads=kept, allow_open=allow_open
        )
    try:
        if fmt == "pdf":
            from cxguard.runtime.pdf import html_to_pdf

            assert out is not None
            html_to_pdf(to_html(doc), out, browser=browser)
            return
        text = (
            json.dumps(doc, default=str)
            if fmt == "json"
            else to_html(doc)
            if fmt == "html"
            else to_markdown(doc)
        )
    except CxguardError as exc:
        raise fail(exc) from exc
    if out is not None:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        typer.echo(text)
