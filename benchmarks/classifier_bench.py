"""Cost of the semantic classifiers per turn on one CPU core: all heads of a speaker.

    .venv/bin/python benchmarks/classifier_bench.py [--repeat 3] [--fp32 PATH] [--packs]

Prints JSON: median / p95 milliseconds per turn for the shipped runtime (int8 encoder, one
pass, all heads) and for naive baselines: one encoder pass per label (heads as separate
models) and, with ``--fp32`` (``python -m cxguard.train`` can leave one behind), the
unquantised encoder. The process is pinned to one core where the OS allows it.

``--packs`` also runs the default regex pack and the proposed semantic pack over the
labelled transcripts in ``tests/data/transcripts`` (written by the policy room, not by the
classifier's authors) and prints per-assertion TP / FP / FN for each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from cxguard.model import SPEAKERS, Speaker
from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer

REPO = Path(__file__).resolve().parents[1]


def turns() -> list[tuple[Speaker, str]]:
    """Demo call + hand-written test turns: realistic lengths for both speakers."""
    demo = json.loads((REPO / "cxguard" / "data" / "demo" / "dialogue.json").read_text())
    out: list[tuple[Speaker, str]] = [(t["speaker"], t["text"]) for t in demo["turns"]]
    for speaker in SPEAKERS:
        spec = yaml.safe_load((REPO / "data" / "own" / f"{speaker}_test.yaml").read_text())
        out += [(speaker, text) for texts in spec.values() for text in texts]
    return out


def timed(
    fn: Callable[[Speaker, str], object], items: Sequence[tuple[Speaker, str]], repeat: int
) -> dict[str, float]:
    for speaker, text in items[:10]:
        fn(speaker, text)  # warm-up
    ms = []
    for _ in range(repeat):
        for speaker, text in items:
            t0 = time.perf_counter()
            fn(speaker, text)
            ms.append((time.perf_counter() - t0) * 1000)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "turns": len(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fp32", type=Path, help="an fp32 encoder ONNX for comparison")
    parser.add_argument("--packs", action="store_true", help="compare regex vs semantic pack")
    args = parser.parse_args()
    pinned = False
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = True
    items = turns()
    scorer = OnnxTextScorer(ClassifierOptions(threads=1))
    tokens = [len(scorer._tokenizer.encode(t).ids) for _, t in items]
    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "pinned_to_one_core": pinned,
        "onnxruntime": ort.__version__,
        "tokens_per_turn": {"median": statistics.median(tokens), "max": max(tokens)},
        "runtime_int8_all_heads_one_pass": timed(
            lambda s, t: scorer.score([t], s), items, args.repeat
        ),
    }

    def per_label(speaker: Speaker, text: str) -> None:
        for _ in scorer.labels(speaker):
            scorer.score([text], speaker)

    result["baseline_int8_one_pass_per_label"] = timed(per_label, items, 1)
    if args.fp32:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        fp32 = ort.InferenceSession(str(args.fp32), opts, providers=["CPUExecutionProvider"])

        def fp32_encode(speaker: Speaker, text: str) -> None:
            ids = np.asarray([scorer._tokenizer.encode(text).ids], dtype=np.int64)
            fp32.run(["embedding"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})

        result["baseline_fp32_encoder_only"] = timed(fp32_encode, items, args.repeat)
    if args.packs:
        result["packs_on_labelled_transcripts"] = compare_packs(scorer)
    print(json.dumps(result, indent=2))


def compare_packs(scorer: OnnxTextScorer) -> dict[str, object]:
    from cxguard.policy.engine import PolicyEngine
    from cxguard.policy.offline import evaluate_transcript, load_transcript, score_expectations
    from cxguard.policy.pack import default_pack_path, load_pack

    packs = {
        "regex (billing.yaml)": PolicyEngine(load_pack(default_pack_path())),
        "semantic (billing.semantic.yaml.proposed)": PolicyEngine(
            load_pack(REPO / "configs" / "policies" / "billing.semantic.yaml.proposed"), scorer
        ),
    }
    out: dict[str, object] = {}
    for name, engine in packs.items():
        per_set: dict[str, dict[str, list[int]]] = {}
        for path in sorted((REPO / "tests" / "data" / "transcripts").glob("*.jsonl")):
            group = "held_out" if path.stem.startswith("heldout") else "dev"
            lines = load_transcript(path)
            rows = list(evaluate_transcript(lines, engine))
            for assertion, c in score_expectations(lines, rows).items():
                acc = per_set.setdefault(group, {}).setdefault(assertion, [0, 0, 0])
                acc[0] += c.tp
                acc[1] += c.fp
                acc[2] += c.fn
        out[name] = {
            group: {a: dict(zip(("tp", "fp", "fn"), v, strict=True)) for a, v in counts.items()}
            for group, counts in per_set.items()
        }
    return out


if __name__ == "__main__":
    main()
