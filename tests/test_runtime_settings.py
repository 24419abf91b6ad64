"""Strict settings: typos, wrong types and inconsistent credentials fail to load, naming
file:line; paths resolve against the config file; secrets come from env vars or files."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import textwrap
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from cxguard.errors import ConfigError
from cxguard.runtime.settings import Settings, TenantSettings, load_settings
from cxguard.runtime.settings_loader import SECRET_SUFFIXES, _nested, load

ROOT = Path(__file__).resolve().parents[1]
SECRET_B64 = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def write(tmp_path: Path, text: str, name: str = "cxguard.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def fails(path: Path, *fragments: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load(path, None, env or {})
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "where", "suggestion"),
    [
        ("host: 127.0.0.1\nprot: 9000\n", 2, "'port'"),
        ("redis_ulr: redis://127.0.0.1:6379/0\n", 1, "'redis_url'"),
        ("asr:\n  model: tiny.en\n  worker: 2\n", 3, "'workers'"),
        (
            "public_url: wss://g.example\ntenants:\n  - name: acme\n    twilio_auth_tokn: x\n",
            4,
            "'twilio_auth_token'",
        ),
        ("handoff:\n  webhook_secret_fil: /x\n", 2, "'webhook_secret_file'"),
    ],
)
def test_unknown_keys_fail_with_file_line_and_a_suggestion(
    tmp_path: Path, text: str, where: int, suggestion: str
) -> None:
    path = write(tmp_path, text)
    fails(path, f"{path}:{where}: unknown key", f"did you mean {suggestion}?")


def test_a_mistyped_tenant_token_does_not_turn_checks_off(tmp_path: Path) -> None:
    # Before: the tenant loaded with no token, and its Twilio upgrades went unchecked.
    path = write(
        tmp_path,
        """
        public_url: wss://guard.example.com
        tenants:
          - name: northwind
            twilio_auth_tokn: 0123456789abcdef
        """,
    )
    fails(path, f"{path}:4:", "twilio_auth_tokn")


def test_secret_variants_exist_only_for_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "port_env: CXGUARD_PORT\n")
    fails(path, f"{path}:1: unknown key 'port_env'")


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 1\nhost: 0.0.0.0\nport: 2\n")
    fails(path, f"{path}:3: duplicate key 'port' (first at line 1)")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "prot: 1\nredis_ulr: x\nvad:\n  hangovr_ms: 3\n")
    message = fails(path)
    assert [f"{path}:{n}:" in message for n in (1, 2, 4)] == [True] * 3


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("port: eighty\n", 1, "valid integer"),
        ("host: x\nclassifiers: sometimes\n", 2, "valid boolean"),
        ("asr:\n  beam_size: [1]\n", 2, "valid integer"),
        ("tenants:\n  name: acme\n", 1, "tenants"),
        ("tenants:\n  - twilio_account_sid: AC1\n", 2, "tenants.0.name"),
        ("- port\n", 1, "must be a mapping"),
        ("port: [1\n", 2, "invalid YAML"),
    ],
)
def test_wrong_types_fail_with_file_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, text)
    fails(path, f"{path}:{line}:", fragment)


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "redis_url: [hunter2-secret]\nport: x99\n")
    message = fails(path, "redis_url", "'x99'")
    assert "hunter2" not in message


def test_options_override_the_file_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9000\n")
    assert load(path, {"port": 9100, "host": None}, {}).port == 9100
    with pytest.raises(ConfigError, match="option port: port: Input should be a valid integer"):
        load(path, {"port": "many"}, {})
    with pytest.raises(ConfigError, match=r"(?i)unexpected keyword"):
        load(path, {"prot": 1}, {})


# --------------------------------------------------------------------------- paths


def test_paths_resolve_against_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "cxguard"
    path = write(
        conf,
        """
        policy: packs/billing.yaml
        models_dir: ../models
        evidence_url: sqlite:///data/evidence.db
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load(Path(os.path.relpath(path, elsewhere)), None, {})
    assert settings.policy == str(conf / "packs" / "billing.yaml")
    assert Path(settings.models_dir or "") == conf / ".." / "models"
    assert settings.evidence_url == f"sqlite:///{conf / 'data' / 'evidence.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/cxguard/evidence.db",
        "'sqlite:///:memory:'",
        "postgresql+psycopg://cxguard@db:5432/cxguard",
    ],
)
def test_absolute_and_non_file_urls_are_kept(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"evidence_url: {url}\npolicy: /etc/pack.yaml\n")
    settings = load(path, None, {})
    assert (settings.evidence_url, settings.policy) == (url.strip("'"), "/etc/pack.yaml")


