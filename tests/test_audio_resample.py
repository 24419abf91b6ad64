"""soxr resampling: lengths, preserved tones and energy, anti-aliasing, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from cxguard.audio.resample import resample, resample_float
from cxguard.errors import AudioError


def _tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 16000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 16000), (16000, 8000), (8000, 44100), (48000, 8000)]
)
@pytest.mark.parametrize("n", [1, 2, 3, 159, 160, 161, 1001, 12345])
def test_length_is_the_rate_ratio_rounded_half_up(src: int, dst: int, n: int) -> None:
    pcm = np.ones(n, dtype=np.int16)
    assert len(resample(pcm, src, dst)) == int(np.floor(n * dst / src + 0.5))


def test_upsampling_keeps_the_tone_and_its_energy() -> None:
    x = _tone(440, 8000)
    y = resample(x, 8000, 16000)
    assert y.dtype == np.int16
    assert _peak_hz(y, 16000) == pytest.approx(440, abs=2)
    assert _rms(y[1600:-1600]) == pytest.approx(_rms(x), rel=0.01)


def test_downsampling_keeps_the_passband_and_removes_what_would_alias() -> None:
    kept = resample(_tone(3000, 16000), 16000, 8000)
    assert _peak_hz(kept, 8000) == pytest.approx(3000, abs=2)
    assert _rms(kept[800:-800]) == pytest.approx(_rms(_tone(3000, 16000)), rel=0.02)
    # 6 kHz is above the 4 kHz Nyquist of 8 kHz: it must be filtered, not folded to 2 kHz.
    removed = resample(_tone(6000, 16000), 16000, 8000)
    assert _rms(removed[800:-800]) < _rms(_tone(6000, 16000)) * 0.001


def test_full_scale_input_clips_instead_of_wrapping() -> None:
    square = np.tile(np.array([32767] * 20 + [-32768] * 20, dtype=np.int16), 200)
    y = resample(square, 8000, 16000)
    # Gibbs overshoot past full scale is clipped; a wrap-around would put negative samples
    # in the middle of the positive half-periods.
    middles = y.reshape(-1, 80)[:, 15:25]
    assert middles.min() > 30000


def test_float_variant_matches_the_int16_one() -> None:
    x = _tone(1000, 8000)
    f = resample_float((x / 32768).astype(np.float32), 8000, 16000)
    assert f.dtype == np.float32
    i = resample(x, 8000, 16000)
    assert np.max(np.abs(f * 32768 - i)) <= 2


def test_same_rate_and_empty_input_are_copies() -> None:
    x = _tone(440, 8000, 0.1)
    same = resample(x, 8000, 8000)
    assert np.array_equal(same, x) and same is not x
    assert len(resample(np.zeros(0, np.int16), 8000, 16000)) == 0


@pytest.mark.parametrize(
    ("pcm", "src", "dst"),
    [
        (np.zeros(10, np.float32), 8000, 16000),
        (np.zeros((2, 10), np.int16), 8000, 16000),
        (np.zeros(10, np.int16), 0, 16000),
        (np.zeros(10, np.int16), 8000, -1),
    ],
)
def test_rejects_impossible_input(pcm: np.ndarray, src: int, dst: int) -> None:
    with pytest.raises(AudioError):
        resample(pcm, src, dst)


def test_float_variant_rejects_int16() -> None:
    with pytest.raises(AudioError):
        resample_float(np.zeros(10, np.int16), 8000, 16000)
