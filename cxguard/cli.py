"""The ``cxguard`` command line (the contract in README.md; tests rely on it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cxguard.errors import CxguardError

if TYPE_CHECKING:
    from cxguard.evidence.heads import HeadKey
    from cxguard.evidence.ledger import EvidenceLedger
    from cxguard.runtime.simulate_control import Fact

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


LogFormatOpt = Annotated[
    str, typer.Option("--log-format", help="Log lines as 'text' or 'json' (one object a line).")
]


def _logging(verbose: bool, fmt: str = "text", quiet: int = logging.INFO) -> None:
    """One redacting stderr handler (``cxguard.runtime.logs``): no log line carries a card
    number, SSN or CVV."""
    from cxguard.runtime.logs import configure_logging

    try:
        configure_logging(logging.DEBUG if verbose else quiet, fmt)
    except CxguardError as exc:
        raise _fail(exc) from exc


def _fail(exc: CxguardError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@contextlib.contextmanager
def _ledger(url: str | None, *, write: bool = False) -> Iterator[EvidenceLedger]:
    """The ledger at ``url`` (default: the settings' one), closed after; errors exit 2.

    Read-only unless ``write``: a read command never creates a database or writes a row."""
    from cxguard.evidence.engine import LedgerOptions
    from cxguard.evidence.ledger import EvidenceLedger
    from cxguard.runtime.settings import Settings

    try:
        ledger = EvidenceLedger(url or Settings().evidence_url, LedgerOptions(read_only=not write))
    except CxguardError as exc:
        raise _fail(exc) from exc
    try:
        yield ledger
    except CxguardError as exc:
        raise _fail(exc) from exc
    finally:
        ledger.close()


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    evidence: EvidenceOpt = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url")] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="Base URL Twilio signs (wss://host).")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Beyond loopback, admit streams on doors without credentials."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Run the websocket sidecar (/twilio, /audiohook, /metrics, /healthz, /readyz).

    Listening beyond loopback needs credentials (or --insecure); see docs/security.md."""
    from cxguard.runtime.app import serve_forever
    from cxguard.runtime.settings import load_settings

    _logging(verbose, log_format)
    try:
        settings = load_settings(
            config,
            host=host,
            port=port,
            evidence_url=evidence,
            redis_url=redis_url,
            public_url=public_url,
            insecure=insecure or None,
        )
        asyncio.run(serve_forever(settings))
    except CxguardError as exc:
        raise _fail(exc) from exc


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="ws://HOST:PORT/twilio or …/audiohook")],
    agent: Annotated[Path, typer.Option(exists=True, dir_okay=False)],
    customer: Annotated[Path, typer.Option(exists=True, dir_okay=False)],
    protocol: Annotated[
        str, typer.Option(help="Which platform to play: twilio, audiohook or stream.")
    ] = "twilio",
    fast: Annotated[bool, typer.Option("--fast", help="Send as fast as possible.")] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="K=V customParameter (Twilio) / customConfig (AudioHook)."),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(envvar="CXGUARD_TWILIO_AUTH_TOKEN", help="Twilio: sign the upgrade."),
    ] = None,
    api_key: Annotated[
        str, typer.Option(envvar="CXGUARD_AUDIOHOOK_API_KEY", help="AudioHook: X-API-KEY.")
    ] = "cxguard-simulator",
    client_secret: Annotated[
        str,
        typer.Option(
            envvar="CXGUARD_AUDIOHOOK_CLIENT_SECRET", help="AudioHook: base64 client secret."
        ),
    ] = "",
    encoding: Annotated[str, typer.Option(help="stream: mulaw or l16.")] = "l16",
    rate: Annotated[int, typer.Option(help="stream: 8000 or 16000 Hz.")] = 16000,
    style: Annotated[
        str, typer.Option(help="stream: first message as cxguard, vonage or audio_fork.")
    ] = "cxguard",
    token: Annotated[
        str | None, typer.Option(envvar="CXGUARD_STREAM_TOKEN", help="stream: bearer token.")
    ] = None,
    fact: Annotated[
        list[str] | None,
        typer.Option(
            "--fact",
            help="MS:NAME[=VALUE]: POST a mid-call fact to the control API at MS of the call "
            "(authenticated, unauthenticated, handoff, intent=V, agent_version=V).",
        ),
    ] = None,
    control_token: Annotated[
        str | None,
        typer.Option(envvar="CXGUARD_CONTROL_TOKEN", help="Bearer token for --fact requests."),
    ] = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Stream two mono WAVs as one call: a Twilio both_tracks Media Stream, a stereo
    Genesys AudioHook session, or a stereo /stream websocket. Prints one JSON line; exit 1
    if the server broke the protocol, 2 if the stream could not be played."""
    import base64
    import binascii

    _logging(False, log_format, quiet=logging.WARNING)
    if protocol not in ("twilio", "audiohook", "stream"):
        raise typer.BadParameter(f"--protocol must be twilio, audiohook or stream: {protocol!r}")
    if encoding not in ("mulaw", "l16") or style not in ("cxguard", "vonage", "audio_fork"):
        raise typer.BadParameter("--encoding is mulaw or l16; --style cxguard, vonage, audio_fork")
    from cxguard.runtime.simulate_control import parse_fact

    try:
        facts = [parse_fact(f) for f in fact or []]
    except CxguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stream = StreamArgs(encoding, rate, style, token, tuple(facts), control_token)
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param expects K=V, got {item!r}")
        params[key] = value
    try:
        secret = base64.b64decode(client_secret, validate=True)
    except binascii.Error as exc:
        raise typer.BadParameter("--client-secret is not base64") from exc
    try:
        report = asyncio.run(
            _simulate(
                protocol, url, agent, customer, fast, params, auth_token, api_key, secret, stream
            )
        )
    except (CxguardError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report))
    raise typer.Exit(1 if report["problems"] else 0)


async def _simulate(
    protocol: str,
    url: str,
    agent: Path,
    customer: Path,
    fast: bool,
    params: dict[str, str],
    auth_token: str | None,
    api_key: str,
    secret: bytes,
    stream: StreamArgs,
) -> dict[str, object]:
    import uuid

    from cxguard.runtime.simulate import SimulationOptions, simulate_call
    from cxguard.runtime.simulate_audiohook import AudioHookSimulation, simulate_audiohook_call
    from cxguard.runtime.simulate_control import fact_cues
    from cxguard.runtime.simulate_stream import StreamSimulation, simulate_stream_call

    # The call id is chosen here, so the control API can be told about it mid-call.
    call_id = {
        "twilio": "CA" + uuid.uuid4().hex,
        "audiohook": str(uuid.uuid4()),
        "stream": f"call-{uuid.uuid4().hex}",
    }[protocol]
    answers: list[object] = []
    cues = fact_cues(url, call_id, stream.facts, stream.control_token, answers)
    facts = {"facts": answers} if stream.facts else {}
    if protocol == "twilio":
        options = SimulationOptions(
            fast=fast, parameters=params, auth_token=auth_token, call_sid=call_id
        )
        result = await simulate_call(url, agent, customer, options, cues)
        return {
            "protocol": protocol,
            "call_sid": result.call_sid,
            "stream_sid": result.stream_sid,
            "frames": result.frames,
            "seconds": round(result.seconds, 3),
            "close_code": result.close_code,
            "problems": list(result.problems),
            **facts,
        }
    if protocol == "audiohook":
        hook = AudioHookSimulation(
            fast=fast,
            api_key=api_key,
            client_secret=secret,
            custom_config=params,
            conversation_id=call_id,
        )
        outcome = await simulate_audiohook_call(url, agent, customer, hook, cues)
        return {
            "protocol": protocol,
            "conversation_id": outcome.conversation_id,
            "frames": outcome.frames,
            "seconds": round(outcome.seconds, 3),
            "close_code": outcome.close_code,
            "server_messages": [m.get("type") for m in outcome.server_messages],
            "problems": list(outcome.problems),
            **facts,
        }
    mono = ("customer",) if stream.style == "vonage" else ("customer", "agent")
    wanted = StreamSimulation(
        fast=fast,
        encoding="PCMU" if stream.encoding == "mulaw" else "L16",
        sample_rate=stream.rate,
        channel_map=mono,
        style=stream.style,  # type: ignore[arg-type]  # checked by the command
        token=stream.token,
        parameters=params,
        call_id=call_id,
    )
    played = await simulate_stream_call(url, agent, customer, wanted, cues)
    return {
        "protocol": protocol,
        "call_id": played.call_id,
        "frames": played.frames,
        "seconds": round(played.seconds, 3),
        "close_code": played.close_code,
        "problems": list(played.problems),
        **facts,
    }


@dataclass(frozen=True)
class StreamArgs:
    encoding: str
    rate: int
    style: str
    token: str | None
    facts: tuple[Fact, ...] = ()
    control_token: str | None = None


@app.command("eval")
def eval_(
    transcript: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    policy: Annotated[Path | None, typer.Option(help="Policy pack (default: billing).")] = None,
    no_classifiers: Annotated[bool, typer.Option("--no-classifiers")] = False,
    config: Annotated[
        Path | None, typer.Option(help="Server settings file (its turns: section).")
    ] = None,
) -> None:
    """Evaluate a JSONL transcript offline with the live engine; one JSON line per (speaker
    turn, assertion). Turns are built from the lines as the live path builds them from
    segments (``turns:`` settings of ``--config``)."""
    from cxguard.policy.offline import evaluate_transcript, load_transcript
    from cxguard.runtime.services import load_engine
    from cxguard.runtime.settings import load_settings

    try:
        settings = load_settings(
            config, policy=str(policy) if policy else None, classifiers=not no_classifiers
        )
        engine, _ = load_engine(settings)
        rows = evaluate_transcript(
            load_transcript(transcript), engine, options=settings.turns.options()
        )
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    except CxguardError as exc:
        raise _fail(exc) from exc


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


def _key(key: str | None, key_file: Path | None) -> HeadKey | None:
    from cxguard.evidence.heads import HeadKey

    try:
        if key_file is not None:
            return HeadKey(key_file.read_bytes().rstrip(b"\r\n"))
        return HeadKey(key.encode("utf-8")) if key else None
    except OSError as exc:
        raise _fail(CxguardError(f"cannot read the key file: {exc}")) from exc
    except CxguardError as exc:
        raise _fail(exc) from exc


@evidence_app.command("export")
def evidence_export(
    evidence: EvidenceOpt = None,
    call: Annotated[str | None, typer.Option("--call")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    turns: Annotated[bool, typer.Option("--turns", help="Turn rows instead of verdicts.")] = False,
) -> None:
    """Print the ledger as JSON lines: one per turn and assertion (``turn`` is the
    speaker-turn index; ``trigger_turn`` and ``segments`` say what was judged), or with
    ``--turns`` one per speaker turn with its VAD segments."""
    with _ledger(evidence) as ledger:
        rows = ledger.turns(call, tenant) if turns else ledger.export(call_id=call, tenant=tenant)
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")


@evidence_app.command("verify")
def evidence_verify(
    evidence: EvidenceOpt = None,
    call: Annotated[str | None, typer.Option("--call")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    heads: Annotated[
        Path | None,
        typer.Option("--heads", exists=True, dir_okay=False, help="Heads kept from `heads`."),
    ] = None,
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
            raise _fail(exc) from exc
    with _ledger(evidence) as ledger:
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
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
) -> None:
    """Print every chain head with its HMAC as JSON lines: keep them outside the database
    (another host, a WORM bucket) and check the ledger against them with ``verify --heads``."""
    with _ledger(evidence) as ledger:
        for head in ledger.heads(tenant):
            sys.stdout.write(head.to_json() + "\n")


@evidence_app.command("report")
def evidence_report(
    evidence: EvidenceOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    record: Annotated[
        bool, typer.Option("--record", help="Store drift findings in the ledger.")
    ] = False,
) -> None:
    """Governance report: outcomes and pass rate per assertion, failures, drift, chain status.
    Writes nothing unless ``--record``."""
    from cxguard.evidence.drift import detect_drift
    from cxguard.evidence.report import governance_report

    with _ledger(evidence, write=record) as ledger:
        tenants = [tenant] if tenant else sorted({c["tenant"] for c in ledger.calls()})
        drift = [f for t in tenants for f in detect_drift(ledger, t, record=record)]
        report = governance_report(ledger, tenant, drift=drift)
    typer.echo(json.dumps(report.to_dict(), default=str) if as_json else report.to_markdown())


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
        raise _fail(exc) from exc
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
    """Rebuild every classifier from data/ (needs the [train] extra: torch, onnx, sklearn)."""
    try:
        from cxguard.train.cli import train_all
    except ImportError as exc:
        typer.echo(f"error: training needs `pip install -e .[train]` ({exc})", err=True)
        raise typer.Exit(2) from exc
    train_all(out, seed=seed)


@app.command()
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="Stream faster than real time.")] = False,
    evidence: EvidenceOpt = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url")] = None,
    port: Annotated[int, typer.Option()] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve + simulate the bundled billing call in one process, printing verdicts live."""
    from cxguard.runtime.demo import run_demo
    from cxguard.runtime.settings import load_settings

    _logging(False, log_format, quiet=logging.INFO if verbose else logging.WARNING)
    try:
        settings = load_settings(
            None,
            port=port,
            redis_url=redis_url,
            evidence_url=evidence or "sqlite:///cxguard-demo-evidence.db",
        )
        raise typer.Exit(run_demo(settings, fast=fast))
    except CxguardError as exc:
        raise _fail(exc) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