def test_path_like_fields_are_marked_and_variant_suffixes_are_reserved() -> None:
    """A field another module adds (a spool dir, an outbox path) must say it is a path, or it
    would resolve against the working directory; ``_env``/``_file`` name secret sources."""

    def walk(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any]]]:
        out = []
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((prefix + f.name, f))
            nested, _ = _nested(hints[f.name])
            if nested is not None:
                out += walk(nested, f"{prefix}{f.name}.")
        return out

    for name, f in walk(Settings):
        assert not name.endswith(SECRET_SUFFIXES), name
        if name.endswith(("_dir", "_path", "policy")):
            assert f.metadata.get("path") == "file", f"{name} lacks metadata=PATH"
        if re.search(r"(token|secret|password)$", name):
            assert f.metadata.get("secret"), f"{name} lacks metadata=SECRET"


# --------------------------------------------------------------------------- secrets


def test_tenant_secrets_from_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("twilio-token-from-file\n", encoding="utf-8")
    path = write(
        tmp_path,
        """
        public_url: wss://guard.example.com
        tenants:
          - name: northwind
            twilio_auth_token_file: secrets/token
            audiohook_api_key_env: NW_KEY
            audiohook_client_secret_env: NW_SECRET
        handoff:
          webhook_url: https://hooks.example.com/x
          webhook_secret_file: secrets/token
        """,
    )
    env = {"NW_KEY": "nw-key", "NW_SECRET": SECRET_B64}
    settings = load(path, None, env)
    tenant = settings.tenant("northwind")
    assert tenant == TenantSettings(
        "northwind",
        twilio_auth_token="twilio-token-from-file",
        audiohook_api_key="nw-key",
        audiohook_client_secret=SECRET_B64,
    )
    assert settings.handoff.webhook_secret == "twilio-token-from-file"


@pytest.mark.parametrize(
    ("entry", "line", "fragment"),
    [
        ("audiohook_api_key_env: MISSING_VAR", 3, "environment variable MISSING_VAR is not set"),
        ("audiohook_api_key_file: nowhere.txt", 3, "cannot read"),
        ("audiohook_api_key_file: empty.txt", 3, "is empty"),
        ("audiohook_api_key_env: [A]", 3, "must name an environment variable"),
        ("twilio_auth_token: ''", 3, "is empty"),
    ],
)
def test_secret_sources_that_do_not_deliver_are_errors(
    tmp_path: Path, entry: str, line: int, fragment: str
) -> None:
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    path = write(
        tmp_path,
        f"public_url: wss://g.example\ntenants:\n  - {entry}\n    name: acme\n",
    )
    fails(path, f"{path}:{line}:", fragment)


def test_a_secret_given_twice_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        public_url: wss://g.example
        tenants:
          - name: acme
            twilio_auth_token: inline
            twilio_auth_token_env: TOKEN
        """,
    )
    fails(
        path, f"{path}:4: give one of twilio_auth_token, twilio_auth_token_env", env={"TOKEN": "t"}
    )


# --------------------------------------------------------------------------- credentials


def _tenant(tmp_path: Path, body: str, top: str = "public_url: wss://g.example\n") -> Path:
    return write(tmp_path, top + "tenants:\n  - name: acme\n" + textwrap.indent(body, "    "))


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("audiohook_api_key: k\n", 4, "no audiohook_client_secret"),
        (f"audiohook_client_secret: {SECRET_B64}\n", 4, "no audiohook_api_key"),
        ("audiohook_api_key: k\naudiohook_client_secret: not*base64\n", 5, "is not base64"),
    ],
)
def test_inconsistent_audiohook_credentials_fail_to_load(
    tmp_path: Path, body: str, line: int, fragment: str
) -> None:
    path = _tenant(tmp_path, body)
    fails(path, f"{path}:{line}:", fragment)


def test_a_twilio_token_needs_public_url(tmp_path: Path) -> None:
    path = _tenant(tmp_path, "twilio_auth_token: tok\n", top="")
    fails(path, f"{path}:3:", "public_url is not set")
    assert load(path, {"public_url": "wss://guard.example.com"}, {}).public_url


@pytest.mark.parametrize(
    "url", ["https://guard.example.com", "guard.example.com", "wss://g.example/x?y=1", "wss://"]
)
def test_public_url_must_be_what_twilio_signs(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"host: 127.0.0.1\npublic_url: '{url}'\n")
    fails(path, f"{path}:2: public_url")


def test_tenants_are_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        public_url: wss://g.example
        tenants:
          - name: acme
            twilio_auth_token: shared-token
            audiohook_api_key: shared-key
            audiohook_client_secret: {SECRET_B64}
          - name: acme
          - name: globex
            twilio_auth_token: shared-token
            audiohook_api_key: shared-key
            audiohook_client_secret: {SECRET_B64}
        """,
    )
    message = fails(path, f"{path}:7: tenant 'acme' is defined twice")
    assert f"{path}:9: tenant 'globex' reuses the Twilio auth token" in message
    assert f"{path}:10: tenant 'globex' reuses the API key" in message


