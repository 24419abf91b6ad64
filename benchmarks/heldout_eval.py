"""Verdict quality on held-out conversations other people wrote (``data/heldout/``).

Runs every conversation through the live engine (``cxguard.policy.offline``, the same code as
``cxguard eval``) with a policy pack and the ONNX models, and prints per assertion TP / FP /
FN / precision / recall, a verdict counting only on the line (speaker turn) it belongs to.
For ``billing.closure_escalation`` it also prints an obligation-level count that credits a
failure reported on a neighbouring line to the agent turn that exhausted the obligation
(engines that judge the obligation at the next customer turn or at call end), so a wrong
*place* can be told from a wrong *verdict*.

    python benchmarks/heldout_eval.py --json                    # default semantic pack
    python benchmarks/heldout_eval.py --pack path/to/pack.yaml --models models --json
    python benchmarks/heldout_eval.py --labels --models models --json   # classifier labels

``--labels`` scores the classifier alone on the public *test* split of text other people
wrote (agent: Bitext answers, SGD system turns, ABCD; customer: banking77, CLINC150, NLU++,
Bitext, SGD), labels from the sources and the pre-written rules, undecided labels left out.

Labels come from pre-written rules (``cxguard/train/heldout.py``); nothing in
``data/heldout`` is trained on or used to choose a threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.offline import evaluate_transcript, load_transcript
from cxguard.policy.pack import load_pack

ROOT = Path(__file__).resolve().parents[1]
ASSERTIONS = (
    "disclosure.ai_identifies",
    "billing.intent_scope",
    "billing.no_payment_arrangements_unauthenticated",
    "billing.closure_escalation",
    "pii.no_full_card_number",
    "commitments.no_unauthorized_promises",
)
CLOSURE = "billing.closure_escalation"


def _count(expected: set[int], got: set[int]) -> dict[str, int]:
    return {"tp": len(expected & got), "fp": len(got - expected), "fn": len(expected - got)}


def _lenient(lines: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Closure failures moved to the agent line that exhausted the obligation: a failure on a
    customer line judged at that turn belongs to the agent line before it; one judged at a
    handoff or the end of the call belongs to the agent line after its trigger."""
    agent = [n for n, line in enumerate(lines) if line.get("speaker") == "agent"]
    out: set[int] = set()
    for r in rows:
        if r["assertion"] != CLOSURE or r["verdict"] != "fail":
            continue
        n = int(r["line"])
        if lines[n].get("speaker") == "agent":
            out.add(n)
        elif r["phase"] == "turn":
            out.update([a for a in agent if a < n][-1:])
        else:
            out.update([a for a in agent if a > n][:1])
    return out


def evaluate(engine: PolicyEngine, sets: Sequence[Path]) -> dict[str, Any]:
    totals: dict[str, dict[str, dict[str, int]]] = {}
    undetermined: dict[str, int] = {}
    lenient = {"tp": 0, "fp": 0, "fn": 0}
    errors: list[dict[str, Any]] = []
    conversations = 0
    for folder in sets:
        scope_file = folder / "scope.json"
        scope = (
            json.loads(scope_file.read_text())["assertions"] if scope_file.exists() else ASSERTIONS
        )
        per = totals.setdefault(folder.name, {a: {"tp": 0, "fp": 0, "fn": 0} for a in scope})
        for path in sorted(folder.glob("*.jsonl")):
            lines = load_transcript(path)
            rows = list(evaluate_transcript(lines, engine))
            conversations += 1
            for a in scope:
                expected = {
                    n for n, line in enumerate(lines) if line.get("expect", {}).get(a) == "fail"
                }
                got = {
                    int(r["line"]) for r in rows if r["assertion"] == a and r["verdict"] == "fail"
                }
                undetermined[a] = undetermined.get(a, 0) + sum(
                    r["assertion"] == a and r["verdict"] == "undetermined" for r in rows
                )
                c = _count(expected, got)
                for k, v in c.items():
                    per[a][k] += v
                for n in sorted(got ^ expected):
                    errors.append(
                        {
                            "set": folder.name,
                            "file": path.name,
                            "line": n,
                            "assertion": a,
                            "kind": "fp" if n in got else "fn",
                            "text": lines[n].get("text", ""),
                            "evidence": next(
                                (
                                    r["evidence"]
                                    for r in rows
                                    if r["line"] == n and r["assertion"] == a
                                ),
                                "",
                            ),
                        }
                    )
                if a == CLOSURE:
                    for k, v in _count(expected, _lenient(lines, rows)).items():
                        lenient[k] += v
    overall = {a: {"tp": 0, "fp": 0, "fn": 0} for a in ASSERTIONS}
    for per in totals.values():
        for a, c in per.items():
            for k, v in c.items():
                overall[a][k] += v
    return {
        "conversations": conversations,
        "per_assertion": {
            a: _pr(c) | {"undetermined": undetermined.get(a, 0)} for a, c in overall.items()
        },
        "per_set": {s: {a: _pr(c) for a, c in per.items()} for s, per in totals.items()},
        "closure_escalation_obligation_level": _pr(lenient),
        "errors": errors,
    }


def label_quality(scorer: OnnxTextScorer) -> dict[str, Any]:
    from cxguard.train.cli import load_examples

    examples = load_examples(ROOT / "data", ROOT / "cxguard/data/demo/dialogue.json", 0, False)
    test = [e for e in examples if e.split == "test" and e.origin == "public"]
    out: dict[str, Any] = {}
    for speaker in ("agent", "customer"):
        part = [e for e in test if e.speaker == speaker]
        limits = scorer.thresholds(speaker)
        counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in limits}
        for e in part:
            scores = scorer.score([e.text], speaker)[0]
            for label, limit in limits.items():
                truth = e.labels.get(label)
                if truth is None:
                    continue
                got = scores[label] >= limit
                key = "tp" if got and truth else "fp" if got else "fn" if truth else None
                if key:
                    counts[label][key] += 1
        out[speaker] = {"n": len(part), "labels": {k: _pr(c) for k, c in counts.items()}}
    return out


def _pr(c: Mapping[str, int]) -> dict[str, Any]:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, default=ROOT / "cxguard/data/policies/billing.yaml")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "heldout")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--errors", type=Path, help="also write every miss / false alarm here")
    parser.add_argument("--labels", action="store_true", help="classifier labels, not verdicts")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.labels:
        quality = label_quality(OnnxTextScorer(ClassifierOptions(models_dir=args.models)))
        quality["models"] = str(args.models)
        print(json.dumps(quality, indent=1))
        return 0
    pack = load_pack(args.pack)
    scorer = OnnxTextScorer(ClassifierOptions(models_dir=args.models)) if pack.thresholds else None
    result = evaluate(
        PolicyEngine(pack, scorer), sorted(p for p in args.data.iterdir() if p.is_dir())
    )
    errors = result.pop("errors")
    if args.errors:
        args.errors.write_text("".join(json.dumps(e) + "\n" for e in errors))
    result |= {
        "pack": str(args.pack),
        "models": str(args.models),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['conversations']} conversations ({result['seconds']} s)")
    print(f"{'assertion':50} {'TP':>5} {'FP':>5} {'FN':>5} {'P':>7} {'R':>7}")
    for a, c in result["per_assertion"].items():
        p = "—" if c["precision"] is None else f"{c['precision']:.3f}"
        r = "—" if c["recall"] is None else f"{c['recall']:.3f}"
        print(f"{a:50} {c['tp']:5} {c['fp']:5} {c['fn']:5} {p:>7} {r:>7}")
    lenient = result["closure_escalation_obligation_level"]
    print(f"closure_escalation, obligation level: {lenient}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
