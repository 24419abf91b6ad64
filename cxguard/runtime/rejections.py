"""Quiet logs under attack: one line per rejected stream, rate-limited, no traceback.

A stream closed for bad input (a protocol violation, a frame the websocket layer refused)
is logged as one ``WARNING`` line without a traceback. Lines are limited per *source* —
remote host, protocol and close code — to ``per_source`` in each ``window_s`` window, and
to ``total`` per window overall; what is held back is counted and reported as one summary
line per window naming the busiest sources (and at :meth:`RejectionLog.flush`, e.g. on
shutdown). Internal errors (close code 1011: our bug, not the peer's) keep their traceback,
under the same limits. Every rejection is counted in ``cxguard_protocol_errors_total``
whether or not it is logged. :meth:`RejectionLog.note` puts other per-stream warnings (a
stream claiming a tenant its signature did not prove) under the same limits.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cxguard.errors import ProtocolError
from cxguard.protocols.base import CloseCode

Source = tuple[str, str, str]
"""(remote host, protocol, close code) — or another reason in place of the close code."""

_MAX_MESSAGE = 200
_TOP = 5


@dataclass
class _Window:
    started: float
    logged: Counter[Source] = field(default_factory=Counter)
    suppressed: Counter[Source] = field(default_factory=Counter)


class RejectionLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        window_s: float = 60.0,
        per_source: int = 3,
        total: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._window_s = window_s
        self._per_source = per_source
        self._total = total
        self._clock = clock
        self._window = _Window(clock())

    def reject(self, protocol: str, remote: str, call_id: str | None, error: ProtocolError) -> bool:
        """Log (or count) one rejected stream; True if a line was written."""
        code = int(error.close_code)
        internal = code == CloseCode.INTERNAL_ERROR
        return self.note(
            (remote, protocol, str(code)),
            logging.ERROR if internal else logging.WARNING,
            "rejected %s stream from %s (call %s): close %d: %.*s",
            protocol,
            remote,
            call_id or "not started",
            code,
            _MAX_MESSAGE,
            str(error),
            exc_info=error.__cause__ if internal else None,
        )

    def note(
        self,
        source: Source,
        level: int,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Any other line about a doubtful stream, under the same limits."""
        self._roll()
        window = self._window
        if window.logged[source] >= self._per_source or window.logged.total() >= self._total:
            window.suppressed[source] += 1
            return False
        window.logged[source] += 1
        self._log.log(level, message, *args, exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Report what the current window held back and start a new window."""
        window, self._window = self._window, _Window(self._clock())
        held = window.suppressed.total()
        if not held:
            return
        top = ", ".join(
            f"{host} {protocol} {reason} x{count}"
            for (host, protocol, reason), count in window.suppressed.most_common(_TOP)
        )
        self._log.warning(
            "suppressed %d more rejected-stream lines in the last %.0f s (top: %s)",
            held,
            self._clock() - window.started,
            top,
        )

    def tick(self) -> None:
        """Report a window that is over (call it now and then, e.g. as a stream ends)."""
        self._roll()

    def _roll(self) -> None:
        if self._clock() - self._window.started >= self._window_s:
            self.flush()
