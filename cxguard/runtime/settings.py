"""Settings: the one place that reads the environment and config files.

A YAML config file (``cxguard serve --config FILE``) is validated into these dataclasses by
:mod:`cxguard.runtime.settings_loader` (strictly: unknown keys, wrong types and inconsistent
credentials are errors naming file:line); command-line flags override it; secrets may come
from environment variables or secret files. Every field has a default, so the sidecar runs
with no file at all ("embedded defaults"). ``configs/server.yaml`` documents every key (a test
checks it): a field added here must be added there too.

Field metadata tells the loader what a value is (see ``docs/configuration.md``):

- :data:`PATH`: a file or directory; relative values resolve against the config file's folder.
- :data:`SQLITE_URL`: a database URL; a relative ``sqlite:///`` path resolves the same way.
- :data:`SECRET`: may be given as ``KEY_env: VAR`` or ``KEY_file: /run/secrets/x`` instead of
  inline; never logged. Combine them: ``metadata={**SECRET, **PATH}``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from cxguard.asr.decoding import DEFAULT_FALLBACKS
from cxguard.audio.vad import VadOptions
from cxguard.errors import ConfigError
from cxguard.policy.turns import TurnOptions

PATH: Final = MappingProxyType({"path": "file"})
SQLITE_URL: Final = MappingProxyType({"path": "sqlite_url"})
SECRET: Final = MappingProxyType({"secret": True})


@dataclass(frozen=True)
class AsrSettings:
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "default"
    beam_size: int = 1
    window: str = "turn"
    cpu_threads: int = 0
    """CTranslate2 threads per transcription; 0: the cores less one for the event loop,
    shared by ``workers``, 1..4 (``AsrOptions.threads_per_decode``)."""
    workers: int = 1
    """Transcriptions running at once (CTranslate2 inter_threads)."""
    queue_size: int = 64
    """Turns waiting for ASR beyond which new turns get ``undetermined`` verdicts."""
    max_wait_ms: float = 10_000.0
    """A turn that waited longer than this is not transcribed: ``undetermined``, alerted."""
    batch_size: int = 4
    fallbacks: tuple[str, ...] = DEFAULT_FALLBACKS
    """Decodes tried in order on a segment whose fast decode failed a guard, before it is
    refused as ``undetermined`` (``[fallback:]turn|full-bN|tT``; see cxguard/asr/decoding.py)."""
    fallback_model: str | None = "auto"
    """Model of ``fallback:`` decodes: ``auto`` = ``base`` if installed (``cxguard[base]``)."""
    agree_logprob: float | None = -1.5
    """A segment every decode found only unsure (low log-probability) is accepted when two
    decodes give the same words, each scoring at least this; ``null`` refuses it
    (``undetermined``) as before (cxguard/asr/agreement.py)."""
    pool: str = "local"
    """Where segments are transcribed: ``local`` (this process's model, in-process queue) or
    ``redis`` (published to a Redis Stream for ``cxguard asr-worker`` processes; needs
    ``redis_url``; see docs/scale.md)."""
    stream: str = "cxguard:asr"
    """Key prefix of the pooled ASR streams: ``<stream>:agent``, ``<stream>:customer`` (work)
    and ``<stream>:reply:<sidecar>`` (transcripts back to one sidecar)."""
    group: str = "asr-workers"
    """Consumer group of the ASR workers on the work streams."""
    claim_idle_ms: float = 30_000.0
    """A segment a worker took and has not acknowledged this long is claimed by another
    worker (``XAUTOCLAIM``): the first worker is taken for dead."""
    pool_timeout_ms: float = 60_000.0
    """A pooled segment with no transcript this long after it was published is judged
    ``undetermined`` (no worker alive, or all of them far behind)."""

    def __post_init__(self) -> None:
        if self.pool not in ("local", "redis"):
            raise ConfigError(f"asr.pool must be 'local' or 'redis', not {self.pool!r}")


@dataclass(frozen=True)
class AdmissionSettings:
    """When ``/readyz`` tells a load balancer to send no new calls (503). Calls in progress
    are never dropped: only new ones are steered elsewhere."""

    max_active_calls: int = 0
    """Active calls at which this sidecar stops being ready; 0: no cap."""
    max_asr_backlog: int = 0
    """Segments waiting for ASR at which this sidecar stops being ready; 0: no cap."""


@dataclass(frozen=True)
class VadSettings:
    """Endpointing of each speaker's track into *segments* (not turns: see TurnSettings).
    The ``*_turn_ms`` names are kept from when segments were judged as turns."""

    aggressiveness: int = 2
    hangover_ms: int = 400
    """Silence that closes a segment."""
    min_turn_ms: int = 250
    """Shortest segment kept (shorter voiced blips are dropped)."""
    max_turn_ms: int = 15_000
    """Longest segment: longer speech is cut into pieces at this length."""
    agent_max_turn_ms: int | None = None
    """Cut agent speech into segments of this length so a monologue without pauses is
    transcribed and previewed while it goes on (e.g. 4000). Off by default: a segment cut
    mid-phrase transcribes worse (measured on the demo call)."""

    def options(self, speaker: str) -> VadOptions:
        """The segmenter options of ``speaker``'s track (live and ``cxguard eval`` alike)."""
        max_ms = self.max_turn_ms
        if speaker == "agent" and self.agent_max_turn_ms:
            max_ms = self.agent_max_turn_ms
        return VadOptions(
            aggressiveness=self.aggressiveness,
            hangover_ms=self.hangover_ms,
            min_turn_ms=self.min_turn_ms,
            max_turn_ms=max_ms,
        )


@dataclass(frozen=True)
class TurnSettings:
    """How segments make speaker turns (``policy.turns``, docs/TURNS.md)."""

    end_silence_ms: float = 1500.0
    """A speaker silent this long has ended the turn even if the other says nothing."""
    max_turn_ms: float = 60_000.0
    backchannel_max_ms: float = 1500.0
    """Longest "mm-hm"/"okay" of the listener that does not take the floor."""
    handoff_grace_ms: float = 2000.0
    """Stream time after the agent turn that used up a temporal obligation during which a
    platform handoff event still meets it (its fail waits this long)."""

    def __post_init__(self) -> None:
        self.options()  # values that make no sense fail when the settings load

    def options(self) -> TurnOptions:
        return TurnOptions(
            self.end_silence_ms, self.max_turn_ms, self.backchannel_max_ms, self.handoff_grace_ms
        )


@dataclass(frozen=True)
class TenantSettings:
    """One tenant's credentials, per door. A door (``/twilio``, ``/audiohook``, later the
    console and control API) admits a request as the tenant whose credential it proves; a new
    door adds its credential field here, marked :data:`SECRET`."""

    name: str
    twilio_auth_token: str | None = field(default=None, metadata=SECRET)
    audiohook_api_key: str | None = field(default=None, metadata=SECRET)
    audiohook_client_secret: str | None = field(default=None, metadata=SECRET)
    retention: str | None = None
    """This tenant's retention profile (``6m``, ``12m``, ``6y``); None: ``ledger.retention``."""

    def retention_profile(self, default: str) -> str:
        from cxguard.evidence.retention import retention_s

        profile = self.retention or default
        retention_s(profile)  # an unknown profile is a ConfigError naming the choices
        return profile

    """Base64, as Genesys shows it. Required with ``audiohook_api_key``."""
    audiohook_organization_ids: tuple[str, ...] = ()
    """Genesys organizations allowed to use this tenant's API key; empty allows any."""
    twilio_account_sid: str | None = None
    handoff_twiml: str | None = None
    stream_token: str | None = field(default=None, metadata=SECRET)
    """Bearer token (or Basic-auth password) for the generic ``/stream`` websocket."""
    console_token: str | None = field(default=None, metadata=SECRET)
    """Opens ``/console?token=…`` on this tenant's calls and alerts only (docs/console.md);
    single tenant: ``CXGUARD_CONSOLE_TOKEN``."""
    control_token: str | None = field(default=None, metadata=SECRET)
    """Bearer token for the control API (``POST /calls/{call_id}/events``): admits mid-call
    facts about this tenant's calls only."""

    def client_secret_bytes(self) -> bytes | None:
        if self.audiohook_client_secret is None:
            return None
        try:
            return base64.b64decode(self.audiohook_client_secret, validate=True)
        except ValueError as exc:
            raise ConfigError(
                f"tenant {self.name!r}: audiohook_client_secret is not base64"
            ) from exc


@dataclass(frozen=True)
class HandoffSettings:
    webhook_url: str | None = field(default=None, metadata=SECRET)
    webhook_secret: str | None = field(default=None, metadata=SECRET)
    twilio_api_base: str = "https://api.twilio.com"
    twiml: str = "<Response><Enqueue>human-agents</Enqueue></Response>"
    timeout_s: float = 2.0
    retries: int = 3


@dataclass(frozen=True)
class LedgerSettings:
    """Durability of the evidence and alerts (see docs/evidence.md)."""

    state_dir: str | None = field(default=None, metadata=PATH)
    """Local files: the write-ahead spool and the alert outbox. None: next to a SQLite
    ledger (``<ledger>.state/``), else ``./cxguard-state``. One per sidecar process."""
    key: str | None = field(default=None, metadata=SECRET)
    """HMAC key (>= 16 bytes) signing chain heads; better ``key_file:`` / ``key_env:`` or the
    environment (``CXGUARD_EVIDENCE_KEY`` / ``CXGUARD_EVIDENCE_KEY_FILE``). Never stored in
    the ledger."""
    timeout_s: float = 5.0
    """Bound on one database call (statement, lock, busy timeouts; the watchdog)."""
    ack_wait_ms: float = 200.0
    """How long a verdict waits for the ledger before its alert goes out saying the
    evidence is pending (it is already durable in the spool)."""
    spool_audio: bool = True
    """Spool closed segments' audio until their turn is judged (re-judged after a crash)."""
    reconnect_window_s: float = 3600.0
    """At start, remember the numbering of calls seen this long ago (a reconnect goes on)."""
    retention: str = "6m"
    """How long calls are kept before ``cxguard evidence purge`` removes them: ``6m``,
    ``12m`` or ``6y`` (a tenant's own ``retention`` wins; docs/governance.md)."""

    def __post_init__(self) -> None:
        from cxguard.evidence.retention import retention_s

        retention_s(self.retention)

    def key_bytes(self) -> bytes | None:
        return self.key.encode("utf-8") if self.key else None


@dataclass(frozen=True)
class AudioHookSettings:
    """Genesys AudioHook sessions (``/audiohook``; docs/protocols.md)."""

    supported_languages: tuple[str, ...] = ()
    """Sent in ``opened`` when Genesys asks (``supportedLanguages: true`` in ``open``): the
    languages this sidecar transcribes, e.g. ``[en-US]``; empty says none are promised."""
    send_events: bool = False
    """Send ``event`` messages back to Genesys: each judged turn's (redacted) transcript in
    the transcription-connector shape, and its ``fail``/``undetermined`` verdicts."""


@dataclass(frozen=True)
class SinkSettings:
    """One extra alert/handoff sink (``cxguard.sinks.registry``), beside the implicit ones
    (log; Redis when ``redis_url`` is set; handoff webhook; Twilio per tenant)."""

    type: str
    name: str | None = None
    """Unique name (default: the type)."""
    kinds: tuple[str, ...] = ("alert", "handoff")
    tenants: tuple[str, ...] = ()
    """Only these tenants' messages (empty: all)."""
    severities: tuple[str, ...] = ()
    max_age_s: float | None = None
    url: str | None = field(default=None, metadata=SECRET)
    """Target of an HTTP sink (``alert-webhook``, ``slack``): a Slack URL is its secret."""
    secret: str | None = field(default=None, metadata=SECRET)
    """``alert-webhook``: the ``whsec_<base64>`` key its Standard Webhooks signatures use."""
    min_severity: str | None = None
    """Only messages at least this severe (``info`` < ``minor`` < ``major`` < ``critical``),
    for any sink type; with ``severities`` too, both must hold."""
    options: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str | None = None
    """Base URL Twilio signs (``wss://guard.example.com``). Required (by the loader) when a
    Twilio auth token is set; built in code without it, signatures are checked against the
    listening socket's own address, never against the peer's ``Host`` header."""
    evidence_url: str = field(
        default="sqlite:///cxguard-evidence.db", metadata={**SQLITE_URL, **SECRET}
    )
    redis_url: str | None = field(default=None, metadata=SECRET)
    """Alerts, and the AudioHook nonce replay store shared by every sidecar."""
    policy: str | None = field(default=None, metadata=PATH)
    """Path of the policy pack; None = the bundled billing pack."""
    classifiers: bool = True
    """Load the ONNX classifiers when the pack has semantic assertions."""
    models_dir: str | None = field(default=None, metadata=PATH)
    require_auth: bool = False
    """Refuse upgrades on a media door with no credentials, on loopback too (beyond loopback
    they are refused anyway unless ``insecure``)."""
    insecure: bool = False
    """Off loopback, keep doors without credentials open (``cxguard serve --insecure``)."""
    metrics_token: str | None = field(default=None, metadata=SECRET)
    """Bearer token for ``/metrics``. Without it ``/metrics`` is open on loopback only."""
    twilio_track_inbound: str = "customer"
    """The speaker on Twilio's inbound track: ``agent`` or ``customer``."""
    twilio_track_outbound: str = "agent"
    default_tenant: str = "default"
    processes: int = 1
    """Sidecar processes on one port (``cxguard serve --workers N``, SO_REUSEPORT): each owns
    the calls its connections carry and its own state dir (``<state_dir>/process-<i>``);
    share the rest through Redis and PostgreSQL (docs/scale.md)."""
    asr: AsrSettings = field(default_factory=AsrSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    turns: TurnSettings = field(default_factory=TurnSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    tenants: tuple[TenantSettings, ...] = ()
    max_message_bytes: int = 64 * 1024
    drain_timeout_s: float = 30.0
    """On SIGTERM: how long open calls may take to be judged (and their evidence stored)
    before their streams are closed anyway (docs/protocols.md, "Shutdown")."""
    caller_id_key: str | None = field(default=None, metadata=SECRET)
    """Secret for keyed hashes of callers' numbers and names (``participant.ani``, ``From``
    …); without it they are dropped at the parser (see ``protocols/caller_id.py``)."""
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    sinks: tuple[SinkSettings, ...] = ()
    audiohook: AudioHookSettings = field(default_factory=AudioHookSettings)

    def tenant(self, name: str) -> TenantSettings | None:
        return next((t for t in self.tenants if t.name == name), None)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read a YAML file (optional) strictly, fill secrets, then apply non-None ``overrides``
    (command-line flags). Raises :class:`ConfigError` naming file:line."""
    from cxguard.runtime.settings_loader import load

    return _with_env_evidence_key(load(path, overrides), os.environ)


def _with_env_evidence_key(settings: Settings, env: Mapping[str, str]) -> Settings:
    """``CXGUARD_EVIDENCE_KEY`` (or ``_FILE``, a file holding it) signs chain heads."""
    key, key_file = env.get("CXGUARD_EVIDENCE_KEY"), env.get("CXGUARD_EVIDENCE_KEY_FILE")
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"CXGUARD_EVIDENCE_KEY_FILE: cannot read {key_file}: {exc}") from None
    if not key:
        return settings
    return replace(settings, ledger=replace(settings.ledger, key=key))
