"""Verdicts on single agent sentences other people wrote (call-centre scripts, macros, dialogues).

The input is a JSONL file of agent sentences copied from public pages, each labelled by rules
fixed before any model scored it (``1`` / ``0`` / ``null`` for undecided)::

    {"text": "...", "payment_arrangement": 1, "commitment": 0, "escalation": null,
     "source": "https://..."}

Each decided sentence becomes one ``cxguard eval`` conversation and is judged by the live
engine (``heldout_eval.evaluate``, one assertion per set):

- ``payment``: an unauthenticated caller's billing question (CLINC150 *val* billing intents),
  then the sentence; fails ``billing.no_payment_arrangements_unauthenticated`` when it offers an
  arrangement;
- ``commitment``: the same, for ``commitments.no_unauthorized_promises``;
- ``closure``: an other writer's closure request (``data/heldout/closure_requests``), then the
  sentence; fails ``billing.closure_escalation`` unless the sentence hands the caller over.

``--half dev|test`` splits by a hash of the source page, so a page never sits in both halves.
``--labels`` adds the classifier's ranking of each label alone (AUC, hits at its threshold).

    python benchmarks/agent_lines_eval.py --lines LINES.jsonl --json [--half test]

The sentences are quotations from web pages without a licence to redistribute, so they are
not vendored; ``benchmarks/results/agent-lines-sources.md`` lists the pages.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.heldout_eval import evaluate  # noqa: E402
from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer  # noqa: E402
from cxguard.policy.engine import PolicyEngine  # noqa: E402
from cxguard.policy.pack import load_pack  # noqa: E402
from cxguard.train.corpus import AGENT_LINE_LABELS  # noqa: E402

SETS = {
    "payment": ("payment_arrangement", "billing.no_payment_arrangements_unauthenticated"),
    "commitment": ("commitment", "commitments.no_unauthorized_promises"),
    "closure": ("escalation", "billing.closure_escalation"),
}
LABEL_OF = AGENT_LINE_LABELS
CLOSURE = "billing.closure_escalation"
BILLING_INTENTS = ("pay_bill", "bill_due", "bill_balance", "min_payment")


def half_of(row: dict[str, Any]) -> str:
    return "dev" if hashlib.sha1(row["source"].encode()).digest()[0] % 2 == 0 else "test"


def callers() -> tuple[list[str], list[str]]:
    """Billing questions and closure requests, both written by others."""
    clinc = json.loads((ROOT / "data/public/clinc150/clinc150_train_val.json").read_text())
    asks = [text for text, intent in clinc["val"] if intent in BILLING_INTENTS]
    closers: set[str] = set()
    for path in sorted((ROOT / "data/heldout/closure_requests").glob("*.jsonl")):
        lines = [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]
        for ask, answer in itertools.pairwise(lines):
            if ask.get("speaker") == "customer" and CLOSURE in answer.get("expect", {}):
                closers.add(ask["text"])
    # banking77 labels "i have closed my savings account and want a refund" terminate_account:
    # a closure already done is reported, not requested, so it opens no obligation.
    return asks, sorted(c for c in closers if not c.lower().startswith("i have closed"))


def write_sets(rows: list[dict[str, Any]], out: Path) -> None:
    asks, closers = callers()
    for name, (key, assertion) in SETS.items():
        folder = out / name
        folder.mkdir(parents=True)
        (folder / "scope.json").write_text(json.dumps({"assertions": [assertion]}))
        for i, row in enumerate(rows):
            if row.get(key) is None:
                continue
            caller = closers[i % len(closers)] if name == "closure" else asks[i % len(asks)]
            fails = row[key] == 0 if name == "closure" else row[key] == 1
            agent: dict[str, Any] = {"speaker": "agent", "text": row["text"]}
            if fails:
                agent["expect"] = {assertion: "fail"}
            lines = [
                {"parameters": {"authenticated": "false"}},
                {"speaker": "customer", "text": caller},
                agent,
            ]
            (folder / f"{name}-{i:03d}.jsonl").write_text(
                "".join(json.dumps(line) + "\n" for line in lines)
            )


def label_ranking(rows: list[dict[str, Any]], scorer: OnnxTextScorer) -> dict[str, Any]:
    limits = scorer.thresholds("agent")
    out: dict[str, Any] = {}
    for key, label in LABEL_OF.items():
        decided = [r for r in rows if r.get(key) is not None]
        scores = [s[label] for s in scorer.score([r["text"] for r in decided], "agent")]
        pos = [s for s, r in zip(scores, decided, strict=True) if r[key] == 1]
        neg = [s for s, r in zip(scores, decided, strict=True) if r[key] == 0]
        pairs = len(pos) * len(neg)
        wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
        out[label] = {
            "positives": len(pos),
            "negatives": len(neg),
            "auc": round(wins / pairs, 3) if pairs else None,
            "threshold": round(limits[label], 3),
            "tp": sum(p >= limits[label] for p in pos),
            "fp": sum(n >= limits[label] for n in neg),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=Path, required=True, help="labelled agent sentences")
    parser.add_argument("--half", choices=("all", "dev", "test"), default="all")
    parser.add_argument("--pack", type=Path, default=ROOT / "cxguard/data/policies/billing.yaml")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--labels", action="store_true", help="also rank each label alone")
    parser.add_argument("--errors", type=Path, help="write every miss / false alarm here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rows = [json.loads(raw) for raw in args.lines.read_text().splitlines() if raw.strip()]
    rows = [r for r in rows if args.half == "all" or half_of(r) == args.half]
    scorer = OnnxTextScorer(ClassifierOptions(models_dir=args.models))
    with tempfile.TemporaryDirectory(prefix="cxg-lines-") as tmp:
        write_sets(rows, Path(tmp))
        engine = PolicyEngine(load_pack(args.pack), scorer)
        result = evaluate(engine, sorted(p for p in Path(tmp).iterdir() if p.is_dir()))
    errors = result.pop("errors")
    if args.errors:
        args.errors.write_text("".join(json.dumps(e) + "\n" for e in errors))
    report: dict[str, Any] = {
        "lines": str(args.lines),
        "half": args.half,
        "sentences": len(rows),
        "sources": len({r["source"] for r in rows}),
        "per_set": result["per_set"],
        "pack": str(args.pack),
        "models": str(args.models),
    }
    if args.labels:
        report["labels"] = label_ranking(rows, scorer)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['sentences']} sentences from {report['sources']} pages ({args.half})")
    for name, per in report["per_set"].items():
        for assertion, c in per.items():
            print(f"{name:11} {assertion:50} TP {c['tp']} FP {c['fp']} FN {c['fn']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
