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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cxguard.errors import AsrError

RejectReason = Literal["runaway", "repetition", "compression_ratio", "low_logprob", "truncated"]

RATE_HZ = 16_000
_FRAME = 320  # 20 ms at 16 kHz
_WORD = re.compile(r"[\w']+")
_DIGIT_WORDS = frozenset(
    ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
)
_SPELLED = {
    w: str(i)
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    )
} | {"oh": "0"}


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
        self.digit_loop = reason in ("repetition", "runaway") and _digit_heavy(text)
        """The loop ran on digits (a number read out): see the transcriber's fallback rule."""
        self.decode = ""
        """The decode strategy whose text this is (set by the transcriber)."""
        self.asr_ms = 0.0
        """Time the model spent on this decode (set by the transcriber)."""
        self.attempts: tuple[str, ...] = ()
        """Every decode tried on the segment, ``name:reason`` for each one that failed."""

    def record_attempts(self, attempts: tuple[str, ...]) -> None:
        """Name every decode tried, in the message too (it becomes the turn's
        ``undetermined_reason`` in the evidence)."""
        self.attempts = attempts
        if len(attempts) > 1:
            self.args = (f"{self.args[0]}; decodes tried: {', '.join(attempts)}",)


@dataclass(frozen=True)
class Decoded:
    """One decode as the guards see it."""

    text: str
    n_tokens: int
    token_budget: int
    avg_logprob: float
    no_speech_prob: float
    stopped: tuple[RejectReason, str] | None = None
    """Set when the decoder was stopped mid-way by :func:`early_stop` (reason, detail)."""
    bursts: int = 0
    """Bursts of speech in the audio (:func:`speech_bursts`); 0 = not measured."""


SAME_DIGIT_RUN = 6
"""After a decode looped on digits, a text holding this many identical digits in a row is not
trusted: measured, tiny.en then returns 12 or 28 ones for 15 spoken ones (docs/asr.md)."""


SPOKEN_DIGIT_RUN = 8
"""One digit decoded as a word of its own this many times in a row is a loop, not a count:
tiny.en returned 21-47 ones for a read 4111 1111 1111 1111 (docs/asr.md) and, on the demo's
card number, "3, 6, 6, 6, ..." for "3 6 6" — by 48 tokens, where the decoder is first checked.
A grouped reading ("1111 1111") is judged by the 20-digit rule of :func:`loop_found` instead.
Such a run is no more trusted than after a loop (:data:`SAME_DIGIT_RUN`)."""


def same_digit_run(text: str) -> int:
    """Longest run of one digit in ``text``, across spaces and punctuation ("1 1 1" is 3)."""
    digits: list[str] = []
    for w in _WORD.findall(text.lower()):
        if w.isdigit():
            digits.extend(w)
        else:
            digits.append(_SPELLED.get(w, " "))
    best = run = 0
    for prev, ch in zip([" ", *digits], digits, strict=False):
        run = run + 1 if ch == prev and ch != " " else 1
        best = max(best, run if ch != " " else 0)
    return best


def recount(text: str, model_id: str) -> AsrRejected | None:
    """Refusal of a fallback's ``text`` for a segment whose first decode looped on digits,
    when it holds a run of identical digits the model cannot be trusted to have counted."""
    run = same_digit_run(text)
    if run < SAME_DIGIT_RUN:
        return None
    return AsrRejected(
        "repetition",
        f"{run} identical digits in a row after a looping decode: the count is not trusted",
        text=text,
        model_id=model_id,
        avg_logprob=None,
        no_speech_prob=None,
    )


def _digit_heavy(text: str) -> bool:
    digits, words = spoken_units(text)
    return digits >= 8 and digits >= words


