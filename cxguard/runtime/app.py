"""Process entry points: run the sidecar until stopped, or with one simulated call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from cxguard.runtime.auth import check_exposure
from cxguard.runtime.server import running_sidecar
from cxguard.runtime.services import Listener, Services
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SimulationOptions, SimulationResult, simulate_call

log = logging.getLogger(__name__)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (where the loop supports signal handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # e.g. not on the main thread
            loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_forever(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve until SIGINT/SIGTERM. Refuses (``ConfigError``) to listen beyond loopback with no
    credentials unless ``settings.insecure``; checked before any model is loaded."""
    check_exposure(settings)
    services = await Services.start(settings)
    stop = _stop_on_signals()
    try:
        async with running_sidecar(
            services, settings.host, settings.port, reuse_port=reuse_port
        ) as (sidecar, server):
            for door in sidecar.auth.open_doors:
                log.warning(
                    "/%s admits requests WITHOUT credentials: configure them, or set "
                    "require_auth to refuse such requests",
                    door,
                )
            log.info(
                "cxguard listening on %s",
                ", ".join(
                    f"ws://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets
                ),
            )
            await stop.wait()
    finally:
        await services.close()


async def serve_with_call(
    settings: Settings,
    agent: Path,
    customer: Path,
    options: SimulationOptions,
    listener: Listener | None = None,
    *,
    on_listening: Callable[[int], None] | None = None,
    stay: Callable[[SimulationResult], None] | None = None,
) -> SimulationResult:
    """Start the sidecar on ``settings.port`` (0 = any free port), stream one call, wait for
    every verdict, shut down. ``on_listening(port)`` is told the port before the call;
    with ``stay`` the sidecar goes on serving after the call (``stay(result)`` is called then)
    until SIGINT/SIGTERM, so the console still shows it."""
    services = await Services.start(settings)
    if listener is not None:
        services.listeners.append(listener)
    try:
        async with running_sidecar(services, settings.host, settings.port) as (sidecar, server):
            port = next(iter(server.sockets)).getsockname()[1]
            if on_listening is not None:
                on_listening(port)
            url = f"ws://{settings.host}:{port}/twilio"
            result = await simulate_call(url, agent, customer, options)
            await sidecar.drain()
            if stay is not None:
                stay(result)
                await _stop_on_signals().wait()
        return result
    finally:
        await services.close()


def run_with_call(
    settings: Settings,
    agent: Path,
    customer: Path,
    options: SimulationOptions,
    listener: Listener | None = None,
    *,
    on_listening: Callable[[int], None] | None = None,
    stay: Callable[[SimulationResult], None] | None = None,
) -> SimulationResult:
    return asyncio.run(
        serve_with_call(
            settings, agent, customer, options, listener, on_listening=on_listening, stay=stay
        )
    )
