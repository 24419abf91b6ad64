"""The stream clock a call's speaker turns run on, and when the judge is told it moved on.

One class for the live session (:mod:`~cxguard.runtime.session`) and for recordings judged
offline (:mod:`~cxguard.runtime.offline_call`): ``cxguard eval`` gives the verdicts ``serve``
gives only while both tick at the same stream times, so the rule lives here once.
"""

from __future__ import annotations

from cxguard.model import Speaker

TICK_MS = 100.0
"""How often (stream time) the pipeline is told the stream moved on: the resolution of turn
ends by silence and of handoff graces."""
TRACK_LAG_MS = 1000.0
"""A track further behind than this (or silent) does not hold the stream clock back."""


class StreamClock:
    """How far each track has been heard, and the clock both tracks are known up to."""

    def __init__(self, start_ms: float = 0.0) -> None:
        # A continued session starts where the call's earlier sessions ended.
        self._start_ms = start_ms
        self._track_ms: dict[Speaker, float] = {}
        self._last_tick_ms = start_ms

    def heard(self, speaker: Speaker, end_ms: float) -> None:
        """``speaker``'s track has been heard up to ``end_ms``."""
        self._track_ms[speaker] = max(self._track_ms.get(speaker, 0.0), end_ms)

    @property
    def heard_ms(self) -> float:
        """Stream time heard so far, on either track."""
        return max(self._track_ms.values(), default=self._start_ms)

    @property
    def clock_ms(self) -> float:
        """Stream time up to which both tracks are known (the speaker turns' clock)."""
        ahead = self.heard_ms
        if len(self._track_ms) < 2:
            return ahead
        behind = min(self._track_ms.values())
        return behind if ahead - behind <= TRACK_LAG_MS else ahead

    def tick(self, force: bool = False) -> float | None:
        """The clock time to tell the judge about, when :data:`TICK_MS` has passed since the
        last (or ``force``: a gap in the stream); None when no tick is due."""
        at = self.clock_ms
        if not force and at - self._last_tick_ms < TICK_MS:
            return None
        self._last_tick_ms = at
        return at
