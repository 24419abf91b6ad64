"""Expands ``data/own/agent_templates.yaml`` into agent turns, deterministically per seed.

Each template becomes several sentences with different slot values; some are wrapped in
label-free filler sentences (real turns rarely hold one clause) and some are written the way
ASR hands them over (lower case, no punctuation). A seeded share of positives and negatives
alike starts with a discourse marker ("Sure, ...", "No problem, ..."), so that a marker never
decides the label. All of it is training data: validation
is the hand-written ``agent_val.yaml``, so thresholds are chosen on sentences that no
template produced.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cxguard.train.corpus import Example, make_labels, normalise

_SLOT = re.compile(r"\{(\w+)\}")
PER_LABEL = 320  # generated turns per single label
PER_MULTI = 24  # per multi-label key
PER_NEGATIVE_TEMPLATE = 5
PER_EXTRA_NEGATIVE = 8  # `clarifying` and `non_commitments`: few templates, many fillings
MARKER_P = 0.1  # share of generated turns that get a leading discourse marker
TWIN_P = 0.5  # share that also get a marked twin with the same labels (direct invariance pairs)
NEGATIVE_KEYS = ("hard_negatives", "neutral", "clarifying", "non_commitments")


def _fill(template: str, slots: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    return _SLOT.sub(lambda m: rng.choice(slots[m.group(1)]), template)


def _marked(text: str, spec: Mapping[str, Any], rng: random.Random, p: float = MARKER_P) -> str:
    """Prefixes a discourse marker to a share ``p`` of turns ("Okay, let's ...")."""
    if rng.random() >= p:
        return text
    if text == _asr_style(text):
        return f"{_asr_style(rng.choice(spec['markers']))} {text}"
    keep_case = text[:2] in ("I ", "I'") or text[:1].isdigit() or text[:1] == "$"
    return f"{rng.choice(spec['markers'])}, {text if keep_case else text[:1].lower() + text[1:]}"


def _asr_style(text: str) -> str:
    return re.sub(r"[.,!?;:\"]", "", text.lower())


def _variant(
    template: str, spec: Mapping[str, Any], rng: random.Random, negatives: Sequence[str]
) -> str:
    slots = spec["slots"]
    text = _marked(_fill(template, slots, rng), spec, rng)
    r = rng.random()
    if r < 0.25:
        text = f"{rng.choice(spec['fillers'])} {text}"
    elif r < 0.35:
        text = f"{text} {rng.choice(spec['fillers'])}"
    elif r < 0.45:
        # A label-free clause next to the labelled one: the head must find it in context.
        text = f"{_fill(rng.choice(negatives), slots, rng)} {text}"
    if rng.random() < 0.25:
        text = _asr_style(text)
    return text


def _expand(
    key: str,
    templates: Sequence[str],
    n_per: int,
    spec: Mapping[str, Any],
    rng: random.Random,
    negatives: Sequence[str],
) -> Iterator[Example]:
    pos = [] if key == "none" or key in NEGATIVE_KEYS else key.split("+")
    for template in templates:
        seen: set[str] = set()
        for _ in range(n_per * 3):
            if len(seen) >= n_per:
                break
            text = _variant(template, spec, rng, negatives) if pos else _plain(template, spec, rng)
            if normalise(text) in seen:
                continue
            seen.add(normalise(text))
            labels = make_labels("agent", pos)
            yield Example(text, "agent", labels, f"own.templates.{key}", "own", "train")
            if rng.random() < TWIN_P:
                twin = _marked(text, spec, rng, p=1.0)
                yield Example(twin, "agent", labels, f"own.templates.{key}", "own", "train")


def _plain(template: str, spec: Mapping[str, Any], rng: random.Random) -> str:
    text = _marked(_fill(template, spec["slots"], rng), spec, rng)
    if rng.random() < 0.2:
        text = f"{rng.choice(spec['fillers'])} {text}"
    return _asr_style(text) if rng.random() < 0.25 else text


def generate(path: Path, seed: int) -> list[Example]:
    spec = yaml.safe_load(path.read_text())
    rng = random.Random(seed)
    negatives = [t for key in NEGATIVE_KEYS for t in spec[key]]
    out: list[Example] = []
    for key, templates in spec["labels"].items():
        n_per = -(-(PER_MULTI if "+" in key else PER_LABEL) // len(templates))
        out.extend(_expand(key, templates, n_per, spec, rng, negatives))
    for key in NEGATIVE_KEYS:
        extra = key in ("clarifying", "non_commitments")
        n_per = PER_EXTRA_NEGATIVE if extra else PER_NEGATIVE_TEMPLATE
        out.extend(_expand(key, spec[key], n_per, spec, rng, negatives))
    return out
