"""VadSegmenter on real audio: the bundled demo call (synthetic speech with known boundaries)
and an OSR recording of read Harvard sentences (real human speech).

Boundary tolerances, from what webrtcvad does (measured numbers are in tests/data/README.md):

- start: the onset run's first voiced frame, so the error is frame quantisation (20 ms) plus
  a weak first phoneme; allowed ±40 ms (two frames).
- end: webrtcvad keeps saying "speech" for 3–5 frames after the energy stops (its own
  overhang, 60–100 ms at mode 2, 20 ms frames) on top of frame quantisation, so a turn ends
  up to ~130 ms late; allowed -40..+160 ms.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cxguard.audio.codec import ulaw_decode
from cxguard.audio.files import read_audio, read_wav_ulaw
from cxguard.audio.resample import resample
from cxguard.audio.vad import VadOptions, VadSegmenter
from cxguard.errors import AudioError, ConfigError
from cxguard.model import Segment, Speaker

DEMO = Path(__file__).parents[1] / "cxguard" / "data" / "demo"
DATA = Path(__file__).parent / "data"
START_TOL_MS = 40.0
END_EARLY_MS, END_LATE_MS = 40.0, 160.0
RATE = 8000


@functools.cache
def _demo() -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((DEMO / "turns.json").read_text())
    return meta


@functools.cache
def _track(speaker: Speaker) -> bytes:
    raw, rate = read_wav_ulaw(DEMO / f"{speaker}.wav")
    assert rate == RATE
    return raw


def _expected(speaker: Speaker) -> list[dict[str, Any]]:
    return [t for t in _demo()["turns"] if t["speaker"] == speaker]


def _feed(
    seg: VadSegmenter, chunks: Iterable[tuple[bytes, float]], flush: bool = True
) -> list[Segment]:
    """Feed (μ-law payload, start_ms) pairs as a protocol would deliver them."""
    turns: list[Segment] = []
    for payload, start_ms in chunks:
        turns += seg.feed(ulaw_decode(payload), start_ms)
    if flush:
        turns += seg.flush()
    return turns


def _chunks(
    raw: bytes, sizes: Sequence[int] | int, offset_ms: float = 0.0
) -> list[tuple[bytes, float]]:
    out, pos, i = [], 0, 0
    while pos < len(raw):
        size = sizes if isinstance(sizes, int) else sizes[i % len(sizes)]
        out.append((raw[pos : pos + size], offset_ms + pos * 1000 / RATE))
        pos, i = pos + size, i + 1
    return out


def _segment(speaker: Speaker, sizes: Sequence[int] | int = 160, **opts: Any) -> list[Segment]:
    seg = VadSegmenter(speaker, RATE, VadOptions(**opts))
    return _feed(seg, _chunks(_track(speaker), sizes))


def _overlapping(turn: Segment, expected: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in expected if turn.start_ms < e["end_ms"] and turn.end_ms > e["start_ms"]]


def _speech(speaker: Speaker, index: int, from_ms: float, ms: float) -> np.ndarray:
    """``ms`` of one demo line's audio, starting ``from_ms`` into it."""
    start = _demo()["turns"][index]["start_ms"] + from_ms
    lo = int(start * RATE / 1000)
    return ulaw_decode(_track(speaker)[lo : lo + int(ms * RATE / 1000)])


def _silence(ms: float) -> np.ndarray:
    return np.zeros(int(ms * RATE / 1000), dtype=np.int16)


def _run(seg: VadSegmenter, pcm: np.ndarray, chunk: int = 160) -> list[Segment]:
    turns: list[Segment] = []
    for pos in range(0, len(pcm), chunk):
        turns += seg.feed(pcm[pos : pos + chunk], pos * 1000 / seg.sample_rate)
    return turns


# ------------------------------------------------------------------------- the demo call


@pytest.mark.parametrize("speaker", ["agent", "customer"])
def test_demo_call_every_line_is_found_once_within_tolerance(speaker: Speaker) -> None:
    expected = _expected(speaker)
    turns = _segment(speaker)
    assert len(turns) == len(expected)
    for turn in turns:  # nothing in silence, nothing merged
        assert len(_overlapping(turn, expected)) == 1
    for exp in expected:
        (turn,) = [t for t in turns if exp in _overlapping(t, expected)]
        assert abs(turn.start_ms - exp["start_ms"]) <= START_TOL_MS
        assert -END_EARLY_MS <= turn.end_ms - exp["end_ms"] <= END_LATE_MS
        assert turn.speaker == speaker and not turn.partial
        # 16 kHz for Whisper, with 200 ms pre-roll and 100 ms post-roll around the speech.
        assert turn.sample_rate == 16000
        assert len(turn.pcm16) / 2 / 16 == pytest.approx(turn.end_ms - turn.start_ms + 300, abs=1)


