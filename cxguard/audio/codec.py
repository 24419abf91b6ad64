"""G.711 μ-law (PCMU) ⇄ 16-bit linear PCM with numpy lookup tables.

Both tables are built once at import from the G.711 formulas exactly as CPython's ``audioop``
implemented them (``st_ulaw2linear16`` / ``st_14linear2ulaw`` in ``Modules/audioop.c``), so the
result is bit-exact with ``audioop.ulaw2lin(data, 2)`` / ``audioop.lin2ulaw(data, 2)``, which
Python 3.13 removed. ``tests/data/ulaw_golden.bin`` pins both tables.

Encoding is a single gather over a 65,536-entry table indexed by the sample's bit pattern, so a
20 ms Twilio frame costs one numpy call, not 160 Python operations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cxguard.errors import AudioError

__all__ = ["ULAW_SILENCE", "ulaw_decode", "ulaw_decode_table", "ulaw_encode", "ulaw_encode_table"]

_BIAS = 0x84
_CLIP = 8159  # largest magnitude on the 14-bit scale that audioop encodes without clipping

ULAW_SILENCE = 0xFF
"""The μ-law code of digital silence (decodes to 0); what a silent track carries."""


def _build_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    # Index i is the int16 sample whose bit pattern read as uint16 is i.
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    val = pcm >> 2  # audioop works on the top 14 bits (arithmetic shift, so -1..-4 stay negative)
    mask = np.where(val < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), _CLIP) + (_BIAS >> 2)
    # Segment = index of the first of 0x3F, 0x7F, ..., 0x1FFF that is >= mag. Clipped magnitudes
    # reach 8192 (segment 8), which audioop maps to code 0x7F before the sign mask.
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), mag)
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


_DECODE = _build_decode_table()
_ENCODE = _build_encode_table()
_DECODE.setflags(write=False)
_ENCODE.setflags(write=False)


def ulaw_decode_table() -> npt.NDArray[np.int16]:
    """The 256-entry code → sample table (read-only)."""
    return _DECODE


def ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """The 65,536-entry table: ``table[sample.view(uint16)]`` is the μ-law code (read-only)."""
    return _ENCODE


def ulaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode μ-law bytes to int16 samples (one sample per byte); bit-exact with audioop."""
    codes = np.frombuffer(data, dtype=np.uint8)
    return _DECODE[codes]


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples to μ-law bytes; bit-exact with ``audioop.lin2ulaw(pcm, 2)``.

    Raises :class:`~cxguard.errors.AudioError` for anything but a 1-D int16 array: silently
    casting floats in [-1, 1] would encode near-silence.
    """
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioError(f"ulaw_encode needs 1-D int16 samples, got {pcm.dtype} {pcm.shape}")
    return _ENCODE[pcm.view(np.uint16)].tobytes()
