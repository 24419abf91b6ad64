"""Decode strategies: how one segment is decoded, named so the evidence can say which one spoke.

A strategy is written ``[fallback:]WINDOW-bN`` or ``[fallback:]WINDOW-tT``:

* ``WINDOW`` — ``turn`` (the encoder window sized to the segment, at least ``min_window_s``) or
  ``full`` (Whisper's padded 30 s window);
* ``bN`` — beam search of width N (``b1`` is greedy);
* ``tT`` — sampling at temperature T (0 < T <= 1) from a seeded generator: the same audio gives
  the same text on every run, so evidence stays reproducible;
* ``fallback:`` — decoded by the larger fallback model (``base`` when its packages are
  installed) instead of the primary one.

The first decode of a segment is the options' ``window`` + ``beam_size``; when its text fails a
guard, the ``fallbacks`` are tried in order until one passes, and only then is the segment
refused (:class:`~cxguard.asr.AsrRejected`, an ``undetermined`` turn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cxguard.errors import ConfigError

Window = Literal["turn", "full"]
_NAME = re.compile(r"^(fallback:)?(turn|full)-(?:b(\d+)|t(0?\.\d+|1(?:\.0*)?))$")


@dataclass(frozen=True)
class Decode:
    window: Window = "turn"
    beam_size: int = 1
    temperature: float = 0.0
    """0: deterministic (greedy or beam); > 0: seeded sampling, ``beam_size`` 1."""
    fallback_model: bool = False

    @property
    def name(self) -> str:
        how = f"t{self.temperature:g}" if self.temperature else f"b{self.beam_size}"
        return f"{'fallback:' if self.fallback_model else ''}{self.window}-{how}"

    @property
    def greedy(self) -> bool:
        return self.beam_size == 1 and not self.temperature

    @classmethod
    def parse(cls, name: str) -> Decode:
        m = _NAME.match(name.strip())
        if m is None:
            raise ConfigError(
                f"asr decode strategy {name!r}: expected [fallback:]turn|full-bN|tT, "
                "e.g. turn-b5, full-b5, full-t0.4, fallback:full-b5"
            )
        fallback, window, beam, temp = m.groups()
        if beam is not None:
            if not 1 <= int(beam) <= 16:
                raise ConfigError(f"asr decode strategy {name!r}: beam must be 1..16")
            return cls(window, int(beam), 0.0, bool(fallback))  # type: ignore[arg-type]
        return cls(window, 1, float(temp), bool(fallback))  # type: ignore[arg-type]


DEFAULT_FALLBACKS = ("turn-b5", "full-b5")
"""Measured in benchmarks/asr_bench.py (docs/asr.md): beam search in the turn window ends most
greedy loops and lifts most low-confidence short segments for ~0.2 s; the full window rescues
most of the rest. ``fallback:full-b5`` (base) is not a default: on 2 CPU cores it rescued one
more segment of 180 at +0.6 s per segment on average (21 s on one), and in replayed calls its
cost queued other turns past ``asr.max_wait_ms``; add it where a GPU makes it cheap."""
