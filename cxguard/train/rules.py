"""Labels for agent turns that other people wrote, from the pre-written rules in
``data/rules/agent_labels.yaml`` (see its header for the semantics), and the cut that turns a
written chatbot answer into one spoken agent turn.

The rules were written from the label definitions before any model scored these turns; they
are deliberately conservative: a turn they cannot decide is ``None`` for that label (neither
trained nor scored on), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from cxguard.train.labels import AGENT

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})
_SLOT = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_LIST_ITEM = re.compile(r"(^|\n)\s*(\d+[.)]|[-*•])\s")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class LabelRule:
    positive: tuple[re.Pattern[str], ...]
    excuse: tuple[re.Pattern[str], ...]
    negative: tuple[re.Pattern[str], ...]
    cue: re.Pattern[str]

    def label(self, text: str) -> int | None:
        excused = False
        for pattern in self.positive:
            for m in pattern.finditer(text):
                if not any(
                    e.start() < m.end() and m.start() < e.end()
                    for x in self.excuse
                    for e in x.finditer(text)
                ):
                    return 1
                excused = True
        if any(p.search(text) for p in self.negative):
            return 0
        if not excused and not self.cue.search(text):
            return 0
        return None


def _compile(patterns: Any) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in (patterns or ()))


class AgentRules:
    def __init__(self, path: Path) -> None:
        spec = yaml.safe_load(path.read_text())
        unknown = set(spec["labels"]) - set(AGENT)
        if unknown:
            raise ValueError(f"{path}: unknown labels {sorted(unknown)}")
        self.rules = {
            label: LabelRule(
                _compile(r.get("positive")),
                _compile(r.get("excuse")),
                _compile(r.get("negative")),
                re.compile(r["cue"], re.IGNORECASE),
            )
            for label, r in spec["labels"].items()
        }
        self.by_source: Mapping[str, Mapping[str, int]] = spec.get("by_source", {})
        self.placeholders: Mapping[str, str] = spec.get("placeholders", {})

    def labels(self, text: str, source: str) -> dict[str, int | None]:
        """Every agent label for one turn; labels without a rule are left undecided."""
        text = " ".join(text.translate(_QUOTES).split())
        fixed = self.by_source.get(source, {})
        out: dict[str, int | None] = {}
        for label in AGENT:
            if label in fixed:
                out[label] = int(fixed[label])
            elif label in self.rules:
                out[label] = self.rules[label].label(text)
            else:
                out[label] = None
        return out

    def fill(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in self.placeholders:
                return self.placeholders[name]
            return name.replace("Anonymized", "").strip().lower()

        return _SLOT.sub(value, text)

    @cached_property
    def max_words(self) -> int:
        return 60

    def spoken(self, response: str, max_sentences: int = 3) -> str:
        """A written answer as one spoken turn: placeholders filled, stopped before its first
        numbered or bulleted list, at most ``max_sentences`` sentences and ~60 words."""
        head = _LIST_ITEM.split(response, maxsplit=1)[0]
        head = " ".join(self.fill(head).split()).rstrip(":")
        out: list[str] = []
        for sentence in _SENTENCE.split(head):
            if out and (
                len(out) >= max_sentences
                or len(" ".join([*out, sentence]).split()) > self.max_words
            ):
                break
            out.append(sentence)
        text = " ".join(" ".join(out).split()[: self.max_words]).strip()
        if text and text[-1] not in ".!?":
            text += "."
        return text
