"""Helpers shared by the policy tests (no tests here): inline packs, turns, a tiny scorer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cxguard.errors import ClassifierError
from cxguard.model import Speaker, TurnText
from cxguard.policy.pack import PolicyPack, parse_pack


def pack(body: str, head: str = 'id: test\nversion: "1"\n') -> PolicyPack:
    return parse_pack(head + body, "test.yaml")


class Turns:
    """Builds consecutive turns on a stream timeline (1 s each, 0.5 s apart by default)."""

    def __init__(self) -> None:
        self.index = 0
        self.at_ms = 0.0

    def __call__(
        self,
        speaker: Speaker,
        text: str = "",
        *,
        undetermined: str | None = None,
        start_ms: float | None = None,
        length_ms: float = 1000.0,
    ) -> TurnText:
        start = self.at_ms + 500.0 if start_ms is None else start_ms
        turn = TurnText(self.index, speaker, text, start, start + length_ms, undetermined)
        self.index += 1
        self.at_ms = max(self.at_ms, start + length_ms)
        return turn


class KeywordScorer:
    """A real (if tiny) TextScorer: a label scores 0.9 when one of its keywords occurs in the
    text, else 0.1. Text containing "BOOM" makes it fail like a broken model would."""

    def __init__(self, keywords: Mapping[Speaker, Mapping[str, Sequence[str]]]) -> None:
        self._keywords = keywords
        self.calls: list[tuple[Speaker, int]] = []

    @property
    def model_ids(self) -> Mapping[str, str]:
        return {"keywords": "test-1"}

    def labels(self, speaker: Speaker) -> Sequence[str]:
        return list(self._keywords.get(speaker, {}))

    def score(self, texts: Sequence[str], speaker: Speaker) -> list[Mapping[str, float]]:
        self.calls.append((speaker, len(texts)))
        if any("BOOM" in text for text in texts):
            raise ClassifierError("onnx session failed")
        heads = self._keywords.get(speaker, {})
        return [
            {
                label: 0.9 if any(k in text.lower() for k in words) else 0.1
                for label, words in heads.items()
            }
            for text in texts
        ]
