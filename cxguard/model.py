"""Frozen value types shared by every room.

Only the standard library is imported here: protocols, audio, asr, policy, sinks and evidence
all speak in these types, and none of them may import another room.

Times on the *stream timeline* are milliseconds since the media stream started (Twilio's
``media.timestamp``, AudioHook's ``position``); they never come from the wall clock. Wall-clock
and monotonic times are named as such (``*_wall``, ``*_mono``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Speaker = Literal["agent", "customer"]
SPEAKERS: tuple[Speaker, Speaker] = ("agent", "customer")

Outcome = Literal["pass", "fail", "not_applicable", "undetermined"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "not_applicable", "undetermined")

Source = Literal["twilio", "audiohook", "stream", "pipecat", "offline", "demo"]


# --------------------------------------------------------------------------- call & protocol events


@dataclass(frozen=True)
class CallInfo:
    """What a media stream tells us about its call when it starts."""

    call_id: str
    tenant: str
    source: Source
    stream_id: str = ""
    account_sid: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Custom parameters (Twilio ``customParameters``, AudioHook ``customConfig``)."""


@dataclass(frozen=True)
class CallStarted:
    info: CallInfo
    encoding: Literal["PCMU", "L16"] = "PCMU"
    sample_rate: int = 8000


@dataclass(frozen=True)
class AudioChunk:
    """One speaker's audio, still in the wire encoding (decoding is the audio room's job)."""

    speaker: Speaker
    payload: bytes
    start_ms: float
    """Stream-timeline position of the first sample."""
    encoding: Literal["PCMU", "L16"] = "PCMU"
    sample_rate: int = 8000


@dataclass(frozen=True)
class Dtmf:
    digit: str
    at_ms: float


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class ControlEvent:
    """A trusted out-of-band signal about the conversation.

    ``name`` is e.g. ``authenticated``, ``unauthenticated``, ``handoff``, ``intent``; ``data``
    carries its arguments (``{"intent": "billing_question"}``).
    """

    name: str
    at_ms: float
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Gap:
    """Audio the stream deliberately did not carry (AudioHook pause / discarded)."""

    start_ms: float
    end_ms: float
    reason: str


@dataclass(frozen=True)
class CallEnded:
    reason: str = "stop"
    at_ms: float | None = None


ProtocolEvent = CallStarted | AudioChunk | Dtmf | Mark | ControlEvent | Gap | CallEnded


# --------------------------------------------------------------------------- turns and transcripts


@dataclass(frozen=True)
class Segment:
    """One speaker's stretch of speech cut by the VAD at a pause, as 16-bit mono PCM.

    Segments are not turns: people pause 0.5-0.9 s inside a turn. A *speaker turn* (what the
    policy judges) is one or more consecutive segments of one speaker, until the other
    speaker takes the floor (see :class:`TurnText` and :class:`SegmentSpan`)."""

    speaker: Speaker
    pcm16: bytes
    sample_rate: int
    start_ms: float
    end_ms: float
    partial: bool = False
    """True for a segment cut at the maximum length mid-speech (the speech goes on)."""


@dataclass(frozen=True)
class SegmentSpan:
    """Where one VAD segment of a speaker turn lies: kept in the evidence with the turn."""

    index: int
    """Per-call segment number, both speakers, in the order the segments closed (0-based)."""
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class Transcript:
    text: str
    model_id: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    asr_ms: float = 0.0
    """Time spent inside the model for this turn."""
    decode: str = ""
    """The decode strategy that produced ``text`` (``turn-b1``, ``full-b5``,
    ``fallback:full-b5``, ``energy-gate``, ...); ``model_id`` names the model that ran it."""


@dataclass(frozen=True)
class TurnText:
    """What the policy engine sees of a speaker turn: who said what, when.

    ``index`` counts speaker turns (both speakers, 0-based, in stream order); ``segments``
    names the VAD segments the turn was built from (empty for text-only sources)."""

    index: int
    speaker: Speaker
    text: str
    start_ms: float
    end_ms: float
    undetermined_reason: str | None = None
    """Set when the text could not be obtained (ASR failure, overload); the engine then
    returns ``undetermined`` for every assertion that would have looked at the turn."""
    confidence: float | None = None
    segments: tuple[SegmentSpan, ...] = ()
    readings: tuple[str, ...] = ()
    """With ``undetermined_reason``: the whole turn's text under each reading of its one
    unreadable segment (``cxguard.asr.agreement.readings``); never stored."""


# --------------------------------------------------------------------------- verdicts and alerts


@dataclass(frozen=True)
class Verdict:
    """One (turn, assertion) decision with the evidence that decided it."""

    call_id: str
    tenant: str
    turn_index: int
    speaker: Speaker
    start_ms: float
    end_ms: float
    text: str
    assertion_id: str
    outcome: Outcome
    evidence: str
    severity: str = "major"
    actions: tuple[str, ...] = ()
    """What the policy asks for on failure, e.g. ``("alert", "handoff")``."""
    scores: Mapping[str, float] = field(default_factory=dict)
    policy_hash: str = ""
    model_ids: Mapping[str, str] = field(default_factory=dict)
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    """Per stage: ``vad_to_asr_start``, ``asr``, ``policy``, ``end_to_verdict``, ``publish``."""
    decided_at_wall: float = 0.0
    trigger_turn: int | None = None
    """For temporal assertions: the turn whose obligation this verdict judges."""
    segments: tuple[SegmentSpan, ...] = ()
    """The VAD segments of the judged turn."""
    agent_version: str = ""
    """The voice agent's own version when the platform passes one (``agent_version``)."""
    release_id: str = ""
    """:attr:`Release.id` of what judged it (pack, models, agent version)."""
    intent: str = ""
    """The caller intent when it was decided ("" = none known)."""
    mode: Literal["live", "shadow"] = "live"
    """``shadow``: recorded, never alerted nor handed off."""


@dataclass(frozen=True)
class Release:
    """What judged a verdict: the policy pack, the models, and the agent being judged.

    Drift compares like with like: a change of any part is a *release change*, not drift.
    ``model_ids`` holds the classifier ids and ``asr`` (the speech model; absent when the
    text did not come from speech)."""

    policy_hash: str
    model_ids: Mapping[str, str] = field(default_factory=dict)
    agent_version: str = ""

    @property
    def id(self) -> str:
        """``rel-`` and 16 hex digits of the SHA-256 of the canonical parts."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "rel-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, object]:
        return {
            "policy_hash": self.policy_hash,
            "model_ids": dict(sorted(self.model_ids.items())),
            "agent_version": self.agent_version,
        }


AGENT_VERSION = "agent_version"
"""The call parameter (Twilio ``<Parameter>``, AudioHook ``customConfig``) and control event
that name the voice agent's version."""


@dataclass(frozen=True)
class Alert:
    """A supervisor-facing notice raised by a failed or undetermined verdict."""

    verdict: Verdict
    kind: Literal["violation", "undetermined", "handoff", "error"]
    """``error``: the call's pipeline failed somewhere (``verdict.assertion_id`` is
    ``pipeline.error``, its evidence the redacted error); judging went on."""
    message: str
    alert_id: str = ""
    """Stable id for at-least-once delivery (sinks deduplicate on it); "" = derive one."""
    assertions: tuple[str, ...] = ()
    """Every assertion this alert covers (one undetermined alert per turn lists them all);
    empty means just ``verdict.assertion_id``."""


@dataclass(frozen=True)
class HandoffRequest:
    call_id: str
    tenant: str
    source: Source
    assertion_id: str
    turn_index: int
    reason: str
    idempotency_key: str
    requested_at_wall: float
    account_sid: str = ""
