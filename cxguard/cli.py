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
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Sidecar processes on the port (SO_REUSEPORT)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Run the websocket sidecar (/twilio, /audiohook, /stream, /console, /metrics, /healthz,
    /readyz).

    Listening beyond loopback needs credentials (or --insecure); see docs/security.md."""
    import dataclasses

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
        if workers is not None:
            settings = dataclasses.replace(settings, processes=workers)
        if settings.processes > 1:
            from cxguard.runtime.processes import serve_processes

            level = logging.DEBUG if verbose else logging.INFO
            raise typer.Exit(serve_processes(settings, level=level, fmt=log_format))
        asyncio.run(serve_forever(settings))
    except CxguardError as exc:
        raise _fail(exc) from exc


@app.command("asr-worker")
def asr_worker(
    config: ConfigOpt = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis the sidecars use (or redis_url).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda (default: asr.device).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Segments per batch (asr.batch_size).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Consumer name (default: host-pid).")
    ] = None,
    heartbeat: Annotated[
        Path | None, typer.Option("--heartbeat", help="File touched every round (liveness).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Transcribe the sidecars' segments from Redis Streams (asr.pool: redis; docs/scale.md)."""
    import dataclasses

    from cxguard.errors import ConfigError
    from cxguard.runtime.asr_pool_worker import run_worker
    from cxguard.runtime.services import load_transcriber
    from cxguard.runtime.settings import load_settings

    _logging(verbose, log_format)
    try:
        settings = load_settings(config, redis_url=redis_url)
        url = settings.redis_url
        if not url:
            raise ConfigError("asr-worker needs --redis-url or redis_url in the settings")
        if device is not None:
            asr = dataclasses.replace(settings.asr, device=device)
            settings = dataclasses.replace(settings, asr=asr)
        transcriber = load_transcriber(settings)
        transcriber.warmup()
        run_worker(
            url,
            settings.asr,
            transcriber.transcribe_batch,
            batch_size=batch_size,
            name=name,
            heartbeat=str(heartbeat) if heartbeat else None,
        )
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
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param expects K=V, got {item!r}")
        params[key] = value
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
        raise _fail(exc) from exc
    if junit is not None:
        from cxguard.policy.gate import junit_xml

        junit.write_text(junit_xml(report, gating), encoding="utf-8")
    typer.echo(json.dumps({"summary": report.summary(gating)}), err=True)
    raise typer.Exit(report.exit_code(gating))


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
    with _ledger(evidence) as ledger:
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


@evidence_app.command("migrate")
def evidence_migrate(evidence: EvidenceOpt = None) -> None:
    """Bring an older ledger to this version's schema (additive: columns are added, nothing
    is rewritten, every chain still verifies). Prints the schema version."""
    from cxguard.evidence.schema import SCHEMA_VERSION

    with _ledger(evidence, write=True):
        pass  # opening a ledger for writing migrates its schema; nothing else to do
    typer.echo(json.dumps({"schema_version": SCHEMA_VERSION}))


@evidence_app.command("note")
def evidence_note(
    text: Annotated[str, typer.Option("--text", help="What was done (remediation).")],
    by: Annotated[str, typer.Option("--by", help="Who did it.")],
    evidence: EvidenceOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
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
    with _ledger(evidence, write=True) as ledger:
        ledger.annotate(who, "note", text, by, call_id=call, finding_id=finding, about=about)
    typer.echo(json.dumps({"tenant": who, "call": call, "finding": finding, "recorded": True}))


@evidence_app.command("purge")
def evidence_purge(
    evidence: EvidenceOpt = None,
    config: ConfigOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
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
        raise _fail(exc) from exc
    at = _epoch(now, "--now")
    with _ledger(evidence or settings.evidence_url, write=not dry_run) as ledger:
        for t in _tenants(ledger, tenant):
            known = by_name.get(t)
            profile = retention or (known.retention_profile(default) if known else default)
            summary = ledger.purge(t, profile, at, dry_run=dry_run)
            sys.stdout.write(json.dumps(summary.to_dict()) + "\n")


@evidence_app.command("report")
def evidence_report(
    evidence: EvidenceOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html, pdf or json.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (pdf: required).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601.")] = None,
    key: KeyOpt = None,
    key_file: KeyFileOpt = None,
    heads: Annotated[
        Path | None,
        typer.Option("--heads", exists=True, dir_okay=False, help="Heads kept from `heads`."),
    ] = None,
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
        raise _fail(exc) from exc
    start, end = _epoch(since, "--since"), _epoch(until, "--until")
    with _ledger(evidence, write=record) as ledger:
        if record:
            for t in _tenants(ledger, tenant):
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
        raise _fail(exc) from exc
    if out is not None:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


def _epoch(value: str | None, what: str) -> float | None:
    """An ISO 8601 time (``2026-11-01``, ``2026-11-01T08:00:00Z``; naive = UTC) as epoch s."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not an ISO 8601 time: {value!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _tenants(ledger: EvidenceLedger, tenant: str | None) -> list[str]:
    return [tenant] if tenant else sorted({c["tenant"] for c in ledger.calls()})


@app.command()
def drift(
    evidence: EvidenceOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
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
    start, end = _epoch(since, "--since"), _epoch(until, "--until")
    with _ledger(evidence, write=record) as ledger:
        found = [
            f
            for t in _tenants(ledger, tenant)
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
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601.")] = None,
    assertion: Annotated[str | None, typer.Option("--assertion")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """What promoting each shadow assertion would have changed over a period: alerts the
    tenant got and would have got, failures on turns already alerted, new handoffs. Reads
    only."""
    from cxguard.evidence.compare import compare_shadow

    start, end = _epoch(since, "--since"), _epoch(until, "--until")
    with _ledger(evidence) as ledger:
        rows = [
            (t, impact)
            for t in _tenants(ledger, tenant)
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
    stay: Annotated[
        bool,
        typer.Option("--stay", help="Keep serving after the call (the console shows it)."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve + simulate the bundled billing call in one process, printing verdicts live and
    the supervisor console's URL (with its token) before the call starts."""
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
        raise typer.Exit(run_demo(settings, fast=fast, stay=stay))
    except CxguardError as exc:
        raise _fail(exc) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
