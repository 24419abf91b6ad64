"""Speaker turns from VAD segments: who holds the floor. Pure and clock-free.

The VAD cuts each speaker's track into *segments* at pauses; people pause 0.5-0.9 s inside a
turn, so the unit the policy judges is the *speaker turn*: what one speaker says until the
other takes the floor. A :class:`TurnAssembler` builds turns from transcribed segments, fed in
the order they closed, and from *ticks* (how far the stream has got, and whether each speaker
is speaking right now). Time is the stream timeline only; the same input gives the same turns,
whether it comes from a live call (``runtime.session``) or a transcript (``policy.offline``).

A turn ends (:class:`TurnEnded`) when

* **floor** — a segment of the other speaker arrives that is not a backchannel, or the other
  speaker has been speaking for longer than any backchannel (``backchannel_max_ms``) while
  this turn's speaker was silent (the floor changed before that speech's segment closed);
* **silence** — its speaker has been silent ``end_silence_ms`` since its last segment (and is
  not speaking again by then), whatever the other speaker does meanwhile; the floor then
  goes to whoever is speaking (ticks say who is, before their segment has closed);
* **max_length** — it reached ``max_turn_ms`` (its speaker's next segment opens a new turn);
* **end** — the call ended.

**Backchannels.** A short segment of the other speaker (``backchannel_max_ms``, readable) whose
words are all listening tokens ("mm-hm", "okay", "yeah, right", "I see") is *held*, not judged
as a floor change. If the turn's speaker goes on, the held segments were backchannels: they are
reported (:class:`BackchannelHeard`, kept in the evidence) and belong to no turn. If instead
the other speaker goes on, or the turn ends by silence, they were the start of the other
speaker's turn and join it. So a backchannel never splits a turn and no words are dropped. A
segment in which ASR heard no words at all (a cough, line noise) is held the same way. A
segment whose text is unknown (ASR failed) is never held: it might have been anything.

**Overlap.** Segments are taken in the order they closed. Speech of the other speaker that
overlaps the turn ends it when that speech's segment closes (unless it is a backchannel); the
turn's speaker's segment still open then becomes a new turn after it. Every segment is in
exactly one turn, or reported as a backchannel.

**Events** that change what later turns are judged against (authentication, intent) are
``defer``-red while a turn is open and released when it ends: a turn is judged on the state of
the conversation as it began (``policy.calls``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from cxguard.model import Segment, SegmentSpan, Speaker, TurnText
from cxguard.policy.readings import turn_readings

E = TypeVar("E")
EndReason = Literal["floor", "silence", "max_length", "end"]

BACKCHANNEL_TOKENS = frozenset(
    {"mm", "mmm", "hm", "hmm", "mhm", "mhmm", "mmhm", "mm-hm", "mm-hmm", "uh-huh", "uh-hum"}
    | {"uh", "um", "huh", "ah", "oh", "ok", "okay", "yeah", "yes", "yep", "yup", "right"}
    | {"sure", "alright", "all right", "i see", "got it", "uh huh", "mm hmm"}
)
"""Listening tokens. Multi-word ones are matched as phrases. "No", "thanks", "bye" are not
here: they answer or close, they do not just listen."""
_PHRASES = sorted((t.split() for t in BACKCHANNEL_TOKENS), key=len, reverse=True)


def is_backchannel(text: str, max_tokens: int = 3) -> bool:
    """ "Mm-hm.", "Okay.", "Yeah, right.", "I see." — at most ``max_tokens`` listening tokens
    and nothing else."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower().replace("’", "'"))
    tokens = 0
    while words:
        phrase = next((p for p in _PHRASES if words[: len(p)] == p), None)
        if phrase is None:
            return False
        words = words[len(phrase) :]
        tokens += 1
    return 0 < tokens <= max_tokens


@dataclass(frozen=True)
class TurnOptions:
    end_silence_ms: float = 1500.0
    """Silence of a turn's speaker that ends the turn even if the other speaker says nothing.
    Longer than the pauses people make inside a turn (0.5-0.9 s)."""
    max_turn_ms: float = 60_000.0
    """A turn this long ends at the end of the segment that reached it."""
    backchannel_max_ms: float = 1500.0
    """Longest segment (voiced span) that may be held as a backchannel."""
    handoff_grace_ms: float = 2000.0
    """After the agent turn that used up a temporal obligation ends, a platform ``handoff``
    event stamped within this much stream time still meets it (``policy.temporal``)."""

    def __post_init__(self) -> None:
        if min(self.end_silence_ms, self.backchannel_max_ms, self.handoff_grace_ms) < 0:
            raise ValueError("turn durations must not be negative")
        if self.max_turn_ms <= 0:
            raise ValueError("max_turn_ms must be positive")


