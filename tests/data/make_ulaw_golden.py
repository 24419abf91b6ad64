"""Regenerate ``ulaw_golden.bin.gz`` from CPython's ``audioop`` (run once, on Python <= 3.12).

    .venv/bin/python -W ignore::DeprecationWarning tests/data/make_ulaw_golden.py

The file is gzip (mtime 0) of: ``audioop.ulaw2lin(bytes(range(256)), 2)`` (512 bytes, int16
little-endian) followed by ``audioop.lin2ulaw(<every int16 from -32768 to 32767, LE>, 2)``
(65,536 bytes). It is generated from audioop, never from cxguard's codec, so the test that
compares the two is a real check.
"""

from __future__ import annotations

import audioop  # type: ignore[import-not-found,unused-ignore]
import gzip
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    assert sys.byteorder == "little", "audioop works in native byte order; the file is LE"
    decoded = audioop.ulaw2lin(bytes(range(256)), 2)
    sweep = np.arange(-32768, 32768, dtype="<i2").tobytes()
    encoded = audioop.lin2ulaw(sweep, 2)
    out = Path(__file__).with_name("ulaw_golden.bin.gz")
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(decoded + encoded)
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
