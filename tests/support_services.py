"""Servers that tests and benchmarks start for themselves. Private Redis and PostgreSQL, each
on its own port and data directory, so stopping, freezing or locking one out never touches the
shared instances on 6379 / 5432; and a real sidecar on a free loopback port.

    with RedisServer() as redis:          # redis.url, .stop(), .start(), .freeze(), .thaw()
    with PostgresCluster() as pg:         # pg.url, .stop(), .start(), .freeze(), .thaw(),
                                          # .revoke(), .restore()
    async with serving(ledger_settings(tmp_path), by_call) as (side, host):
        ...                               # ws://{host}/twilio; by_call.turns / .verdicts
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from cxguard.model import CallInfo, TurnText, Verdict
from cxguard.runtime.server import Sidecar, running_sidecar
from cxguard.runtime.services import Listener, Services
from cxguard.runtime.settings import Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def _children(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parents.items() if p in frontier]
        found += frontier
    return found


class RedisServer:
    """``redis-server`` with an fsync'd append-only file, so a restart keeps what it took."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cxg-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.thaw()
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresCluster:
    """A throwaway cluster run as the ``postgres`` user, with a login role ``cxguard`` that
    owns the database ``evidence`` (trust authentication on loopback)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="cxg-pg-"))
        self.data = self.base / "data"
        shutil.chown(self.base, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://cxguard@127.0.0.1:{self.port}/evidence"

    def _run(self, tool: str, *args: str) -> str:
        out = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return out.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement,
        )  # fmt: skip

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-w", "-l", str(self.base / "log"), "-o",
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        )  # fmt: skip
        self.running = True

    def create(self) -> None:
        self.sql("CREATE ROLE cxguard LOGIN")
        self.sql("CREATE DATABASE evidence OWNER cxguard")

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self.thaw()
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")
            self.running = False

    def _pids(self) -> list[int]:
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return _children(pid)

    def freeze(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def revoke(self) -> None:
        """Lock the ledger's role out: no new logins, its sessions ended."""
        self.sql("ALTER ROLE cxguard NOLOGIN")
        self.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'cxguard'")

    def restore(self) -> None:
        self.sql("ALTER ROLE cxguard LOGIN")

    def __enter__(self) -> PostgresCluster:
        self.start()
        self.create()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def ledger_settings(tmp_path: Path, **settings: Any) -> Settings:
    """A sidecar's settings with its own SQLite ledger in ``tmp_path`` (port chosen by
    :func:`serving`); ``settings`` are the test's own (tenants, Redis, ...)."""
    return Settings(port=0, evidence_url=f"sqlite:///{tmp_path / 'ev.db'}", **settings)


@asynccontextmanager
async def serving(
    settings: Settings, *listeners: Listener, early: Sequence[Listener] = ()
) -> AsyncIterator[tuple[Sidecar, str]]:
    """A started sidecar and its ``127.0.0.1:PORT``; ``listeners`` hear each turn's verdicts
    of record, ``early`` the mid-turn ones. Its services are closed on the way out, whatever
    the test did."""
    services = await Services.start(settings)
    services.listeners.extend(listeners)
    services.early_listeners.extend(early)
    try:
        async with running_sidecar(services, "127.0.0.1", 0) as (side, server):
            port = next(iter(server.sockets)).getsockname()[1]
            yield side, f"127.0.0.1:{port}"
    finally:
        await services.close()


class ByCall:
    """A listener that keeps turns and verdicts per call id (tests that play several calls
    through one sidecar compare them)."""

    def __init__(self) -> None:
        self.turns: dict[str, list[TurnText]] = {}
        self.verdicts: dict[str, list[Verdict]] = {}

    def __call__(self, info: CallInfo, text: TurnText | None, verdicts: list[Verdict]) -> None:
        if text is not None:
            self.turns.setdefault(info.call_id, []).append(text)
        self.verdicts.setdefault(info.call_id, []).extend(verdicts)