@dataclass(frozen=True)
class HeardSegment:
    """A VAD segment with what ASR heard in it (or a line of an offline transcript)."""

    index: int
    """Per-call segment number (``SegmentSpan.index``)."""
    speaker: Speaker
    start_ms: float
    end_ms: float
    text: str = ""
    undetermined_reason: str | None = None
    """Why the text is unknown (ASR failed, overload); None when ``text`` is what was said."""
    confidence: float | None = None
    partial: bool = False
    """Cut at the VAD's maximum length mid-speech: the speech goes on."""
    readings: tuple[str, ...] = ()
    """With ``undetermined_reason``: what the unsure decodes heard (``AsrError.readings``)."""

    @classmethod
    def of(
        cls,
        index: int,
        segment: Segment,
        text: str = "",
        reason: str | None = None,
        readings: tuple[str, ...] = (),
    ) -> HeardSegment:
        """What ASR made of VAD segment number ``index``."""
        return cls(
            index,
            segment.speaker,
            segment.start_ms,
            segment.end_ms,
            text,
            reason,
            partial=segment.partial,
            readings=readings,
        )

    @property
    def span(self) -> SegmentSpan:
        return SegmentSpan(self.index, self.start_ms, self.end_ms)


@dataclass(frozen=True)
class TurnGrew:
    """A segment joined the open turn; ``turn`` is the turn so far (its index is final)."""

    turn: TurnText


@dataclass(frozen=True)
class TurnEnded:
    turn: TurnText
    reason: EndReason
    backchannels: tuple[HeardSegment, ...] = ()
    """The other speaker's backchannels heard during the turn."""


@dataclass(frozen=True)
class BackchannelHeard:
    segment: HeardSegment
    turn_index: int
    """The turn it was heard in (the other speaker's)."""


@dataclass(frozen=True)
class EventReleased(Generic[E]):
    event: E


Output = TurnGrew | TurnEnded | BackchannelHeard | EventReleased[E]


@dataclass
class _Open:
    index: int
    speaker: Speaker
    segments: list[HeardSegment] = field(default_factory=list)
    backchannels: list[HeardSegment] = field(default_factory=list)