def loudest_frame_dbfs(audio: np.ndarray) -> float:
    """Level of the loudest 20 ms frame of float audio in [-1, 1], in dBFS."""
    if audio.size == 0:
        return float("-inf")
    n = -(-audio.size // _FRAME) * _FRAME
    frames = np.pad(audio, (0, n - audio.size)).reshape(-1, _FRAME).astype(np.float64)
    rms = float(np.sqrt((frames**2).mean(axis=1)).max())
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def speech_bursts(audio: np.ndarray, gap_ms: int = 80, floor_dbfs: float = -50.0) -> int:
    """Stretches of sound separated by at least ``gap_ms`` of quiet (35 dB under the loudest
    20 ms frame, or under ``floor_dbfs``): a lower bound on the words a digit reading holds,
    since every spoken digit is at least one burst apart from the next only when paused."""
    if audio.size < _FRAME:
        return 0
    frames = audio[: audio.size // _FRAME * _FRAME].reshape(-1, _FRAME).astype(np.float64)
    level = 10.0 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = level > max(float(level.max()) - 35.0, floor_dbfs)
    gap = gap_ms * RATE_HZ // 1000 // _FRAME
    bursts, quiet, run = 0, gap, 0
    for voiced in loud:
        if voiced:
            if quiet >= gap and run == 0:
                bursts += 1
            run, quiet = run + 1, 0
        else:
            quiet += 1
            if quiet >= gap:
                run = 0
    return bursts


def spoken_units(text: str) -> tuple[int, int]:
    """(digits, other words) in ``text``: "4111 1111" holds 8 digits."""
    digits = sum(ch.isdigit() for ch in text)
    words = sum(1 for w in _WORD.findall(text.lower()) if not any(c.isdigit() for c in w))
    spelled = sum(1 for w in _WORD.findall(text.lower()) if w in _DIGIT_WORDS)
    return digits + spelled, words - spelled


def compression_ratio(text: str) -> float:
    """Whisper's loop detector: looping text compresses far better than speech does."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _units(gram: list[str]) -> int:
    return sum(len(w) if w.isdigit() else 1 for w in gram)


def repeats(words: list[str]) -> list[tuple[int, int, int]]:
    """Each back-to-back repeated n-gram (n <= 8) as ``(n, times, digits)``, longest run per
    start position; ``digits`` counts the digits of a gram made only of digits ("111" is
    three), else 0."""
    found = []
    for n in range(1, min(8, len(words) // 2) + 1):
        start = 0
        while start + 2 * n <= len(words):
            gram = words[start : start + n]
            times = 1
            while words[start + times * n : start + (times + 1) * n] == gram:
                times += 1
            if times > 1:
                digits = sum(len(w) if w.isdigit() else w in _DIGIT_WORDS for w in gram)
                found.append((n, times, digits if digits == _units(gram) else 0))
                start += n * (times - 1)
            else:
                start += 1
    return found


def loop_found(words: list[str]) -> tuple[int, int] | None:
    """``(n, times)`` of a run that only a looping decoder produces, else None."""
    for n, times, digits in repeats(words):
        if n == 1 and digits == 1 and times >= SPOKEN_DIGIT_RUN:
            # One digit written again and again as its own word ("6, 6, 6, 6, ..."): how a
            # decoder that lost its place in a digit-by-digit reading loops.
            looping = True
        elif digits:
            # Numbers are read aloud with runs ("4111 1111 1111 1111", "4242 4242 ..."):
            # only a run longer than any card or account number (19 digits) is a loop,
            # however the decoder groups them ("111 111 111 ..." holds three per word).
            looping = digits * times >= 20
        else:
            # People do say "no, no, no" or "sorry, sorry": only longer runs count.
            looping = (n == 1 and times >= 8) or (n >= 2 and times >= 4) or (n >= 4 and times >= 3)
        if looping:
            return n, times
    return None


TOKEN_RUN = 12
"""One non-digit token repeated this often back to back ("mmmm…", "…………") is a loop: no word
is spelled that way, and word-level repeats are :func:`loop_found`'s business."""


def token_run(tokens: Sequence[int], digits: frozenset[int] = frozenset()) -> int:
    """Length of the longest back-to-back run of one token that is not a digit."""
    best = run = 0
    prev = None
    for t in tokens:
        run = run + 1 if t == prev else 1
        prev = t
        if t not in digits:
            best = max(best, run)
    return best


def looping(
    text: str, tokens: Sequence[int] = (), digits: frozenset[int] = frozenset()
) -> tuple[RejectReason, str] | None:
    """Why ``text`` can only come from a looping decoder, or None. Monotone: a prefix that
    loops means the whole text does, so the decoder may be stopped as soon as it is true."""
    loop = loop_found(_WORD.findall(text.lower()))
    if loop is not None:
        return "repetition", f"a {loop[0]}-word phrase repeated {loop[1]} times"
    run = token_run(tokens, digits)
    if run >= TOKEN_RUN:
        return "repetition", f"one token repeated {run} times"
    return None


def early_stop(
    text: str, tokens: Sequence[int], digits: frozenset[int]
) -> tuple[RejectReason, str] | None:
    """Checked between decoding steps: the decode cannot end in trustworthy text.
    ``digits`` are the token ids of digit strings, whose runs only the word rules judge."""
    return looping(text, tokens, digits)


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

    if d.stopped is not None:
        raise reject(d.stopped[0], f"{d.stopped[1]} (decoding stopped at {d.n_tokens} tokens)")
    if d.n_tokens >= d.token_budget:
        raise reject("runaway", f"no end of text within {d.token_budget} tokens")
    loop = looping(text)
    if loop is not None:
        raise reject(*loop)
    digits, words = spoken_units(text)
    if digits >= 4 and d.bursts > digits + words:
        # A number read out with pauses, decoded as fewer units than the audio has bursts:
        # the decoder dropped part of it ("4 1 1 1 1" for sixteen spoken digits). Accepting it
        # would hide the rest of the number from the PII checks.
        raise reject(
            "truncated",
            f"{digits} digits and {words} other words for {d.bursts} bursts of speech",
        )
    ratio = compression_ratio(text)
    if ratio > compression_ratio_threshold:
        raise reject("compression_ratio", f"{ratio:.2f} > {compression_ratio_threshold}")
    if reject_logprob is not None and d.avg_logprob < reject_logprob:
        raise reject("low_logprob", f"average log-probability {d.avg_logprob:.2f}")
    return text
