"""ASR word error, refusals and cost per decode strategy and per fallback cascade.

    PYTHONPATH=. .venv/bin/python benchmarks/asr_bench.py --json [--only NAMES] [--out FILE]

Prints JSON. Utterances (``benchmarks/asr_corpus.py``): real speech (JFK, OSR Harvard sentences
at 8 kHz, the pyannote telephone call cut by its .stm, the FSDD card reading and its 16 isolated
digits), the bundled eSpeak demo call cut by its turns.json, synthetic bank-call speech that
others wrote (SGD Banks_1 turns with amounts, with other numbers, words only, short turns) plus
seeded digit readings, spoken by espeak-ng and flite voices at several rates through 8 kHz
μ-law, and non-speech that must come back empty or refused: noise, hum, DTMF, music, and the
real OSR and pyannote speech played backwards (speech-like sound with no words).

Configurations:

* ``naive``: faster-whisper's own ``transcribe`` (beam 5, temperature fallback, 30 s window) —
  the baseline;
* one strategy alone (``turn-b1`` is the fast decode; ``turn-b5``, ``full-b1``, ``full-b5``,
  ``full-t0.4``, ``fallback:full-b5``): what each would do as the only decode;
* ``fast-only``: the fast decode, refused when a guard fails (what main did before fallbacks,
  apart from its full-window retry of loops);
* ``cascade``: the default — fast decode, then ``turn-b5``, ``full-b5``, then decode
  agreement on what all three found only unsure (``cxguard.asr.agreement``);
* ``cascade-no-agreement``: the same without agreement (main before 2026-12-03);
* ``beam-first``: beam search first (``turn-b5``), then ``full-b5``, then agreement: no greedy
  decode to loop on read-out digits (measured 2026-12-03, not adopted: benchmarks/README.md);
* ``cascade+base``: the same, then ``fallback:full-b5`` (the larger model, when installed).

Per configuration: word error rate split into words / digits / amounts (cxguard.asr.wer), per
corpus; refusals (false rejections on speech; on short segments separately); text accepted on
non-speech (hallucinations; on reversed speech separately); cost per segment (mean and p95 ms,
each segment alone); for cascades, which decode produced the text. Rejected text counts as
deletions.

The ``tts-money`` sentences are also spoken from a verbalised script (``$1,630`` read as "one
thousand six hundred thirty dollars") as ``tts-money-spoken``: the same reference, so the gap
between the two says how much of the amount error is the TTS reading the symbol, not ASR.
Timings on a shared 2-core machine move by tens of percent: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel, decode_audio

from benchmarks.asr_corpus import (
    Utterance,
    float16k,
    nonspeech,
    real,
    reversed_speech,
    sgd_sentences,
    synthetic,
)
from cxguard.asr import AsrOptions, Transcriber, resolve_model_path
from cxguard.asr.decoding import DEFAULT_FALLBACKS
from cxguard.asr.guards import loudest_frame_dbfs
from cxguard.asr.wer import CLASSES, WerCounts, corpus_counts
from cxguard.errors import AsrError
from cxguard.model import Transcript
from scripts.replay.render import speakable
from scripts.replay.tts import speak, voices

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000
SHORT_S = 1.5
NON_SPEECH = ("noise", "reversed")
STRATEGIES = ("turn-b1", "turn-b5", "full-b1", "full-b5", "full-t0.4", "fallback:full-b5")
ORDER = (
    "fast-only", "cascade", "beam-first", "cascade-no-agreement", "naive", "cascade+base",
    "turn-b5", "full-b5", "full-b1", "fallback:full-b5", "full-t0.4",
)  # fmt: skip
"""Default run order, most telling first (``turn-b1`` alone is ``fast-only``)."""
CASCADES: dict[str, tuple[int, tuple[str, ...], bool]] = {
    "fast-only": (1, (), False),
    "cascade": (1, DEFAULT_FALLBACKS, True),
    "beam-first": (5, ("full-b5",), True),
    "cascade-no-agreement": (1, DEFAULT_FALLBACKS, False),
    "cascade+base": (1, (*DEFAULT_FALLBACKS, "fallback:full-b5"), True),
}
"""Per cascade: the first decode's beam, the fallbacks, and whether decode agreement
(cxguard.asr.agreement) is on."""


def demo_turns() -> list[Utterance]:
    demo = ROOT / "cxguard" / "data" / "demo"
    turns = json.loads((demo / "turns.json").read_text())["turns"]
    tracks = {s: decode_audio(str(demo / f"{s}.wav")) for s in ("agent", "customer")}
    out = []
    for t in turns:
        start, end = (
            int((t["start_ms"] / 1000 - 0.1) * RATE),
            int((t["end_ms"] / 1000 + 0.1) * RATE),
        )
        out.append(Utterance("demo", tracks[t["speaker"]][start:end], t["text"], "espeak-ng:demo"))
    return out


def corpus(shared_audio: Path, per_kind: int, short: int, digits: int) -> list[Utterance]:
    vs = voices()
    spoken = real(shared_audio)
    utts = spoken + demo_turns() + synthetic(vs, per_kind, digits, short)
    money = sgd_sentences(per_kind)["tts-money"]
    for i, text in enumerate(money):
        for pool in ("espeak-ng", "flite"):
            v = [x for x in vs if x.engine == pool][(i + 9) % (6 if pool == "espeak-ng" else 4)]
            audio = float16k(speak(speakable(text), v), 8000)
            utts.append(Utterance("tts-money-spoken", audio, text, v.label))
    return utts + list(nonspeech()) + reversed_speech(spoken)


def _summary(utts: list[Utterance], results: list[tuple[str, str, float]]) -> dict[str, Any]:
    """``results``: per utterance (text or "", outcome, seconds)."""
    speech = [(u, r) for u, r in zip(utts, results, strict=True) if u.corpus not in NON_SPEECH]
    by_corpus: dict[str, WerCounts] = {}
    for u, (text, _, _) in speech:
        by_corpus.setdefault(u.corpus, WerCounts()).add(corpus_counts([u.text], [text]))
    total = WerCounts()
    for c in by_corpus.values():
        total.add(c)
    real_c = WerCounts()
    synth_c = WerCounts()
    for name, c in by_corpus.items():
        (synth_c if name.startswith("tts") or name == "demo" else real_c).add(c)

    def rates(c: WerCounts) -> dict[str, float | None]:
        return {"all": c.rate(), **{k: c.rate(k) for k in CLASSES}}

    short = [(u, r) for u, r in speech if u.audio.size / RATE <= SHORT_S]
    noise = [(u, r) for u, r in zip(utts, results, strict=True) if u.corpus == "noise"]
    backwards = [(u, r) for u, r in zip(utts, results, strict=True) if u.corpus == "reversed"]
    ms = np.array([r[2] for r in results]) * 1000
    return {
        "wer": {"all": rates(total), "real": rates(real_c), "synthetic": rates(synth_c)},
        "wer_by_corpus": {k: rates(v) for k, v in by_corpus.items()},
        "refused": sum(r[1] == "refused" for _, r in speech),
        "refused_short": f"{sum(r[1] == 'refused' for _, r in short)}/{len(short)}",
        "empty_on_speech": sum(r[1] == "empty" for _, r in speech),
        "hallucinated_on_noise": f"{sum(bool(r[0]) for _, r in noise)}/{len(noise)}",
        "hallucinations": sorted({r[0] for _, r in noise if r[0]}),
        "text_on_reversed_speech": f"{sum(bool(r[0]) for _, r in backwards)}/{len(backwards)}",
        "cost_ms": {"mean": round(float(ms.mean()), 1),
                    "p95": round(float(np.percentile(ms, 95)), 1),
                    "max": round(float(ms.max()), 1)},
    }  # fmt: skip


def _outcome(r: Transcript | AsrError) -> tuple[str, str]:
    if isinstance(r, AsrError):
        return "", "refused"
    return r.text, "text" if r.text else "empty"


def run_strategy(asr: Transcriber, name: str, utts: list[Utterance]) -> dict[str, Any]:
    results = []
    for u in utts:
        t = time.perf_counter()
        if loudest_frame_dbfs(u.audio) < asr.options.silence_dbfs:
            r: Transcript | AsrError = Transcript("", asr.model_id)
        else:
            r = asr.transcribe_with(name, [u.audio])[0]
        results.append((*_outcome(r), time.perf_counter() - t))
    return _summary(utts, results)


def run_cascade(
    plan: tuple[int, tuple[str, ...], bool], utts: list[Utterance], model: str, threads: int
) -> dict[str, Any]:
    beam, fallbacks, agreement = plan
    options = AsrOptions(
        model=model, cpu_threads=threads, device="cpu", beam_size=beam, fallbacks=fallbacks
    )
    if not agreement:
        options = replace(options, agree_logprob=None)
    asr = Transcriber(options)
    asr.warmup()
    results = []
    produced: Counter[str] = Counter()
    for u in utts:
        t = time.perf_counter()
        r = asr.transcribe_batch([u.audio])[0]
        results.append((*_outcome(r), time.perf_counter() - t))
        produced[r.decode if isinstance(r, Transcript) else "refused"] += 1
    out = _summary(utts, results)
    out["decodes"] = list(asr.decodes)
    out["produced_by"] = dict(produced.most_common())
    return out


def run_naive(model: str, threads: int, utts: list[Utterance]) -> dict[str, Any]:
    fw = WhisperModel(
        str(resolve_model_path(model)), device="cpu", compute_type="int8", cpu_threads=threads
    )
    fw.transcribe(utts[0].audio, language="en")
    results = []
    for u in utts:
        t = time.perf_counter()
        segments, _ = fw.transcribe(u.audio, language="en", beam_size=5)
        text = " ".join(s.text.strip() for s in segments)
        results.append((text, "text" if text else "empty", time.perf_counter() - t))
    return _summary(utts, results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 intra threads")
    shared = [p / "shared" / "audio" for p in (ROOT.parent, ROOT.parent.parent)]
    ap.add_argument(
        "--shared-audio", type=Path, default=next((p for p in shared if p.is_dir()), shared[0])
    )
    ap.add_argument("--per-kind", type=int, default=6, help="SGD sentences per kind")
    ap.add_argument("--short", type=int, default=24, help="short SGD turns")
    ap.add_argument("--digits", type=int, default=8, help="digit readings")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if not args.shared_audio.is_dir():
        args.shared_audio = ROOT / "tests" / "data"

    utts = corpus(args.shared_audio, args.per_kind, args.short, args.digits)
    wanted = [n for n in args.only.split(",") if n] or list(ORDER)
    corpora: dict[str, dict[str, Any]] = {}
    for u in utts:
        c = corpora.setdefault(u.corpus, {"utterances": 0, "seconds": 0.0, "voices": set()})
        c["utterances"] += 1
        c["seconds"] = round(c["seconds"] + u.audio.size / RATE, 2)
        if u.voice:
            c["voices"].add(u.voice)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ctranslate2": ctranslate2.__version__, "load_at_start": os.getloadavg()},
        "model": args.model,
        "corpora": {k: {**v, "voices": sorted(v["voices"])} for k, v in corpora.items()},
        "configs": {},
    }  # fmt: skip
    single: Transcriber | None = None
    for name in wanted:
        started = time.perf_counter()
        if name == "naive":
            result = run_naive(args.model, args.threads, utts)
        elif name in CASCADES:
            result = run_cascade(CASCADES[name], utts, args.model, args.threads)
        elif name in STRATEGIES:
            if single is None:
                single = Transcriber(
                    AsrOptions(model=args.model, cpu_threads=args.threads, device="cpu")
                )
                single.warmup()
            if name.startswith("fallback:") and not single.fallback_model_id:
                continue
            result = run_strategy(single, name, utts)
        else:
            raise SystemExit(f"unknown configuration {name!r}")
        result["wall_s"] = round(time.perf_counter() - started, 1)
        report["configs"][name] = result
        print(f"{name} done", file=sys.stderr, flush=True)
        if args.out:  # after each configuration: a long run that is stopped keeps its results
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