class TurnAssembler(Generic[E]):
    """Segments and ticks in, turns out; see the module doc for the rules."""

    def __init__(self, options: TurnOptions | None = None, first_index: int = 0) -> None:
        self.options = options or TurnOptions()
        self._next = first_index
        self._open: _Open | None = None
        self._holder: Speaker | None = None
        """Who has the floor: the open turn's speaker, or one already speaking whose segment
        has not closed yet, or (after a turn cut at the maximum length) the one who goes on."""
        self._holder_end = 0.0
        self._held: list[HeardSegment] = []
        """The other speaker's possible backchannels, in order."""
        self._deferred: list[E] = []
        self._position = 0.0
        self._speaking: dict[Speaker, float | None] = {}

    # ------------------------------------------------------------------ inputs

    def segment(self, seg: HeardSegment) -> list[Output[E]]:
        """A segment closed (segments in the order they closed)."""
        self._position = max(self._position, seg.end_ms)
        since = self._speaking.get(seg.speaker)
        if since is not None and since <= seg.start_ms:
            self._speaking[seg.speaker] = None  # that speech was this segment
        out: list[Output[E]] = []
        if self._holder is None or seg.speaker == self._holder:
            self._holder = seg.speaker
            out += self._join(seg)
        elif self._is_backchannel(seg):
            self._held.append(seg)
        else:
            out += self._close("floor")
            self._holder = seg.speaker
            held, self._held = self._held, []
            for h in held:
                out += self._join(h, check_length=False)
            out += self._join(seg)
        return out

    def tick(self, at_ms: float, speaking: Mapping[Speaker, float | None]) -> list[Output[E]]:
        """The stream reached ``at_ms``; ``speaking[s]`` is where the speech ``s`` is in the
        middle of began (None: silent)."""
        self._position = max(self._position, at_ms)
        self._speaking = dict(speaking)
        out: list[Output[E]] = []
        while self._holder is not None and self._holder_silent():
            out += self._close("silence")
            self._holder = None
            held, self._held = self._held, []
            if held:
                self._holder = held[0].speaker
                for h in held:
                    out += self._join(h)
        if self._holder is not None and self._outspoken():
            out += self._close("floor")
            taker = next(s for s in self._speaking if s != self._holder)
            self._holder, self._holder_end = taker, self._speaking[taker] or 0.0
            held, self._held = self._held, []
            for h in held:
                out += self._join(h, check_length=False)
        if self._holder is None:
            # Whoever is speaking now has the floor, before their segment closes.
            talking = [(since, s) for s, since in self._speaking.items() if since is not None]
            if talking:
                since, self._holder = min(talking)
                self._holder_end = since
        return out

    def defer(self, event: E) -> list[Output[E]]:
        """An event to apply at the next turn boundary: now if no turn is open."""
        if self._open is None:
            return [EventReleased(event)]
        self._deferred.append(event)
        return []

    def finish(self) -> list[Output[E]]:
        """The call ended: close everything; held segments become a turn of their own."""
        out = self._close("end")
        held, self._held = self._held, []
        for h in held:
            self._holder = h.speaker
            out += self._join(h, check_length=False)
        out += self._close("end")
        self._holder = None
        out += [EventReleased(e) for e in self._deferred]
        self._deferred = []
        return out

    # ------------------------------------------------------------------ what it knows

    @property
    def position_ms(self) -> float:
        return self._position

    @property
    def open_turn(self) -> int | None:
        """The index of the turn being spoken, if any."""
        return self._open.index if self._open is not None else None

    def settled_ms(self, speaker: Speaker) -> float:
        """Every turn of ``speaker`` that starts before this time has ended already (the open
        turn, held segments and speech in progress count as starting where they start)."""
        starts = [self._position]
        if self._open is not None and self._open.speaker == speaker:
            starts.append(self._open.segments[0].start_ms)
        starts += [h.start_ms for h in self._held if h.speaker == speaker]
        if (since := self._speaking.get(speaker)) is not None:
            starts.append(since)
        return min(starts)

    # ------------------------------------------------------------------ transitions

    def _is_backchannel(self, seg: HeardSegment) -> bool:
        return (
            seg.undetermined_reason is None
            and not seg.partial
            and seg.end_ms - seg.start_ms <= self.options.backchannel_max_ms
            and (is_backchannel(seg.text) or not seg.text.strip())
        )

    def _holder_silent(self) -> bool:
        assert self._holder is not None
        deadline = self._holder_end + self.options.end_silence_ms
        if self._position < deadline:
            return False
        since = self._speaking.get(self._holder)
        return since is None or since > deadline

    def _outspoken(self) -> bool:
        """The other speaker has been speaking longer than any backchannel, and the turn's
        speaker was silent when that became clear: the floor has changed (their segment may
        close much later)."""
        other = next((s for s, since in self._speaking.items() if s != self._holder), None)
        since = self._speaking.get(other) if other is not None else None
        if since is None:
            return False
        clear = since + self.options.backchannel_max_ms
        if self._position < clear or self._holder_end > clear:
            return False
        own = self._speaking.get(self._holder) if self._holder is not None else None
        return own is None or own > clear

    def _join(self, seg: HeardSegment, *, check_length: bool = True) -> list[Output[E]]:
        out: list[Output[E]] = []
        if self._open is None:
            self._open = _Open(self._next, seg.speaker)
            self._next += 1
        turn = self._open
        for h in self._held:  # the turn's speaker went on: they were backchannels
            turn.backchannels.append(h)
            out.append(BackchannelHeard(h, turn.index))
        self._held = []
        turn.segments.append(seg)
        self._holder_end = seg.end_ms
        too_long = seg.end_ms - turn.segments[0].start_ms >= self.options.max_turn_ms
        if check_length and too_long:
            out += self._close("max_length")
        else:
            out.append(TurnGrew(_turn_text(turn)))
        return out

    def _close(self, reason: EndReason) -> list[Output[E]]:
        turn, self._open = self._open, None
        if turn is None:
            return []
        released: list[Output[E]] = [EventReleased(e) for e in self._deferred]
        self._deferred = []
        return [TurnEnded(_turn_text(turn), reason, tuple(turn.backchannels)), *released]


def _turn_text(turn: _Open) -> TurnText:
    segs = turn.segments
    words = [s.text.strip() for s in segs]  # an unreadable segment's text is "" (or partial)
    missing = next((s for s in segs if s.undetermined_reason is not None), None)
    reason = None
    readings: tuple[str, ...] = ()
    if missing is not None:
        if sum(s.undetermined_reason is not None for s in segs) == 1:  # its one unknown
            readings = turn_readings(words, segs.index(missing), missing.readings)
        reason = missing.undetermined_reason
        if len(segs) > 1:
            reason = f"segment {missing.index} of the turn: {reason}"
    confidences = [s.confidence for s in segs if s.confidence is not None]
    return TurnText(
        turn.index,
        turn.speaker,
        " ".join(w for w in words if w),
        segs[0].start_ms,
        segs[-1].end_ms,
        undetermined_reason=reason,
        confidence=min(confidences) if confidences else None,
        segments=tuple(s.span for s in segs),
        readings=readings,
    )
