"""Classifier labels on held-out turns as the live path hears them, against the same turns as text.

    PYTHONPATH=. .venv/bin/python benchmarks/channel_labels.py --json [--positives 40]
        [--negatives 400] [--speaker customer] [--models DIR] [--cache FILE] [--out FILE]

Turns of the *test* split (never trained on, by text hash; ``cxguard.train.corpus``) of other
writers' sources — banking77, CLINC150, NLU++, Bitext, SGD Banks_1 (its first 240 dialogues,
which the replay benchmark renders, left out) — chosen by a hash of the text: up to
``--positives`` per label and ``--negatives`` with no label but ``other``. Each is spoken by one
of the replay voices (espeak-ng / flite, three rates; ``scripts/replay/tts.py``) through 8 kHz
μ-law and transcribed by the shipped tiny.en cascade (``Transcriber`` defaults), then scored by
the heads (``--models``, default the shipped ones) at their manifest thresholds (which the
bundled pack copies). Per label: recall on positives and
false alarms on the negatives, on the text and on what ASR heard; turns ASR refused are counted
apart (live they are ``undetermined``). Transcripts are cached per (text, voice) in ``--cache``
so a rerun after retraining scores the same ASR output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cxguard.asr import AsrRejected, Transcriber
from cxguard.model import Speaker
from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer
from cxguard.train.asr_channel import replayed_sgd_texts
from cxguard.train.cli import REPO, load_examples
from cxguard.train.corpus import Example, bucket, normalise
from scripts.replay.tts import speak, voices

SGD = REPO / "data" / "public" / "sgd" / "sgd_banks1_turns.jsonl"


def choose(
    examples: list[Example], speaker: str, positives: int, negatives: int
) -> dict[str, list[Example]]:
    """``{label: positives, "": negatives}`` from the public test split, by text hash."""
    replayed = replayed_sgd_texts(SGD, 240)
    pool = sorted(
        (
            e
            for e in examples
            if e.speaker == speaker
            and e.split == "test"
            and e.origin == "public"
            and normalise(e.text) not in replayed
        ),
        key=lambda e: bucket("channel:" + normalise(e.text)),
    )
    out: dict[str, list[Example]] = {"": []}
    seen: set[str] = set()
    for e in pool:
        key = normalise(e.text)
        if key in seen:
            continue
        pos = [k for k, v in e.labels.items() if v == 1 and not k.endswith(".other")]
        if not pos and all(v == 0 for k, v in e.labels.items() if not k.endswith(".other")):
            if len(out[""]) < negatives:
                out[""].append(e)
                seen.add(key)
            continue
        for label in pos:
            if len(out.setdefault(label, [])) < positives:
                out[label].append(e)
                seen.add(key)
                break
    return out


def heard(texts: list[str], cache: Path) -> dict[str, str | None]:
    """What tiny.en heard for each text (None: refused), through the cache."""
    done: dict[str, str | None] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row["text"]] = row["asr"]
    todo = [t for t in texts if t not in done]
    if todo:
        asr = Transcriber()
        pool = voices()
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("a") as log:
            for text in todo:
                voice = pool[bucket("voice:" + text) % len(pool)]
                pcm = speak(text, voice)
                try:
                    got: str | None = asr.transcribe(pcm.tobytes(), 8000).text
                except AsrRejected:
                    got = None
                done[text] = got
                log.write(json.dumps({"text": text, "voice": voice.label, "asr": got}) + "\n")
    return done


def measure(
    chosen: dict[str, list[Example]],
    hear: dict[str, str | None],
    speaker: Speaker,
    models: Path | None = None,
) -> dict[str, Any]:
    scorer = OnnxTextScorer(ClassifierOptions(models_dir=models))
    thresholds = scorer.thresholds(speaker)
    examples = [e for group in chosen.values() for e in group]
    texts = [e.text for e in examples]
    heard_texts = [hear[t] or "" for t in texts]
    on_text = dict(zip(texts, scorer.score(texts, speaker), strict=True))
    on_asr = dict(zip(texts, scorer.score(heard_texts, speaker), strict=True))
    report: dict[str, Any] = {"speaker": speaker, "labels": {}}
    # Turns ASR refused are undetermined live: left out of both columns alike.
    negatives = [e for e in chosen[""] if hear[e.text] is not None]
    for label in scorer.labels(speaker):
        if label.endswith(".other"):
            continue
        t = thresholds[label]
        pos = [e for e in chosen.get(label, []) if hear[e.text] is not None]
        text_fa = [e for e in negatives if on_text[e.text][label] >= t]
        asr_fa = [e for e in negatives if on_asr[e.text][label] >= t]
        report["labels"][label] = {
            "threshold": t,
            "positives": len(pos),
            "recall_text": _share(sum(on_text[e.text][label] >= t for e in pos), len(pos)),
            "recall_asr": _share(sum(on_asr[e.text][label] >= t for e in pos), len(pos)),
            "negatives": len(negatives),
            "false_alarms_text": len(text_fa),
            "false_alarms_asr": len(asr_fa),
            "false_alarm_examples_asr": [(e.text, hear[e.text]) for e in asr_fa[:8]],
        }
    report["refused_by_asr"] = sum(hear[e.text] is None for e in examples)
    report["turns"] = len(examples)
    report["model_ids"] = dict(scorer.model_ids)
    return report


def _share(hits: int, of: int) -> float | None:
    return round(hits / of, 3) if of else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    ap.add_argument("--speaker", choices=("customer", "agent"), default="customer")
    ap.add_argument("--positives", type=int, default=40, help="turns per label")
    ap.add_argument("--negatives", type=int, default=400, help="turns with no label")
    ap.add_argument("--cache", type=Path, default=Path("/work/scratch/channel_labels.jsonl"))
    ap.add_argument("--models", type=Path, help="models directory (default: the shipped one)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    examples = load_examples(
        REPO / "data", REPO / "cxguard" / "data" / "demo" / "dialogue.json", 0, with_asr=False
    )
    chosen = choose(examples, args.speaker, args.positives, args.negatives)
    hear = heard([e.text for group in chosen.values() for e in group], args.cache)
    speaker: Speaker = "agent" if args.speaker == "agent" else "customer"
    report = measure(chosen, hear, speaker, args.models)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
