"""Logging for the ``cxguard`` commands: one stderr handler, text or JSON lines, and a filter
that redacts every record (message, arguments, exception text) on its way out.

The filter sits on the *handler*, so it sees records from every logger (ours, websockets',
uvicorn's) that reach it, not only those logged on one logger::

    configure_logging("INFO", fmt="json")
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Literal

from cxguard import pii
from cxguard.errors import ConfigError

LogFormat = Literal["text", "json"]
"""What ``configure_logging`` accepts as ``fmt`` (a plain string is checked at run time)."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replaces each record's message with its redacted form (card numbers, SSNs, CVVs…),
    and its exception and stack text likewise. Never drops a record."""

    def __init__(self, options: pii.PiiOptions = pii.DEFAULT_OPTIONS) -> None:
        super().__init__()
        self._options = options
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have rather than nothing
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = pii.redact(message, self._options), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = pii.redact(record.exc_text, self._options)
        if record.stack_info:
            record.stack_info = pii.redact(record.stack_info, self._options)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    and ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    level: int | str = logging.INFO,
    fmt: LogFormat | str = "text",
    *,
    stream: IO[str] | None = None,
    options: pii.PiiOptions = pii.DEFAULT_OPTIONS,
) -> logging.Handler:
    """Make one redacting stderr handler (or ``stream``) the root logger's only handler."""
    if fmt not in ("text", "json"):
        raise ConfigError(f"unknown log format {fmt!r} (text or json)")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter(options))
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
