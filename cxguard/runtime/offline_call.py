"""A recorded two-track call judged offline the way the live path judges it (``cxguard eval``).

No server and no websocket: the recordings are read as the simulator reads them (8 kHz μ-law,
20 ms frames, padded with silence to equal length), and each frame is taken in as the live
session takes in a Twilio ``both_tracks`` stream (customer = inbound first, then agent):
μ-law decoded, fed to each speaker's VAD segmenter with the settings' ``vad:`` options, the
stream clock ticked by the live session's own
:class:`~cxguard.runtime.stream_clock.StreamClock`, segments transcribed with the settings'
``asr:`` model and decodes, and everything handed to a :class:`~cxguard.policy.calls.CallJudge`
with the settings' ``turns:`` options, in the order the live session's pipeline would. The
same audio therefore gets the same verdicts offline as through ``serve`` (a test checks it on
the demo call); what differs is only that nothing is recorded, alerted or handed off, and ASR
is never overloaded (each segment is transcribed on its own, never refused for waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.files import read_channels
from cxguard.audio.vad import VadSegmenter
from cxguard.errors import AsrError, AudioError
from cxguard.model import SPEAKERS, Segment, Speaker, Transcript
from cxguard.policy.offline import Step, Tick
from cxguard.policy.turns import HeardSegment
from cxguard.runtime.settings import Settings
from cxguard.runtime.simulate import SAMPLE_RATE, load_tracks
from cxguard.runtime.stream_clock import StreamClock

FRAME_SAMPLES = 160
"""20 ms at 8 kHz: one Twilio media message."""

Transcribe = Callable[[Segment], Transcript]
"""One segment's transcript; raises :class:`~cxguard.errors.AsrError` when it has none."""


@dataclass(frozen=True)
class CallAudio:
    """Both tracks as 8 kHz μ-law of equal length (whole frames)."""

    name: str
    agent: bytes
    customer: bytes

    @property
    def seconds(self) -> float:
        return len(self.agent) / SAMPLE_RATE


def two_tracks(agent: Path, customer: Path) -> CallAudio:
    a, c = load_tracks(agent, customer, FRAME_SAMPLES)
    return CallAudio(f"{agent}+{customer}", a, c)


def stereo_call(path: Path, agent_channel: int = 1) -> CallAudio:
    """A stereo recording, one speaker per channel (``agent_channel`` 1 = right, as
    AudioHook sends the internal party; the other channel is the customer)."""
    channels = read_channels(path, SAMPLE_RATE)
    if len(channels) != 2:
        raise AudioError(f"{path}: a two-track call needs 2 channels, not {len(channels)}")
    agent, customer = channels[agent_channel], channels[1 - agent_channel]
    n = max(len(agent), len(customer))
    n += (-n) % FRAME_SAMPLES
    return CallAudio(
        str(path),
        ulaw_encode(np.pad(agent, (0, n - len(agent)))),
        ulaw_encode(np.pad(customer, (0, n - len(customer)))),
    )


class _Tracks:
    """What :class:`~cxguard.runtime.session.CallSession` does with audio, without the loop:
    segments and clock ticks, in its queue order."""

    def __init__(self, settings: Settings) -> None:
        self.segmenters = {
            s: VadSegmenter(s, SAMPLE_RATE, settings.vad.options(s)) for s in SPEAKERS
        }
        self.clock = StreamClock()
        self.items: list[Segment | Tick] = []

    def feed(self, speaker: Speaker, payload: bytes, start_ms: float) -> None:
        pcm = ulaw_decode(payload)
        end_ms = start_ms + 1000.0 * len(pcm) / SAMPLE_RATE
        self.clock.heard(speaker, end_ms)
        self.items += self.segmenters[speaker].feed(pcm, start_ms)
        at = self.clock.tick()
        if at is not None:
            speaking = {s: seg.speech_start_ms for s, seg in self.segmenters.items()}
            self.items.append(Tick(at, speaking))

    def flush(self) -> None:
        for seg in self.segmenters.values():
            self.items += seg.flush()


def heard_steps(
    call: CallAudio, settings: Settings, transcribe: Transcribe
) -> tuple[list[tuple[str, Step]], float]:
    """The judge's inputs for ``call`` in live order, and the stream time the call ends at
    (where Twilio's ``stop`` leaves it: the last frame's timestamp)."""
    tracks = _Tracks(settings)
    frames = len(call.agent) // FRAME_SAMPLES
    for i in range(frames):
        part = slice(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES)
        timestamp = float(i * FRAME_SAMPLES * 1000 // SAMPLE_RATE)
        tracks.feed("customer", call.customer[part], timestamp)
        tracks.feed("agent", call.agent[part], timestamp)
    tracks.flush()
    steps: list[tuple[str, Step]] = []
    index = 0
    for item in tracks.items:
        if isinstance(item, Tick):
            steps.append((f"{call.name} at {item.at_ms / 1000:.1f}s", item))
            continue
        steps.append((f"{call.name} segment {index}", _heard(index, item, transcribe)))
        index += 1
    end_ms = float((frames - 1) * FRAME_SAMPLES * 1000 // SAMPLE_RATE) if frames else 0.0
    return steps, end_ms


def _heard(index: int, seg: Segment, transcribe: Transcribe) -> HeardSegment:
    text, reason = "", None
    readings: tuple[str, ...] = ()
    try:
        text = transcribe(seg).text
    except AsrError as exc:
        reason, readings = str(exc), exc.readings
    return HeardSegment.of(index, seg, text, reason, readings)


def segment_transcriber(batch: Callable[[Sequence[np.ndarray]], Sequence[object]]) -> Transcribe:
    """One segment at a time through a batch transcriber (as the ASR worker hands it
    segments: int16 at 16 kHz)."""

    def transcribe(seg: Segment) -> Transcript:
        result = batch([np.frombuffer(seg.pcm16, dtype=np.int16)])[0]
        if isinstance(result, AsrError):
            raise result
        assert isinstance(result, Transcript)
        return result

    return transcribe
