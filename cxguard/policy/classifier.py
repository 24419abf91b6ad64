"""ONNX runtime for the semantic classifiers: onnxruntime + tokenizers, no torch.

``models/manifest.json`` names an int8 sentence encoder, its tokenizer and one heads graph
per speaker (all labels of that speaker in one ``sigmoid(embedding · W + b)``), each with its
sha256, which is checked on load so a corrupt or swapped file fails loudly
(:class:`~cxguard.errors.ClassifierError`) instead of scoring quietly wrong.

Each turn gets its own encoder run and then all heads of its speaker score the batch in one
call. One turn per encoder run is deliberate: the encoder's activations are quantised
dynamically per run, so batch-mates (and their padding) would shift a turn's scores by a few
hundredths, and evidence must be reproducible turn by turn. On one thread, batching bought
nothing measurable for turn-length inputs.

Where the models are: ``ClassifierOptions.models_dir``, else ``$CXGUARD_MODELS_DIR``, else
``models/`` of the source checkout, else ``<sys.prefix>/share/cxguard/models``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from cxguard.errors import ClassifierError
from cxguard.model import Speaker
from cxguard.policy.textnorm import collapse_amounts

MODELS_ENV = "CXGUARD_MODELS_DIR"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ClassifierOptions:
    models_dir: Path | None = None
    """Directory holding ``manifest.json``; ``None`` = the default search (module docstring)."""
    threads: int = 1
    """onnxruntime intra-op threads for the encoder; 1 keeps one core per turn."""
    max_tokens: int = 64
    """Turns are truncated to this many word pieces (CLS/SEP included)."""


def default_models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "models"
    if (checkout / MANIFEST).is_file():
        return checkout
    return Path(sys.prefix) / "share" / "cxguard" / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(root: Path, entry: Mapping[str, Any]) -> Path:
    try:
        path = root / str(entry["file"])
        expected = str(entry["sha256"])
    except (KeyError, TypeError) as exc:
        raise ClassifierError(
            f"{root / MANIFEST}: model entry lacks file/sha256: {entry!r}"
        ) from exc
    if not path.is_file():
        raise ClassifierError(f"model file missing: {path}")
    actual = _sha256(path)
    if actual != expected:
        raise ClassifierError(
            f"model file corrupt: {path} has sha256 {actual[:16]}…, manifest says {expected[:16]}…"
        )
    return path


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ClassifierError(f"cannot load ONNX model {path}: {exc}") from exc


@dataclass(frozen=True)
class _Heads:
    model_id: str
    session: ort.InferenceSession
    labels: tuple[str, ...]
    thresholds: Mapping[str, float]
    collapse_amounts: bool
    """The heads were fitted on text with money amounts collapsed (policy/textnorm.py)."""


class OnnxTextScorer:
    """Implements :class:`cxguard.policy.scoring.TextScorer` with the models in ``models/``."""

    def __init__(self, options: ClassifierOptions = ClassifierOptions()) -> None:
        root = options.models_dir or default_models_dir()
        try:
            manifest = json.loads((root / MANIFEST).read_text())
            enc = manifest["encoder"]
            heads = manifest["heads"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClassifierError(f"cannot read {root / MANIFEST}: {exc}") from exc
        encoder_path = _verified(root, enc)
        tokenizer_path = _verified(root, enc.get("tokenizer", {}))
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json ships with fixed padding to 128: one turn per run needs none.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(options.max_tokens)
        self._encoder = _session(encoder_path, options.threads)
        self._dim = int(enc.get("dim", 384))
        self._heads: dict[str, _Heads] = {}
        ids = {str(enc["id"]): str(enc["sha256"])[:12]}
        for speaker, entry in heads.items():
            labels = tuple(str(label) for label in entry["labels"])
            session = _session(_verified(root, entry), 1)
            width = session.get_outputs()[0].shape[-1]
            if width != len(labels):
                raise ClassifierError(f"{entry['file']}: {width} outputs for {len(labels)} labels")
            thresholds = {label: float(entry["thresholds"][label]) for label in labels}
            self._heads[str(speaker)] = _Heads(
                str(entry["id"]), session, labels, thresholds, bool(entry.get("collapse_amounts"))
            )
            ids[str(entry["id"])] = str(entry["sha256"])[:12]
        self._model_ids = ids

    @property
    def model_ids(self) -> Mapping[str, str]:
        return dict(self._model_ids)

    def _group(self, speaker: Speaker) -> _Heads:
        try:
            return self._heads[speaker]
        except KeyError:
            raise ClassifierError(f"no classifier heads for speaker {speaker!r}") from None

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return self._group(speaker).labels

    def thresholds(self, speaker: Speaker) -> Mapping[str, float]:
        """Per-label thresholds chosen on validation data (a policy pack may override)."""
        return dict(self._group(speaker).thresholds)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings, one encoder run per text."""
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        try:
            # encode(), not encode_batch(): the batch form fans out over a Rayon pool of one
            # thread per core whose spinning competes with the event loop, for a few words.
            for i, text in enumerate(texts):
                ids = np.asarray([self._tokenizer.encode(text).ids], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
                out[i] = self._encoder.run(["embedding"], feed)[0][0]
        except Exception as exc:
            raise ClassifierError(f"encoder failed: {exc}") from exc
        return out

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        group = self._group(speaker)
        if not texts:
            return []
        if group.collapse_amounts:
            texts = [collapse_amounts(t) for t in texts]
        embeddings = self.embed(texts)
        try:
            scores = group.session.run(["scores"], {"embedding": embeddings})[0]
        except Exception as exc:
            raise ClassifierError(f"{group.model_id} failed: {exc}") from exc
        return [{label: float(row[k]) for k, label in enumerate(group.labels)} for row in scores]
