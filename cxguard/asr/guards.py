"""Guards against Whisper's known failure modes on short, telephone-quality turns.

Two kinds of outcome, on purpose different:

* **Nothing was said** — the turn is silent (energy gate: the model never sees it) or the model
  says so (no-speech probability above the threshold *and* a low average log-probability, the
  rule Whisper itself uses). The transcript is empty text: a true statement about the turn.
* **Something was said but the text cannot be trusted** — a runaway decode that never ends,
  a repetition loop, a compression ratio typical of loops, or a low average log-probability.
  This raises :class:`AsrRejected` (an :class:`~cxguard.errors.AsrError`): the policy engine
  must return ``undetermined`` for the turn rather than judge hallucinated or missing words.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cxguard.errors import AsrError

RejectReason = Literal["runaway", "repetition", "compression_ratio", "low_logprob"]

_FRAME = 320  # 20 ms at 16 kHz
_WORD = re.compile(r"[\w']+")
_DIGIT_WORDS = frozenset(
    ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
)


class AsrRejected(AsrError):
    """The model produced text that failed a guard; ``text`` is kept for the evidence record."""

    def __init__(
        self,
        reason: RejectReason,
        detail: str,
        *,
        text: str,
        model_id: str,
        avg_logprob: float | None,
        no_speech_prob: float | None,
    ) -> None:
        super().__init__(f"ASR text rejected ({reason}): {detail}")
        self.reason: RejectReason = reason
        self.text = text
        self.model_id = model_id
        self.avg_logprob = avg_logprob
        self.no_speech_prob = no_speech_prob


@dataclass(frozen=True)
class Decoded:
    """One decode as the guards see it."""

    text: str
    n_tokens: int
    token_budget: int
    avg_logprob: float
    no_speech_prob: float


def loudest_frame_dbfs(audio: np.ndarray) -> float:
    """Level of the loudest 20 ms frame of float audio in [-1, 1], in dBFS."""
    if audio.size == 0:
        return float("-inf")
    n = -(-audio.size // _FRAME) * _FRAME
    frames = np.pad(audio, (0, n - audio.size)).reshape(-1, _FRAME).astype(np.float64)
    rms = float(np.sqrt((frames**2).mean(axis=1)).max())
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def compression_ratio(text: str) -> float:
    """Whisper's loop detector: looping text compresses far better than speech does."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def repeats(words: list[str]) -> list[tuple[int, int, bool]]:
    """Each back-to-back repeated n-gram (n <= 8) as ``(n, times, digits_only)``, longest run
    per start position."""
    found = []
    for n in range(1, min(8, len(words) // 2) + 1):
        start = 0
        while start + 2 * n <= len(words):
            gram = words[start : start + n]
            times = 1
            while words[start + times * n : start + (times + 1) * n] == gram:
                times += 1
            if times > 1:
                found.append((n, times, all(w.isdigit() or w in _DIGIT_WORDS for w in gram)))
                start += n * (times - 1)
            else:
                start += 1
    return found


def loop_found(words: list[str]) -> tuple[int, int] | None:
    """``(n, times)`` of a run that only a looping decoder produces, else None."""
    for n, times, digits in repeats(words):
        if digits:
            # Numbers are read aloud with runs ("4111 1111 1111 1111", "4242 4242 ..."):
            # only a run longer than any card or account number (19 digits) is a loop.
            looping = n * times >= 20
        else:
            # People do say "no, no, no" or "sorry, sorry": only longer runs count.
            looping = (n == 1 and times >= 8) or (n >= 2 and times >= 4) or (n >= 4 and times >= 3)
        if looping:
            return n, times
    return None


def has_words(text: str) -> bool:
    """Whisper answers silence with "." or "..."; text without a letter or digit is none."""
    return any(ch.isalnum() for ch in text)


def check(
    d: Decoded,
    *,
    no_speech_threshold: float,
    log_prob_threshold: float,
    reject_logprob: float | None,
    compression_ratio_threshold: float,
    model_id: str,
) -> str:
    """The text to keep ("" when nothing was said), or raise :class:`AsrRejected`."""
    if d.no_speech_prob > no_speech_threshold and d.avg_logprob < log_prob_threshold:
        return ""
    text = d.text.strip()
    if not has_words(text):
        return ""

    def reject(reason: RejectReason, detail: str) -> AsrRejected:
        return AsrRejected(
            reason,
            detail,
            text=text,
            model_id=model_id,
            avg_logprob=d.avg_logprob,
            no_speech_prob=d.no_speech_prob,
        )

    if d.n_tokens >= d.token_budget:
        raise reject("runaway", f"no end of text within {d.token_budget} tokens")
    loop = loop_found(_WORD.findall(text.lower()))
    if loop is not None:
        raise reject("repetition", f"a {loop[0]}-word phrase repeated {loop[1]} times")
    ratio = compression_ratio(text)
    if ratio > compression_ratio_threshold:
        raise reject("compression_ratio", f"{ratio:.2f} > {compression_ratio_threshold}")
    if reject_logprob is not None and d.avg_logprob < reject_logprob:
        raise reject("low_logprob", f"average log-probability {d.avg_logprob:.2f}")
    return text
