"""Held-out conversations other people wrote (data/heldout): never trained on, and the
shipped pack + models keep verdict quality on them (measured, see data/README.md)."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cxguard.policy.classifier import ClassifierOptions, OnnxTextScorer
from cxguard.policy.engine import PolicyEngine
from cxguard.policy.offline import load_transcript
from cxguard.policy.pack import default_pack_path, load_pack
from cxguard.train.corpus import normalise

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "data" / "heldout"


def _benchmark() -> ModuleType:
    path = ROOT / "benchmarks" / "heldout_eval.py"
    spec = importlib.util.spec_from_file_location("heldout_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _texts() -> set[tuple[str, str]]:
    out = set()
    for path in HELDOUT.glob("*/*.jsonl"):
        for line in load_transcript(path):
            if "speaker" in line:
                out.add((line["speaker"], normalise(line["text"])))
    return out


def test_sets_are_there_and_alternate_speakers() -> None:
    sets = sorted(p.name for p in HELDOUT.iterdir() if p.is_dir())
    assert sets == ["abcd", "bitext", "closure_requests", "harper_valley", "presidio_pii"]
    for path in HELDOUT.glob("*/*.jsonl"):
        speakers = [line["speaker"] for line in load_transcript(path) if "speaker" in line]
        assert all(a != b for a, b in itertools.pairwise(speakers)), path


@pytest.mark.slow
def test_no_held_out_turn_is_a_training_or_validation_turn() -> None:
    from cxguard.train.cli import load_examples

    examples = load_examples(ROOT / "data", ROOT / "cxguard" / "data" / "demo" / "dialogue.json", 0)
    seen = {
        ("customer" if e.speaker == "customer" else "agent", normalise(e.text))
        for e in examples
        if e.split != "test"
    }
    # A few words ("exactly", "my checking account") are said by many writers alike.
    leaked = {t for t in _texts() & seen if len(t[1].split()) > 3}
    assert not leaked, sorted(leaked)[:5]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    pack = load_pack(default_pack_path().with_name("billing.yaml"))
    engine = PolicyEngine(pack, OnnxTextScorer(ClassifierOptions(models_dir=ROOT / "models")))
    out: dict[str, Any] = _benchmark().evaluate(
        engine, sorted(p for p in HELDOUT.iterdir() if p.is_dir())
    )
    return out


FLOORS = json.loads((ROOT / "benchmarks" / "results" / "clf-heldout-floors.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("assertion", sorted(FLOORS))
def test_verdict_quality_on_held_out_conversations(result: dict[str, Any], assertion: str) -> None:
    got: dict[str, Any]
    if assertion.endswith("@obligation"):  # judged per obligation: where the fail lands is
        got = result["closure_escalation_obligation_level"]  # the turns work (issue 9 item 2)
    else:
        got = result["per_assertion"][assertion]
    for key in ("precision", "recall"):
        floor = FLOORS[assertion].get(key)
        if floor is not None:
            assert got[key] is not None and got[key] >= floor, (assertion, got)
    if "max_fp" in FLOORS[assertion]:
        assert got["fp"] <= FLOORS[assertion]["max_fp"], (assertion, got)


LABEL_FLOORS = json.loads((ROOT / "benchmarks" / "results" / "clf-label-floors.json").read_text())


@pytest.mark.slow
def test_classifier_labels_on_other_writers_test_split() -> None:
    """The heads alone on text other people wrote (public test split, labels from the sources
    and the pre-written rules): false alarms and recall stay where they were measured."""
    scorer = OnnxTextScorer(ClassifierOptions(models_dir=ROOT / "models"))
    quality = _benchmark().label_quality(scorer)
    for speaker, labels in LABEL_FLOORS.items():
        for label, floor in labels.items():
            got = quality[speaker]["labels"][label]
            if "max_fp" in floor:
                assert got["fp"] <= floor["max_fp"], (label, got)
            if "recall" in floor:
                assert got["recall"] is not None and got["recall"] >= floor["recall"], (label, got)
