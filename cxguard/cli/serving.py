"""``cxguard serve``, ``asr-worker`` and ``demo``: the processes that take live calls."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from cxguard.cli.common import (
    ConfigOpt,
    EvidenceOpt,
    LogFormatOpt,
    app,
    fail,
    log_to_stderr,
)
from cxguard.errors import CxguardError


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

    log_to_stderr(verbose, log_format)
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
        raise fail(exc) from exc


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

    log_to_stderr(verbose, log_format)
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
        raise fail(exc) from exc


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

    log_to_stderr(False, log_format, quiet=logging.INFO if verbose else logging.WARNING)
    try:
        settings = load_settings(
            None,
            port=port,
            redis_url=redis_url,
            evidence_url=evidence or "sqlite:///cxguard-demo-evidence.db",
        )
        raise typer.Exit(run_demo(settings, fast=fast, stay=stay))
    except CxguardError as exc:
        raise fail(exc) from exc
