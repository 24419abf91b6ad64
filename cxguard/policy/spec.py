"""The schema of a policy pack (YAML), as frozen pydantic models.

A pack is a list of *assertions*, each judging the turns of one speaker (the agent unless
``when.speaker`` says otherwise). An assertion is one of a discriminated union on ``kind``:

* ``regex`` / ``contains`` / ``classifier`` / ``check`` / ``any`` — a *matcher* over the turn
  text; the assertion passes when the matcher hits, or with ``negate: true`` when it does not.
* ``temporal`` — a customer turn matching ``trigger`` opens an obligation that a later agent
  turn matching ``require`` (or a platform ``handoff`` event) must meet within
  ``within_turns`` agent turns and/or ``within_seconds`` of stream time (both, if both are
  given); ``forbid`` fails any agent turn that matches it.

Matchers nest (``temporal.trigger``, ``any.any``, ``state.intents[].match``), so the same
small set of evaluators serves assertions, triggers and state updates. Cross-references
(``when.pending``, classifier thresholds, duplicate ids) are checked by the loader, which knows
the line numbers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from cxguard.model import Speaker

Severity = Literal["info", "minor", "major", "critical"]
Action = Literal["alert", "handoff"]
CheckName = Literal["card_number", "ssn", "cvv"]
"""Detectors of ``cxguard.pii`` a ``check`` matcher may name (each is a ``pii.Kind``)."""
CHECK_NAMES: tuple[CheckName, ...] = ("card_number", "ssn", "cvv")


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return pattern


def _non_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1): pydantic then also reports "0 items" when an item is invalid.
    if not value:
        raise ValueError("needs at least one item")
    return value


Regex = Annotated[str, AfterValidator(_valid_regex)]
Phrase = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")]


def _one_or_many(value: Any) -> Any:
    """Let YAML say ``patterns: "x"`` for ``patterns: ["x"]``."""
    return [value] if isinstance(value, str) else value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- matchers


class RegexMatcher(_Spec):
    kind: Literal["regex"]
    patterns: Annotated[tuple[Regex, ...], AfterValidator(_non_empty)]
    unless: tuple[Regex, ...] = ()
    """A match is excused when an ``unless`` match overlaps it ("can't guarantee")."""
    unless_customer_said: bool = False
    """A match is excused when its ``(?P<subject>…)`` group names something the customer
    brought up in their recent turns: answering what was asked ("I'd like to switch to the
    Gold account") is not an unsolicited offer."""
    ignore_case: bool = True

    _regex_lists = field_validator("patterns", "unless", mode="before")(_one_or_many)

    @model_validator(mode="after")
    def _subject_named(self) -> RegexMatcher:
        if self.unless_customer_said and not any("(?P<subject>" in p for p in self.patterns):
            raise ValueError("unless_customer_said needs a (?P<subject>...) group in a pattern")
        return self


class ContainsMatcher(_Spec):
    kind: Literal["contains"]
    phrases: Annotated[tuple[Phrase, ...], AfterValidator(_non_empty)]
    unless: tuple[Phrase, ...] = ()
    ignore_case: bool = True
    whole_words: bool = True

    _contains_lists = field_validator("phrases", "unless", mode="before")(_one_or_many)


class ClassifierMatcher(_Spec):
    kind: Literal["classifier"]
    label: Name
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Overrides ``classifier.thresholds[label]`` of the pack."""
    unless: tuple[Regex, ...] = ()
    """Phrases that excuse what they cover (negations and questions the model confuses with
    requests: "I don't want to close it"): on a hit, the turn is scored again without every
    matched span and the hit stands only if the rest still reaches the threshold."""

    _classifier_lists = field_validator("unless", mode="before")(_one_or_many)


class CheckMatcher(_Spec):
    kind: Literal["check"]
    checks: Annotated[tuple[CheckName, ...], AfterValidator(_non_empty)]

    _check_lists = field_validator("checks", mode="before")(_one_or_many)


class AnyMatcher(_Spec):
    kind: Literal["any"]
    any: Annotated[tuple[Matcher, ...], AfterValidator(_non_empty)]


Matcher = Annotated[
    RegexMatcher | ContainsMatcher | ClassifierMatcher | CheckMatcher | AnyMatcher,
    Field(discriminator="kind"),
]
MatcherSpec = RegexMatcher | ContainsMatcher | ClassifierMatcher | CheckMatcher | AnyMatcher


# --------------------------------------------------------------------------- conditions


class Range(_Spec):
    min: int | None = None
    max: int | None = None


class When(_Spec):
    """State conditions; all given ones must hold, else the verdict is ``not_applicable``."""

    speaker: Speaker = "agent"
    """Whose turns the assertion judges."""
    authenticated: bool | None = None
    intent: tuple[Name, ...] | None = None
    """Caller intent is one of these."""
    intent_not: tuple[Name, ...] = ()
    agent_turn: int | Range | None = None
    """1-based number of the agent's turn (1 = the agent's first turn)."""
    turn_index: int | Range | None = None
    pending: tuple[Name, ...] | None = None
    """An obligation of one of these temporal assertions is open."""
    pending_any: bool | None = None

    _when_lists = field_validator("intent", "intent_not", "pending", mode="before")(_one_or_many)


# --------------------------------------------------------------------------- assertions


class _Common(_Spec):
    id: Name
    description: str = ""
    severity: Severity = "major"
    on_fail: tuple[Action, ...] = ("alert",)
    on_undetermined: tuple[Action, ...] = ("alert",)
    when: When = When()
    mode: Literal["live", "shadow"] = "live"
    """``shadow``: judged and recorded on every turn, never alerted nor handed off, reported
    apart (``cxguard policy compare`` shows what it would have changed before promotion)."""
    drift_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    """Change of the deviation rate (fail + undetermined share) that triggers a drift review
    for this assertion (default: ``cxguard drift``'s own, 0.05)."""

    _action_lists = field_validator("on_fail", "on_undetermined", mode="before")(_one_or_many)


class _Negatable(_Common):
    negate: bool = False
    """False: the turn must match. True: the turn must not match."""


class RegexAssertion(_Negatable, RegexMatcher):
    pass


class ContainsAssertion(_Negatable, ContainsMatcher):
    pass


class ClassifierAssertion(_Negatable, ClassifierMatcher):
    pass


class CheckAssertion(_Negatable, CheckMatcher):
    pass


class AnyAssertion(_Negatable, AnyMatcher):
    pass


TextAssertion = (
    RegexAssertion | ContainsAssertion | ClassifierAssertion | CheckAssertion | AnyAssertion
)


class TemporalAssertion(_Common):
    kind: Literal["temporal"]
    trigger: Matcher
    """Looked for in customer turns; a match opens an obligation."""
    require: Matcher
    """What an agent turn must do to meet the obligation."""
    forbid: Matcher | None = None
    """Fails any judged agent turn that matches it (e.g. processing the closure itself)."""
    within_turns: int | None = Field(default=None, ge=1)
    """Agent turns: speaker turns, each everything the agent says until the customer takes
    the floor (a backchannel does not count as taking it)."""
    within_seconds: float | None = Field(default=None, gt=0)
    """Stream time from the end of the trigger turn to the start of the meeting agent turn."""
    handoff_satisfies: bool = True

    @model_validator(mode="after")
    def _has_window(self) -> TemporalAssertion:
        if self.within_turns is None and self.within_seconds is None:
            raise ValueError("a temporal assertion needs within_turns or within_seconds")
        if self.when.speaker != "agent":
            raise ValueError("a temporal assertion judges agent turns (when.speaker: agent)")
        return self


Assertion = Annotated[
    RegexAssertion
    | ContainsAssertion
    | ClassifierAssertion
    | CheckAssertion
    | AnyAssertion
    | TemporalAssertion,
    Field(discriminator="kind"),
]
AssertionSpec = TextAssertion | TemporalAssertion


# --------------------------------------------------------------------------- the pack


class IntentRule(_Spec):
    intent: Name
    match: Matcher


class StateSpec(_Spec):
    authenticate_on_agent_confirmation: bool = False
    """Trust the agent's statement that verification succeeded (``agent_confirmation``)."""
    agent_confirmation: Matcher | None = None
    intents: tuple[IntentRule, ...] = ()
    """Customer turns set the caller intent to the first rule that matches."""
    initial_intent: Name | None = None

    @model_validator(mode="after")
    def _confirmation_given(self) -> StateSpec:
        if self.authenticate_on_agent_confirmation and self.agent_confirmation is None:
            raise ValueError("authenticate_on_agent_confirmation needs agent_confirmation")
        return self


class UndeterminedSpec(_Spec):
    """How a turn that could not be judged is raised: one ``undetermined`` alert per turn,
    listing its assertions (each is still recorded as its own verdict)."""

    severity: Severity = "minor"
    """Not a violation, but a gap in the evidence: above ``info``, below what breaks rules."""


class ClassifierSpec(_Spec):
    thresholds: dict[Name, Annotated[float, Field(ge=0.0, le=1.0)]] = {}


class PolicyTestCase(_Spec):
    """A labelled example conversation the pack must get right (``cxguard policy test``).

    ``turns`` are lines of the ``cxguard eval`` transcript format; an agent line's
    ``expect: {assertion: fail}`` marks a violation, every other (agent turn, assertion) is
    expected not to fail."""

    name: str = Field(min_length=1)
    parameters: dict[str, str] = Field(default_factory=dict)
    turns: Annotated[tuple[dict[str, Any], ...], AfterValidator(_non_empty)]


class PackSpec(_Spec):
    id: Name
    version: str
    description: str = ""
    classifier: ClassifierSpec = ClassifierSpec()
    state: StateSpec = StateSpec()
    undetermined: UndeterminedSpec = UndeterminedSpec()
    assertions: Annotated[tuple[Assertion, ...], AfterValidator(_non_empty)]
    tests: tuple[PolicyTestCase, ...] = ()

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 1.2` is a YAML float; a version is text.
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


AnyMatcher.model_rebuild()