def test_chunk_size_does_not_change_the_turns() -> None:
    twilio = _segment("customer", 160)
    assert _segment("customer", 8000) == twilio
    odd = list(np.random.default_rng(7).integers(1, 3000, 50))
    assert _segment("customer", odd) == twilio


def test_turn_times_come_from_the_stream_timeline() -> None:
    plain = _segment("agent", 160)
    seg = VadSegmenter("agent", RATE)
    shifted = _feed(seg, _chunks(_track("agent"), 160, offset_ms=100_000.0))
    assert [(t.start_ms - 100_000, t.end_ms - 100_000, t.pcm16) for t in shifted] == [
        (t.start_ms, t.end_ms, t.pcm16) for t in plain
    ]


def test_chunks_missing_in_silence_are_treated_as_silence() -> None:
    """A stream that skips silent stretches (timestamps jump) gives the very same turns."""
    expected = _expected("customer")
    kept = [
        (payload, start)
        for payload, start in _chunks(_track("customer"), 160)
        if any(e["start_ms"] - 800 <= start <= e["end_ms"] + 800 for e in expected)
    ]
    assert len(kept) < len(_track("customer")) // 160 // 2  # most of the track is dropped
    assert _feed(VadSegmenter("customer", RATE), kept) == _segment("customer")


def test_short_jump_inside_a_turn_keeps_one_turn_and_a_long_one_splits_it() -> None:
    line = _expected("agent")[0]
    mid = line["start_ms"] + 2000

    def without(ms: float) -> list[Segment]:
        chunks = [c for c in _chunks(_track("agent"), 160) if not mid <= c[1] < mid + ms]
        return [t for t in _feed(VadSegmenter("agent", RATE), chunks) if t.start_ms < 8000]

    (one,) = without(100)
    assert abs(one.start_ms - line["start_ms"]) <= START_TOL_MS
    assert -END_EARLY_MS <= one.end_ms - line["end_ms"] <= END_LATE_MS
    first, second = without(600)
    assert first.end_ms <= mid and second.start_ms >= mid + 600


def test_gap_closes_the_open_turn_at_its_last_voiced_frame() -> None:
    line = _expected("agent")[1]
    seg = VadSegmenter("agent", RATE)
    head = _chunks(_track("agent"), 160)
    cut = int((line["start_ms"] + 1500) * RATE / 1000) // 160
    before = _feed(seg, head[:cut], flush=False)
    assert seg.in_speech
    gap_start = head[cut][1]
    (closed,) = seg.gap(gap_start, gap_start + 5000)
    assert not seg.in_speech
    assert abs(closed.start_ms - line["start_ms"]) <= START_TOL_MS
    assert gap_start - 200 <= closed.end_ms <= gap_start  # ended by the gap, not the hangover
    assert seg.gap(gap_start + 5000, gap_start + 6000) == []  # nothing open: nothing to close
    # The timeline resumes after the gap: later turns keep their stream positions.
    after = _feed(seg, [(p, s + 6000) for p, s in head[cut:]])
    rest_of_line, *later = after
    assert gap_start + 6000 <= rest_of_line.start_ms <= line["end_ms"] + 6000
    reference = [t for t in _segment("agent") if t.start_ms > line["end_ms"]]
    assert [(t.start_ms, t.end_ms) for t in later] == [
        (t.start_ms + 6000, t.end_ms + 6000) for t in reference
    ]
    assert len(before) == 1  # the line before, closed by its hangover


def test_gap_must_not_end_before_it_starts() -> None:
    with pytest.raises(AudioError):
        VadSegmenter("agent").gap(1000, 999)


def test_long_turns_are_cut_into_contiguous_partial_pieces() -> None:
    # No post-roll: a piece that reaches the maximum in a pause closes there, before the
    # post-roll of the uncut turn would have been collected.
    whole = _segment("agent", output_rate=RATE, post_roll_ms=0)
    pieces = _segment("agent", output_rate=RATE, post_roll_ms=0, max_turn_ms=2000)
    assert len(pieces) > len(whole)
    cut_at_a_pause = False
    for turn in whole:
        mine = [p for p in pieces if turn.start_ms <= p.start_ms < turn.end_ms]
        assert [p.partial for p in mine] == [True] * (len(mine) - 1) + [False]
        assert mine[0].start_ms == turn.start_ms and mine[-1].end_ms == turn.end_ms
        for a, b in itertools.pairwise(mine):
            assert a.end_ms == b.start_ms
        assert all(p.end_ms - p.start_ms <= 2000 for p in mine)
        # No audio lost or repeated: the pieces' pcm is the whole turn's pcm.
        assert b"".join(p.pcm16 for p in mine) == turn.pcm16
        cut_at_a_pause |= any(p.end_ms - p.start_ms < 2000 for p in mine[:-1])
    assert cut_at_a_pause  # cuts prefer the latest short pause over a hard cut


