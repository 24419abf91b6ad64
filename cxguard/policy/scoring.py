"""The seam between the policy engine and semantic classifiers.

The engine asks a :class:`TextScorer` for label scores; the ONNX runtime in
``policy/classifier.py`` is the production implementation. Scores are probabilities in [0, 1]
keyed by label name, e.g. ``{"customer.closure": 0.97, "customer.billing_question": 0.02}``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Protocol

from cxguard.model import Speaker


class TextScorer(Protocol):
    @property
    def model_ids(self) -> Mapping[str, str]:
        """Model name -> version/sha256 prefix, recorded with every verdict."""
        ...

    def labels(self, speaker: Speaker) -> Sequence[str]:
        """The labels this scorer produces for turns of ``speaker``."""
        ...

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        """Scores for each text, all heads of that speaker in one pass (batched)."""
        ...


class MemoScorer:
    """A :class:`TextScorer` that remembers the scores of the last ``size`` texts.

    A turn is scored more than once on its way to a verdict (previewed after each segment,
    then evaluated whole): the same sentence windows recur, and a model is deterministic, so
    their scores are reused instead of run again. Thread-safe."""

    def __init__(self, scorer: TextScorer, size: int = 512) -> None:
        self._scorer = scorer
        self._size = size
        self._memo: OrderedDict[tuple[Speaker, str], Mapping[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def model_ids(self) -> Mapping[str, str]:
        return self._scorer.model_ids

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return self._scorer.labels(speaker)

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        with self._lock:
            known = {t: self._memo[(speaker, t)] for t in texts if (speaker, t) in self._memo}
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        if todo:
            fresh = dict(zip(todo, self._scorer.score(todo, speaker), strict=True))
            with self._lock:
                for text, scores in fresh.items():
                    self._memo[(speaker, text)] = scores
                while len(self._memo) > self._size:
                    self._memo.popitem(last=False)
            known.update(fresh)
        with self._lock:
            for text in texts:
                if (speaker, text) in self._memo:
                    self._memo.move_to_end((speaker, text))
        return [known[t] for t in texts]
