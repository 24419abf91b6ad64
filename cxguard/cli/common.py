"""What every ``cxguard`` command shares: the Typer apps, option types, logging, the ledger."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cxguard.errors import CxguardError

if TYPE_CHECKING:
    from cxguard.evidence.ledger import EvidenceLedger

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Evaluate every AI-agent turn of live calls against behavioural policies.",
)
evidence_app = typer.Typer(no_args_is_help=True, help="Read and check the evidence ledger.")
policy_app = typer.Typer(no_args_is_help=True, help="Work with policy packs.")
app.add_typer(evidence_app, name="evidence")
app.add_typer(policy_app, name="policy")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file.")]
EvidenceOpt = Annotated[
    str | None,
    typer.Option("--evidence", help="Ledger URL (sqlite:///… or postgresql+psycopg://…)."),
]


TenantOpt = Annotated[str | None, typer.Option("--tenant", help="One tenant (default: every one).")]
LogFormatOpt = Annotated[
    str, typer.Option("--log-format", help="Log lines as 'text' or 'json' (one object a line).")
]


def log_to_stderr(verbose: bool, fmt: str = "text", quiet: int = logging.INFO) -> None:
    """One redacting stderr handler (``cxguard.runtime.logs``): no log line carries a card
    number, SSN or CVV."""
    from cxguard.runtime.logs import configure_logging

    try:
        configure_logging(logging.DEBUG if verbose else quiet, fmt)
    except CxguardError as exc:
        raise fail(exc) from exc


def fail(exc: CxguardError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def ledger_at(url: str | None, *, write: bool = False) -> Iterator[EvidenceLedger]:
    """The ledger at ``url`` (default: the settings' one), closed after; errors exit 2.

    Read-only unless ``write``: a read command never creates a database or writes a row."""
    from cxguard.evidence.engine import LedgerOptions
    from cxguard.evidence.ledger import EvidenceLedger
    from cxguard.runtime.settings import Settings

    try:
        ledger = EvidenceLedger(url or Settings().evidence_url, LedgerOptions(read_only=not write))
    except CxguardError as exc:
        raise fail(exc) from exc
    try:
        yield ledger
    except CxguardError as exc:
        raise fail(exc) from exc
    finally:
        ledger.close()


def epoch(value: str | None, what: str) -> float | None:
    """An ISO 8601 time (``2026-11-01``, ``2026-11-01T08:00:00Z``; naive = UTC) as epoch s."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not an ISO 8601 time: {value!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def tenants_of(ledger: EvidenceLedger, tenant: str | None) -> list[str]:
    return [tenant] if tenant else sorted({c["tenant"] for c in ledger.calls()})


def key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """``K=V`` option values as a dict; a malformed one is a usage error naming ``option``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} expects K=V, got {item!r}")
        out[key] = value
    return out
