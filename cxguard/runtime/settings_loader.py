"""Loading :class:`~cxguard.runtime.settings.Settings` strictly, with errors naming file:line.

A regulated deployment must not run on a config it misread: a mistyped key (``redis_ulr:``)
or a mistyped tenant token (``twilio_auth_tokn:``) would otherwise load with a default and
silently turn a check off. So, in order:

1. the YAML is read with the line of every key (:mod:`cxguard.runtime.yaml_lines`); duplicate
   keys are errors;
2. the settings dataclasses are walked: unknown keys are errors (with a "did you mean");
   ``KEY_env`` / ``KEY_file`` fill a :data:`~cxguard.runtime.settings.SECRET` field from an
   environment variable or a secret file; :data:`~cxguard.runtime.settings.PATH` and
   :data:`~cxguard.runtime.settings.SQLITE_URL` values resolve against the file's folder;
3. command-line overrides and the single-tenant environment variables are applied;
4. pydantic checks types (``extra="forbid"`` as a backstop), its errors mapped to lines;
5. credentials are checked for consistency (a key without its secret, a secret that is not
   base64, a Twilio token without ``public_url``, duplicates across tenants).

Every problem found is reported at once, one per line. Secret values are never echoed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import pydantic

from cxguard.errors import ConfigError
from cxguard.runtime.settings import Settings, TenantSettings
from cxguard.runtime.yaml_lines import Loc, LocatedYaml, load_located

ENV_TENANT: Mapping[str, str] = {
    "twilio_auth_token": "CXGUARD_TWILIO_AUTH_TOKEN",
    "audiohook_api_key": "CXGUARD_AUDIOHOOK_API_KEY",
    "audiohook_client_secret": "CXGUARD_AUDIOHOOK_CLIENT_SECRET",
    "console_token": "CXGUARD_CONSOLE_TOKEN",
}
"""Single-tenant deployments need no config file: the default tenant's credentials."""
ENV_PUBLIC_URL = "CXGUARD_PUBLIC_URL"
SECRET_SUFFIXES = ("_env", "_file")
SPEAKERS = ("agent", "customer")
_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?:///)(.+)$")


class _File(pydantic.BaseModel):
    # extra="forbid" reaches every nested settings dataclass that has no config of its own.
    model_config = pydantic.ConfigDict(extra="forbid")
    settings: Settings


class _Origins:
    """Where each value came from: ``file:line``, an environment variable, or an option."""

    def __init__(self, doc: LocatedYaml) -> None:
        self.source = doc.source
        self._by_loc: dict[Loc, str] = {loc: f"{doc.source}:{n}" for loc, n in doc.lines.items()}

    def set(self, loc: Loc, origin: str) -> None:
        self._by_loc[loc] = origin

    def __call__(self, loc: Loc) -> str:
        path = tuple(loc)
        while path:
            if path in self._by_loc:
                return self._by_loc[path]
            path = path[:-1]
        return self.source


def load(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    if path is None:
        doc, base = LocatedYaml({}, "(defaults)"), Path.cwd()
    else:
        doc, base = load_located(Path(path)), Path(path).expanduser().resolve().parent
    origins = _Origins(doc)
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.source}:1: the config must be a mapping of keys to values")
    problems: list[str] = []
    data = _prepare(Settings, data, (), base, env, origins, problems)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
            origins.set((key,), f"option {key}")
    if problems:
        raise ConfigError(_report(doc.source, problems))
    try:
        settings = _File.model_validate({"settings": data}).settings
    except pydantic.ValidationError as exc:
        raise ConfigError(_report(doc.source, _type_problems(exc, origins))) from None
    settings = _with_env(settings, env, origins)
    problems = list(check_consistency(settings, origins))
    if problems:
        raise ConfigError(_report(doc.source, problems))
    return settings


def _report(source: str, problems: list[str]) -> str:
    return f"invalid config {source}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- walking the types


