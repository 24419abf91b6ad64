"""The seam between the policy engine and semantic classifiers.

The engine asks a :class:`TextScorer` for label scores; the ONNX runtime in
``policy/classifier.py`` is the production implementation. Scores are probabilities in [0, 1]
keyed by label name, e.g. ``{"customer.closure": 0.97, "customer.billing_question": 0.02}``.
"""

from __future__ import annotations

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
