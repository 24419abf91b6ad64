"""``cxguard train --heads-only`` keeps the committed encoder only when it is the one the
manifest names (the refit heads are read over exactly those embeddings)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxguard.train.cli import _kept_manifest

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_the_committed_encoder_is_kept() -> None:
    entry = _kept_manifest(MODELS)["encoder"]
    assert entry["file"] == "minilm-l6-v2-int8.onnx"
    assert entry["fidelity"]["n"] > 0


def test_a_changed_or_missing_encoder_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns("*.md"))
    tokenizer = models / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text() + " ")
    with pytest.raises(SystemExit, match=r"tokenizer\.json is missing or not the manifest's"):
        _kept_manifest(models)
    (models / "manifest.json").unlink()
    with pytest.raises(SystemExit, match="needs an encoder"):
        _kept_manifest(models)
