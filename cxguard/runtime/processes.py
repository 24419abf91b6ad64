"""``cxguard serve --workers N``: N sidecar processes on one port.

Each child is a whole sidecar (its own event loop, services and calls) listening with
SO_REUSEPORT, so the kernel spreads new connections over them and a call stays in the process
its connection reached. Each child keeps its own state dir (spool, outbox, instance id:
``<state_dir>/process-<i>``); what processes must share — the ledger, the nonce store, alerts,
pooled ASR — goes through PostgreSQL and Redis as between sidecars on different hosts. The
parent only supervises: SIGTERM/SIGINT is passed on (each child drains its calls), a child
that dies is started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
from dataclasses import replace
from multiprocessing.process import BaseProcess

from cxguard.errors import ConfigError
from cxguard.runtime.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0


def _child(settings: Settings, level: int, fmt: str) -> None:
    from cxguard.runtime.app import serve_forever
    from cxguard.runtime.logs import configure_logging

    configure_logging(level, fmt)
    asyncio.run(serve_forever(settings, reuse_port=True))


def child_settings(settings: Settings, index: int) -> Settings:
    from cxguard.runtime.evidence_writer import state_dir

    own = str(state_dir(settings) / f"process-{index}")
    return replace(settings, processes=1, ledger=replace(settings.ledger, state_dir=own))


def serve_processes(settings: Settings, *, level: int = logging.INFO, fmt: str = "text") -> int:
    """Run ``settings.processes`` sidecars until SIGTERM/SIGINT; the worst child exit code."""
    from cxguard.runtime.auth import check_exposure

    if settings.port == 0:
        raise ConfigError("serve --workers N needs a fixed port (not 0)")
    check_exposure(settings)
    ctx = multiprocessing.get_context("spawn")  # no event loop or model copied by fork
    stopping = threading.Event()

    def start(i: int) -> BaseProcess:
        proc = ctx.Process(
            target=_child, args=(child_settings(settings, i), level, fmt), name=f"sidecar-{i}"
        )
        proc.start()
        return proc

    procs = {i: start(i) for i in range(settings.processes)}

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the child drains its calls, then exits

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    log.info("cxguard: %d sidecar processes on port %d", settings.processes, settings.port)
    while not stopping.is_set():
        for i, proc in list(procs.items()):
            proc.join(timeout=0.5)
            if not proc.is_alive() and not stopping.is_set():
                log.error("sidecar process %d exited (%s); starting it again", i, proc.exitcode)
                stopping.wait(RESTART_DELAY_S)
                if not stopping.is_set():
                    procs[i] = start(i)
    for proc in procs.values():
        proc.join()
    return max((abs(p.exitcode or 0) for p in procs.values()), default=0)
