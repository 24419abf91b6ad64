"""One Whisper model (CTranslate2 via faster-whisper's parts), shared by every call.

faster-whisper's ``transcribe`` always pads the log-Mel features to Whisper's 30 s window
(3000 frames), and on a 2-core machine the encoder over that window is most of the cost of a
3 s turn. CTranslate2's encoder accepts shorter windows, so this module drives the feature
extractor, tokenizer and ``Whisper.generate`` itself: ``window="turn"`` pads each turn only to
``max(min_window_s, ceil(duration + margin))`` seconds. Turns that share a window size are
batched into one ``generate`` call. ``window="full"`` pads to 3000 frames and decodes exactly
as faster-whisper would for a single <= 30 s segment (temperature 0, no previous text).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import soxr
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from cxguard.asr.guards import AsrRejected, Decoded, check, loudest_frame_dbfs
from cxguard.asr.models import model_digest, resolve_model_path
from cxguard.asr.options import AsrOptions
from cxguard.errors import AsrError, AudioError, ConfigError
from cxguard.model import Transcript

RATE = 16_000
FRAMES_PER_S = 100  # Whisper's 10 ms hop
HOP = RATE // FRAMES_PER_S
FULL_FRAMES = 3000
_MAX_LENGTH = 448  # Whisper's decoder context


_LOOPING = frozenset({"runaway", "repetition", "compression_ratio"})


@dataclass
class _Item:
    index: int
    audio: np.ndarray
    frames: int


class Transcriber:
    """Thread-safe: nothing changes after ``__init__``; CTranslate2 queues concurrent calls
    onto ``num_workers`` model replicas."""

    def __init__(self, options: AsrOptions | None = None) -> None:
        options = options or AsrOptions()
        self.options = options
        cache = Path(options.model_cache_dir) if options.model_cache_dir else None
        path = resolve_model_path(options.model, cache)
        device = options.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute = options.compute_type
        if compute == "default":
            compute = "float16" if device == "cuda" else "int8"
        try:
            self._model = ctranslate2.models.Whisper(
                str(path),
                device=device,
                compute_type=compute,
                intra_threads=options.cpu_threads,
                inter_threads=options.num_workers,
            )
            hf = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError/OSError
            raise AsrError(
                f"cannot load Whisper model {options.model!r} from {path}: {exc}"
            ) from exc
        multilingual = bool(self._model.is_multilingual)
        if not multilingual and options.language not in (None, "en"):
            raise ConfigError(
                f"model {options.model!r} is English-only, language "
                f"{options.language!r} was asked for"
            )
        try:
            self._tok = Tokenizer(
                hf, multilingual, task="transcribe", language=options.language or "en"
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self._detect_language = multilingual and options.language is None
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        self._prompt = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self._suppress = list(get_suppressed_tokens(self._tok, [-1]))
        self.device = device
        self.compute_type = str(self._model.compute_type)
        name = options.model if options.model in ("tiny.en", "base") else path.name
        self._model_id = f"whisper-{name}-ct2-{self.compute_type}@{model_digest(path)[:12]}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def transcribe(self, pcm16: bytes | np.ndarray, sample_rate: int = RATE) -> Transcript:
        """One turn. Raises :class:`~cxguard.asr.AsrRejected` when its text fails a guard,
        :class:`AsrError` when the model fails, :class:`AudioError` for unusable input."""
        result = self.transcribe_batch([pcm16], sample_rate)[0]
        if isinstance(result, AsrError):
            raise result
        return result

    def transcribe_batch(
        self, items: Sequence[bytes | np.ndarray], sample_rate: int = RATE
    ) -> list[Transcript | AsrError]:
        """Several turns, in order. A turn whose text fails a guard gets its
        :class:`~cxguard.asr.AsrRejected` in its place (not raised: the others are fine);
        a model failure raises :class:`AsrError` for the whole batch."""
        out: list[Transcript | AsrError | None] = [None] * len(items)
        pending: list[_Item] = []
        for i, raw in enumerate(items):
            audio = self._to_float(raw, sample_rate)
            if loudest_frame_dbfs(audio) < self.options.silence_dbfs:
                out[i] = Transcript("", self._model_id, None, 1.0, 0.0)
            else:
                pending.append(_Item(i, audio, self._window_frames(audio.size)))
        # Only turns with the same window share a call, so a batch decodes exactly as singles.
        pending.sort(key=lambda it: it.frames)
        start = 0
        while start < len(pending):
            end = start + 1
            while (
                end < len(pending)
                and end - start < self.options.max_batch
                and pending[end].frames == pending[start].frames
            ):
                end += 1
            group = pending[start:end]
            for item, result in zip(group, self._run(group), strict=True):
                out[item.index] = result
            start = end
        self._retry_full_window(pending, out)
        done = [r for r in out if r is not None]
        assert len(done) == len(items)  # every turn was either gated or decoded
        return done

    def _retry_full_window(
        self, pending: list[_Item], out: list[Transcript | AsrError | None]
    ) -> None:
        # Short windows make tiny.en loop on digit strings; the padded 30 s window it was
        # trained on usually ends them. Costs one full-window decode, only for those turns.
        if not self.options.full_window_fallback:
            return
        retry = [
            _Item(it.index, it.audio, FULL_FRAMES)
            for it in pending
            if it.frames < FULL_FRAMES
            and isinstance(out[it.index], AsrRejected)
            and getattr(out[it.index], "reason", "") in _LOOPING
        ]
        step = self.options.max_batch
        for start in range(0, len(retry), step):  # same window: they batch like first tries
            group = retry[start : start + step]
            for item, result in zip(group, self._run(group), strict=True):
                out[item.index] = result

    def warmup(self) -> None:
        """One decode of quiet noise, so the first real turn does not pay for lazy set-up."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, RATE).astype(np.float32)
        self._run([_Item(0, noise, self._window_frames(noise.size))])

    # ------------------------------------------------------------------ internals

    def _to_float(self, raw: bytes | np.ndarray, sample_rate: int) -> np.ndarray:
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
                f"turn of {seconds:.2f} s exceeds max_turn_s "
                f"{self.options.max_turn_s} s (cut turns before ASR)"
            )
        return audio[: int(self.options.max_turn_s * RATE)]

    def _window_frames(self, n_samples: int) -> int:
        if self.options.window == "full":
            return FULL_FRAMES
        seconds = max(
            self.options.effective_min_window_s,
            math.ceil(n_samples / RATE + self.options.window_margin_s),
        )
        return min(FULL_FRAMES, int(seconds * FRAMES_PER_S))

    def _budget(self, n_samples: int) -> int:
        budget = 16 + math.ceil(self.options.max_tokens_per_s * n_samples / RATE)
        return min(budget, _MAX_LENGTH // 2)

    def _run(self, group: list[_Item]) -> list[Transcript | AsrError]:
        mels = []
        for item in group:
            pad = HOP
            if self.options.padding == "silence":
                pad = max(HOP, (item.frames + 1) * HOP - item.audio.size)
            mel = self._features(item.audio, padding=pad)[:, :-1]  # last frame: padding
            mels.append(np.pad(mel[:, : item.frames], ((0, 0), (0, item.frames - mel.shape[1]))))
        budgets = [self._budget(item.audio.size) for item in group]
        started = time.perf_counter()
        try:
            features = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(mels)))
            encoded = self._model.encode(features, to_cpu=False)
            prompts = self._prompts(encoded, len(group))
            results = self._model.generate(
                encoded,
                prompts,
                beam_size=self.options.beam_size,
                no_repeat_ngram_size=self.options.no_repeat_ngram_size,
                # CTranslate2's whisper.cc decodes at most max_length / 2 new tokens (Whisper's
                # sample_len); a turn in a batch is still judged by its own budget.
                max_length=2 * max(budgets),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
        except Exception as exc:  # translate CTranslate2's errors at the room's boundary
            raise AsrError(f"Whisper failed on {len(group)} turn(s): {exc}") from exc
        asr_ms = 1000.0 * (time.perf_counter() - started)
        return [self._judge(r, budget, asr_ms) for r, budget in zip(results, budgets, strict=True)]

    def _prompts(self, encoded: Any, n: int) -> list[list[int]]:
        if not self._detect_language:
            return [list(self._prompt) for _ in range(n)]
        at = self._prompt.index(self._tok.language)
        prompts = []
        for langs in self._model.detect_language(encoded):
            prompt = list(self._prompt)
            prompt[at] = self._tok.tokenizer.token_to_id(langs[0][0])
            prompts.append(prompt)
        return prompts

    def _judge(self, result: Any, budget: int, asr_ms: float) -> Transcript | AsrError:
        tokens = [t for t in result.sequences_ids[0] if t < self._tok.eot]
        n = len(result.sequences_ids[0])
        # CTranslate2 reports the length-normalised score; Whisper averages over tokens + EOT.
        avg_logprob = float(result.scores[0]) * n / (n + 1)
        no_speech = float(result.no_speech_prob)
        decoded = Decoded(self._tok.decode(tokens), n, budget, avg_logprob, no_speech)
        try:
            text = check(
                decoded,
                no_speech_threshold=self.options.no_speech_threshold,
                log_prob_threshold=self.options.log_prob_threshold,
                reject_logprob=self.options.reject_logprob,
                compression_ratio_threshold=self.options.compression_ratio_threshold,
                model_id=self._model_id,
            )
        except AsrError as rejected:
            return rejected
        return Transcript(text, self._model_id, avg_logprob, no_speech, asr_ms)
