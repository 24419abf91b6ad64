"""ASR latency and word error rate, naive baseline against the turn-sized encoder window.

    .venv/bin/python benchmarks/asr_bench.py [--model tiny.en] [--repeat 1] [--out FILE]

Prints JSON. Each configuration transcribes the same utterances (real speech: JFK, ten OSR
Harvard sentences at 8 kHz, the pyannote telephone sample cut by its .stm when shared/ is next
to the repository, and the bundled eSpeak demo call cut by its turns.json):

* ``fw-transcribe-b5``: faster-whisper's own ``transcribe`` with its defaults (beam 5,
  temperature fallback, previous-text conditioning) — the naive way to call it;
* ``full-b5`` / ``full-b1``: this room, Whisper's padded 30 s window, beam 5 / 1;
* ``turn-b5`` / ``turn-b1``: this room, window sized to the turn;
* ``turn-b1-batched``: ``transcribe_batch`` over the utterances (batches of ``max_batch``);
  its latency is the batch call each utterance waited for, ``cost_ms`` the time per utterance.

Text a guard rejected counts as empty (deletions) in the WER. Timings on a shared 2-core
machine move by tens of percent between runs: compare configurations within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import soxr
from faster_whisper import WhisperModel, decode_audio

from cxguard.asr import AsrOptions, Transcriber, resolve_model_path
from cxguard.asr.wer import wer
from cxguard.errors import AsrError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
RATE = 16_000
JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@dataclass(frozen=True)
class Utterance:
    corpus: str
    audio: np.ndarray  # float32, 16 kHz
    text: str


def _wav16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        rate = w.getframerate()
    audio = pcm.astype(np.float32) / 32768.0
    return audio if rate == RATE else soxr.resample(audio, rate, RATE).astype(np.float32)


def _cut(audio: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return audio[max(0, int(start_s * RATE)) : int(end_s * RATE)]


def load_utterances(shared_audio: Path) -> list[Utterance]:
    utts = [Utterance("jfk", decode_audio(str(DATA / "jfk_16k.flac")), JFK)]
    osr = _wav16k(DATA / "OSR_us_000_0034_8k.wav")
    meta = json.loads((DATA / "OSR_us_000_0034_8k.sentences.json").read_text())
    utts += [
        Utterance("osr", _cut(osr, s["start_s"], s["end_s"]), s["text"]) for s in meta["sentences"]
    ]
    stm = shared_audio / "pyannote_sample.stm"
    if stm.is_file():
        call = _wav16k(shared_audio / "pyannote_sample_telephone_16k.wav")
        for line in stm.read_text().splitlines():
            fields = line.split(None, 5)
            start, end = float(fields[3]), float(fields[4])
            utts.append(Utterance("pyannote", _cut(call, start - 0.1, end + 0.1), fields[5]))
    card = shared_audio / "fsdd_jackson_card_4111111111111111_8k.wav"
    if card.is_file():  # real speech, read digit by digit: where short windows loop
        utts.append(Utterance("card", _wav16k(card), " ".join([_DIGITS[4]] + [_DIGITS[1]] * 15)))
    demo = ROOT / "cxguard" / "data" / "demo"
    if (demo / "turns.json").is_file():
        turns = json.loads((demo / "turns.json").read_text())["turns"]
        tracks = {s: decode_audio(str(demo / f"{s}.wav")) for s in ("agent", "customer")}
        for t in turns:
            audio = _cut(tracks[t["speaker"]], t["start_ms"] / 1000 - 0.1, t["end_ms"] / 1000 + 0.1)
            utts.append(Utterance("demo", audio, t["text"]))
    return utts


_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _spelled_digits(text: str) -> str:
    """Digits one word each ("4111 1111" → "four one one …"): the reference reads them so."""
    return re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text)


def _summary(utts: list[Utterance], hyps: list[str], lat: list[float]) -> dict[str, Any]:
    hyps = [
        _spelled_digits(h) if u.corpus == "card" else h for u, h in zip(utts, hyps, strict=True)
    ]
    corpora = sorted({u.corpus for u in utts}, key=[u.corpus for u in utts].index)
    by = {
        c: round(wer([u.text for u in utts if u.corpus == c],
                     [h for u, h in zip(utts, hyps, strict=True) if u.corpus == c]), 4)
        for c in corpora
    }  # fmt: skip
    ms = np.array(lat) * 1000
    return {
        "wer": {"all": round(wer([u.text for u in utts], hyps), 4), **by},
        "latency_ms": {
            "median": round(float(np.median(ms)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
            "mean": round(float(ms.mean()), 1),
        },
    }


def run_transcriber(
    opts: AsrOptions, utts: list[Utterance], repeat: int, batched: bool
) -> dict[str, Any]:
    t0 = time.perf_counter()
    asr = Transcriber(opts)
    load_s = time.perf_counter() - t0
    asr.warmup()
    hyps: list[str] = []
    lat: list[float] = []
    rejected = 0
    total = 0.0
    for _ in range(repeat):
        hyps, rejected = [], 0
        if batched:
            # The runtime's worker hands over whatever turns are waiting; here: in order.
            for i in range(0, len(utts), opts.max_batch):
                chunk = utts[i : i + opts.max_batch]
                t = time.perf_counter()
                results = asr.transcribe_batch([u.audio for u in chunk])
                dt = time.perf_counter() - t
                total += dt
                lat += [dt] * len(chunk)
                for r in results:
                    rejected += isinstance(r, AsrError)
                    hyps.append("" if isinstance(r, AsrError) else r.text)
        else:
            for u in utts:
                t = time.perf_counter()
                try:
                    hyps.append(asr.transcribe(u.audio).text)
                except AsrError:
                    hyps.append("")
                    rejected += 1
                dt = time.perf_counter() - t
                total += dt
                lat.append(dt)
    out = _summary(utts, hyps, lat)
    out.update(cost_ms=round(1000 * total / (repeat * len(utts)), 1), rejected=rejected,
               load_s=round(load_s, 2), model_id=asr.model_id)  # fmt: skip
    return out


def run_faster_whisper(
    model: str, threads: int, utts: list[Utterance], repeat: int
) -> dict[str, Any]:
    path = resolve_model_path(model)
    fw = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)
    fw.transcribe(utts[0].audio, language="en")
    hyps: list[str] = []
    lat: list[float] = []
    for _ in range(repeat):
        hyps = []
        for u in utts:
            t = time.perf_counter()
            segments, _ = fw.transcribe(u.audio, language="en", beam_size=5)
            hyps.append(" ".join(s.text.strip() for s in segments))
            lat.append(time.perf_counter() - t)
    out = _summary(utts, hyps, lat)
    out["cost_ms"] = out["latency_ms"]["mean"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 intra threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shared-audio", type=Path, default=ROOT.parent / "shared" / "audio")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    utts = load_utterances(args.shared_audio)
    base = AsrOptions(model=args.model, cpu_threads=args.threads, device=args.device)
    configs: dict[str, tuple[AsrOptions, bool]] = {
        "full-b5": (replace(base, window="full", beam_size=5), False),
        "full-b1": (replace(base, window="full", beam_size=1), False),
        "turn-b5": (replace(base, window="turn", beam_size=5), False),
        "turn-b1": (replace(base, window="turn", beam_size=1), False),
        "turn-b1-batched": (replace(base, window="turn", beam_size=1), True),
        "turn-b1-silence": (replace(base, window="turn", padding="silence"), False),
        "turn6-b1": (replace(base, window="turn", min_window_s=6.0), False),
        "turn6-b1-silence": (
            replace(base, window="turn", min_window_s=6.0, padding="silence"),
            False,
        ),
        "turn-b1-nr4": (replace(base, no_repeat_ngram_size=4), False),
        "turn-b1-nofallback": (replace(base, full_window_fallback=False), False),
    }
    wanted = set(args.only.split(",")) if args.only else None
    results: dict[str, Any] = {}
    if (wanted is None or "fw-transcribe-b5" in wanted) and args.device == "cpu":
        results["fw-transcribe-b5"] = run_faster_whisper(
            args.model, args.threads, utts, args.repeat
        )
        print("fw-transcribe-b5 done", file=sys.stderr, flush=True)
    for name, (opts, batched) in configs.items():
        if wanted is None or name in wanted:
            results[name] = run_transcriber(opts, utts, args.repeat, batched)
            print(f"{name} done", file=sys.stderr, flush=True)
    corpora: dict[str, dict[str, float]] = {}
    for u in utts:
        c = corpora.setdefault(u.corpus, {"utterances": 0, "seconds": 0.0})
        c["utterances"] += 1
        c["seconds"] = round(c["seconds"] + u.audio.size / RATE, 2)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ctranslate2": ctranslate2.__version__, "device": args.device},
        "model": args.model,
        "corpora": corpora,
        "configs": results,
    }  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
