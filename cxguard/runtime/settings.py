"""Settings: the one place that reads the environment and config files.

A YAML config file (``cxguard serve --config FILE``) is validated into these dataclasses with
pydantic; command-line flags override it; environment variables fill secrets. Every field has
a default, so the sidecar runs with no file at all ("embedded defaults").
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic
import yaml

from cxguard.errors import ConfigError


@dataclass(frozen=True)
class AsrSettings:
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "default"
    beam_size: int = 1
    window: str = "turn"
    cpu_threads: int = 0
    workers: int = 1
    """Transcriptions running at once (CTranslate2 inter_threads)."""
    queue_size: int = 64
    """Turns waiting for ASR beyond which new turns get ``undetermined`` verdicts."""
    max_wait_ms: float = 10_000.0
    """A turn that waited longer than this is not transcribed: ``undetermined``, alerted."""
    batch_size: int = 4


@dataclass(frozen=True)
class VadSettings:
    aggressiveness: int = 2
    hangover_ms: int = 400
    min_turn_ms: int = 250
    max_turn_ms: int = 15_000
    agent_max_turn_ms: int | None = None
    """Cut agent turns into pieces of this length so long monologues are previewed mid-turn
    (e.g. 4000). Off by default: a piece cut mid-phrase transcribes worse, and a short tail
    piece that ASR rejects makes the whole turn ``undetermined`` (measured on the demo call)."""


@dataclass(frozen=True)
class TenantSettings:
    name: str
    twilio_auth_token: str | None = None
    audiohook_api_key: str | None = None
    audiohook_client_secret: str | None = None
    """Base64, as Genesys shows it."""
    twilio_account_sid: str | None = None
    handoff_twiml: str | None = None

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
    webhook_url: str | None = None
    webhook_secret: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    twiml: str = "<Response><Enqueue>human-agents</Enqueue></Response>"
    timeout_s: float = 2.0
    retries: int = 3


@dataclass(frozen=True)
class LedgerSettings:
    """Durability of the evidence and alerts (see docs/evidence.md)."""

    state_dir: str | None = None
    """Local files: the write-ahead spool and the alert outbox. None: next to a SQLite
    ledger (``<ledger>.state/``), else ``./cxguard-state``. One per sidecar process."""
    key: str | None = None
    """HMAC key (>= 16 bytes) signing chain heads; better ``key_file`` or the environment
    (``CXGUARD_EVIDENCE_KEY`` / ``CXGUARD_EVIDENCE_KEY_FILE``). Never stored in the ledger."""
    key_file: str | None = None
    timeout_s: float = 5.0
    """Bound on one database call (statement, lock, busy timeouts; the watchdog)."""
    ack_wait_ms: float = 200.0
    """How long a verdict waits for the ledger before its alert goes out saying the
    evidence is pending (it is already durable in the spool)."""
    spool_audio: bool = True
    """Spool closed segments' audio until their turn is judged (re-judged after a crash)."""
    reconnect_window_s: float = 3600.0
    """At start, remember the numbering of calls seen this long ago (a reconnect goes on)."""

    def key_bytes(self) -> bytes | None:
        if self.key_file:
            try:
                return Path(self.key_file).read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the evidence key file {self.key_file}: {exc}"
                ) from exc
        return self.key.encode("utf-8") if self.key else None


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
    options: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str | None = None
    """Base URL Twilio signs (``wss://guard.example.com``); defaults to the Host header."""
    evidence_url: str = "sqlite:///cxguard-evidence.db"
    redis_url: str | None = None
    policy: str | None = None
    """Path of the policy pack; None = the bundled billing pack."""
    classifiers: bool = True
    """Load the ONNX classifiers when the pack has semantic assertions."""
    models_dir: str | None = None
    require_auth: bool = False
    """Reject unsigned upgrades even when no credentials are configured."""
    twilio_track_inbound: str = "customer"
    twilio_track_outbound: str = "agent"
    default_tenant: str = "default"
    asr: AsrSettings = field(default_factory=AsrSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    tenants: tuple[TenantSettings, ...] = ()
    max_message_bytes: int = 64 * 1024
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    sinks: tuple[SinkSettings, ...] = ()

    def tenant(self, name: str) -> TenantSettings | None:
        return next((t for t in self.tenants if t.name == name), None)


_ADAPTER = pydantic.TypeAdapter(Settings)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read a YAML file (optional), apply env secrets, then non-None ``overrides``."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config must be a mapping")
        raw = dict(loaded or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = _ADAPTER.validate_python(raw, strict=False)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"invalid config {path or '(defaults)'}: {exc}") from exc
    return _with_env_evidence_key(_with_env_tenant(settings, os.environ), os.environ)


def _with_env_evidence_key(settings: Settings, env: os._Environ[str] | dict[str, str]) -> Settings:
    key, key_file = env.get("CXGUARD_EVIDENCE_KEY"), env.get("CXGUARD_EVIDENCE_KEY_FILE")
    if not key and not key_file:
        return settings
    ledger = replace(settings.ledger, key=key or settings.ledger.key, key_file=key_file or None)
    return replace(settings, ledger=ledger)


def _with_env_tenant(settings: Settings, env: os._Environ[str] | dict[str, str]) -> Settings:
    """Single-tenant deployments need no config file: credentials come from the environment."""
    names = (
        "CXGUARD_TWILIO_AUTH_TOKEN",
        "CXGUARD_AUDIOHOOK_API_KEY",
        "CXGUARD_AUDIOHOOK_CLIENT_SECRET",
    )
    if not any(env.get(n) for n in names):
        return settings
    current = settings.tenant(settings.default_tenant) or TenantSettings(settings.default_tenant)
    merged = replace(
        current,
        twilio_auth_token=env.get(names[0]) or current.twilio_auth_token,
        audiohook_api_key=env.get(names[1]) or current.audiohook_api_key,
        audiohook_client_secret=env.get(names[2]) or current.audiohook_client_secret,
    )
    merged.client_secret_bytes()
    others = tuple(t for t in settings.tenants if t.name != settings.default_tenant)
    return replace(settings, tenants=(merged, *others))