def test_speaker_tracks_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "twilio_track_inbound: custmer\n")
    fails(path, f"{path}:1: twilio_track_inbound must be one of agent, customer")


def test_single_tenant_environment_variables(tmp_path: Path) -> None:
    env = {
        "CXGUARD_AUDIOHOOK_API_KEY": "k",
        "CXGUARD_AUDIOHOOK_CLIENT_SECRET": SECRET_B64,
        "CXGUARD_TWILIO_AUTH_TOKEN": "t",
        "CXGUARD_PUBLIC_URL": "wss://guard.example.com",
    }
    settings = load(None, None, env)
    assert settings.public_url == "wss://guard.example.com"
    assert settings.tenants == (
        TenantSettings(
            "default",
            twilio_auth_token="t",
            audiohook_api_key="k",
            audiohook_client_secret=SECRET_B64,
        ),
    )
    with pytest.raises(ConfigError, match="environment variable CXGUARD_AUDIOHOOK_API_KEY"):
        load(None, None, {"CXGUARD_AUDIOHOOK_API_KEY": "k"})
    with pytest.raises(ConfigError, match="environment variable CXGUARD_TWILIO_AUTH_TOKEN"):
        load(None, None, {"CXGUARD_TWILIO_AUTH_TOKEN": "t"})


def test_environment_credentials_keep_file_tenants_in_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tenants:\n  - name: acme\n  - name: default\n  - name: x\n    twilio_auth_token: ''\n",
    )
    message = fails(path, env={"CXGUARD_TWILIO_AUTH_TOKEN": "t", "CXGUARD_PUBLIC_URL": "ws://h:1"})
    assert f"{path}:5: tenants.2.twilio_auth_token is empty" in message


# --------------------------------------------------------------------------- configs/server.yaml


def _documented(text: str) -> Any:
    """configs/server.yaml with every commented-out key line uncommented."""
    key = re.compile(r"^(\s*)# ?(\s*(?:- )?[a-z][a-z0-9_]*:(?:\s|$))")
    return yaml.safe_load("\n".join(key.sub(r"\1\2", line) for line in text.splitlines()))


def _keys(cls: type, data: Any, prefix: str = "") -> tuple[set[str], set[str]]:
    """(documented keys, field names) under ``cls``, as dotted paths."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    documented: set[str] = set()
    expected = {prefix + n for n in fields}
    items = data if isinstance(data, list) else [data]
    for item in items:
        for key, value in (item or {}).items():
            name = key
            for suffix in SECRET_SUFFIXES:
                if key.endswith(suffix) and key.removesuffix(suffix) in fields:
                    name = key.removesuffix(suffix)
            documented.add(prefix + name)
            nested, _ = _nested(hints[name]) if name in hints else (None, False)
            if nested is not None:
                sub_doc, sub_expected = _keys(nested, value, f"{prefix}{name}.")
                documented |= sub_doc
                expected |= sub_expected
    for name in fields:
        nested, _ = _nested(hints[name])
        if nested is not None and not any(k.startswith(f"{prefix}{name}.") for k in documented):
            expected |= {f"{prefix}{name}.{f.name}" for f in dataclasses.fields(nested)}
    return documented, expected


def test_server_yaml_documents_every_settings_field_and_nothing_else() -> None:
    doc = _documented((ROOT / "configs" / "server.yaml").read_text(encoding="utf-8"))
    documented, expected = _keys(Settings, doc)
    assert sorted(expected - documented) == [], "fields missing from configs/server.yaml"
    assert sorted(documented - expected) == [], "keys in configs/server.yaml that are no field"


def test_server_yaml_loads_as_shipped() -> None:
    settings = load_settings(ROOT / "configs" / "server.yaml")
    assert settings.host == "127.0.0.1" and settings.tenants == ()


def test_deploy_config_loads_with_its_secrets(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "cxguard.yaml").read_text(encoding="utf-8")
    secrets = sorted(set(re.findall(r"/run/secrets/([a-z_]+)", text)))
    assert secrets, "the compose config reads its credentials from secrets"
    for name in secrets:
        value = SECRET_B64 if "secret" in name else f"{name}-value"
        if name == "evidence_url":
            value = f"sqlite:///{tmp_path / 'ev.db'}"
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    path = write(tmp_path, text.replace("/run/secrets/", f"{tmp_path}/"), "deploy.yaml")
    settings = load(path, None, {})
    assert settings.host == "0.0.0.0" and settings.tenants
    assert all(t.audiohook_client_secret == SECRET_B64 for t in settings.tenants)


def test_serve_reports_a_bad_config_and_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cxguard.cli import app

    path = write(tmp_path, "host: 127.0.0.1\nredis_ulr: redis://x\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2: unknown key 'redis_ulr' (did you mean 'redis_url'?)" in result.output
