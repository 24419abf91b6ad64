"""Loading policy packs: YAML → validated :class:`PolicyPack`, or a ``PolicyError`` naming
``file:line``.

The pack's :attr:`~PolicyPack.hash` is the SHA-256 of its *canonical* content (the validated
pack as sorted JSON, defaults filled in), so comments and formatting do not change it but any
change of meaning does; every verdict records it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cxguard.errors import PolicyError
from cxguard.model import Speaker
from cxguard.policy.spec import (
    AnyMatcher,
    AssertionSpec,
    ClassifierMatcher,
    MatcherSpec,
    PackSpec,
    StateSpec,
    TemporalAssertion,
)
from cxguard.policy.yamllines import format_validation_error, line_of, load_yaml

_DEFAULT = Path(__file__).resolve().parent.parent / "data" / "policies" / "billing.yaml"


def default_pack_path() -> Path:
    """The bundled billing pack (package data, so it ships with ``pip install``)."""
    return _DEFAULT


@dataclass(frozen=True)
class PolicyPack:
    id: str
    version: str
    description: str
    hash: str
    """``sha256:<hex>`` of the canonical content."""
    source: str
    """Where it was loaded from (as given), for messages."""
    spec: PackSpec

    @property
    def assertions(self) -> tuple[AssertionSpec, ...]:
        return self.spec.assertions

    @property
    def state(self) -> StateSpec:
        return self.spec.state

    @property
    def thresholds(self) -> Mapping[str, float]:
        return self.spec.classifier.thresholds

    @property
    def labels(self) -> Mapping[Speaker, frozenset[str]]:
        """Classifier labels the pack reads, by the speaker of the turns they score."""
        found: dict[Speaker, set[str]] = {}
        for speaker, matcher in iter_matchers(self.spec):
            if isinstance(matcher, ClassifierMatcher):
                found.setdefault(speaker, set()).add(matcher.label)
        return {speaker: frozenset(labels) for speaker, labels in found.items()}

    @property
    def needs_scorer(self) -> bool:
        return bool(self.labels)


def iter_matchers(spec: PackSpec) -> Iterator[tuple[Speaker, MatcherSpec]]:
    """Every matcher of the pack (``any`` flattened) with the speaker whose turns it reads."""

    def flat(speaker: Speaker, matcher: MatcherSpec) -> Iterator[tuple[Speaker, MatcherSpec]]:
        yield speaker, matcher
        if isinstance(matcher, AnyMatcher):
            for inner in matcher.any:
                yield from flat(speaker, inner)

    for assertion in spec.assertions:
        if isinstance(assertion, TemporalAssertion):
            yield from flat("customer", assertion.trigger)
            yield from flat("agent", assertion.require)
            if assertion.forbid is not None:
                yield from flat("agent", assertion.forbid)
        else:
            yield from flat(assertion.when.speaker, assertion)
    for rule in spec.state.intents:
        yield from flat("customer", rule.match)
    if spec.state.agent_confirmation is not None:
        yield from flat("agent", spec.state.agent_confirmation)


def load_pack(path: str | Path) -> PolicyPack:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{source}: cannot read policy pack: {exc}") from None
    return parse_pack(text, source)


_LATER_DEFAULTS: dict[str, Any] = {"mode": "live", "drift_threshold": None}


def parse_pack(text: str, source: str = "<string>") -> PolicyPack:
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}:{line_of(raw)}: a policy pack is a YAML mapping")
    try:
        spec = PackSpec.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, raw, source) from None
    _check_references(spec, raw, source)
    content = spec.model_dump(mode="json")
    for assertion in content["assertions"]:
        # Fields added later count only when set: a pack's hash (its release) stays what it
        # was until its meaning changes.
        for key, default in _LATER_DEFAULTS.items():
            if assertion.get(key, default) == default:
                assertion.pop(key, None)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return PolicyPack(spec.id, spec.version, spec.description, f"sha256:{digest}", source, spec)


def _check_references(spec: PackSpec, raw: dict[str, Any], source: str) -> None:
    """What one model cannot see alone: unique ids, ``pending`` targets, label thresholds."""
    problems: dict[tuple[int, str], None] = {}  # a YAML alias may repeat a node
    raw_assertions = raw["assertions"]
    temporal = {a.id for a in spec.assertions if isinstance(a, TemporalAssertion)}
    seen: dict[str, int] = {}
    for index, assertion in enumerate(spec.assertions):
        node = raw_assertions[index]
        if assertion.id in seen:
            line = line_of(node, "id")
            problems[
                line,
                f"duplicate assertion id {assertion.id!r} (first on line {seen[assertion.id]})",
            ] = None
        seen.setdefault(assertion.id, line_of(node, "id"))
        for target in assertion.when.pending or ():
            if target not in temporal:
                line = line_of(node.get("when"), "pending")
                problems[
                    line,
                    f"assertion {assertion.id!r}: when.pending names "
                    f"{target!r}, which is not a temporal assertion",
                ] = None
    thresholds = spec.classifier.thresholds
    for node in _walk(raw):
        if node.get("kind") == "classifier" and node.get("threshold") is None:
            label = node.get("label")
            if label not in thresholds:
                line = line_of(node, "label")
                problems[
                    line,
                    f"classifier label {label!r} has no threshold "
                    "(set classifier.thresholds or threshold)",
                ] = None
    if problems:
        raise PolicyError("\n".join(f"{source}:{line}: {text}" for line, text in sorted(problems)))


def _walk(node: Any) -> Iterator[dict[Any, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