def test_flush_closes_a_turn_the_stream_ended_in() -> None:
    line = _expected("customer")[0]
    end = int((line["start_ms"] + 1200) * RATE / 1000)
    seg = VadSegmenter("customer", RATE)
    assert seg.speech_start_ms is None
    assert _feed(seg, _chunks(_track("customer")[:end], 160), flush=False) == []
    assert seg.in_speech
    since = seg.speech_start_ms  # the open segment's start, known before it closes
    assert since is not None and abs(since - line["start_ms"]) <= START_TOL_MS
    (turn,) = seg.flush()
    assert turn.start_ms == since
    assert not seg.in_speech and not turn.partial and seg.speech_start_ms is None
    assert abs(turn.start_ms - line["start_ms"]) <= START_TOL_MS
    assert turn.end_ms <= end * 1000 / RATE
    assert seg.flush() == []


def test_flush_at_a_later_time_counts_the_rest_as_silence() -> None:
    seg = VadSegmenter("agent", RATE, VadOptions(output_rate=RATE))
    speech = _speech("agent", 0, 500, 1000)
    assert _run(seg, speech) == []
    (turn,) = seg.flush(at_ms=60_000)
    assert turn.end_ms <= 1000
    # The post-roll comes from the implied silence: zeros, 100 ms of them.
    assert len(turn.pcm16) // 2 == pytest.approx((turn.end_ms - turn.start_ms + 100) * 8, abs=8)
    assert seg.position_ms == 60_000


def test_blips_shorter_than_min_turn_are_dropped() -> None:
    blip = np.concatenate([_silence(1000), _speech("agent", 0, 1000, 200), _silence(1000)])
    # 200 ms of speech reads as ~320 ms voiced (webrtcvad's overhang): min_turn_ms applies to
    # what the VAD saw.
    assert _run(VadSegmenter("agent", RATE, VadOptions(min_turn_ms=400)), blip) == []
    (kept,) = _run(VadSegmenter("agent", RATE, VadOptions(min_turn_ms=0)), blip)
    assert 1000 <= kept.start_ms <= kept.end_ms <= 1200 + END_LATE_MS


@pytest.mark.parametrize(("pause_ms", "turns"), [(250, 1), (700, 2)])
def test_hangover_decides_whether_a_pause_ends_the_turn(pause_ms: int, turns: int) -> None:
    words = _speech("agent", 0, 500, 800)
    pcm = np.concatenate([_silence(500), words, _silence(pause_ms), words, _silence(1000)])
    seg = VadSegmenter("agent", RATE)
    assert len(_run(seg, pcm)) == turns
    assert not seg.in_speech


def test_speech_start_needs_consecutive_voiced_frames() -> None:
    seg = VadSegmenter("agent", RATE, VadOptions(speech_start_ms=60))
    pcm = np.concatenate([_silence(500), _speech("agent", 0, 1000, 1000)])
    in_speech_at = None
    for pos in range(0, len(pcm), 160):
        seg.feed(pcm[pos : pos + 160], pos / 8)
        if seg.in_speech:
            in_speech_at = (pos + 160) / 8
            break
    assert in_speech_at is not None and in_speech_at >= 500 + 60


# ------------------------------------------------------------------------- real speech