def _nested(tp: Any) -> tuple[type | None, bool]:
    """The settings dataclass inside a field's type, and whether it is a sequence of them."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _nested(inner[0]) if len(inner) == 1 else (None, False)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, False
    if origin in (tuple, list):
        args = get_args(tp)
        if args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            return args[0], True
    return None, False


def _prepare(
    cls: type,
    raw: dict[str, Any],
    loc: Loc,
    base: Path,
    env: Mapping[str, str],
    origins: _Origins,
    problems: list[str],
) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        here = (*loc, key)
        if key in fields:
            f = fields[key]
            if f.metadata.get("secret"):
                given = [key] + [key + s for s in SECRET_SUFFIXES if key + s in raw]
                if len(given) > 1:
                    problems.append(f"{origins(here)}: give one of {', '.join(given)}, not both")
            out[key] = _descend(hints[key], f, value, here, base, env, origins, problems)
            continue
        name, suffix = _secret_variant(key, fields)
        if name is None:
            problems.append(f"{origins(here)}: unknown key {key!r}{_suggest(key, fields)}")
            continue
        if name in raw:
            continue  # reported above
        secret = _read_secret(key, suffix, value, here, base, env, origins, problems)
        if secret is not None:
            origins.set((*loc, name), origins(here))
            out[name] = _resolve_path(fields[name], secret, base)
    return out


def _descend(
    tp: Any,
    f: dataclasses.Field[Any],
    value: Any,
    here: Loc,
    base: Path,
    env: Mapping[str, str],
    origins: _Origins,
    problems: list[str],
) -> Any:
    nested, many = _nested(tp)
    if nested is None:
        return _resolve_path(f, value, base)
    if not many:
        if isinstance(value, dict):
            return _prepare(nested, value, here, base, env, origins, problems)
        return value
    if not isinstance(value, list):
        return value
    return [
        _prepare(nested, item, (*here, i), base, env, origins, problems)
        if isinstance(item, dict)
        else item
        for i, item in enumerate(value)
    ]


def _secret_variant(
    key: str, fields: Mapping[str, dataclasses.Field[Any]]
) -> tuple[str | None, str]:
    for suffix in SECRET_SUFFIXES:
        name = key.removesuffix(suffix)
        if name != key and name in fields and fields[name].metadata.get("secret"):
            return name, suffix
    return None, ""


def _suggest(key: str, fields: Mapping[str, dataclasses.Field[Any]]) -> str:
    known = list(fields)
    known += [n + s for n, f in fields.items() if f.metadata.get("secret") for s in SECRET_SUFFIXES]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(fields)}"


def _read_secret(
    key: str,
    suffix: str,
    value: Any,
    here: Loc,
    base: Path,
    env: Mapping[str, str],
    origins: _Origins,
    problems: list[str],
) -> str | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{origins(here)}: {key} must name {_WHAT[suffix]}")
        return None
    if suffix == "_env":
        secret = env.get(value, "")
        if not secret:
            problems.append(f"{origins(here)}: {key}: environment variable {value} is not set")
            return None
        return secret
    path = _absolute(value, base)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{origins(here)}: {key}: cannot read {path}: {exc.__class__.__name__}")
        return None
    if not secret:
        problems.append(f"{origins(here)}: {key}: {path} is empty")
        return None
    return secret


_WHAT = {"_env": "an environment variable", "_file": "a file holding the secret"}


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _resolve_path(f: dataclasses.Field[Any], value: Any, base: Path) -> Any:
    kind = f.metadata.get("path")
    if not isinstance(value, str) or not value:
        return value
    if kind == "file":
        return str(_absolute(value, base))
    if kind == "sqlite_url":
        match = _SQLITE.match(value)
        if match and not match.group(2).startswith(("/", ":memory:")):
            return match.group(1) + str(_absolute(match.group(2), base))
    return value


def _type_problems(exc: pydantic.ValidationError, origins: _Origins) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"][1:])  # drop "settings"
        field = _field_at(loc)
        shown = ""
        if field is not None and not field.metadata.get("secret"):
            value = err.get("input")
            if isinstance(value, str | int | float | bool) or value is None:
                shown = f" (got {value!r:.60})"
        name = ".".join(str(p) for p in loc) or "(top level)"
        problems.append(f"{origins(loc)}: {name}: {err['msg']}{shown}")
    return problems


def _field_at(loc: Loc) -> dataclasses.Field[Any] | None:
    cls: type | None = Settings
    field = None
    for part in loc:
        if isinstance(part, int) or cls is None:
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        field = fields[part]
        cls, _ = _nested(get_type_hints(cls)[part])
    return field


# --------------------------------------------------------------------------- environment


def _with_env(settings: Settings, env: Mapping[str, str], origins: _Origins) -> Settings:
    if settings.public_url is None and env.get(ENV_PUBLIC_URL):
        settings = dataclasses.replace(settings, public_url=env[ENV_PUBLIC_URL])
        origins.set(("public_url",), f"environment variable {ENV_PUBLIC_URL}")
    given = {field: env[var] for field, var in ENV_TENANT.items() if env.get(var)}
    if not given:
        return settings
    tenants = list(settings.tenants)
    index = next((i for i, t in enumerate(tenants) if t.name == settings.default_tenant), None)
    if index is None:
        index = len(tenants)
        tenants.append(TenantSettings(settings.default_tenant))
    tenants[index] = dataclasses.replace(tenants[index], **given)  # type: ignore[arg-type]
    for field in given:
        origins.set(("tenants", index, field), f"environment variable {ENV_TENANT[field]}")
    return dataclasses.replace(settings, tenants=tuple(tenants))


# --------------------------------------------------------------------------- consistency


def check_consistency(settings: Settings, origins: _Origins) -> Iterator[str]:
    """Credentials that cannot work, or would weaken a check, as ``where: problem`` lines."""
    yield from _empty_secrets(settings, (), origins)
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    tokens: dict[str, int] = {}
    # A per-tenant door token shared by two tenants would open both.
    doors: dict[str, dict[str, int]] = {"console_token": {}, "control_token": {}}
    for i, t in enumerate(settings.tenants):

        def at(field: str, i: int = i) -> str:
            return origins(("tenants", i, field))

        if not t.name:
            yield f"{at('name')}: tenant name is empty"
        if t.name in names:
            yield f"{at('name')}: tenant {t.name!r} is defined twice"
        names.setdefault(t.name, i)
        key, secret = t.audiohook_api_key, t.audiohook_client_secret
        if key and not secret:
            yield (
                f"{at('audiohook_api_key')}: tenant {t.name!r} has an audiohook_api_key but no "
                "audiohook_client_secret: AudioHook upgrades must be signed, so it could never "
                "connect"
            )
        if secret and not key:
            yield (
                f"{at('audiohook_client_secret')}: tenant {t.name!r} has an "
                "audiohook_client_secret but no audiohook_api_key"
            )
        if secret:
            try:
                if not base64.b64decode(secret, validate=True):
                    raise ValueError("empty")
            except (binascii.Error, ValueError):
                yield (
                    f"{at('audiohook_client_secret')}: tenant {t.name!r}: audiohook_client_secret "
                    "is not base64 (paste it as Genesys shows it)"
                )
        if key and key in keys:
            yield (
                f"{at('audiohook_api_key')}: tenant {t.name!r} reuses the API key of tenant "
                f"{settings.tenants[keys[key]].name!r}"
            )
        if key:
            keys.setdefault(key, i)
        for field_name, seen in doors.items():
            token = getattr(t, field_name)
            if token and token in seen:
                what = field_name.replace("_", " ")
                other = settings.tenants[seen[token]].name
                yield (
                    f"{at(field_name)}: tenant {t.name!r} reuses the {what} of tenant "
                    f"{other!r}: it would open both tenants"
                )
            if token:
                seen.setdefault(token, i)
        token = t.twilio_auth_token
        if token and token in tokens:
            yield (
                f"{at('twilio_auth_token')}: tenant {t.name!r} reuses the Twilio auth token of "
                f"tenant {settings.tenants[tokens[token]].name!r}: a signature could not tell "
                "them apart"
            )
        if token:
            tokens.setdefault(token, i)
            if settings.public_url is None:
                yield (
                    f"{at('twilio_auth_token')}: tenant {t.name!r} has a Twilio auth token but "
                    "public_url is not set: Twilio signs the full wss:// URL, and without "
                    "public_url a signature made for another host would be accepted "
                    f"(set public_url, --public-url or {ENV_PUBLIC_URL})"
                )
    if settings.public_url is not None:
        yield from _public_url_problems(settings.public_url, origins(("public_url",)))
    h = settings.handoff
    if h.webhook_secret and not h.webhook_url:
        yield f"{origins(('handoff', 'webhook_secret'))}: webhook_secret without webhook_url"
    for track in ("twilio_track_inbound", "twilio_track_outbound"):
        if getattr(settings, track) not in SPEAKERS:
            yield f"{origins((track,))}: {track} must be one of {', '.join(SPEAKERS)}"
    if settings.twilio_track_inbound == settings.twilio_track_outbound:
        yield (
            f"{origins(('twilio_track_outbound',))}: twilio_track_inbound and "
            "twilio_track_outbound name the same speaker"
        )


def _public_url_problems(url: str, where: str) -> Iterator[str]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        yield f"{where}: public_url is not a URL"
        return
    if parts.scheme not in ("wss", "ws") or not parts.hostname:
        yield f"{where}: public_url must be a wss:// (or ws://) URL with a host, as Twilio signs it"
    if parts.query or parts.fragment:
        yield f"{where}: public_url must not have a query or fragment"


def _empty_secrets(obj: Any, loc: Loc, origins: _Origins) -> Iterator[str]:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        here = (*loc, f.name)
        if f.metadata.get("secret") and value == "":
            yield f"{origins(here)}: {'.'.join(map(str, here))} is empty (leave it out instead)"
        elif dataclasses.is_dataclass(value):
            yield from _empty_secrets(value, here, origins)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _empty_secrets(item, (*here, i), origins)
