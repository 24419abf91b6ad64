"""Log lines never carry a card number, SSN or CVV, in text or JSON format."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cxguard.errors import ConfigError
from cxguard.runtime.logs import configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _boom() -> None:
    raise ValueError("row for 4111 1111 1111 1111 rejected")


@pytest.mark.usefixtures("restore_root")
def test_text_lines_are_redacted_message_args_and_traceback() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    log = logging.getLogger("websockets.server")  # any logger reaching the handler
    log.info("call %s: customer said %s", "CA1", "my SSN is 123-45-6789")
    try:
        _boom()
    except ValueError:
        logging.getLogger("cxguard.runtime").exception("could not process %s", "CVV 123")
    logging.getLogger("x").debug("not shown 4111111111111111")
    text = out.getvalue()
    assert "call CA1: customer said my SSN is [SSN]" in text
    assert "could not process CVV [CVV]" in text
    assert "ValueError: row for [CARD] rejected" in text
    for secret in ("123-45-6789", "4111", "CVV 123", "not shown"):
        assert secret not in text


@pytest.mark.usefixtures("restore_root")
def test_json_lines() -> None:
    out = io.StringIO()
    configure_logging(logging.WARNING, "json", stream=out)
    try:
        _boom()
    except ValueError:
        logging.getLogger("cxguard.session").error(
            "card four one one one one one one one one one one one one one one one", exc_info=True
        )
    logging.getLogger("cxguard.session").info("dropped")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "cxguard.session"
    assert record["message"] == "card [CARD]"
    assert record["ts"].endswith("Z") and "ValueError: row for [CARD]" in record["exc"]


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown log format 'xml'"):
        configure_logging("INFO", "xml")


def test_the_cli_refuses_an_unknown_log_format() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cxguard.cli", "demo", "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown log format 'xml'" in done.stderr