def test_osr_harvard_sentences_give_about_one_turn_per_sentence() -> None:
    """Ten read sentences: the default 400 ms hangover gives 11 turns (the last sentence splits
    at its comma, "When you hear the bell, / come quickly."); 500 ms gives exactly 10."""
    pcm = read_audio(DATA / "OSR_us_000_0034_8k.wav", RATE)
    sentences = json.loads((DATA / "OSR_us_000_0034_8k.sentences.json").read_text())["sentences"]
    bounds = [(s["start_s"] * 1000, s["end_s"] * 1000) for s in sentences]

    def inside(turn: Segment) -> list[int]:
        # Reference bounds carry a 200 ms margin; allow 150 ms more for webrtcvad's overhang.
        return [
            i
            for i, (a, b) in enumerate(bounds)
            if a - 150 <= turn.start_ms and turn.end_ms <= b + 150
        ]

    seg = VadSegmenter("customer", RATE)
    default = _run(seg, pcm) + seg.flush()
    assert len(default) == 11
    owners = [inside(t) for t in default]
    assert all(len(o) == 1 for o in owners)
    assert sorted({o[0] for o in owners}) == list(range(10))
    assert [o[0] for o in owners].count(9) == 2

    seg = VadSegmenter("customer", RATE, VadOptions(hangover_ms=500))
    patient = _run(seg, pcm) + seg.flush()
    assert [inside(t) for t in patient] == [[i] for i in range(10)]


# ------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "opts",
    [
        {"aggressiveness": 4},
        {"frame_ms": 25},
        {"hangover_ms": 10},
        {"post_roll_ms": 500},
        {"pre_roll_ms": -1},
        {"max_turn_ms": 100},
        {"output_rate": 0},
    ],
)
def test_bad_options_are_config_errors(opts: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        VadOptions(**opts)


def test_bad_audio_is_an_audio_error() -> None:
    with pytest.raises(AudioError):
        VadSegmenter("agent", 11025)
    seg = VadSegmenter("agent", RATE)
    with pytest.raises(AudioError):
        seg.feed(np.zeros(160, np.float32), 0.0)
    with pytest.raises(AudioError):
        seg.feed(np.zeros((2, 80), np.int16), 0.0)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("rate", [8000, 16000])
def test_every_frame_size_and_rate_finds_the_same_lines(frame_ms: int, rate: int) -> None:
    pcm = ulaw_decode(_track("customer"))[: int(25_000 * RATE / 1000)]
    pcm = resample(pcm, RATE, rate)
    seg = VadSegmenter("customer", rate, VadOptions(frame_ms=frame_ms))
    turns = _run(seg, pcm, chunk=rate // 50) + seg.flush()
    expected = [e for e in _expected("customer") if e["end_ms"] < 25_000]
    assert len(turns) == len(expected)
    for turn, exp in zip(turns, expected, strict=True):
        assert abs(turn.start_ms - exp["start_ms"]) <= START_TOL_MS + frame_ms
        assert -END_EARLY_MS - frame_ms <= turn.end_ms - exp["end_ms"] <= END_LATE_MS + frame_ms


# ------------------------------------------------------------------------- any stream


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 2400), st.sampled_from([0, 0, 0, 10, 35, 300, 900])),
        min_size=1,
        max_size=40,
    ),
    st.integers(1000, 8000),
)
# A cut piece whose only voiced frame after the cut was zero padding before a jump.
@example([(1, 0), (321, 900), (2280, 35), (2400, 300)], 1000)
def test_any_chunking_and_jumps_give_ordered_well_formed_turns(
    steps: list[tuple[int, int]], max_turn_ms: int
) -> None:
    """Chunks of any size, with jumps of any length, on 6 s of speech and pauses."""
    pcm = ulaw_decode(_track("agent"))[11_000 * 8 : 17_000 * 8]
    opts = VadOptions(max_turn_ms=max_turn_ms, output_rate=RATE)
    seg = VadSegmenter("agent", RATE, opts)
    turns: list[Segment] = []
    pos, at_ms, i = 0, 0.0, 0
    while pos < len(pcm):
        size, jump_ms = steps[i % len(steps)]
        at_ms += jump_ms
        chunk = pcm[pos : pos + size]
        turns += seg.feed(chunk, at_ms)
        pos, at_ms, i = pos + size, at_ms + len(chunk) / 8, i + 1
    turns += seg.flush()
    # Timestamp steps under one frame are absorbed as jitter, so the lag stays under a frame.
    assert at_ms - 20 < seg.position_ms <= at_ms + 20
    for a, b in itertools.pairwise(turns):
        assert a.end_ms <= b.start_ms
    for prev, t in zip([None, *turns], turns, strict=False):
        assert 0 <= t.start_ms <= t.end_ms <= at_ms
        assert t.end_ms - t.start_ms <= max_turn_ms
        samples = len(t.pcm16) // 2
        assert samples <= (t.end_ms - t.start_ms + 200 + 100) * 8
        # Short turns are dropped, except the end of a turn that was cut into pieces.
        continues = prev is not None and prev.partial
        assert t.partial or continues or t.end_ms - t.start_ms >= 250
        if prev is not None and prev.partial:
            assert t.start_ms == prev.end_ms
