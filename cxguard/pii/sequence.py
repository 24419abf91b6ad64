"""Numbers read across segments and turns of one speaker.

A caller reads a card in groups with pauses: "4111" … "1111" … "1111 1111". Each group may
land in its own VAD segment, sometimes in its own speaker turn (the agent says "mm-hm" in
between). The texts of one speaker are linked into a *chain* when the last run of the earlier
text touches its end and the first run of the later one touches its start (only pauses,
fillers and connector words around them), neither is an amount/date/time/count, and the pause
between them (stream time) is at most ``window_ms``. Texts without such digits ("sorry, just
a moment", "that's $45.20") are transparent; a text whose digits are hemmed in by other words
ends the chain.

Everything here is pure: the caller keeps the previous texts (what :func:`carry` returns) and
passes them back with the next text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from cxguard.pii.detect import DEFAULT_OPTIONS, Finding, Hit, PiiOptions, findings, sequence_hits
from cxguard.pii.text import Atom, Parsed, Run, parse

MAX_PIECES = 8
"""A chain keeps at most this many texts (a card in single digits fits in far fewer
segments: pauses between digits are shorter than a VAD hangover)."""
MAX_DIGITS = 40


@dataclass(frozen=True)
class TimedText:
    """One segment's or turn's text with its place on the stream timeline."""

    text: str
    start_ms: float
    end_ms: float


def _digit_bearing(parsed: Parsed) -> bool:
    """Has digits that may belong to a sequence (amounts, dates, counts do not)."""
    return any(run.candidate for run in parsed.runs)


def head(parsed: Parsed) -> Run | None:
    """The run that may continue a number from an earlier text."""
    first = parsed.runs[0] if parsed.runs else None
    return first if first is not None and first.at_start and first.candidate else None


def tail(parsed: Parsed) -> Run | None:
    """The run that a later text may continue."""
    last = parsed.runs[-1] if parsed.runs else None
    return last if last is not None and last.at_end and last.candidate else None


@dataclass(frozen=True)
class Piece:
    text: TimedText
    parsed: Parsed
    run: Run


def chain_into(previous: Sequence[TimedText], current: TimedText, window_ms: float) -> list[Piece]:
    """The earlier pieces (oldest first) of the number that ``current``'s first run
    continues; empty when it continues none."""
    if head(parse(current.text)) is None:
        return []
    pieces: list[Piece] = []
    next_start, digits = current.start_ms, 0
    for earlier in reversed(previous):
        parsed = parse(earlier.text)
        if not _digit_bearing(parsed):
            continue
        run = tail(parsed)
        if run is None or next_start - earlier.end_ms > window_ms:
            break
        pieces.insert(0, Piece(earlier, parsed, run))
        digits += len(run.digits)
        if run is not parsed.runs[0] or not run.at_start or len(pieces) >= MAX_PIECES - 1:
            break
        if digits >= MAX_DIGITS:
            break
        next_start = earlier.start_ms
    return pieces


def carry(
    previous: Sequence[TimedText], current: TimedText, window_ms: float
) -> tuple[TimedText, ...]:
    """What to keep of one speaker's texts after ``current``, for the next call."""
    parsed = parse(current.text)
    if not _digit_bearing(parsed):
        if previous and current.end_ms - previous[-1].end_ms > window_ms:
            return ()
        return tuple(previous)
    if tail(parsed) is None:
        return ()
    run = parsed.runs[0]
    if len(parsed.runs) == 1 and run.at_start:
        pieces = [p.text for p in chain_into(previous, current, window_ms)]
        return (*pieces, current)[-MAX_PIECES:]
    return (current,)


def _composite(pieces: list[Piece], last: Piece) -> tuple[list[Atom], list[int]]:
    """The atoms of the chain, each piece a group of its own, and which piece each is from."""
    atoms: list[Atom] = []
    sources: list[int] = []
    group = 0
    for index, piece in enumerate([*pieces, last]):
        own = (piece.run.lead if index else ()) + piece.run.atoms
        base = own[0].group
        for atom in own:
            atoms.append(replace(atom, group=group + atom.group - base))
            sources.append(index)
        group = atoms[-1].group + 1
    return atoms, sources


def sequence_findings(
    previous: Sequence[TimedText],
    current: TimedText,
    options: PiiOptions = DEFAULT_OPTIONS,
) -> list[Finding]:
    """The sensitive numbers in ``current``, including those it *completes*: a number whose
    earlier groups the same speaker read in ``previous`` texts (oldest first) within
    ``options.window_ms``. Offsets are in ``current.text``."""
    found = findings(current.text, options)
    pieces = chain_into(previous, current, options.window_ms)
    if not pieces:
        return found
    parsed = parse(current.text)
    run = head(parsed)
    assert run is not None  # chain_into found pieces, so there is a head
    last = Piece(current, parsed, run)
    atoms, sources = _composite(pieces, last)
    every = [*pieces, last]

    def near(kind: str, before: int, after: int, lo: int, hi: int) -> bool:
        for index in sorted(set(sources[lo : hi + 1])):
            own = [a for a, s in zip(atoms, sources, strict=True) if s == index]
            parsed = every[index].parsed
            if parsed.near(kind, own[0].first_tok, own[-1].last_tok, before, after):
                return True
        return False

    mine = len(pieces)
    for hit in sequence_hits(atoms, near, options):
        used = sorted(set(sources[hit.lo : hit.hi + 1]))
        if used[-1] != mine or len(used) < 2:
            continue  # finished earlier, or wholly in this text (found above)
        own = [atoms[k] for k in range(hit.lo, hit.hi + 1) if sources[k] == mine]
        start, end = own[0].start, own[-1].end
        if any(f.start < end and start < f.end for f in found):
            continue
        found.append(_across(hit, start, end, len(used)))
    return sorted(found, key=lambda f: f.start)


def _across(hit: Hit, start: int, end: int, pieces: int) -> Finding:
    evidence = (
        f"{hit.evidence}, read across {pieces} segments/turns; last part at chars {start}-{end}"
    )
    return Finding(hit.kind, start, end, evidence, hit.digits, pieces)
