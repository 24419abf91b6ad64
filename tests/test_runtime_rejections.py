"""The rejected-stream log: one line per stream, limited per source and overall, counted."""

from __future__ import annotations

import logging

import pytest

from cxguard.errors import ProtocolError
from cxguard.protocols.base import CloseCode
from cxguard.runtime.rejections import RejectionLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test.rejections")
    return logging.getLogger("test.rejections")


def bad(
    code: CloseCode = CloseCode.INVALID_PAYLOAD, text: str = "frame is not JSON"
) -> ProtocolError:
    return ProtocolError(text, code)


def test_lines_are_limited_per_source_and_the_rest_summarised(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    rejections = RejectionLog(log, window_s=60, per_source=2, total=10, clock=clock)
    written = [rejections.reject("twilio", "10.0.0.1", "CA1", bad()) for _ in range(5)]
    assert written == [True, True, False, False, False]
    assert rejections.reject("twilio", "10.0.0.2", None, bad())  # another source
    assert rejections.reject("twilio", "10.0.0.1", None, bad(CloseCode.UNSUPPORTED_DATA))
    lines = [r.getMessage() for r in caplog.records]
    assert (
        lines[0] == "rejected twilio stream from 10.0.0.1 (call CA1): close 1007: frame is not JSON"
    )
    assert "(call not started)" in lines[2]
    clock.now = 61
    rejections.tick()
    assert caplog.records[-1].getMessage() == (
        "suppressed 3 more rejected-stream lines in the last 61 s (top: 10.0.0.1 twilio 1007 x3)"
    )
    assert rejections.reject("twilio", "10.0.0.1", None, bad())  # a new window
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in caplog.records)


def test_the_total_caps_many_sources(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    rejections = RejectionLog(log, per_source=5, total=4, clock=Clock())
    for i in range(100):
        rejections.reject("audiohook", f"10.0.{i}.1", None, bad())
    rejections.flush()
    assert len(caplog.records) == 5
    assert caplog.records[-1].getMessage().startswith("suppressed 96 more")
    rejections.flush()  # nothing held back: no line
    assert len(caplog.records) == 5


def test_long_messages_are_cut(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    RejectionLog(log, clock=Clock()).reject("twilio", "h", None, bad(text="x" * 5000))
    assert len(caplog.records[0].getMessage()) < 300


def test_internal_errors_keep_their_traceback(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    error = ProtocolError("internal error: KeyError", CloseCode.INTERNAL_ERROR)
    try:
        raise KeyError("bug")
    except KeyError as exc:
        error.__cause__ = exc
    RejectionLog(log, clock=Clock()).reject("twilio", "h", None, error)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
