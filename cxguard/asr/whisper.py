"""One loaded CTranslate2 Whisper model and the ways it decodes a batch of segments.

faster-whisper's ``transcribe`` always pads the log-Mel features to Whisper's 30 s window and
decodes with a fixed recipe; this module drives the feature extractor, tokenizer and
``Whisper.generate`` itself so that each :class:`~cxguard.asr.decoding.Decode` can choose the
window, the beam and the temperature.

**Greedy decodes stop a loop as it happens.** CTranslate2's ``Whisper.generate`` has no per-step
callback (4.x), so a greedy decode runs in two pieces: the first chunk is long enough for almost
every segment to end in it (no extra cost); a segment that did not end there has the text so
far checked with the same loop guards the final text gets — a run found in a prefix stays in
the whole text, so stopping there changes no verdict, only its cost — and, when it does not
loop yet, is continued once to its whole token budget. Once, not in small chunks: a
continuation re-decodes its prefix at about the cost of generating it (measured on 2 CPU
cores, tiny.en: 48 tokens 0.67 s, +16 more 1.04 s, +16 more 1.30 s; one 90-token call 1.8 s),
so small chunks cost the sum of their lengths.

**Sampling is seeded per segment.** CTranslate2's sampler draws from a per-thread generator
that cannot be reseeded per call, so ``tT`` decodes sample in Python from the logits of one
decoder step at a time, with a NumPy generator seeded from the segment's audio: the same
segment gives the same text on every run and every machine.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from cxguard.asr.decoding import Decode
from cxguard.asr.guards import Decoded, RejectReason, early_stop
from cxguard.asr.models import model_digest
from cxguard.errors import AsrError, ConfigError

RATE = 16_000
FRAMES_PER_S = 100  # Whisper's 10 ms hop
HOP = RATE // FRAMES_PER_S
FULL_FRAMES = 3000
MAX_NEW_TOKENS = 224  # Whisper's sample_len: half the decoder's 448-token context

FIRST_CHUNK = 48
"""Tokens decoded before the loop check: real speech measured at 2-9.4 tokens/s, so segments
up to ~5 s end inside it, and a digit reading that loops shows it by then."""


@dataclass
class Segment:
    """One segment on its way through a decode."""

    audio: npt.NDArray[np.float32]
    frames: int
    budget: int
    bursts: int = 0
    encoded: npt.NDArray[np.float32] | None = None
    """The encoder's output for this audio and window, once computed on the CPU: a fallback
    decode in the same window reuses it instead of encoding again (~130 ms for a 10 s
    window of tiny.en on one core)."""


@dataclass
class Raw:
    """What one decode produced, before the guards judge it."""

    decoded: Decoded
    asr_ms: float


class WhisperModel:
    """Thread-safe after ``__init__``; CTranslate2 queues concurrent calls onto its replicas."""

    def __init__(
        self,
        path: Path,
        name: str,
        *,
        device: str,
        compute_type: str,
        cpu_threads: int,
        num_workers: int,
        language: str | None,
    ) -> None:
        try:
            self._model = ctranslate2.models.Whisper(
                str(path),
                device=device,
                compute_type=compute_type,
                intra_threads=cpu_threads,
                inter_threads=num_workers,
            )
            hf = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError/OSError
            raise AsrError(f"cannot load Whisper model {name!r} from {path}: {exc}") from exc
        multilingual = bool(self._model.is_multilingual)
        if not multilingual and language not in (None, "en"):
            raise ConfigError(
                f"model {name!r} is English-only, language {language!r} was asked for"
            )
        try:
            self._tok = Tokenizer(hf, multilingual, task="transcribe", language=language or "en")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.device = device
        self._detect_language = multilingual and language is None
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        self._prompt = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self._suppress = list(get_suppressed_tokens(self._tok, [-1]))
        vocab = int(self._model.n_vocab) if hasattr(self._model, "n_vocab") else hf.get_vocab_size()
        # Sampling never draws a suppressed token nor a special one (timestamps, SOT, ...).
        self._never = np.array(
            [t for t in self._suppress if t >= 0] + list(range(self._tok.eot + 1, vocab)),
            dtype=np.int64,
        )
        self._digit_tokens = frozenset(
            i for token, i in hf.get_vocab().items() if token.lstrip("Ġ").isdigit()
        )
        self.compute_type = str(self._model.compute_type)
        label = name if name in ("tiny.en", "base") else path.name
        self.model_id = f"whisper-{label}-ct2-{self.compute_type}@{model_digest(path)[:12]}"

    # ---------------------------------------------------------------------------- features

    def mel(self, audio: npt.NDArray[np.float32], frames: int, *, silence_pad: bool) -> Any:
        pad = HOP
        if silence_pad:
            pad = max(HOP, (frames + 1) * HOP - audio.size)
        mel = self._features(audio, padding=pad)[:, :-1]  # the last frame is padding
        return np.pad(mel[:, :frames], ((0, 0), (0, frames - min(frames, mel.shape[1]))))

    # ---------------------------------------------------------------------------- decoding

    def decode(
        self,
        group: Sequence[Segment],
        how: Decode,
        *,
        silence_pad: bool,
        no_repeat_ngram_size: int,
        seed: int,
    ) -> list[Raw]:
        """Decode segments that share one window size. Raises :class:`AsrError` when the
        model fails."""
        started = time.perf_counter()
        try:
            mels = np.stack([self.mel(s.audio, s.frames, silence_pad=silence_pad) for s in group])
            encoded = self._encode(group, mels)
            prompts = self._prompts(encoded, len(group))
            if how.temperature:
                out = [
                    self._sample(encoded, mels, i, prompts[i], s, how.temperature, seed)
                    for i, s in enumerate(group)
                ]
            elif how.beam_size == 1:
                out = self._greedy(encoded, mels, prompts, group, no_repeat_ngram_size)
            else:
                out = self._beam(encoded, mels, prompts, group, how.beam_size, no_repeat_ngram_size)
        except AsrError:
            raise
        except Exception as exc:  # translate CTranslate2's errors at the room's boundary
            raise AsrError(f"Whisper failed on {len(group)} segment(s): {exc}") from exc
        asr_ms = 1000.0 * (time.perf_counter() - started)
        return [Raw(replace(d, bursts=s.bursts), asr_ms) for d, s in zip(out, group, strict=True)]

    def _encode(self, group: Sequence[Segment], mels: npt.NDArray[np.float32]) -> Any:
        """The encoder output of ``group``, reused from an earlier decode where each segment
        has one (CPU only: on a GPU it cannot be sliced per segment without a CUDA array
        library, and encoding there costs milliseconds)."""
        cached = [s.encoded for s in group]
        if self.device == "cpu" and all(e is not None for e in cached):
            return ctranslate2.StorageView.from_array(np.stack(cached))  # type: ignore[arg-type]
        encoded = self._model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=False)
        if self.device == "cpu":
            rows = np.asarray(encoded)
            for s, row in zip(group, rows, strict=True):
                s.encoded = np.array(row)
        return encoded

    def _generate(
        self, encoded: Any, prompts: list[list[int]], max_length: int, beam: int, no_repeat: int
    ) -> list[Any]:
        # CTranslate2's whisper decodes at most max_length / 2 tokens, counting a prefix given
        # after the start-of-transcript sequence (measured on 4.8.5).
        return list(
            self._model.generate(
                encoded,
                prompts,
                beam_size=beam,
                no_repeat_ngram_size=no_repeat,
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
        )

    def _greedy(
        self,
        encoded: Any,
        mels: npt.NDArray[np.float32],
        prompts: list[list[int]],
        group: Sequence[Segment],
        no_repeat: int,
    ) -> list[Decoded]:
        n = len(group)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprob = [0.0] * n
        no_speech = [0.0] * n
        done: list[Decoded | None] = [None] * n
        live = list(range(n))
        length = 0
        while live:
            budget = max(group[i].budget for i in live)
            target = min(FIRST_CHUNK, budget) if length == 0 else budget
            features = encoded if len(live) == n else self._subset(encoded, mels, live)
            results = self._generate(
                features,
                [prompts[i] + tokens[i] for i in live],
                2 * target,
                1,
                no_repeat,
            )
            still: list[int] = []
            for i, r in zip(live, results, strict=True):
                seq = list(r.sequences_ids[0])
                # The score is the sum of the new tokens' log-probabilities over the whole
                # sequence length (a prefix counts as 0): undo that to keep a running sum.
                logprob[i] += float(r.scores[0]) * len(seq)
                if length == 0:
                    no_speech[i] = float(r.no_speech_prob)
                tokens[i] = seq
                ended = len(seq) < target
                text = self._text(seq)
                cut = None if ended else early_stop(text, seq, self._digit_tokens)
                if ended or cut is not None or len(seq) >= group[i].budget:
                    avg = logprob[i] / (len(seq) + 1)  # Whisper averages over tokens + EOT
                    done[i] = Decoded(
                        text, len(seq), group[i].budget, avg, no_speech[i], stopped=cut
                    )
                else:
                    still.append(i)
            live, length = still, target
        return [d for d in done if d is not None]

    def _beam(
        self,
        encoded: Any,
        mels: npt.NDArray[np.float32],
        prompts: list[list[int]],
        group: Sequence[Segment],
        beam: int,
        no_repeat: int,
    ) -> list[Decoded]:
        # Beam search cannot be resumed from a prefix without changing what it finds, so it
        # runs once with the first chunk's length; a segment that did not end there and does
        # not loop yet is decoded again with its whole budget (rare: long segments only).
        first = min(FIRST_CHUNK, max(s.budget for s in group))
        done: list[Decoded | None] = [None] * len(group)
        again = []
        results = self._generate(encoded, prompts, 2 * first, beam, no_repeat)
        for i, r in enumerate(results):
            seq = list(r.sequences_ids[0])
            d = self._decoded(seq, r, group[i].budget)
            if len(seq) < first or len(seq) >= group[i].budget:
                done[i] = d
            elif (cut := early_stop(d.text, seq, self._digit_tokens)) is not None:
                done[i] = replace(d, stopped=cut)
            else:
                again.append(i)
        if again:
            features = self._subset(encoded, mels, again)
            budget = max(group[i].budget for i in again)
            results = self._generate(
                features, [prompts[i] for i in again], 2 * budget, beam, no_repeat
            )
            for i, r in zip(again, results, strict=True):
                done[i] = self._decoded(list(r.sequences_ids[0]), r, group[i].budget)
        return [d for d in done if d is not None]

    def _subset(self, encoded: Any, mels: npt.NDArray[np.float32], keep: list[int]) -> Any:
        if self.device == "cpu":
            if len(keep) == np.asarray(encoded).shape[0]:
                return encoded
            return ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.asarray(encoded)[keep])
            )
        # On a GPU the encoder output cannot be sliced without a CUDA array library: encode
        # the continuing segments again (milliseconds there).
        return self._model.encode(ctranslate2.StorageView.from_array(mels[keep]), to_cpu=False)

    def _sample(
        self,
        encoded: Any,
        mels: npt.NDArray[np.float32],
        index: int,
        prompt: list[int],
        seg: Segment,
        temp: float,
        seed: int,
    ) -> Decoded:
        features = self._subset(encoded, mels, [index])
        digest = hashlib.sha256(seg.audio.tobytes()).digest()
        rng = np.random.default_rng([seed, round(temp * 1000), *digest[:8]])
        eot = self._tok.eot
        tokens: list[int] = []
        total = 0.0
        no_speech = 0.0
        cut: tuple[RejectReason, str] | None = None
        while len(tokens) < seg.budget and cut is None:
            r = self._model.generate(
                features,
                [prompt + tokens],
                beam_size=1,
                max_length=2 * (len(tokens) + 1),
                return_logits_vocab=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )[0]
            if not tokens:
                no_speech = float(r.no_speech_prob)
            logits = np.asarray(r.logits[0][-1], dtype=np.float64)
            logits[self._never] = -np.inf
            if not tokens:  # suppress_blank: no empty text, no leading space alone
                logits[[*self._tok.encode(" "), eot]] = -np.inf
            logp = logits - np.logaddexp.reduce(logits)
            p = np.exp((logits - logits.max()) / temp)
            token = int(rng.choice(p.size, p=p / p.sum()))
            total += float(logp[token])
            if token == eot:
                break
            tokens.append(token)
            cut = early_stop(self._text(tokens), tokens, self._digit_tokens)
        avg = total / (len(tokens) + 1)
        return Decoded(self._text(tokens), len(tokens), seg.budget, avg, no_speech, stopped=cut)

    def _decoded(self, seq: Sequence[int], result: Any, budget: int) -> Decoded:
        n = len(seq)
        avg = float(result.scores[0]) * n / (n + 1)  # Whisper averages over tokens + EOT
        return Decoded(self._text(seq), n, budget, avg, float(result.no_speech_prob))

    def _text(self, seq: Sequence[int]) -> str:
        return str(self._tok.decode([t for t in seq if t < self._tok.eot]))

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
