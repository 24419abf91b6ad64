"""Reading and writing audio files (offline replay, the demo call, tests).

``read_audio`` decodes any container/codec FFmpeg knows through PyAV (as
``faster_whisper.decode_audio`` does), downmixes to mono in numpy and resamples with soxr, so a
mono 16-bit or μ-law file read at its own rate comes back sample-exact. The μ-law WAV writer is
hand-rolled because the stdlib ``wave`` module writes PCM only.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
import numpy.typing as npt

from cxguard.audio.codec import ulaw_encode
from cxguard.audio.resample import resample
from cxguard.errors import AudioError

__all__ = ["read_audio", "read_channels", "read_wav_ulaw", "write_wav_pcm16", "write_wav_ulaw"]

_WAVE_FORMAT_MULAW = 7


def read_audio(path: str | Path, sample_rate: int) -> npt.NDArray[np.int16]:
    """Decode the first audio stream of ``path`` to mono int16 PCM at ``sample_rate``.

    Raises :class:`~cxguard.errors.AudioError` when the file is missing, undecodable or has no
    audio stream.
    """
    packed, source_rate = _decode(path)
    if not len(packed):
        return np.zeros(0, dtype=np.int16)
    return resample(_downmix(packed), source_rate, sample_rate)


def read_channels(path: str | Path, sample_rate: int) -> list[npt.NDArray[np.int16]]:
    """Each channel of the first audio stream of ``path`` as int16 PCM at ``sample_rate``
    (a stereo call recording: one speaker per channel)."""
    packed, source_rate = _decode(path)
    return [
        resample(np.ascontiguousarray(packed[:, c]), source_rate, sample_rate)
        for c in range(packed.shape[1])
    ]


def _decode(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """Samples as ``(n, channels)`` int16 at the file's own rate."""
    pieces: list[npt.NDArray[np.int16]] = []
    source_rate, channels = 0, 1
    # Convert the sample format only; channels and rate are handled by the callers, exactly.
    to_s16 = av.AudioResampler(format="s16")
    try:
        with _open(path) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            for frame in container.decode(audio=0):
                source_rate = frame.sample_rate
                channels = frame.layout.nb_channels
                for out in to_s16.resample(frame):
                    pieces.append(
                        np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1, channels)
                    )
    except av.error.FFmpegError as exc:
        raise AudioError(f"{path}: cannot decode audio: {exc}") from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot read: {exc}") from exc
    if not pieces:
        return np.zeros((0, channels), dtype=np.int16), source_rate
    return np.concatenate(pieces), source_rate


def _open(path: str | Path) -> Any:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except TypeError:  # PyAV 19 removed the option; older versions need it for bad tags
        return av.open(str(path), mode="r")


def _downmix(packed: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if packed.shape[1] == 1:
        return packed[:, 0].copy()
    # Average, not sum: two in-phase channels must not clip.
    mean: npt.NDArray[np.float64] = np.rint(packed.astype(np.int32).mean(axis=1))
    return mean.astype(np.int16)


def write_wav_pcm16(path: str | Path, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Write mono 16-bit PCM WAV."""
    _check_mono_int16(pcm)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())


def write_wav_ulaw(path: str | Path, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Write mono G.711 μ-law WAV (format tag 7, with the ``fact`` chunk non-PCM WAVs need)."""
    _check_mono_int16(pcm)
    data = ulaw_encode(pcm)
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_MULAW, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    pad = b"\x00" if len(data) % 2 else b""
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"fact", fact) + _chunk(b"data", data) + pad
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_wav_ulaw(path: str | Path) -> tuple[bytes, int]:
    """The raw μ-law bytes and sample rate of a mono μ-law WAV: exactly what a PCMU stream
    would carry, for replaying a file through the protocol path."""
    blob = Path(path).read_bytes()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, ...] | None = None
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if size < 16:
                raise AudioError(f"{path}: short fmt chunk")
            fmt = struct.unpack_from("<HHIIHH", body)
        elif cid == b"data":
            if fmt is None:
                raise AudioError(f"{path}: data chunk before fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if tag != _WAVE_FORMAT_MULAW or channels != 1 or bits != 8:
                raise AudioError(f"{path}: not mono 8-bit μ-law (tag {tag}, {channels} ch)")
            return bytes(body), rate
        pos += 8 + size + (size % 2)
    raise AudioError(f"{path}: no data chunk")


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload


def _check_mono_int16(pcm: npt.NDArray[np.int16]) -> None:
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioError(f"need 1-D int16 samples, got {pcm.dtype} {pcm.shape}")
