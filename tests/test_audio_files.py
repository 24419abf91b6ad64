"""Audio files: μ-law/PCM WAV writers, the raw μ-law reader, and PyAV decoding."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.files import read_audio, read_wav_ulaw, write_wav_pcm16, write_wav_ulaw
from cxguard.errors import AudioError

DATA = Path(__file__).parent / "data"


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


@pytest.mark.parametrize("n", [8001, 8000])  # odd sizes need a RIFF pad byte
def test_ulaw_wav_round_trips_the_exact_codes(tmp_path: Path, n: int) -> None:
    pcm = _noise(n)
    path = tmp_path / "u.wav"
    write_wav_ulaw(path, pcm, 8000)
    raw, rate = read_wav_ulaw(path)
    assert rate == 8000 and raw == ulaw_encode(pcm)
    blob = path.read_bytes()
    assert struct.unpack_from("<I", blob, 4)[0] == len(blob) - 8
    assert len(blob) % 2 == 0


def test_ffmpeg_decodes_our_ulaw_wav_exactly_like_the_codec(tmp_path: Path) -> None:
    """PyAV/FFmpeg and cxguard's codec agree on every sample, so files and streams match."""
    pcm = _noise(16000)
    write_wav_ulaw(tmp_path / "u.wav", pcm, 8000)
    assert np.array_equal(read_audio(tmp_path / "u.wav", 8000), ulaw_decode(ulaw_encode(pcm)))


def test_pcm16_wav_reads_back_sample_exact_and_resampled(tmp_path: Path) -> None:
    pcm = _noise(8000, seed=1)
    write_wav_pcm16(tmp_path / "p.wav", pcm, 8000)
    with wave.open(str(tmp_path / "p.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    assert np.array_equal(read_audio(tmp_path / "p.wav", 8000), pcm)
    assert len(read_audio(tmp_path / "p.wav", 16000)) == 16000


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left, right = _noise(4000, 2), _noise(4000, 3)
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.stack([left, right], axis=1).astype("<i2").tobytes())
    mono = read_audio(tmp_path / "s.wav", 8000)
    expected = np.rint((left.astype(np.int32) + right) / 2)
    assert np.array_equal(mono, expected.astype(np.int16))


def test_reads_the_bundled_osr_recording() -> None:
    pcm = read_audio(DATA / "OSR_us_000_0034_8k.wav", 8000)
    assert pcm.dtype == np.int16
    assert len(pcm) == 284383  # 35.55 s, as soxi reports
    with wave.open(str(DATA / "OSR_us_000_0034_8k.wav")) as w:
        assert np.array_equal(pcm, np.frombuffer(w.readframes(w.getnframes()), "<i2"))


def test_decodes_with_pyav_versions_without_metadata_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PyAV 19 (the only one with Python 3.12+ wheels today) dropped open()'s metadata_errors.
    import av

    real_open = av.open
    calls: list[dict[str, object]] = []

    def open_without_the_option(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        if "metadata_errors" in kwargs:
            raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", open_without_the_option)
    pcm = read_audio(DATA / "OSR_us_000_0034_8k.wav", 8000)
    assert len(pcm) == 284383
    assert [("metadata_errors" in c) for c in calls] == [True, False]


def test_missing_and_garbage_files_raise_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"nope\.wav"):
        read_audio(tmp_path / "nope.wav", 8000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 64)
    with pytest.raises(AudioError):
        read_audio(tmp_path / "junk.wav", 8000)


def test_read_wav_ulaw_rejects_pcm_and_non_wav(tmp_path: Path) -> None:
    write_wav_pcm16(tmp_path / "p.wav", _noise(100), 8000)
    with pytest.raises(AudioError, match="μ-law"):
        read_wav_ulaw(tmp_path / "p.wav")
    (tmp_path / "x.wav").write_bytes(b"RIFX....WAVE")
    with pytest.raises(AudioError, match="RIFF"):
        read_wav_ulaw(tmp_path / "x.wav")


@pytest.mark.parametrize("bad", [np.zeros(4, np.float32), np.zeros((2, 2), np.int16)])
def test_writers_reject_non_int16_mono(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(AudioError):
        write_wav_pcm16(tmp_path / "a.wav", bad, 8000)
    with pytest.raises(AudioError):
        write_wav_ulaw(tmp_path / "b.wav", bad, 8000)
