"""Synthetic speech through the telephone channel: espeak-ng or flite → 8 kHz → G.711 μ-law.

    speak("Your balance is forty dollars.", Voice("flite", "slt", rate=1.0))  # int16 at 8 kHz

Each voice is an engine, a voice name and a speaking rate (1.0 = the engine's default speed;
espeak-ng takes it as words per minute, 175 × rate, flite as a duration stretch of 1 / rate).
The audio is resampled to 8 kHz with soxr, peak-normalised to ``LEVEL_DBFS`` and passed through
cxguard's μ-law codec and back, so what comes out is what a Twilio stream would carry. Needs
``espeak-ng`` and ``flite`` on PATH (``apt-get install espeak-ng flite``). Both engines are
deterministic: the same text and voice give the same samples.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.resample import resample

RATE = 8000
LEVEL_DBFS = -3.0
Engine = Literal["espeak-ng", "flite"]


@dataclass(frozen=True)
class Voice:
    engine: Engine
    name: str
    rate: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}@{self.rate:g}"


ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb-x-rp", "en-us+f4")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
"""flite's ``kal`` (8 kHz diphone) and ``awb_time`` (a talking clock) are left out."""


def voices(rates: tuple[float, ...] = (0.85, 1.0, 1.2)) -> list[Voice]:
    """Every bundled voice of both engines at each rate."""
    out = [Voice("espeak-ng", v, r) for v in ESPEAK_VOICES for r in rates]
    return out + [Voice("flite", v, r) for v in FLITE_VOICES for r in rates]


def available() -> bool:
    return all(shutil.which(tool) for tool in ("espeak-ng", "flite"))


def speak(text: str, voice: Voice) -> npt.NDArray[np.int16]:
    """``text`` spoken by ``voice``: int16 mono at 8 kHz, after a μ-law round trip."""
    with tempfile.TemporaryDirectory(prefix="cxg-tts-") as tmp:
        out = Path(tmp) / "speech.wav"
        if voice.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(round(175 * voice.rate))]
            cmd += ["-w", str(out), text]
        else:
            cmd = [
                "flite",
                "-voice",
                voice.name,
                "--setf",
                f"duration_stretch={1 / voice.rate:.3f}",
            ]
            cmd += ["-t", text, "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(str(out)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    pcm = trim(resample(pcm, rate, RATE))
    return telephone(pcm)


def telephone(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """Peak-normalise to ``LEVEL_DBFS`` and round-trip through G.711 μ-law."""
    peak = float(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0.0
    if peak > 0:
        gain = 32767 * 10 ** (LEVEL_DBFS / 20) / peak
        pcm = np.clip(pcm.astype(np.float64) * gain, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def trim(pcm: npt.NDArray[np.int16], threshold: int = 64) -> npt.NDArray[np.int16]:
    """Drop leading and trailing samples at or below ``threshold`` (-54 dBFS)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm[:0]
