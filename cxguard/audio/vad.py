"""Per-speaker endpointing: cut one track of a call into :class:`~cxguard.model.Segment` objects.

A :class:`VadSegmenter` is a pure state machine (no I/O, no clock). Chunks of any size go in
with their stream-timeline position; webrtcvad classifies fixed frames; turns come out when
they close. Positions are kept as sample indices on the stream timeline, so turn times are exact
and independent of chunk sizes and of when the chunks arrived.

Life of a turn::

    idle ──(speech_start_ms of consecutive voiced frames)──▶ in speech
    in speech ──(hangover_ms without a voiced frame)──▶ emit Segment, idle
    in speech ──(gap / flush)──▶ emit Segment, idle
    in speech, turn reaches max_turn_ms ──▶ in a pause: emit Segment, idle
                                        └─▶ mid-speech: emit a partial Segment, carry on

``Segment.start_ms`` is the start of the first voiced frame of the onset run; ``Segment.end_ms``
is the end of the last voiced frame (hangover excluded). ``Segment.pcm16`` is wider: it starts up to
``pre_roll_ms`` before ``start_ms`` and runs up to ``post_roll_ms`` past ``end_ms`` (never past
what the stream delivered), because webrtcvad misses weak onsets and word-final fricatives that
Whisper needs.

Missing audio: a chunk whose ``start_ms`` lies at least one frame ahead of where the previous
chunk ended is preceded by silence of that length (it counts towards the hangover, and the turn's
audio is padded with zeros there). Smaller differences, and chunks that start *before* the
expected position, are timestamp jitter: the sample count is trusted. :meth:`gap` is stronger:
the stream said it deliberately carried no audio, so an open turn closes at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad

from cxguard.audio.resample import resample
from cxguard.errors import AudioError, ConfigError
from cxguard.model import Segment, Speaker

__all__ = ["VAD_SAMPLE_RATES", "VadOptions", "VadSegmenter"]

VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)
"""The rates webrtcvad accepts; other rates must be resampled before :meth:`VadSegmenter.feed`."""


@dataclass(frozen=True)
class VadOptions:
    aggressiveness: int = 2
    """webrtcvad mode 0..3; higher rejects more non-speech (and more weak speech)."""
    frame_ms: int = 20
    """webrtcvad frame: 10, 20 or 30 ms."""
    hangover_ms: int = 400
    """Silence that closes a turn: the endpointing latency floor."""
    speech_start_ms: int = 60
    """Consecutive voiced audio needed to open a turn (rounded up to whole frames)."""
    pre_roll_ms: int = 200
    """Audio kept before the detected start, in ``Segment.pcm16`` only."""
    post_roll_ms: int = 100
    """Audio kept after the last voiced frame, in ``Segment.pcm16`` only (at most
    ``hangover_ms``)."""
    min_turn_ms: int = 250
    """Turns with a shorter voiced span are dropped as blips (not the last piece of a cut turn)."""
    max_turn_ms: int = 15000
    """Longer turns are emitted in pieces, ``partial=True`` for all but the last."""
    output_rate: int = 16000
    """``Segment.pcm16`` is resampled to this rate (Whisper wants 16 kHz)."""

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"vad aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.frame_ms not in (10, 20, 30):
            raise ConfigError(f"vad frame_ms must be 10, 20 or 30, got {self.frame_ms}")
        if self.hangover_ms < self.frame_ms:
            raise ConfigError("vad hangover_ms must be at least one frame")
        if not 0 <= self.post_roll_ms <= self.hangover_ms:
            raise ConfigError("vad post_roll_ms must be within 0..hangover_ms")
        if min(self.speech_start_ms, self.pre_roll_ms, self.min_turn_ms) < 0:
            raise ConfigError("vad durations must not be negative")
        if self.max_turn_ms < max(4 * self.frame_ms, self.min_turn_ms, self.hangover_ms):
            raise ConfigError("vad max_turn_ms must exceed min_turn_ms, hangover_ms and 4 frames")
        if self.output_rate <= 0:
            raise ConfigError(f"vad output_rate must be positive, got {self.output_rate}")


class VadSegmenter:
    """Endpoints one speaker's track; see the module docstring for the rules."""

    def __init__(
        self, speaker: Speaker, sample_rate: int = 8000, options: VadOptions = VadOptions()
    ) -> None:
        if sample_rate not in VAD_SAMPLE_RATES:
            raise AudioError(f"webrtcvad needs one of {VAD_SAMPLE_RATES} Hz, got {sample_rate}")
        self.speaker: Speaker = speaker
        self.sample_rate = sample_rate
        self.options = options
        self._vad = webrtcvad.Vad(options.aggressiveness)._vad
        self._per_ms = sample_rate / 1000

        def samples(ms: int) -> int:
            return ms * sample_rate // 1000

        self._flen = samples(options.frame_ms)
        self._fbytes = 2 * self._flen
        self._start_frames = max(1, -(-options.speech_start_ms // options.frame_ms))
        self._pre = samples(options.pre_roll_ms)
        self._post = samples(options.post_roll_ms)
        self._hang = samples(options.hangover_ms)
        self._min = samples(options.min_turn_ms)
        self._max = samples(options.max_turn_ms)
        # Idle: enough audio for the pre-roll before a complete onset run.
        self._keep = self._pre + self._start_frames * self._flen

        self._rem = b""  # received samples that do not fill a frame yet
        self._pos = 0  # timeline sample index of the next frame (= first sample of _rem)
        self._buf = bytearray()  # contiguous audio ending at _pos
        self._buf_start = 0  # timeline sample index of _buf[0]
        self._run = 0  # idle: consecutive voiced frames
        self._speaking = False
        self._start = 0  # speech start of the open turn (piece)
        self._audio_start = 0  # where the open turn's pcm begins (pre-roll)
        self._last_voiced = 0  # end of the last voiced frame
        self._last_unvoiced = -1  # end of the last unvoiced frame inside the turn
        self._continued = False  # the open piece continues a cut turn

    # ------------------------------------------------------------------------------ public

    @property
    def in_speech(self) -> bool:
        """True while a turn is open."""
        return self._speaking

    @property
    def speech_start_ms(self) -> float | None:
        """Where the speech of the open segment began (None while idle). For a segment that
        continues one cut at the maximum length, where the continuation began."""
        return self._ms(self._start) if self._speaking else None

    @property
    def position_ms(self) -> float:
        """Stream-timeline position just after the last sample received."""
        return self._ms(self._pos + len(self._rem) // 2)

    def feed(self, pcm: npt.NDArray[np.int16], start_ms: float) -> list[Segment]:
        """Add a chunk of int16 samples whose first sample is at ``start_ms`` on the stream
        timeline; returns the turns that closed during it."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise AudioError(f"feed needs 1-D int16 samples, got {pcm.dtype} {pcm.shape}")
        out: list[Segment] = []
        start = round(start_ms * self._per_ms)
        if start - (self._pos + len(self._rem) // 2) >= self._flen:
            self._complete_frame(out)
            self._silence(start - self._pos, out)
        # Native byte order: webrtcvad reads int16_t; Segment.pcm16 is made little-endian below.
        self._frames(self._rem + pcm.tobytes() if self._rem else pcm.tobytes(), out)
        return out

    def gap(self, start_ms: float, end_ms: float) -> list[Segment]:
        """The stream deliberately carried no audio from ``start_ms`` to ``end_ms``: close any
        open turn at its last voiced frame and resume the timeline at ``end_ms``."""
        if end_ms < start_ms:
            raise AudioError(f"gap ends before it starts: {start_ms} > {end_ms}")
        out: list[Segment] = []
        self._complete_frame(out)
        if self._speaking:
            self._close(out)
        self._pos = max(self._pos, round(end_ms * self._per_ms))
        self._reset_idle()
        return out

    def flush(self, at_ms: float | None = None) -> list[Segment]:
        """End of the stream (at ``at_ms`` if known): close the open turn. The segmenter is idle
        afterwards and may be fed again."""
        out: list[Segment] = []
        self._complete_frame(out)
        if at_ms is not None:
            self._silence(round(at_ms * self._per_ms) - self._pos, out)
        if self._speaking:
            self._close(out)
        self._reset_idle()
        return out

    # ------------------------------------------------------------------------------ frames

    def _frames(self, data: bytes, out: list[Segment]) -> None:
        fb, flen, n = self._fbytes, self._flen, len(data)
        end = n - n % fb
        view = memoryview(data)
        # The C function itself: skipping Vad.is_speech's wrapper saves ~0.5 µs per frame.
        process, vad, rate = webrtcvad._webrtcvad.process, self._vad, self.sample_rate
        for off in range(0, end, fb):
            frame = view[off : off + fb]
            voiced = process(vad, rate, frame, flen)
            self._buf += frame
            self._pos += flen
            if self._speaking:
                self._in_turn(voiced, out)
            elif voiced:
                self._run += 1
                if self._run >= self._start_frames:
                    self._open()
            else:
                self._run = 0
                if len(self._buf) > 4 * self._keep:  # trim rarely: del is a memmove
                    self._trim_idle()
        self._rem = data[end:]

    def _in_turn(self, voiced: bool, out: list[Segment]) -> None:
        if voiced:
            self._last_voiced = self._pos
        else:
            self._last_unvoiced = self._pos
            if self._pos - self._last_voiced >= self._hang:
                self._close(out)
                return
        if self._pos + self._flen - self._start > self._max:  # the next frame would exceed it
            if voiced:
                self._cut(out)
            else:
                self._close(out)  # in a pause anyway: end the turn there

    def _complete_frame(self, out: list[Segment]) -> None:
        """Pad the partial frame with zeros so the audio before a jump or the end is heard."""
        if self._rem:
            delivered = self._pos + len(self._rem) // 2
            self._frames(self._rem + bytes(self._fbytes - len(self._rem)), out)
            # Speech cannot have lasted into the padding.
            self._last_voiced = min(self._last_voiced, delivered)

    def _silence(self, n: int, out: list[Segment]) -> None:
        """``n`` samples the stream did not carry, treated as unvoiced audio of zeros."""
        if n <= 0:
            return
        if self._speaking:
            deadline = min(self._last_voiced + self._hang, self._start + self._max)
            step = min(n, deadline - self._pos)
            self._buf += bytes(2 * step)
            self._pos += step
            n -= step
            self._last_unvoiced = self._pos
            if self._pos < deadline:
                return
            self._close(out)
        # Idle: only the pre-roll window of the silence matters.
        keep = min(n, self._keep)
        self._buf += bytes(2 * keep)
        self._pos += n
        self._buf_start = self._pos - len(self._buf) // 2
        self._run = 0
        self._trim_idle()

    # ------------------------------------------------------------------------------ turns

    def _open(self) -> None:
        self._speaking = True
        self._start = self._pos - self._run * self._flen
        self._audio_start = max(self._buf_start, self._start - self._pre)
        self._last_voiced = self._pos
        self._last_unvoiced = -1
        self._continued = False

    def _cut(self, out: list[Segment]) -> None:
        """Emit the open turn up to a cut point as a partial piece and keep going."""
        cut = self._pos
        if self._last_unvoiced > max(self._start, self._pos - self._max // 4):
            cut = self._last_unvoiced  # the latest short pause: fewer words split in half
        out.append(self._turn(self._start, cut, self._audio_start, cut, partial=True))
        self._drop_before(cut)
        self._start = self._audio_start = cut
        self._continued = True

    def _close(self, out: list[Segment]) -> None:
        # A piece continuing a cut segment may hold no voiced audio after the cut (its last
        # voiced frame was padding, clamped back before the cut): it closes empty, at the cut.
        end = max(self._last_voiced, self._start)
        if end - self._start >= self._min or self._continued:
            audio_end = min(self._pos, end + self._post)
            out.append(self._turn(self._start, end, self._audio_start, audio_end, partial=False))
        self._speaking = False
        self._continued = False
        self._run = 0
        self._trim_idle()

    def _turn(self, start: int, end: int, a0: int, a1: int, *, partial: bool) -> Segment:
        lo, hi = 2 * (a0 - self._buf_start), 2 * (a1 - self._buf_start)
        # A copy, not a view: a live view would forbid resizing _buf (BufferError).
        pcm = np.frombuffer(bytes(self._buf[lo:hi]), dtype=np.int16)
        if self.options.output_rate != self.sample_rate:
            pcm = resample(pcm, self.sample_rate, self.options.output_rate)
        return Segment(
            speaker=self.speaker,
            pcm16=pcm.astype("<i2", copy=False).tobytes(),
            sample_rate=self.options.output_rate,
            start_ms=self._ms(start),
            end_ms=self._ms(end),
            partial=partial,
        )

    # ------------------------------------------------------------------------------ buffer

    def _drop_before(self, sample: int) -> None:
        drop = sample - self._buf_start
        if drop > 0:
            del self._buf[: 2 * drop]
            self._buf_start = sample

    def _trim_idle(self) -> None:
        self._drop_before(self._pos - self._keep)

    def _reset_idle(self) -> None:
        self._rem = b""
        self._buf.clear()
        self._buf_start = self._pos
        self._run = 0

    def _ms(self, sample: int) -> float:
        return sample * 1000 / self.sample_rate
