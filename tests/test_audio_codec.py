"""G.711 μ-law: bit-exact with CPython's audioop, pinned by a golden file made from audioop."""

from __future__ import annotations

import gzip
import importlib
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cxguard.audio.codec import (
    ULAW_SILENCE,
    ulaw_decode,
    ulaw_decode_table,
    ulaw_encode,
    ulaw_encode_table,
)
from cxguard.errors import AudioError

GOLDEN = Path(__file__).parent / "data" / "ulaw_golden.bin.gz"
SWEEP = np.arange(-32768, 32768, dtype=np.int16)


def _golden() -> tuple[np.ndarray, bytes]:
    blob = gzip.decompress(GOLDEN.read_bytes())
    assert len(blob) == 512 + 65536
    return np.frombuffer(blob[:512], dtype="<i2").astype(np.int16), blob[512:]


def _audioop() -> ModuleType | None:
    """audioop where it still exists (Python <= 3.12), else None: the golden file stands in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ModuleNotFoundError:
            return None


def test_decode_matches_golden_for_all_256_codes() -> None:
    golden_decoded, _ = _golden()
    assert np.array_equal(ulaw_decode(bytes(range(256))), golden_decoded)
    assert np.array_equal(ulaw_decode_table(), golden_decoded)


def test_encode_matches_golden_for_every_int16_value() -> None:
    _, golden_encoded = _golden()
    assert ulaw_encode(SWEEP) == golden_encoded
    assert ulaw_encode_table()[SWEEP.view(np.uint16)].tobytes() == golden_encoded


def test_golden_file_is_what_audioop_produces() -> None:
    """Where audioop exists, the golden file must equal it (and so must the codec)."""
    golden_decoded, golden_encoded = _golden()
    audioop = _audioop()
    if audioop is not None:
        assert audioop.ulaw2lin(bytes(range(256)), 2) == golden_decoded.astype("<i2").tobytes()
        assert audioop.lin2ulaw(SWEEP.astype("<i2").tobytes(), 2) == golden_encoded
        assert audioop.lin2ulaw(SWEEP.tobytes(), 2) == ulaw_encode(SWEEP)
    # Known G.711 anchors, true with or without audioop.
    assert golden_decoded[0x00] == -32124 and golden_decoded[0x80] == 32124
    assert golden_decoded[0xFF] == 0 and golden_decoded[0x7F] == 0
    assert golden_encoded[32768] == ULAW_SILENCE  # int16 0 sits at index 32768 of the sweep


def test_decode_then_encode_is_identity_on_codes_except_negative_zero() -> None:
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    # 0x7F (-0) and 0xFF (+0) both decode to 0, which encodes as 0xFF.
    assert back == codes.replace(b"\x7f", b"\xff")


def test_quantisation_error_is_bounded_by_the_segment_step() -> None:
    err = np.abs(ulaw_decode(ulaw_encode(SWEEP)).astype(np.int32) - SWEEP)
    inside = np.abs(SWEEP.astype(np.int32)) <= 32124  # beyond, G.711 clips
    # Step of segment s is 2**(s+3) on the 16-bit scale; the error is at most half a step
    # plus the 2-bit truncation audioop applies first, i.e. < |x|/32 + 8.
    bound = np.abs(SWEEP[inside].astype(np.int32)) / 32 + 8
    assert np.all(err[inside] <= bound)
    assert err[inside].max() > 0


@given(hnp.arrays(np.int16, st.integers(0, 400)))
def test_encode_is_elementwise(pcm: np.ndarray) -> None:
    """Any chunking gives the same bytes: encoding has no state across samples."""
    whole = ulaw_encode(pcm)
    assert len(whole) == len(pcm)
    half = len(pcm) // 2
    assert ulaw_encode(pcm[:half]) + ulaw_encode(pcm[half:]) == whole
    assert len(ulaw_decode(whole)) == len(pcm)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros((2, 2), np.int16)],
)
def test_encode_rejects_non_int16_mono(bad: np.ndarray) -> None:
    with pytest.raises(AudioError):
        ulaw_encode(bad)


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        ulaw_decode_table()[0] = 1
