"""The shared speech-to-text service: one primary Whisper model, an optional larger fallback.

Each segment is decoded first with the options' ``window`` + ``beam_size`` (the fast decode:
the encoder window sized to the segment, greedy). Text that fails a guard — low
log-probability, a loop, a runaway — is not refused at once: the ``fallbacks`` strategies
(:mod:`cxguard.asr.decoding`) are tried in order, each on the segments still rejected, and
a segment is refused (:class:`~cxguard.asr.AsrRejected`, ``undetermined`` downstream) only when
every one of them failed too — and, if all failed only for low log-probability, no two of them
agreed on the words (:mod:`cxguard.asr.agreement`). The :class:`~cxguard.model.Transcript`
names the decode and the model that produced its text.

Segments that share a window size and a strategy are batched into one ``generate`` call, so a
batch decodes exactly as the same segments one by one would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ctranslate2
import numpy as np
import numpy.typing as npt
import soxr

from cxguard.asr.agreement import agreed, readings
from cxguard.asr.decoding import Decode
from cxguard.asr.guards import (
    AsrRejected,
    check,
    loudest_frame_dbfs,
    recount,
    speech_bursts,
)
from cxguard.asr.models import resolve_model_path
from cxguard.asr.options import AsrOptions
from cxguard.asr.whisper import (
    FRAMES_PER_S,
    FULL_FRAMES,
    MAX_NEW_TOKENS,
    RATE,
    Segment,
    WhisperModel,
)
from cxguard.errors import AsrError, AudioError, ConfigError
from cxguard.model import Transcript

log = logging.getLogger(__name__)

Result = Transcript | AsrError


@dataclass
class _Item:
    index: int
    audio: npt.NDArray[np.float32]
    bursts: int = 0
    encoded: dict[tuple[str, int], npt.NDArray[np.float32]] = field(default_factory=dict)
    """Encoder outputs by (model, window frames): fallbacks in a window already encoded for
    this segment reuse them."""


class Transcriber:
    """Thread-safe: nothing changes after ``__init__``; CTranslate2 queues concurrent calls
    onto ``num_workers`` model replicas."""

    def __init__(self, options: AsrOptions | None = None) -> None:
        options = options or AsrOptions()
        self.options = options
        device = options.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute = options.compute_type
        if compute == "default":
            compute = "float16" if device == "cuda" else "int8"
        self._primary = self._load(options.model, device, compute)
        self._first = Decode(options.window, options.beam_size)
        plan = [Decode.parse(name) for name in options.fallbacks]
        self._fallback = (
            self._load_fallback(device, compute) if any(d.fallback_model for d in plan) else None
        )
        self._plan = [
            d
            for d in plan
            if d != self._first and (self._fallback is not None or not d.fallback_model)
        ]
        self.device = device
        self.compute_type = self._primary.compute_type

    def _load(self, name: str, device: str, compute: str) -> WhisperModel:
        cache = Path(self.options.model_cache_dir) if self.options.model_cache_dir else None
        return WhisperModel(
            resolve_model_path(name, cache),
            name,
            device=device,
            compute_type=compute,
            cpu_threads=self.options.threads_per_decode(),
            num_workers=self.options.num_workers,
            language=self.options.language,
        )

    def _load_fallback(self, device: str, compute: str) -> WhisperModel | None:
        name = self.options.fallback_model
        if name is None or name == self.options.model:
            return None
        if name == "auto":
            try:
                return self._load("base", device, compute)
            except ConfigError as exc:  # not installed: the other fallbacks still run
                log.info("no fallback Whisper model: %s", exc)
                return None
        return self._load(name, device, compute)

    @property
    def model_id(self) -> str:
        return self._primary.model_id

    @property
    def fallback_model_id(self) -> str | None:
        return self._fallback.model_id if self._fallback else None

    @property
    def decodes(self) -> tuple[str, ...]:
        """The first decode and the fallbacks that will run, in order."""
        return (self._first.name, *(d.name for d in self._plan))

    def transcribe(self, pcm16: bytes | np.ndarray, sample_rate: int = RATE) -> Transcript:
        """One segment. Raises :class:`~cxguard.asr.AsrRejected` when its text fails a guard
        under every decode, :class:`AsrError` when the model fails, :class:`AudioError` for
        unusable input."""
        result = self.transcribe_batch([pcm16], sample_rate)[0]
        if isinstance(result, AsrError):
            raise result
        return result

    def transcribe_batch(
        self,
        items: Sequence[bytes | np.ndarray],
        sample_rate: int = RATE,
        *,
        on_done: Callable[[int, Result], None] | None = None,
    ) -> list[Result]:
        """Several segments, in order. A segment whose text fails a guard under every decode
        gets its :class:`~cxguard.asr.AsrRejected` in its place (not raised: the others are
        fine); a model failure raises :class:`AsrError` for the whole batch.

        ``on_done(index, result)`` is called as soon as a segment's result is final — after
        the first decode for most — so a caller need not wait for another segment's
        fallbacks (it is called from this thread)."""
        reported: set[int] = set()

        def report(i: int, result: Result) -> None:
            if on_done is not None and i not in reported:
                reported.add(i)
                on_done(i, result)

        out: list[Result | None] = [None] * len(items)
        pending: list[_Item] = []
        for i, raw in enumerate(items):
            audio = self._to_float(raw, sample_rate)
            if loudest_frame_dbfs(audio) < self.options.silence_dbfs:
                silent = Transcript("", self.model_id, None, 1.0, 0.0, decode="energy-gate")
                out[i] = silent
                report(i, silent)
            else:
                pending.append(_Item(i, audio, speech_bursts(audio)))
        tried: dict[int, list[str]] = {it.index: [] for it in pending}
        rejections: dict[int, list[AsrRejected]] = {it.index: [] for it in pending}
        for how in (self._first, *self._plan):
            todo = [it for it in pending if _needs(out[it.index], how)]
            if not todo:
                break
            for item, result in zip(todo, self._decode(todo, how), strict=True):
                previous = out[item.index]
                looped = isinstance(previous, AsrRejected) and previous.digit_loop
                if looped and isinstance(result, Transcript):
                    result = recount(result.text, result.model_id) or result
                failed = f":{result.reason}" if isinstance(result, AsrRejected) else ""
                tried[item.index].append(how.name + failed)
                if isinstance(result, AsrRejected):
                    rejections[item.index].append(result)
                    if isinstance(previous, AsrRejected):
                        continue  # keep the first decode's rejection: it says what failed first
                out[item.index] = result
                if isinstance(result, Transcript):
                    report(item.index, result)
        done: list[Result] = []
        floor = self.options.agree_logprob
        for i, r in enumerate(out):
            assert r is not None  # every segment was either gated or decoded
            if isinstance(r, AsrRejected) and floor is not None:
                r = agreed(rejections[i], floor) or r
            if isinstance(r, AsrRejected):
                r.record_attempts(tuple(tried[i]))
                r.readings = readings(rejections[i])
            report(i, r)
            done.append(r)
        return done

    def transcribe_with(
        self, decode: str, items: Sequence[bytes | np.ndarray], sample_rate: int = RATE
    ) -> list[Result]:
        """Several segments with one named strategy only (no fallbacks, no energy gate): for
        benchmarks and tests that compare strategies."""
        how = Decode.parse(decode)
        if how.fallback_model and self._fallback is None:
            raise ConfigError(f"decode {decode!r} needs a fallback model, and none is loaded")
        todo = [
            _Item(i, a, speech_bursts(a)) for i, a in enumerate(self._floats(items, sample_rate))
        ]
        return self._decode(todo, how)

    def _floats(
        self, items: Sequence[bytes | np.ndarray], sample_rate: int
    ) -> list[npt.NDArray[np.float32]]:
        return [self._to_float(raw, sample_rate) for raw in items]

    def warmup(self) -> None:
        """One decode of quiet noise per model, so the first real segment does not pay for
        lazy set-up."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, RATE).astype(np.float32)
        self._decode([_Item(0, noise)], self._first)
        if self._fallback is not None:
            self._decode([_Item(0, noise)], Decode("full", 1, 0.0, True))

    # ------------------------------------------------------------------ internals

    def _decode(self, todo: list[_Item], how: Decode) -> list[Result]:
        model = self._fallback if how.fallback_model and self._fallback else self._primary
        min_window = self.options.min_window_for(
            self.options.fallback_model if model is self._fallback else self.options.model
        )
        frames = [self._window_frames(it.audio.size, how, min_window) for it in todo]
        order = sorted(range(len(todo)), key=lambda k: frames[k])
        results: list[Result | None] = [None] * len(todo)
        start = 0
        while start < len(order):  # only segments with the same window share a call
            end = start + 1
            while (
                end < len(order)
                and end - start < self.options.max_batch
                and frames[order[end]] == frames[order[start]]
            ):
                end += 1
            idx = order[start:end]
            key = (model.model_id, frames[order[start]])
            group = [
                Segment(
                    todo[k].audio,
                    frames[k],
                    self._budget(todo[k].audio.size),
                    todo[k].bursts,
                    todo[k].encoded.get(key),
                )
                for k in idx
            ]
            raws = model.decode(
                group,
                how,
                silence_pad=self.options.padding == "silence",
                no_repeat_ngram_size=self.options.no_repeat_ngram_size,
                seed=self.options.sampling_seed,
            )
            for k, seg in zip(idx, group, strict=True):
                if seg.encoded is not None:
                    todo[k].encoded[key] = seg.encoded
            for k, raw in zip(idx, raws, strict=True):
                try:
                    text = check(
                        raw.decoded,
                        no_speech_threshold=self.options.no_speech_threshold,
                        log_prob_threshold=self.options.log_prob_threshold,
                        reject_logprob=self.options.reject_logprob,
                        compression_ratio_threshold=self.options.compression_ratio_threshold,
                        model_id=model.model_id,
                    )
                except AsrRejected as rejected:
                    rejected.decode = how.name
                    rejected.asr_ms = raw.asr_ms
                    results[k] = rejected
                    continue
                d = raw.decoded
                results[k] = Transcript(
                    text, model.model_id, d.avg_logprob, d.no_speech_prob, raw.asr_ms, how.name
                )
            start = end
        return [r for r in results if r is not None]

    def _to_float(self, raw: bytes | np.ndarray, sample_rate: int) -> npt.NDArray[np.float32]:
        if isinstance(raw, bytes | bytearray | memoryview):
            if len(raw) % 2:
                raise AudioError(f"PCM16 needs an even number of bytes, got {len(raw)}")
            raw = np.frombuffer(raw, dtype="<i2")
        if raw.ndim != 1:
            raise AudioError(f"ASR needs mono audio (1-D), got shape {raw.shape}")
        if raw.dtype == np.int16:
            audio = raw.astype(np.float32) / 32768.0
        elif np.issubdtype(raw.dtype, np.floating):
            audio = raw.astype(np.float32, copy=False)
        else:
            raise AudioError(f"ASR needs int16 PCM or float audio, got {raw.dtype}")
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        if sample_rate != RATE and audio.size:
            audio = soxr.resample(audio, sample_rate, RATE).astype(np.float32, copy=False)
        seconds = audio.size / RATE
        if seconds > self.options.max_turn_s + 0.01:
            raise AsrError(
                f"segment of {seconds:.2f} s exceeds max_turn_s "
                f"{self.options.max_turn_s} s (cut segments before ASR)"
            )
        return audio[: int(self.options.max_turn_s * RATE)]

    def _window_frames(self, n_samples: int, how: Decode, min_window_s: float) -> int:
        if how.window == "full":
            return FULL_FRAMES
        seconds = max(min_window_s, math.ceil(n_samples / RATE + self.options.window_margin_s))
        return min(FULL_FRAMES, int(seconds * FRAMES_PER_S))

    def _budget(self, n_samples: int) -> int:
        budget = 16 + math.ceil(self.options.max_tokens_per_s * n_samples / RATE)
        return min(budget, MAX_NEW_TOKENS)


def _needs(result: Result | None, how: Decode) -> bool:
    """Whether a segment with this result so far is decoded (again) with ``how``."""
    if result is None:
        return True
    if not isinstance(result, AsrRejected):
        return False
    # Measured (docs/asr.md): on digit strings that loop tiny.en, base returned fewer digits
    # than were spoken ("I-1-1-1-…-8" for 5111 1111 1111 1118) as confident text that hides
    # the number; beam search and the full window of the primary model refuse or get them.
    return not (how.fallback_model and result.digit_loop)
